//! `cargo xtask <command>`: the few commands people need, and the ones CI
//! runs (`.ci/run` is `cargo xtask ci`).
//!
//! - `setup` — installs (Debian packages) and starts (Postgres) what the
//!   tests need; idempotent, and quick when all is present.
//! - `test [ARGS…]` — `setup`, then `cargo test --workspace --locked ARGS…`
//!   with Postgres tests on (`HELIX_TEST_DATABASE_URL`).
//! - `slow` — `setup`, then the framework-starter suite.
//! - `lint` — `cargo fmt --check` and clippy with warnings as errors.
//! - `api-fuzz [EXAMPLES]` — schemathesis against the served OpenAPI
//!   document (`tests/schemathesis/run.sh`).
//! - `ci` — `lint`, `test`, `slow`, `api-fuzz`.
//! - `bench` — `bench/run`.
//!
//! Std only, so it builds in seconds on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The Postgres server the tests use unless `HELIX_TEST_DATABASE_URL` says
/// otherwise.
const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("usage: cargo xtask <setup|test|slow|lint|api-fuzz|ci|bench> [args…]");
        return ExitCode::from(2);
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_owned();
    let result = match command.as_str() {
        "setup" => setup(),
        "test" => setup().and_then(|()| test(&root, rest)),
        "slow" => setup().and_then(|()| slow(&root)),
        "lint" => lint(&root),
        "api-fuzz" => api_fuzz(&root, rest),
        "ci" => lint(&root)
            .and_then(|()| setup())
            .and_then(|()| test(&root, &[]))
            .and_then(|()| slow(&root))
            .and_then(|()| api_fuzz(&root, &[])),
        "bench" => run(Command::new("bash").arg(root.join("bench/run")).current_dir(&root)),
        other => Err(format!("unknown command {other:?}: use setup, test, slow, lint, api-fuzz, ci or bench")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the tests need: (how to tell it is there, Debian package).
const NEEDS: &[(Check, &str)] = &[
    (Check::Command("pg_ctlcluster"), "postgresql"),
    (Check::Command("psql"), "postgresql-client"),
    // Builds: the sandbox, its network, the source fetch.
    (Check::Command("bwrap"), "bubblewrap"),
    (Check::Command("slirp4netns"), "slirp4netns"),
    (Check::Command("ip"), "iproute2"),
    (Check::Command("nsenter"), "util-linux"),
    (Check::Command("prlimit"), "util-linux"),
    (Check::Command("git"), "git"),
    // Custom domains are verified against its DNS server; ACME tests use Pebble.
    (Check::Command("pebble-challtestsrv"), "pebble"),
    // The deploy-key test runs its own sshd.
    (Check::File("/usr/sbin/sshd"), "openssh-server"),
    // Real static site generators and the npm registry's tools.
    (Check::Command("hugo"), "hugo"),
    (Check::Command("npm"), "npm"),
    (Check::Command("jekyll"), "jekyll"),
    (Check::Package("jekyll-theme-minima"), "jekyll-theme-minima"),
    (Check::Package("ruby-jekyll-feed"), "ruby-jekyll-feed"),
];

enum Check {
    Command(&'static str),
    File(&'static str),
    Package(&'static str),
}

impl Check {
    fn present(&self) -> bool {
        match self {
            Check::Command(name) => on_path(name),
            Check::File(path) => Path::new(path).exists(),
            Check::Package(name) => Command::new("dpkg")
                .args(["-s", name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }
}

fn on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).any(|d: PathBuf| d.join(name).is_file())
}

fn setup() -> Result<(), String> {
    let mut missing: Vec<&str> = NEEDS.iter().filter(|(check, _)| !check.present()).map(|(_, pkg)| *pkg).collect();
    missing.dedup();
    if !missing.is_empty() {
        eprintln!("xtask: installing {}", missing.join(" "));
        let sudo = if is_root() { None } else { Some("sudo") };
        let apt = |args: &[&str]| {
            let mut cmd = match sudo {
                Some(s) => {
                    let mut c = Command::new(s);
                    c.arg("apt-get");
                    c
                }
                None => Command::new("apt-get"),
            };
            cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            cmd
        };
        run(&mut apt(&["update", "-qq"]))?;
        let mut install = apt(&["install", "-y", "-qq"]);
        install.args(&missing);
        run(&mut install)?;
    }
    ensure_npm_tools()?;
    ensure_postgres()
}

/// The JavaScript tools functions use, from the npm registry (each ships
/// its own binary): esbuild bundles function code; bun and deno are the
/// other runtimes a function may ask for.
fn ensure_npm_tools() -> Result<(), String> {
    let missing: Vec<&str> = ["esbuild", "bun", "deno"].into_iter().filter(|c| !on_path(c)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing from npm: {}", missing.join(" "));
    let mut npm = Command::new("npm");
    npm.args(["install", "--global", "--no-fund", "--no-audit"]).args(&missing);
    run(&mut npm)
}

/// Postgres on 127.0.0.1:5432 with trust auth, started when it is not;
/// each test makes its own database, and those of earlier runs go.
fn ensure_postgres() -> Result<(), String> {
    let ready =
        || Command::new("pg_isready").args(["-q", "-h", "127.0.0.1", "-p", "5432"]).status().is_ok_and(|s| s.success());
    if !ready() {
        let versions = std::fs::read_dir("/etc/postgresql").map_err(|e| format!("no Postgres cluster: {e}"))?;
        for version in versions.flatten() {
            let version = version.file_name().to_string_lossy().into_owned();
            let _ =
                Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", &version, "main", "start"]).status();
        }
        for _ in 0..50 {
            if ready() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        if !ready() {
            return Err("Postgres does not answer on 127.0.0.1:5432".into());
        }
    }
    let url = postgres_url();
    let list = Command::new("psql")
        .args([&url, "-Atqc"])
        .arg("SELECT 'DROP DATABASE IF EXISTS ' || quote_ident(datname) || ';' FROM pg_database WHERE datname LIKE 'helix_test_%'")
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if !list.status.success() {
        return Err(format!("psql {url}: {}", String::from_utf8_lossy(&list.stderr).trim()));
    }
    for drop in String::from_utf8_lossy(&list.stdout).lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("psql").args([&url, "-qc", drop]).output();
    }
    Ok(())
}

fn postgres_url() -> String {
    std::env::var("HELIX_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| POSTGRES_URL.into())
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).env("HELIX_TEST_DATABASE_URL", postgres_url());
    cmd
}

fn test(root: &Path, extra: &[String]) -> Result<(), String> {
    run(cargo(root).args(["test", "--workspace", "--locked"]).args(extra))
}

fn slow(root: &Path) -> Result<(), String> {
    run(cargo(root)
        .args(["test", "--locked", "-p", "helix-server", "--test", "starters", "--", "--ignored"])
        .args(["--test-threads", "1"]))
}

fn api_fuzz(root: &Path, extra: &[String]) -> Result<(), String> {
    run(Command::new("bash").arg(root.join("tests/schemathesis/run.sh")).args(extra).current_dir(root))
}

fn lint(root: &Path) -> Result<(), String> {
    run(cargo(root).args(["fmt", "--all", "--check"]))?;
    run(cargo(root).args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{cmd:?} failed ({status})")) }
}

fn is_root() -> bool {
    // Without libc: the owner of /proc/self is the process's user.
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}
