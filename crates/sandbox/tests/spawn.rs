//! Sandboxes started for real (bubblewrap, cgroups, slirp4netns).

use std::path::Path;

use helix_sandbox::{Bind, Limits, Priority, Spec};
use tokio::io::AsyncReadExt;

fn limits() -> Limits {
    Limits {
        memory_bytes: 256 << 20,
        cpu_millis: 1000,
        max_tasks: 64,
        max_file_bytes: 1 << 20,
        max_files: 256,
        priority: Priority::Serving,
    }
}

/// Runs `script` in a sandbox; its exit code, stdout and stderr.
async fn run(dir: &Path, name: &str, script: &str, wait_for_network: bool) -> (Option<i32>, String, String) {
    let argv = ["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let data = dir.join(format!("{name}-data"));
    std::fs::create_dir_all(&data).unwrap();
    let binds = [Bind { host: data, inside: "/data".into(), writable: false }];
    let spec = Spec {
        name: "helix-test",
        binds: &binds,
        env: &[("GREETING".into(), "hi".into())],
        cwd: Path::new("/data"),
        argv: &argv,
        limits: &limits(),
        wait_for_network,
        scratch: dir.join(format!("{name}-scratch")),
    };
    let mut sb = helix_sandbox::spawn(&spec).await.expect("bwrap starts");
    let (mut out, mut err) = (String::new(), String::new());
    let mut stdout = sb.child.stdout.take().unwrap();
    let mut stderr = sb.child.stderr.take().unwrap();
    let (a, b) = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
    a.unwrap();
    b.unwrap();
    let status = sb.child.wait().await.unwrap();
    sb.sweep().await;
    (status.code(), out, err)
}

/// bwrap reports its pid before it sets loopback up; were the network
/// attached first, slirp4netns bringing `lo` up made bwrap's own address
/// add fail ("loopback: Failed RTM_NEWADDR") about one start in forty.
#[tokio::test(flavor = "multi_thread")]
async fn many_concurrent_starts_all_get_their_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<_> = (0..24)
        .map(|i| {
            let dir = dir.path().to_owned();
            tokio::spawn(async move { run(&dir, &format!("n{i}"), "echo $GREETING", i % 2 == 0).await })
        })
        .collect();
    for run in runs {
        let (code, out, err) = run.await.unwrap();
        assert_eq!(code, Some(0), "stderr: {err}");
        assert_eq!(out.trim(), "hi");
        assert!(!err.contains("RTM_NEWADDR"), "{err}");
    }
}

#[tokio::test]
async fn the_environment_is_only_what_was_given_and_the_system_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run(dir.path(), "env", "env | sort | tr '\\n' ' '; touch /usr/x 2>/dev/null && echo wrote-usr; touch /data/x 2>/dev/null && echo wrote-data; touch /tmp/x && echo wrote-tmp", false).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("GREETING=hi"), "{out}");
    assert!(!out.contains("CARGO") && !out.contains("HOME=/root"), "inherited environment: {out}");
    assert!(!out.contains("wrote-usr") && !out.contains("wrote-data"), "{out}");
    assert!(out.contains("wrote-tmp"), "{out}");
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_process_limit() {
    let dir = tempfile::tempdir().unwrap();
    // 100 sleeps against a limit of 64 tasks: the rest fail to fork,
    // and the sandbox still ends.
    let (code, out, err) =
        run(dir.path(), "bomb", "for i in $(seq 1 100); do sleep 2 & done; wait; echo all-ran", false).await;
    assert!(err.contains("fork") && !out.contains("all-ran"), "every fork succeeded: {out} {err}");
    assert!(code.is_some(), "the shell ended by itself");
}

/// Every process command line on this machine that holds `needle`.
fn command_lines_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && cmdline.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

#[tokio::test]
async fn the_environment_never_appears_on_a_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("s3cret-{}", std::process::id());
    let argv = ["/bin/sh".to_owned(), "-c".to_owned(), "echo \"$API_KEY\"; sleep 2".to_owned()];
    let scratch = dir.path().join("scratch");
    let spec = Spec {
        name: "helix-test",
        binds: &[],
        env: &[("API_KEY".into(), secret.clone())],
        cwd: Path::new("/"),
        argv: &argv,
        limits: &limits(),
        wait_for_network: false,
        scratch: scratch.clone(),
    };
    let mut sb = helix_sandbox::spawn(&spec).await.expect("bwrap starts");
    let mut stdout = sb.child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let n = stdout.read(&mut first).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&first[..n]).trim(), secret, "the process has it");
    // Its own command line has none of it, nor has any other process's
    // (this test's own command line holds only the test name).
    let leaks = command_lines_with(&secret);
    assert!(leaks.is_empty(), "on a command line: {leaks:?}");
    assert!(!scratch.join("env.args").exists(), "the file bwrap read it from is gone");
    sb.stop().await;

    // A name that cannot be an environment variable is refused up front.
    let bad = Spec { env: &[("A=B".into(), "x".into())], scratch: dir.path().join("bad"), ..spec };
    assert!(helix_sandbox::spawn(&bad).await.is_err());
}
