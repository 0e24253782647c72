//! The `helix` binary end to end: a real `helix server` process, driven by
//! the real CLI, checked through the real edge. Includes `kill -9` of the
//! server in the middle of a deploy.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const HELIX: &str = env!("CARGO_BIN_EXE_helix");

/// A `helix server` child process on free ports.
struct Server {
    child: Child,
    data_dir: PathBuf,
    api: SocketAddr,
    edge: SocketAddr,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        Server::start_under(data_dir, &[])
    }

    /// The server run by `wrapper` (e.g. `prlimit --nofile=1024`).
    fn start_under(data_dir: &Path, wrapper: &[&str]) -> Server {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(HELIX);
                c
            }
            None => Command::new(HELIX),
        };
        let mut child = command
            .args(["server", "--api-addr", "127.0.0.1:0", "--edge-addr", "127.0.0.1:0", "--gc-interval-secs", "0"])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("HELIX_DATABASE_URL")
            .env("HELIX_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn helix server");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let line = loop {
            let line = lines.next().expect("server printed its addresses").expect("utf-8");
            if line.starts_with("helix server:") {
                break line;
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let addr_after = |marker: &str| -> SocketAddr {
            let rest = &line[line.find(marker).expect(marker) + marker.len()..];
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        let (api, edge) = (addr_after("API http://"), addr_after("edge http://"));
        Server { child, data_dir: data_dir.to_owned(), api, edge }
    }

    fn helix(&self, args: &[&str]) -> Output {
        self.helix_with(args, &[])
    }

    /// `helix` with more environment (`XDG_CONFIG_HOME` for `login`).
    fn helix_with(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        Command::new(HELIX)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .env("HELIX_API_URL", format!("http://{}", self.api))
            .env("HELIX_DATA_DIR", &self.data_dir)
            .env_remove("HELIX_TOKEN")
            .output()
            .expect("run helix")
    }

    fn helix_json(&self, args: &[&str]) -> Value {
        let out = self.helix(args);
        assert!(out.status.success(), "helix {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    fn get(&self, host: &str, path: &str) -> (u16, String) {
        let client = http_client();
        let resp = client.get(format!("http://{}{path}", self.edge)).header("host", host).send().expect("edge answers");
        (resp.status().as_u16(), resp.text().unwrap())
    }

    fn wait_serving(&self, host: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.get(host, "/").1.contains(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{host} never served {want:?}; it serves {:?}", self.get(host, "/"));
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_site(dir: &Path, version: &str, extra_files: usize) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), format!("<h1>{version}</h1>")).unwrap();
    std::fs::write(dir.join("404.html"), "<h1>gone</h1>").unwrap();
    for i in 0..extra_files {
        let mut body = format!("file {i}: ");
        body.extend((body.len()..2000).map(|j| char::from(b'a' + ((i * 7 + j) % 26) as u8)));
        std::fs::write(dir.join("assets").join(format!("f{i}.txt")), body).unwrap();
    }
}

#[test]
fn deploy_list_promote_rollback_through_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    write_site(site.path(), "one", 20);
    let dir = site.path().to_str().unwrap();

    let v1 = server.helix_json(&["deploy", dir, "--project", "shop", "--prod", "--json"]);
    assert_eq!(v1["files"], 22);
    assert_eq!(v1["uploaded"], 22);
    assert_eq!(v1["production_url"], format!("http://shop.localhost:{}", server.edge.port()));
    server.wait_serving("shop.localhost", "one");

    // The same tree again uploads nothing; one changed file uploads one.
    let same = server.helix_json(&["deploy", dir, "--project", "shop", "--json"]);
    assert_eq!(same["uploaded"], 0);
    assert!(same.get("production_url").is_none(), "a preview is not production");
    std::fs::write(site.path().join("index.html"), "<h1>two</h1>").unwrap();
    let v2 = server.helix_json(&["deploy", dir, "--project", "shop", "--json"]);
    assert_eq!((v2["uploaded"].as_u64(), v2["uploaded_bytes"].as_u64()), (Some(1), Some(12)));
    let v2_id = v2["id"].as_str().unwrap();
    server.wait_serving(&format!("{v2_id}--shop.localhost"), "two");
    assert!(server.get("shop.localhost", "/").1.contains("one"), "preview deploys leave production alone");

    let list = server.helix_json(&["deployments", "--project", "shop", "--json"]);
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [v2_id, same["id"].as_str().unwrap(), v1["id"].as_str().unwrap()]);
    assert_eq!(list[2]["production"], true);

    let promoted = server.helix_json(&["promote", v2_id, "--json"]);
    assert_eq!(promoted["production"], true);
    server.wait_serving("shop.localhost", "two");
    let back = server.helix_json(&["rollback", "--project", "shop", "--json"]);
    assert_eq!(back["id"], v1["id"]);
    server.wait_serving("shop.localhost", "one");
    server.helix_json(&["rollback", "--project", "shop", "--to", v2_id, "--json"]);
    server.wait_serving("shop.localhost", "two");

    // Human output.
    let out = server.helix(&["deployments", "--project", "shop"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains("* production")).count(), 1, "{text}");
    let out = server.helix(&["deploy", dir, "--project", "shop"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("✔ hashed 22 files") && text.contains("uploaded 0"), "{text}");

    // Split production between the two versions, then end the split.
    let v1_id = v1["id"].as_str().unwrap();
    let split =
        server.helix_json(&["split", "set", "--project", "shop", &format!("{v1_id}=50"), "production=50", "--json"]);
    assert_eq!(split["weights"][v1_id], 50);
    assert_eq!(split["weights"][v2_id], 50);
    assert_eq!(split["propagation"]["served"], true, "the split answers once the edge serves it: {split}");
    let shown = server.helix_json(&["split", "show", "--project", "shop", "--json"]);
    assert_eq!(shown["weights"], split["weights"]);
    let out = server.helix(&["split", "set", "--project", "shop", "production=60"]);
    assert!(String::from_utf8(out.stderr).unwrap().contains("add up to 100"));
    let out = server.helix(&["split", "set", "--project", "shop", "production"]);
    assert!(String::from_utf8(out.stderr).unwrap().contains("DEPLOYMENT=PERCENT"));
    let cleared = server.helix_json(&["split", "clear", "--project", "shop", "--json"]);
    assert_eq!(cleared["weights"], serde_json::json!({}));

    let gc = server.helix_json(&["gc", "--json"]);
    assert_eq!(gc["blobs_deleted"], 0, "GC's grace period keeps fresh blobs");
}

#[test]
fn failures_exit_non_zero_with_one_line() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s3cret").unwrap();
    let site = tempfile::tempdir().unwrap();
    write_site(site.path(), "x", 1);
    std::os::unix::fs::symlink(outside.path().join("secret"), site.path().join("leak.txt")).unwrap();

    let check = |out: Output, needle: &str| {
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1, "{err:?}");
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    };
    let dir = site.path().to_str().unwrap();
    check(server.helix(&["deploy", dir, "--project", "leaky"]), "leak.txt");
    check(server.helix(&["deploy", dir, "--project", "leaky"]), "points outside the site directory");
    assert_eq!(server.get("leaky.localhost", "/").0, 404, "nothing was deployed");

    // A symlink that stays inside is followed.
    std::fs::remove_file(site.path().join("leak.txt")).unwrap();
    std::os::unix::fs::symlink("index.html", site.path().join("home.html")).unwrap();
    let ok = server.helix_json(&["deploy", dir, "--project", "linked", "--prod", "--json"]);
    assert_eq!(ok["files"], 4);

    // A file name that is not UTF-8 cannot be a URL path: refused by name.
    let odd = tempfile::tempdir().unwrap();
    write_site(odd.path(), "x", 0);
    let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"bad\xffname.html");
    std::fs::write(odd.path().join(name), "x").unwrap();
    check(server.helix(&["deploy", odd.path().to_str().unwrap(), "--project", "odd"]), "not valid UTF-8");

    check(server.helix(&["deploy", "/definitely/not/here", "--project", "p"]), "/definitely/not/here");
    check(server.helix(&["deployments", "--project", "nope"]), "project nope not found");
    check(server.helix(&["promote", "01jzzzzzzzzzzzzzzzzzzzzzzz"]), "not found");
    check(server.helix(&["deploy", dir, "--project", "Bad_Name"]), "invalid project name");
    let out = Command::new(HELIX)
        .args(["deployments", "--project", "linked", "--token", "wrong"])
        .env("HELIX_API_URL", format!("http://{}", server.api))
        .output()
        .unwrap();
    check(out, "invalid token");
    let out = Command::new(HELIX)
        .args(["deployments", "--project", "x"])
        .env("HELIX_API_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    check(out, "cannot reach the HelixStack API");
}

