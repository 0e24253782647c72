//! Running one build step under bubblewrap (DESIGN.md §7, §12).
//!
//! Inside: the system read-only (`/usr`, `/etc`), the workspace at
//! `/workspace` and this project's cache at `/cache` writable, a private
//! `/tmp` (writable by anyone, sticky), its own PID, IPC, UTS and network
//! namespaces, no inherited environment, no capabilities. The network
//! reaches the outside through slirp4netns (package registries answer),
//! but none of this machine: before slirp4netns connects the namespace,
//! routes that refuse every internal range (loopback, private, link-local,
//! …, the same list the edge's proxy refuses) and every address and
//! connected network of this machine are put in it, and the step, without
//! capabilities, cannot remove them. When the server runs as root the step
//! runs as `nobody` (`setpriv` inside the sandbox), so files only root may
//! read stay closed; otherwise as the server's user in a user namespace.
//!
//! Limits: a cgroup per step caps processes (a fork bomb stops there),
//! memory and CPU (a quota, and the idle scheduling class — or the lowest
//! weight — so the server's own threads always run first); the step also
//! runs at the lowest `nice`; rlimits cap the size of any one file; a
//! watchdog kills the step when the workspace outgrows its limit, the
//! deadline passes or the build is canceled. Killing the outer `bwrap`
//! tears down the PID namespace; the step ends only when the namespace is
//! gone and the cgroup swept, so nothing is left running.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use helix_core::net::Cidr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::log::LogSink;

/// The uid and gid builds run as when the server is root (`nobody`).
pub const NOBODY: u32 = 65534;

/// Longest line kept in the log; the rest of a longer line is cut.
const MAX_LINE_BYTES: usize = 8 * 1024;

/// How often the workspace's size is measured.
const DISK_CHECK_EVERY: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct SandboxLimits {
    pub memory_bytes: u64,
    /// CPU time per wall-clock second, in thousandths of a CPU.
    pub cpu_millis: u64,
    /// Processes and threads at once.
    pub max_tasks: u64,
    /// Largest single file a step may write.
    pub max_file_bytes: u64,
    /// Largest the whole workspace (source, dependencies, output) may grow.
    pub max_workspace_bytes: u64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: 4 << 30,
            cpu_millis: default_cpu_millis(),
            max_tasks: 2048,
            max_file_bytes: 2 << 30,
            max_workspace_bytes: 8 << 30,
        }
    }
}

/// Every CPU but half of one (at least one): a build never has the whole
/// machine.
pub fn default_cpu_millis() -> u64 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    (cores * 1000).saturating_sub(500).max(1000)
}

/// One command to run in the sandbox.
pub struct Step<'a> {
    /// `install`, `build`, …: names the step in the log and in errors.
    pub name: &'static str,
    pub command: &'a str,
    /// Host directory mounted at `/workspace`.
    pub workspace: &'a Path,
    /// Working directory, relative to the workspace.
    pub cwd: &'a Path,
    /// Host directory mounted at `/cache`.
    pub cache: &'a Path,
    pub env: &'a [(String, String)],
}

/// How a step ended.
#[derive(Debug, PartialEq, Eq)]
pub enum StepEnd {
    Exited(i32),
    /// Killed by us, for the reason given.
    Killed(String),
    /// The build was canceled.
    Canceled,
}

