//! Running a process under bubblewrap (DESIGN.md §7, §12): build steps and
//! function instances both start here, so both get the same walls.
//!
//! Inside: the system read-only (`/usr`, `/etc`), only the directories the
//! caller binds, a private `/tmp` (writable by anyone, sticky), its own
//! PID, IPC, UTS and network namespaces, no inherited environment (the
//! one given is handed to bwrap through a descriptor, never on a command
//! line another user could read), no capabilities. The network reaches
//! the outside through slirp4netns but none of this machine
//! ([`network`]). When the server runs as root the process runs as
//! `nobody` (`setpriv` inside the sandbox), so files only
//! root may read stay closed; otherwise as the server's user in a user
//! namespace.
//!
//! Limits: a cgroup per sandbox caps processes (a fork bomb stops there),
//! memory and CPU ([`cgroup`]); background work (builds) also takes the
//! idle scheduling class and the lowest `nice`, so the server's own
//! threads always run first; rlimits cap the size of any one file and the
//! descriptors. Killing the outer `bwrap` tears down the PID namespace;
//! [`Sandboxed::stop`] returns only when the namespace is gone and the
//! cgroup swept, so nothing is left running.

pub mod cgroup;
pub mod network;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub use cgroup::Cgroup;
use network::Network;

/// The uid and gid sandboxed processes run as when the server is root
/// (`nobody`).
pub const NOBODY: u32 = 65534;

/// What a sandbox may use.
#[derive(Clone, Debug)]
pub struct Limits {
    pub memory_bytes: u64,
    /// CPU time per wall-clock second, in thousandths of a CPU.
    pub cpu_millis: u64,
    /// Processes and threads at once.
    pub max_tasks: u64,
    /// Largest single file it may write.
    pub max_file_bytes: u64,
    /// Open descriptors per process.
    pub max_files: u64,
    pub priority: Priority,
}

/// How the sandbox ranks against the server's own work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Runs only when nothing else wants the CPU (builds): the idle
    /// scheduling class (or the lowest weight) and `nice 19`.
    Background,
    /// Answers requests (functions): the default weight, under its quota.
    Serving,
}

/// A directory of this machine made visible inside.
#[derive(Clone, Debug)]
pub struct Bind {
    pub host: PathBuf,
    pub inside: PathBuf,
    pub writable: bool,
}

/// One process to start in a sandbox.
pub struct Spec<'a> {
    /// Names the cgroup (`<name>-<unique>`).
    pub name: &'a str,
    pub binds: &'a [Bind],
    pub env: &'a [(String, String)],
    /// Working directory, inside.
    pub cwd: &'a Path,
    /// The program (a path inside) and its arguments.
    pub argv: &'a [String],
    pub limits: &'a Limits,
    /// Hold the program until the network is up (a build's first download
    /// must not fail); a function instance starts at once.
    pub wait_for_network: bool,
    /// A host directory for this sandbox's own files (never mounted);
    /// created here, removed when the [`Sandboxed`] is dropped.
    pub scratch: PathBuf,
}

/// A started sandbox. Its stdout and stderr are piped; stdin is empty.
pub struct Sandboxed {
    pub child: Child,
    /// The sandbox's first process (its PID namespace dies with it).
    pub pid: Result<u64, String>,
    cgroup: Option<Cgroup>,
    _slirp: Option<Child>,
    /// What the caller should tell its user: limits that could not be
    /// set, a network that could not be had.
    pub notes: Vec<String>,
    scratch: PathBuf,
}

/// Starts `spec`.
pub async fn spawn(spec: &Spec<'_>) -> std::io::Result<Sandboxed> {
    let environment = env_args(spec.env)?;
    let mut notes = Vec::new();
    let cgroup = match Cgroup::create(&format!("{}-{}", spec.name, unique()), spec.limits) {
        Ok(cg) => Some(cg),
        Err(why) => {
            notes.push(format!("note: process and memory limits not enforced ({why})"));
            None
        }
    };
    std::fs::create_dir_all(&spec.scratch)?;
    let network = if network::slirp4netns_available() {
        let resolv = spec.scratch.join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {}\n", network::SLIRP_DNS))?;
        Network::Own { resolv }
    } else {
        notes.push(
            "note: slirp4netns is not installed: the sandbox shares the host's network, loopback services included"
                .into(),
        );
        Network::Shared
    };
    let info = spec.scratch.join("info.json");
    let env_args = spec.scratch.join("env.args");
    if let Err(e) = write_private(&env_args, &environment) {
        let _ = std::fs::remove_dir_all(&spec.scratch);
        return Err(e);
    }
    let mut cmd = command(spec, cgroup.as_ref(), &network, &info, &env_args);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&spec.scratch);
            return Err(e);
        }
    };
    let pid = child_pid(&info).await;
    // bwrap has read it once it reports the pid.
    let _ = std::fs::remove_file(&env_args);
    let slirp = match (&network, &pid) {
        (Network::Own { .. }, Ok(pid)) => match network::confine_network(*pid).await {
            // Routes first, then the way out: the process never sees a
            // moment with the outside reachable and this machine not yet
            // closed.
            Ok(()) => {
                network::attach_network(*pid).await.map_err(|e| notes.push(format!("note: no network: {e}"))).ok()
            }
            Err(e) => {
                notes.push(format!("note: no network: this machine's addresses could not be closed ({e})"));
                None
            }
        },
        (Network::Own { .. }, Err(e)) => {
            notes.push(format!("note: no network: {e}"));
            None
        }
        (Network::Shared, _) => None,
    };
    Ok(Sandboxed { child, pid, cgroup, _slirp: slirp, notes, scratch: spec.scratch.clone() })
}