/// Where in a deploy the server is killed: once this many of the new
/// site's files are stored (it has 1,502; 1,501 are new). At 1,501 every
/// upload is done and finalize runs (or has just finished).
const KILL_POINTS: &[(&str, usize)] = &[("while uploading", 50), ("after the last upload", 1501)];

#[test]
fn kill_9_mid_deploy_keeps_production_and_the_rerun_completes() {
    for (when, after_files) in KILL_POINTS {
        kill_9_at(when, *after_files);
    }
}

/// The site's files whose blobs are stored.
fn stored_files(data: &Path, site: &Path) -> usize {
    walkdir_files(site)
        .into_iter()
        .filter(|f| {
            let hex = helix_core::Digest::of(&std::fs::read(f).unwrap()).to_hex();
            data.join("blobs/sha256").join(&hex[..2]).join(&hex).exists()
        })
        .count()
}

fn walkdir_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walkdir_files(&path)) } else { out.push(path) }
    }
    out
}

fn kill_9_at(when: &str, after_files: usize) {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    write_site(site.path(), "stable", 2);
    let dir = site.path().to_str().unwrap().to_owned();
    server.helix_json(&["deploy", &dir, "--project", "app", "--prod", "--json"]);
    server.wait_serving("app.localhost", "stable");

    // A big new version; kill the server at the chosen point.
    std::fs::remove_dir_all(site.path()).unwrap();
    write_site(site.path(), "next", 1500);
    let mut deploy = KillOnDrop(
        Command::new(HELIX)
            .args(["deploy", &dir, "--project", "app", "--prod", "--json"])
            .env("HELIX_API_URL", format!("http://{}", server.api))
            .env("HELIX_DATA_DIR", data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let blobs = data.path().join("blobs/sha256");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = 0;
    while last < after_files {
        assert!(Instant::now() < deadline, "{when}: the deploy never got there ({last} files stored)");
        // Cheap check first: enough blobs of any kind before hashing the site.
        if walk_count(&blobs) >= after_files {
            last = stored_files(data.path(), site.path()) - 1; // the unchanged 404.html was stored before
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill9();
    let finished = deploy.0.wait().unwrap().success();

    let server = Server::start(data.path());
    assert_eq!(walk_count(&data.path().join("blobs/tmp")), 0, "{when}: no half-written blob survives");
    let list = server.helix_json(&["deployments", "--project", "app", "--json"]);
    let serving = server.get("app.localhost", "/").1;
    if finished {
        // The deploy won the race: all of it is live, nothing in between.
        assert!(serving.contains("next"), "{when}: {serving}");
        assert_eq!(list.as_array().unwrap().len(), 2, "{when}: {list}");
    } else {
        assert!(serving.contains("stable"), "{when}: production is what it was");
        assert_eq!(list.as_array().unwrap().len(), 1, "{when}: the interrupted deploy is not visible: {list}");
    }

    let missing = 1502 - stored_files(data.path(), site.path());
    let rerun = server.helix_json(&["deploy", &dir, "--project", "app", "--prod", "--json"]);
    assert_eq!(rerun["uploaded"].as_u64(), Some(missing as u64), "{when}: the rerun sends exactly what is missing");
    server.wait_serving("app.localhost", "next");
    let (status, body) = server.get("app.localhost", "/assets/f1499.txt");
    assert_eq!((status, body.len()), (200, 2000), "{when}");
}

#[test]
fn up_serves_a_directory_until_interrupted() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    write_site(site.path(), "up and running", 0);
    let mut child = KillOnDrop(
        Command::new(HELIX)
            .args(["up", site.path().to_str().unwrap(), "--project", "local"])
            .args(["--api-addr", "127.0.0.1:0", "--edge-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            // Nothing listens on port 9: `up` starts its own embedded server.
            .env("HELIX_API_URL", "http://127.0.0.1:9")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("✔ hashed 2 files"), "{first}");
    let production = lines.find_map(|l| l.ok()?.strip_prefix("  production: ").map(str::to_owned)).unwrap();
    let port: u16 = production.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(production, format!("http://local.localhost:{port}"));
    let client = http_client();
    let body = client
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", "local.localhost")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(body.contains("up and running"));
    Command::new("kill").args(["-INT", &child.0.id().to_string()]).status().unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "Ctrl-C ends `helix up` cleanly: {status}");
}

/// A child process that dies with the test, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn walk_count(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { walk_count(&e.path()) } else { 1 }).sum()
}

fn http_client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder().no_proxy().build().unwrap()
}

#[test]
fn routing_files_from_a_netlify_project_root() {
    let data = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let r = root.path();
    std::fs::create_dir_all(r.join("dist")).unwrap();
    std::fs::write(
        r.join("netlify.toml"),
        "[build]\n  publish = \"dist\"\n\n[[redirects]]\n  from = \"/old\"\n  to = \"/new\"\n  status = 301\n",
    )
    .unwrap();
    std::fs::write(r.join("dist/_redirects"), "/a /b 302\n/bad-line\n").unwrap();
    std::fs::write(r.join("dist/_headers"), "/new\n  X-Frame-Options: DENY\n").unwrap();
    std::fs::write(r.join("dist/index.html"), "home").unwrap();
    std::fs::write(r.join("dist/new.html"), "new page").unwrap();
    std::fs::write(r.join("README.md"), "not published").unwrap();
    let dir = r.to_str().unwrap();

    let check = server.helix_json(&["routes", "check", dir, "--json"]);
    assert_eq!(check["platform"], "netlify");
    assert_eq!(check["redirects"].as_array().unwrap().len(), 2);
    assert_eq!(check["diagnostics"][0]["line"], 2);
    assert_eq!(check["diagnostics"][0]["file"], "_redirects");

    let deployed = server.helix_json(&["deploy", dir, "--project", "routed", "--prod", "--json"]);
    assert_eq!(deployed["files"], 4, "dist/ only: {deployed}");
    assert_eq!(deployed["routes"]["platform"], "netlify");
    assert_eq!(deployed["routes"]["redirects"], 2);
    assert_eq!(deployed["routes"]["diagnostics"].as_array().unwrap().len(), 1);
    server.wait_serving("routed.localhost", "home");
    let client =
        reqwest::blocking::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |path: &str| {
        client.get(format!("http://{}{path}", server.edge)).header("host", "routed.localhost").send().unwrap()
    };
    let resp = get("/old");
    assert_eq!((resp.status().as_u16(), resp.headers()["location"].to_str().unwrap()), (301, "/new"));
    let resp = get("/a?x=1");
    assert_eq!((resp.status().as_u16(), resp.headers()["location"].to_str().unwrap()), (302, "/b?x=1"));
    let resp = get("/new");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(resp.text().unwrap(), "new page");
    assert_eq!(get("/_redirects").status().as_u16(), 404, "routing files are not served");
    assert_eq!(get("/README.md").status().as_u16(), 404, "only the publish directory is deployed");

    // The human output names the platform and the line it could not honor.
    let out = server.helix(&["deploy", dir, "--project", "routed"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("routing:    netlify (netlify.toml is present)"), "{text}");
    assert!(text.contains("_redirects:2: ignored: Missing destination"), "{text}");

    // --strict turns the report into a failure; nothing new is listed.
    let before = server.helix_json(&["deployments", "--project", "routed", "--json"]).as_array().unwrap().len();
    let out = server.helix(&["deploy", dir, "--project", "routed", "--strict"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("strict") && err.contains("_redirects:2"), "{err}");
    let after = server.helix_json(&["deployments", "--project", "routed", "--json"]).as_array().unwrap().len();
    assert_eq!(before, after);
    let out = server.helix(&["routes", "check", dir, "--strict"]);
    assert!(!out.status.success());

    // A netlify.toml the platform would refuse fails the deploy with its line.
    std::fs::write(r.join("netlify.toml"), "[build]\n  publish = \"dist\"\n[[redirects]]\n  from = \n").unwrap();
    let out = server.helix(&["deploy", dir, "--project", "routed"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("netlify.toml:4") && err.contains("invalid TOML"), "{err}");
    let out = server.helix(&["deploy", dir, "--project", "routed", "--compat", "bogus"]);
    assert!(String::from_utf8(out.stderr).unwrap().contains("compat \"bogus\""));
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn link_build_follow_and_list_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let work = tmp.path().join("work");
    let bare = tmp.path().join("origin.git");
    git(tmp.path(), &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
    git(tmp.path(), &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    std::fs::write(work.join("index.html"), "<h1>cli build</h1>").unwrap();
    std::fs::write(
        work.join("helix.toml"),
        "[build]\ncommand = \"echo building-with-$HELIX_CONTEXT\"\npublish = \".\"\n",
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "site"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let repo = format!("file://{}", bare.display());

    // A token given by environment variable is stored, never shown.
    let out = Command::new(HELIX)
        .args(["projects", "link", "clisite", "--repo", &repo, "--git-token-env", "MY_TOKEN"])
        .env("HELIX_API_URL", format!("http://{}", server.api))
        .env("HELIX_DATA_DIR", &server.data_dir)
        .env("MY_TOKEN", "tok_very_secret_value")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("webhook secret: whsec_") && text.contains("/hooks/github/clisite"), "{text}");
    assert!(text.contains("stored encrypted") && !text.contains("tok_very_secret_value"), "{text}");
    let shown = server.helix_json(&["projects", "show", "clisite", "--json"]);
    assert_eq!(shown["has_git_credential"], true);
    assert!(shown.get("webhook_secret").is_none(), "{shown}");

    // `helix build -f` prints the log as it comes and ends with the result.
    let out = server.helix(&["build", "--project", "clisite", "-f"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("building-with-production") && text.contains("ready"), "{text}");
    assert!(!text.contains("tok_very_secret_value"), "{text}");
    server.wait_serving("clisite.localhost", "cli build");

    let list = server.helix_json(&["builds", "--project", "clisite", "--json"]);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["state"], "ready");
    let log = server.helix(&["builds", "logs", &id]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("building-with-production"));

    // A failing build: `-f` exits non-zero naming the step.
    std::fs::write(work.join("helix.toml"), "[build]\ncommand = \"exit 7\"\npublish = \".\"\n").unwrap();
    git(&work, &["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam", "fail"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let out = server.helix(&["build", "--project", "clisite", "-f"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error in step build") && text.contains("status 7"), "{text}");
    server.wait_serving("clisite.localhost", "cli build");

    // Bad input is named.
    let out = server.helix(&["projects", "link", "clisite", "--repo", "ext::sh -c evil"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a git URL"));
    let out = server.helix(&["build", "--project", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("project nope not found"));
}

/// With a limit of 1,024 file descriptors, 1,100 idle connections to the
/// edge (and hundreds more to the API) leave both answering: each listener
/// caps its connections below the limit and closes the idlest to make room.
#[test]
fn idle_connections_past_the_descriptor_limit_leave_the_edge_and_api_answering() {
    // The test itself holds them all open.
    let _ = rlimit::increase_nofile_limit(8192);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_under(&dir.path().join("data"), &["prlimit", "--nofile=1024:1024", "--"]);
    let site = dir.path().join("site");
    write_site(&site, "v1", 0);
    let deployed = server.helix(&["deploy", site.to_str().unwrap(), "--project", "busy", "--prod"]);
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    let mut idle = Vec::new();
    for (addr, count) in [(server.edge, 1100), (server.api, 600)] {
        for _ in 0..count {
            match std::net::TcpStream::connect(addr) {
                Ok(c) => idle.push(c),
                Err(e) => panic!("connection {} to {addr} refused outright: {e}", idle.len()),
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let (status, body) = server.get("busy.localhost", "/");
        assert_eq!(
            (status, body.contains("v1")),
            (200, true),
            "the edge answers with {} idle connections open",
            idle.len()
        );
        let health = http_client().get(format!("http://{}/healthz", server.api)).send().expect("the API answers");
        assert!(health.status().is_success(), "{}", health.status());
    }
    // The edge closed the idlest connections to make room.
    let mut closed = 0;
    for mut c in &idle {
        c.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        if matches!(std::io::Read::read(&mut c, &mut [0u8; 1]), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed > 600, "only {closed} of {} idle connections were closed", idle.len());
}

/// A project whose only content is a `vercel.json` (a redirect-only
/// project, common for domain moves) deploys and redirects.
#[test]
fn a_redirect_only_vercel_project_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let site = dir.path().join("moved");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(
        site.join("vercel.json"),
        r#"{"redirects": [{"source": "/(.*)", "destination": "https://example.com/$1", "permanent": true}]}"#,
    )
    .unwrap();
    let out = server.helix(&["deploy", site.to_str().unwrap(), "--prod"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client =
        reqwest::blocking::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = client.get(format!("http://{}/docs/a", server.edge)).header("host", "moved.localhost").send().unwrap();
    assert_eq!(resp.status().as_u16(), 308);
    assert_eq!(resp.headers()["location"], "https://example.com/docs/a");
}

#[test]
fn functions_deploy_from_the_root_and_their_logs_and_counters_show_through_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("public")).unwrap();
    std::fs::create_dir_all(site.path().join("api")).unwrap();
    std::fs::write(site.path().join("public/index.html"), "home").unwrap();
    std::fs::write(
        site.path().join("api/hello.ts"),
        "export default function handler(req: any, res: any) { console.log('hello from', req.query.who); res.send('hi ' + req.query.who) }",
    )
    .unwrap();
    let out = server.helix_json(&[
        "deploy",
        site.path().to_str().unwrap(),
        "--publish-dir",
        "public",
        "--project",
        "fns",
        "--prod",
        "--json",
    ]);
    assert_eq!(out["function_sources"], 1, "{out}");
    assert_eq!(server.get("fns.localhost", "/api/hello?who=ada"), (200, "hi ada".into()));
    assert_eq!(server.get("fns.localhost", "/api/hello.ts").0, 200, "the Vercel extension form");
    // Stored in batches: there within a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = server.helix(&["logs", "--project", "fns"]);
        let text = String::from_utf8_lossy(&logs.stdout).into_owned();
        assert!(logs.status.success(), "{text}");
        if text.contains("api/hello") && text.contains("hello from ada") {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let only = server.helix_json(&["logs", "--project", "fns", "--function", "api/nope", "--json"]);
    assert_eq!(only["records"].as_array().map(Vec::len), Some(0));
    let fns = server.helix_json(&["functions", "--project", "fns", "--json"]);
    let f = &fns["functions"][0];
    assert_eq!(
        (f["function"].as_str(), f["invocations"].as_u64(), f["cold_starts"].as_u64()),
        (Some("api/hello"), Some(2), Some(1)),
        "{fns}"
    );
    let table = server.helix(&["functions", "--project", "fns"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("api/hello"));
}

#[test]
fn teams_tokens_login_and_the_audit_log_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let config = dir.path().join("config");
    let text = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);

    s.helix_json(&["orgs", "create", "acme", "--owner", "ann", "--json"]);
    let made = s.helix_json(&[
        "tokens", "create", "--org", "acme", "--user", "ann", "--role", "owner", "--name", "laptop", "--json",
    ]);
    let token = made["token"].as_str().unwrap();
    assert!(token.starts_with("hx_") && made["id"].is_string(), "{made}");

    // Login saves the token for this API; later commands use it over admin.token.
    let env = [("XDG_CONFIG_HOME", config.as_path())];
    let out = s.helix_with(&["login", "--with-token", token], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("logged in") && text(&out).contains("ann"), "{}", text(&out));
    let saved = config.join("helix/auth.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777, 0o600);
    let out = s.helix_with(&["whoami", "--json"], &env);
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((who["user"].as_str(), who["org"].as_str()), (Some("ann"), Some("acme")), "{who}");

    // Ann's organisation: a viewer who may not deploy, and says so.
    let out = s.helix_with(&["members", "add", "vic", "--role", "viewer"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.helix_with(&["tokens", "create", "--name", "v", "--user", "vic", "--role", "viewer", "--json"], &env);
    let vic: Value = serde_json::from_slice(&out.stdout).unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "hi").unwrap();
    let out = Command::new(HELIX)
        .args(["deploy", site.to_str().unwrap(), "--project", "acme-site"])
        .env("HELIX_API_URL", format!("http://{}", s.api))
        .env("HELIX_TOKEN", vic["token"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("role viewer may not deploy"), "{}", text(&out));
    let out = s.helix_with(&["projects", "list"], &env);
    assert!(text(&out).contains("no projects yet"), "{}", text(&out));
    let out = s.helix_with(&["deploy", site.to_str().unwrap(), "--project", "acme-site", "--prod"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.helix_with(&["projects", "list", "--json"], &env);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((listed[0]["name"].as_str(), listed[0]["org"].as_str()), (Some("acme-site"), Some("acme")), "{listed}");
    assert!(listed[0]["production"].is_string(), "{listed}");
    // A role above one's own is refused; a bad lifetime is named.
    let out = s.helix(&["tokens", "create", "--name", "x", "--expires", "soon"]);
    assert!(!out.status.success() && text(&out).contains("duration"), "{}", text(&out));
    let listed = s.helix_with(&["tokens", "list", "--json"], &env);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "ann is an owner: she sees vic's token too: {listed}");
    let out = s.helix_with(&["tokens", "revoke", vic["id"].as_str().unwrap()], &env);
    assert!(out.status.success() && text(&out).contains("revoked"), "{}", text(&out));

    // The audit log: intact, then broken at the entry an intruder edits.
    let out = s.helix(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("intact"), "{}", text(&out));
    let out = s.helix(&["audit", "--json"]);
    let actions: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].as_str().unwrap().to_owned())
        .collect();
    for wanted in ["org.create", "token.create", "login", "member.change", "denied", "token.revoke"] {
        assert!(actions.iter().any(|a| a == wanted), "{wanted} missing from {actions:?}");
    }
    let db = format!("sqlite://{}", dir.path().join("data/helix.db").display());
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&db).await.unwrap();
        sqlx::query("UPDATE audit_log SET actor = 'nobody' WHERE seq = 3").execute(&mut c).await.unwrap();
    });
    let out = s.helix(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("entry 3"), "{}", text(&out));

    let out = s.helix_with(&["logout"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.helix_with(&["whoami", "--json"], &env);
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["server_admin"], true, "logged out, the data dir's admin token is used again: {who}");
}

#[test]
fn env_set_list_pull_import_and_rm_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let text = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let out = s.helix(&["env", "set", "PLAIN", "hello", "--project", "app"]);
    assert!(out.status.success(), "{}", text(&out));
    // A secret read from standard input stays out of the command line.
    let mut child = Command::new(HELIX)
        .args(["env", "set", "API_KEY", "--secret", "--env", "production", "--project", "app"])
        .env("HELIX_API_URL", format!("http://{}", s.api))
        .env("HELIX_DATA_DIR", &s.data_dir)
        .env_remove("HELIX_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"from-stdin-secret\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let list = s.helix_json(&["env", "list", "--project", "app", "--json"]);
    let secret = list.as_array().unwrap().iter().find(|v| v["name"] == "API_KEY").unwrap();
    assert_eq!((secret["environment"].as_str(), secret["value"].is_null()), (Some("production"), true), "{list}");
    let out = s.helix(&["env", "list", "--project", "app"]);
    assert!(text(&out).contains("•••••• (secret)") && !text(&out).contains("from-stdin-secret"), "{}", text(&out));

    let dotenv = dir.path().join("in.env");
    std::fs::write(&dotenv, "# mine\nA=1\nexport B=\"two words\"\n").unwrap();
    let out = s.helix(&["env", "import", dotenv.to_str().unwrap(), "--env", "production", "--project", "app"]);
    assert!(out.status.success() && text(&out).contains("2 variable(s) imported"), "{}", text(&out));
    let pulled = dir.path().join("out.env");
    let out = s.helix(&["env", "pull", pulled.to_str().unwrap(), "--env", "production", "--project", "app"]);
    assert!(out.status.success() && text(&out).contains("API_KEY"), "{}", text(&out));
    let written = std::fs::read_to_string(&pulled).unwrap();
    assert!(written.contains("PLAIN=\"hello\"") && written.contains("B=\"two words\""), "{written}");
    assert!(!written.contains("from-stdin-secret"), "{written}");
    let out = s.helix(&["env", "rm", "PLAIN", "--project", "app"]);
    assert!(out.status.success() && text(&out).contains("3 environment(s)"), "{}", text(&out));
    let out = s.helix(&["env", "set", "HELIX_X", "1", "--project", "app"]);
    assert!(!out.status.success() && text(&out).contains("set by the platform"), "{}", text(&out));
    let out = s.helix(&["keys", "rotate"]);
    assert!(out.status.success() && text(&out).contains("1 project key(s)"), "{}", text(&out));
}