/// Runs `step`, streaming its output lines to `log`, until it exits, the
/// deadline passes, `cancel` turns true or a limit is hit.
pub async fn run(
    step: &Step<'_>,
    limits: &SandboxLimits,
    deadline: Instant,
    mut cancel: watch::Receiver<bool>,
    log: &LogSink,
) -> std::io::Result<StepEnd> {
    let cgroup = Cgroup::create(&format!("helix-build-{}", unique()), limits);
    if let Err(why) = &cgroup {
        log.line(&format!("note: process and memory limits not enforced ({why}); time and disk limits still are"));
    }
    // Host-only files of this step (never mounted in the sandbox).
    let scratch = step.workspace.with_extension(format!("sandbox-{}", unique()));
    std::fs::create_dir_all(&scratch)?;
    let network = if slirp4netns_available() {
        std::fs::write(scratch.join("resolv.conf"), format!("nameserver {SLIRP_DNS}\n"))?;
        Network::Own { resolv: scratch.join("resolv.conf") }
    } else {
        log.line("note: slirp4netns is not installed: the step shares the host's network, loopback services included");
        Network::Shared
    };
    let info = scratch.join("info.json");
    let mut cmd = command(step, limits, cgroup.as_ref().ok(), &network, &info);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let sandbox_pid = child_pid(&info).await;
    let _slirp = match (&network, &sandbox_pid) {
        (Network::Own { .. }, Ok(pid)) => match confine_network(*pid).await {
            // Routes first, then the way out: the step never sees a moment
            // with the outside reachable and this machine not yet closed.
            Ok(()) => attach_network(*pid).await.map_err(|e| log.line(&format!("note: no network: {e}"))).ok(),
            Err(e) => {
                log.line(&format!("note: no network: this machine's addresses could not be closed to the step ({e})"));
                None
            }
        },
        (Network::Own { .. }, Err(e)) => {
            log.line(&format!("note: no network: {e}"));
            None
        }
        (Network::Shared, _) => None,
    };
    let out = tokio::spawn(pump(child.stdout.take().expect("piped"), log.clone()));
    let err = tokio::spawn(pump(child.stderr.take().expect("piped"), log.clone()));

    let mut disk_check = tokio::time::interval(DISK_CHECK_EVERY);
    disk_check.tick().await;
    let end = loop {
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                break match status.code() {
                    Some(code) => StepEnd::Exited(code),
                    None => StepEnd::Killed("killed by a signal".into()),
                };
            }
            () = tokio::time::sleep_until(deadline) => break StepEnd::Killed("the build ran past its time limit".into()),
            () = canceled(&mut cancel) => break StepEnd::Canceled,
            _ = disk_check.tick() => {
                let (root, cache) = (step.workspace.to_owned(), step.cache.to_owned());
                let used = tokio::task::spawn_blocking(move || disk_usage(&root) + disk_usage(&cache)).await.unwrap_or(0);
                if used > limits.max_workspace_bytes {
                    break StepEnd::Killed(format!(
                        "the workspace grew to {used} bytes with the cache, over the limit of {} bytes",
                        limits.max_workspace_bytes
                    ));
                }
            }
        }
    };
    if !matches!(end, StepEnd::Exited(_)) {
        let _ = child.start_kill();
        let _ = child.wait().await;
        // The namespace's processes die with its first one: wait for that.
        if let Ok(pid) = sandbox_pid {
            wait_gone(pid, Duration::from_secs(10)).await;
        }
    }
    let mut end = end;
    if let Ok(cg) = &cgroup {
        if cg.oom_killed() {
            end = StepEnd::Killed(format!("out of memory (limit {} bytes)", limits.memory_bytes));
        }
        cg.sweep().await;
    }
    // The pumps end when every writer of the pipes is gone.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(end)
}

/// Where the step's network comes from.
enum Network {
    /// Its own network namespace, connected to the outside through
    /// slirp4netns (user-mode NAT) with this machine closed: package
    /// registries answer, the machine's services (the database, the API,
    /// anything on its addresses or its networks) do not.
    Own { resolv: PathBuf },
    /// The host's network (when slirp4netns is missing).
    Shared,
}

/// slirp4netns' DNS forwarder inside the namespace.
const SLIRP_DNS: &str = "10.0.2.3";

fn slirp4netns_available() -> bool {
    ["/usr/bin/slirp4netns", "/usr/local/bin/slirp4netns"].iter().any(|p| Path::new(p).exists())
}