impl Sandboxed {
    /// Kills the sandbox and returns once every process in it is gone.
    pub async fn stop(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        // The namespace's processes die with its first one: wait for that.
        if let Ok(pid) = self.pid {
            wait_gone(pid, Duration::from_secs(10)).await;
        }
        self.sweep().await;
    }

    /// Kills whatever is left in the cgroup (after the first process
    /// exited on its own).
    pub async fn sweep(&self) {
        if let Some(cg) = &self.cgroup {
            cg.sweep().await;
        }
    }

    /// Whether the memory limit killed a process in it.
    pub fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(Cgroup::oom_killed)
    }
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

fn command(spec: &Spec<'_>, cgroup: Option<&Cgroup>, network: &Network, info: &Path, env_args: &Path) -> Command {
    let root = is_root();
    let limits = spec.limits;
    // A shell joins the cgroup, then becomes the sandbox.
    let joins: String = cgroup
        .map(|cg| cg.procs_files().iter().map(|f| format!("echo $$ > '{}' && ", f.display())).collect())
        .unwrap_or_default();
    // bwrap reports its child's pid on descriptor 3 (for slirp4netns, and
    // to know when the namespace is gone), and reads the environment from
    // descriptor 4: on its command line any user of this machine could
    // read the secrets in it (`ps`, /proc/*/cmdline).
    let info = format!(" 3>'{}' 4<'{}'", info.display(), env_args.display());
    let mut argv: Vec<String> = vec!["/bin/sh".into(), "-c".into(), format!("{joins}exec \"$0\" \"$@\"{info}")];
    if limits.priority == Priority::Background {
        // Below the server's priority, whatever the cgroups allow.
        argv.extend(["nice".into(), "-n".into(), "19".into()]);
    }
    argv.extend([
        "prlimit".into(),
        format!("--fsize={}", limits.max_file_bytes),
        "--core=0".into(),
        format!("--nofile={}", limits.max_files),
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
            "helix",
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
            // Writable by the process whoever it runs as (`nobody` when
            // the server is root), sticky as /tmp is.
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
    for bind in spec.binds {
        let flag = if bind.writable { "--bind" } else { "--ro-bind" };
        argv.extend([flag.into(), bind.host.display().to_string(), bind.inside.display().to_string()]);
    }
    argv.extend(["--args".into(), "4".into()]);
    argv.extend(["--chdir".into(), spec.cwd.display().to_string()]);
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
    if spec.wait_for_network && matches!(network, Network::Own { .. }) {
        argv.extend(["/bin/sh".into(), "-c".into(), network::WAIT_FOR_NETWORK.into(), "sh".into()]);
    }
    argv.extend(spec.argv.iter().cloned());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin");
    cmd
}

/// `--clearenv --setenv K V …` as bwrap's `--args` reads them (each
/// argument ended by NUL).
fn env_args(env: &[(String, String)]) -> std::io::Result<Vec<u8>> {
    let mut args = b"--clearenv\0".to_vec();
    for (k, v) in env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("environment variable {k:?} cannot be passed (an empty name, `=` or NUL)"),
            ));
        }
        for part in ["--setenv", k, v] {
            args.extend_from_slice(part.as_bytes());
            args.push(0);
        }
    }
    Ok(args)
}

/// Writes a new file only this user may read (secrets the sandbox is
/// handed: its environment, a build's deploy key).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

/// Hands a directory (and, `recursive`, all under it, not following
/// symlinks) to the sandbox's user, `nobody`, when the server is root;
/// otherwise the sandbox runs as the server's user and nothing changes.
pub fn hand_over(root: &Path, recursive: bool) -> std::io::Result<()> {
    if !is_root() {
        return Ok(());
    }
    std::os::unix::fs::lchown(root, Some(NOBODY), Some(NOBODY))?;
    if recursive && root.is_dir() && !root.is_symlink() {
        for entry in std::fs::read_dir(root)? {
            hand_over(&entry?.path(), true)?;
        }
    }
    Ok(())
}

/// Whether this process runs as root (sandboxes then drop to `nobody`).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
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
