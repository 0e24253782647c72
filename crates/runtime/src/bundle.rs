//! Preparing a deployment's functions (the runtime adapter's `prepare`):
//! every entry bundled by esbuild — TypeScript, ESM and CommonJS, and the
//! npm dependencies of the project's `package.json` (installed first) —
//! into one ES module per entry, inside a `helix-sandbox` sandbox at
//! background priority. A syntax error or an import that does not resolve
//! fails here, with esbuild's message naming the file and line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use helix_sandbox::{Bind, Limits, Priority};
use tokio::io::AsyncReadExt;

/// Where a bundle of entry `api/x.ts` goes: `.helix/bundles/api/x.mjs`.
pub const BUNDLES: &str = ".helix/bundles";

/// How long installing and bundling may take.
const TIME_LIMIT: Duration = Duration::from_secs(180);

/// The bundle path of an entry.
pub fn bundle_path(entry: &str) -> String {
    let stem = entry.rsplit_once('.').map_or(entry, |(s, _)| s);
    format!("{BUNDLES}/{stem}.mjs")
}

/// Whether esbuild is installed here.
pub fn available() -> bool {
    ["/usr/bin/esbuild", "/usr/local/bin/esbuild"].iter().any(|p| Path::new(p).exists())
}

/// Bundles that run at once, one per core: each may take a core and
/// 2 GiB, and a burst of deploys must not take the machine from the
/// functions it serves. The rest wait their turn.
fn turns() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
static TURNS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(turns()));

/// The most bundles that ran at once so far (for tests).
static MOST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The most bundles that ever ran at once in this process.
pub fn most_at_once() -> usize {
    MOST.load(std::sync::atomic::Ordering::Relaxed)
}

/// Bundles `entries` (paths of `sources`); returns each bundle's path and
/// bytes. `work` is a scratch directory (removed after), `cache` the
/// project's npm cache.
pub async fn bundle(
    work: &Path,
    cache: &Path,
    sources: &BTreeMap<String, Bytes>,
    entries: &[String],
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let _turn = TURNS.acquire().await.expect("never closed");
    MOST.fetch_max(turns().saturating_sub(TURNS.available_permits()), std::sync::atomic::Ordering::Relaxed);
    let result = run(work, cache, sources, entries).await;
    let _ = tokio::fs::remove_dir_all(work).await;
    result
}

async fn run(
    work: &Path,
    cache: &Path,
    sources: &BTreeMap<String, Bytes>,
    entries: &[String],
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let io = |e: std::io::Error| format!("preparing the bundle: {e}");
    let src = work.join("src");
    for (path, bytes) in sources {
        let target = src.join(path);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        tokio::fs::write(&target, bytes).await.map_err(io)?;
    }
    tokio::fs::create_dir_all(&src).await.map_err(io)?;
    tokio::fs::create_dir_all(cache).await.map_err(io)?;
    helix_sandbox::hand_over(&src, true).map_err(io)?;
    helix_sandbox::hand_over(cache, false).map_err(io)?;
    let install = sources
        .get("package.json")
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        .is_some_and(|p| p.get("dependencies").and_then(|d| d.as_object()).is_some_and(|d| !d.is_empty()));
    let mut script = String::from("set -e\n");
    if install {
        let ci = if sources.contains_key("package-lock.json") { "ci" } else { "install" };
        script.push_str(&format!("npm {ci} --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2\n"));
    }
    // One ES module per entry; CommonJS inside gets a `require`.
    script.push_str(&format!(
        "exec esbuild \"$@\" --bundle --platform=node --format=esm --target=node20 --outbase=. --outdir={BUNDLES} \
         --out-extension:.js=.mjs --log-level=error --log-limit=5 \
         --banner:js=\"import {{ createRequire as __helixRequire }} from 'node:module'; const require = __helixRequire(import.meta.url);\"\n"
    ));
    let mut argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), script, "bundle".to_owned()];
    argv.extend(entries.iter().cloned());
    let binds = [
        Bind { host: src.clone(), inside: "/src".into(), writable: true },
        Bind { host: cache.to_owned(), inside: "/cache".into(), writable: true },
    ];
    let env = [
        ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME".to_owned(), "/cache".to_owned()),
        ("npm_config_cache".to_owned(), "/cache/npm".to_owned()),
        ("npm_config_update_notifier".to_owned(), "false".to_owned()),
    ];
    let limits = Limits {
        memory_bytes: 2 << 30,
        cpu_millis: 1000,
        max_tasks: 512,
        max_file_bytes: 512 << 20,
        max_files: 8192,
        priority: Priority::Background,
    };
    let spec = helix_sandbox::Spec {
        name: "helix-bundle",
        binds: &binds,
        env: &env,
        cwd: Path::new("/src"),
        argv: &argv,
        limits: &limits,
        wait_for_network: install,
        scratch: work.join("sandbox"),
    };
    let mut sb = helix_sandbox::spawn(&spec).await.map_err(|e| format!("starting the bundler's sandbox: {e}"))?;
    let mut stderr = sb.child.stderr.take().expect("piped");
    let mut stdout = sb.child.stdout.take().expect("piped");
    let reading = async {
        let (mut err, mut out) = (Vec::new(), Vec::new());
        let _ = tokio::join!(stderr.read_to_end(&mut err), stdout.read_to_end(&mut out));
        err
    };
    let waited = tokio::time::timeout(TIME_LIMIT, async {
        let err = reading.await;
        (sb.child.wait().await, err)
    })
    .await;
    let (status, err) = match waited {
        Ok((status, err)) => (status.map_err(|e| e.to_string())?, err),
        Err(_) => {
            sb.stop().await;
            return Err(format!("bundling the functions took over {} s", TIME_LIMIT.as_secs()));
        }
    };
    sb.sweep().await;
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        let text: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).take(20).collect();
        return Err(text.join("\n"));
    }
    let mut out = Vec::new();
    for entry in entries {
        let path = bundle_path(entry);
        let bytes =
            tokio::fs::read(src.join(&path)).await.map_err(|e| format!("{entry}: no bundle was written ({e})"))?;
        out.push((path, bytes));
    }
    Ok(out)
}
