//! Running one build step in a sandbox (`helix-sandbox`: the walls,
//! limits and network every sandboxed process gets), at background
//! priority, with the workspace at `/workspace` and this project's cache
//! at `/cache` writable. A watchdog kills the step when the workspace
//! outgrows its limit, the deadline passes or the build is canceled; the
//! step ends only when its namespace is gone and its cgroup swept.

use std::path::Path;
use std::time::Duration;

use helix_sandbox::{Bind, Priority};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::log::LogSink;

pub use helix_sandbox::{NOBODY, is_root};

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
    let binds = [
        Bind { host: step.workspace.to_owned(), inside: "/workspace".into(), writable: true },
        Bind { host: step.cache.to_owned(), inside: "/cache".into(), writable: true },
    ];
    let argv = ["/bin/sh".to_owned(), "-c".to_owned(), step.command.to_owned()];
    let spec = helix_sandbox::Spec {
        name: "helix-build",
        binds: &binds,
        env: step.env,
        cwd: &Path::new("/workspace").join(step.cwd),
        argv: &argv,
        limits: &helix_sandbox::Limits {
            memory_bytes: limits.memory_bytes,
            cpu_millis: limits.cpu_millis,
            max_tasks: limits.max_tasks,
            max_file_bytes: limits.max_file_bytes,
            max_files: 8192,
            priority: Priority::Background,
        },
        wait_for_network: true,
        // Host-only files of this step (never mounted in the sandbox).
        scratch: step.workspace.with_extension(format!("sandbox-{}", unique())),
    };
    let mut sandbox = helix_sandbox::spawn(&spec).await?;
    for note in &sandbox.notes {
        log.line(note);
    }
    let out = tokio::spawn(pump(sandbox.child.stdout.take().expect("piped"), log.clone()));
    let err = tokio::spawn(pump(sandbox.child.stderr.take().expect("piped"), log.clone()));

    let mut disk_check = tokio::time::interval(DISK_CHECK_EVERY);
    disk_check.tick().await;
    let end = loop {
        tokio::select! {
            status = sandbox.child.wait() => {
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
    if matches!(end, StepEnd::Exited(_)) {
        sandbox.sweep().await;
    } else {
        sandbox.stop().await;
    }
    let end = if sandbox.oom_killed() {
        StepEnd::Killed(format!("out of memory (limit {} bytes)", limits.memory_bytes))
    } else {
        end
    };
    // The pumps end when every writer of the pipes is gone.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    Ok(end)
}

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