/// The sandbox's first process, as bwrap reports it (in `info`).
async fn child_pid(info: &Path) -> Result<u64, String> {
    let started = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(info)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(pid) = v.get("child-pid").and_then(serde_json::Value::as_u64)
        {
            return Ok(pid);
        }
        if started.elapsed() > Duration::from_secs(5) {
            return Err("the sandbox never reported its process".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (at most `limit`) until process `pid` is gone or a zombie.
async fn wait_gone(pid: u64, limit: Duration) {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            // The state follows the command name in parentheses.
            Ok(stat) if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])) => {
                return;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Waits (at most 5 s) until bwrap has given the sandbox's loopback its
/// address. bwrap reports the pid before it sets loopback up, and adds
/// the address exclusively: were slirp4netns to bring `lo` up first (the
/// kernel then adds 127.0.0.1 itself), bwrap would fail the step with
/// "loopback: Failed RTM_NEWADDR".
async fn loopback_ready(pid: u64) -> Result<(), String> {
    let started = std::time::Instant::now();
    // The namespace's local routing table lists 127.0.0.1 once it is set.
    while !std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")).is_ok_and(|t| t.contains("127.0.0.1")) {
        if started.elapsed() > Duration::from_secs(5) {
            return Err("the sandbox's loopback was never set up".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Puts into the sandbox's network namespace a route that refuses each
/// internal range and each address and network of this machine (connect
/// fails at once with "no route to host"). Fails closed: an error means
/// the step gets no network at all.
async fn confine_network(pid: u64) -> Result<(), String> {
    loopback_ready(pid).await?;
    let (v4, v6) = refused_ranges();
    // Without IPv6 in the kernel there is no IPv6 route to close.
    let v6 = if Path::new("/proc/net/if_inet6").exists() { v6 } else { Vec::new() };
    for (family, ranges) in [("-4", v4), ("-6", v6)] {
        if ranges.is_empty() {
            continue;
        }
        let batch: String = ranges.iter().map(|c| format!("route replace unreachable {c}\n")).collect();
        let mut ip = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["ip", family, "-batch", "-"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running nsenter ip: {e}"))?;
        if let Some(mut stdin) = ip.stdin.take() {
            use tokio::io::AsyncWriteExt;
            stdin.write_all(batch.as_bytes()).await.map_err(|e| format!("writing routes: {e}"))?;
        }
        let out = ip.wait_with_output().await.map_err(|e| format!("running ip: {e}"))?;
        if !out.status.success() {
            return Err(format!("ip {family}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
    Ok(())
}

/// The ranges a step may not reach, IPv4 and IPv6: the internal ranges,
/// and this machine's addresses and the networks they are on.
pub fn refused_ranges() -> (Vec<Cidr>, Vec<Cidr>) {
    let mut all: Vec<Cidr> = helix_core::net::INTERNAL_RANGES.iter().map(|(c, _)| *c).collect();
    for iface in if_addrs::get_if_addrs().unwrap_or_default() {
        all.push(Cidr::host(iface.ip()));
        let (ip, prefix) = match &iface.addr {
            if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), a.prefixlen),
            if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), a.prefixlen),
        };
        if let Some(net) = network_of(ip, prefix) {
            all.push(net);
        }
    }
    // IPv4-mapped IPv6 addresses are IPv4 addresses.
    all.push(Cidr { addr: IpAddr::V6(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0)), prefix: 96 });
    all.dedup();
    all.into_iter().partition(|c| c.addr.is_ipv4())
}

/// The network `ip` is on, as a CIDR with its first address.
fn network_of(ip: IpAddr, prefix: u8) -> Option<Cidr> {
    let addr = match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32u32.checked_sub(u32::from(prefix))?).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128u32.checked_sub(u32::from(prefix))?).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    };
    Some(Cidr { addr, prefix })
}

/// Connects the sandbox's network namespace to the outside. The returned
/// process lives as long as the handle.
async fn attach_network(pid: u64) -> Result<tokio::process::Child, String> {
    Command::new("slirp4netns")
        .args(["--configure", "--mtu=65520", "--disable-host-loopback", &pid.to_string(), "tap0"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting slirp4netns: {e}"))
}

/// Before the step's command: wait (at most 5 s) until slirp4netns has
/// configured the default route, so the first download does not fail.
const WAIT_FOR_NETWORK: &str = "i=0; while [ $i -lt 250 ] && ! grep -q '^tap0\t00000000' /proc/net/route; do i=$((i+1)); sleep 0.02; done; exec /bin/sh -c \"$1\"";

/// Resolves once `cancel` turns true; never if its sender goes away.
async fn canceled(cancel: &mut watch::Receiver<bool>) {
    loop {
        let now = *cancel.borrow_and_update();
        if now {
            return;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn command(
    step: &Step<'_>,
    limits: &SandboxLimits,
    cgroup: Option<&Cgroup>,
    network: &Network,
    info: &Path,
) -> Command {
    let cwd = Path::new("/workspace").join(step.cwd);
    let root = is_root();
    // A shell joins the cgroup, then becomes the sandbox.
    let joins: String = cgroup
        .map(|cg| cg.procs_files().iter().map(|f| format!("echo $$ > '{}' && ", f.display())).collect())
        .unwrap_or_default();
    // bwrap reports its child's pid on descriptor 3 (for slirp4netns, and
    // to know when the namespace is gone).
    let info = format!(" 3>'{}'", info.display());
    let mut argv: Vec<String> = vec!["/bin/sh".into(), "-c".into(), format!("{joins}exec \"$0\" \"$@\"{info}")];
    argv.extend([
        // Below the server's priority, whatever the cgroups allow.
        "nice".into(),
        "-n".into(),
        "19".into(),
        "prlimit".into(),
        format!("--fsize={}", limits.max_file_bytes),
        "--core=0".into(),
        "--nofile=8192".into(),
        "--".into(),
        "bwrap".into(),
    ]);
    if root {
        // Root makes the namespaces itself (it can bind directories whose
        // parents `nobody` cannot enter) and keeps only what `setpriv`
        // needs to become `nobody` inside; that drops every capability.
        argv.extend(
            [
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-net",
                "--unshare-cgroup-try",
                "--cap-add",
                "CAP_SETUID",
                "--cap-add",
                "CAP_SETGID",
                "--cap-add",
                "CAP_SETPCAP",
            ]
            .map(String::from),
        );
    } else {
        // Unprivileged: a user namespace, as the server's own user.
        argv.push("--unshare-all".into());
    }
    argv.extend(
        [
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "helix-build",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/sbin",
            "/sbin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--ro-bind",
            "/etc",
            "/etc",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            // Writable by the step whoever it runs as (`nobody` when the
            // server is root), sticky as /tmp is.
            "--perms",
            "1777",
            "--tmpfs",
            "/tmp",
        ]
        .map(String::from),
    );
    argv.extend(["--info-fd".into(), "3".into()]);
    match network {
        Network::Own { resolv } => {
            argv.extend(["--ro-bind".into(), resolv.display().to_string(), "/etc/resolv.conf".into()]);
        }
        // Without slirp4netns the host's network is shared.
        Network::Shared if !root => argv.push("--share-net".into()),
        Network::Shared => argv.retain(|a| a != "--unshare-net"),
    }
    argv.extend(["--bind".into(), step.workspace.display().to_string(), "/workspace".into()]);
    argv.extend(["--bind".into(), step.cache.display().to_string(), "/cache".into()]);
    argv.push("--clearenv".into());
    for (k, v) in step.env {
        argv.extend(["--setenv".into(), k.clone(), v.clone()]);
    }
    argv.extend(["--chdir".into(), cwd.display().to_string()]);
    if root {
        argv.extend([
            "setpriv".into(),
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
            "--inh-caps=-all".into(),
            "--bounding-set=-all".into(),
            "--".into(),
        ]);
    }
    match network {
        Network::Own { .. } => {
            argv.extend(["/bin/sh".into(), "-c".into(), WAIT_FOR_NETWORK.into(), "sh".into(), step.command.to_owned()])
        }
        Network::Shared => argv.extend(["/bin/sh".into(), "-c".into(), step.command.to_owned()]),
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin");
    cmd
}

/// Whether this process runs as root (the sandbox then drops to `nobody`).
pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// Reads a pipe and hands the log each line (cut at [`MAX_LINE_BYTES`]).
async fn pump(mut from: impl AsyncRead + Unpin, log: LogSink) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if log.is_full() {
            // Keep draining so the step is not blocked on a full pipe.
            continue;
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                log.line(&String::from_utf8_lossy(&line));
                line.clear();
                cut = false;
            } else if line.len() < MAX_LINE_BYTES {
                line.push(b);
            } else if !cut {
                cut = true;
                line.extend_from_slice(" [line cut]".as_bytes());
            }
        }
    }
    if !line.is_empty() {
        log.line(&String::from_utf8_lossy(&line));
    }
}

/// Bytes the files under `root` take, not following symlinks.
pub fn disk_usage(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A cgroup (v1: one per controller; v2: one) holding a step's processes.
pub(crate) struct Cgroup {
    /// (controller or "" for v2, directory).
    dirs: Vec<(&'static str, PathBuf)>,
}

impl Cgroup {
    pub(crate) fn create(name: &str, limits: &SandboxLimits) -> Result<Cgroup, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let mut cg = Cgroup { dirs: Vec::new() };
        let v1 = |controller: &str| {
            own.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                list.split(',').any(|c| c == controller).then(|| path.to_owned())
            })
        };
        let period = 100_000u64;
        let quota = (limits.cpu_millis.max(10) * period / 1000).to_string();
        let result = if Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
            for (controller, settings) in [
                ("pids", vec![("pids.max", limits.max_tasks.to_string())]),
                ("memory", vec![("memory.limit_in_bytes", limits.memory_bytes.to_string())]),
            ] {
                let parent = v1(controller).ok_or_else(|| format!("no {controller} cgroup"))?;
                let dir = Path::new("/sys/fs/cgroup").join(controller).join(parent.trim_start_matches('/')).join(name);
                cg.add(controller, dir, &settings)?;
            }
            // CPU where the controller is there (its absence is noted, not
            // fatal: nice still ranks the step below the server). Weight
            // and quota first: setting `cpu.idle` resets the weight.
            if let Some(parent) = v1("cpu") {
                let dir = Path::new("/sys/fs/cgroup/cpu").join(parent.trim_start_matches('/')).join(name);
                let idle_or_weight =
                    if dir.with_file_name("cpu.idle").exists() || Path::new("/sys/fs/cgroup/cpu/cpu.idle").exists() {
                        ("cpu.idle", "1".to_owned())
                    } else {
                        ("cpu.shares", "2".to_owned())
                    };
                cg.add(
                    "cpu",
                    dir,
                    &[("cpu.cfs_period_us", period.to_string()), ("cpu.cfs_quota_us", quota.clone()), idle_or_weight],
                )?;
            }
            Ok(())
        } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            let parent = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").to_owned();
            let dir = Path::new("/sys/fs/cgroup").join(parent.trim_start_matches('/')).join(name);
            let mut settings =
                vec![("pids.max", limits.max_tasks.to_string()), ("memory.max", limits.memory_bytes.to_string())];
            let controllers = std::fs::read_to_string(dir.with_file_name("cgroup.subtree_control")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "cpu") {
                settings.push(("cpu.max", format!("{quota} {period}")));
                settings.push(("cpu.weight", "1".into()));
                if Path::new("/sys/fs/cgroup/cpu.idle").exists() || dir.with_file_name("cpu.idle").exists() {
                    settings.push(("cpu.idle", "1".into()));
                }
            }
            cg.add("", dir, &settings)
        } else {
            Err("no cgroup file system".into())
        };
        // On an error, dropping `cg` removes what was made.
        result.map(|()| cg)
    }

    fn add(&mut self, controller: &'static str, dir: PathBuf, settings: &[(&str, String)]) -> Result<(), String> {
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        self.dirs.push((controller, dir.clone()));
        for (file, value) in settings {
            std::fs::write(dir.join(file), value).map_err(|e| format!("writing {}/{file}: {e}", dir.display()))?;
        }
        Ok(())
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    fn oom_killed(&self) -> bool {
        self.dirs.iter().any(|(c, d)| {
            let file = if c.is_empty() { "memory.events" } else { "memory.oom_control" };
            std::fs::read_to_string(d.join(file))
                .is_ok_and(|t| t.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0")))
        })
    }

    fn pids(&self) -> Vec<String> {
        let mut pids: Vec<String> = self
            .procs_files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        pids.sort();
        pids.dedup();
        pids
    }

    /// Kills whatever is still in the cgroup (dropping it removes it).
    async fn sweep(&self) {
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            let _ = Command::new("kill").arg("-KILL").args(&pids).stderr(Stdio::null()).status().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Also when a step is abandoned midway (its worker stopped): the
/// processes die with bwrap, and the empty cgroup goes here.
impl Drop for Cgroup {
    fn drop(&mut self) {
        for (_, dir) in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
