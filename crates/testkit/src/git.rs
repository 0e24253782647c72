//! Real git repositories for build tests: a work tree that commits and
//! pushes to a bare repository the server clones over `file://`, and
//! webhook deliveries signed the way each provider signs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct GitRepo {
    pub work: PathBuf,
    pub bare: PathBuf,
    _dir: tempfile::TempDir,
}

impl GitRepo {
    /// An empty repository whose first branch is `main`.
    pub fn new() -> GitRepo {
        let dir = tempfile::tempdir().expect("temp dir");
        let work = dir.path().join("work");
        let bare = dir.path().join("origin.git");
        git(dir.path(), &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
        git(dir.path(), &["init", "-q", "-b", "main", work.to_str().unwrap()]);
        GitRepo { work, bare, _dir: dir }
    }

    /// The clone URL the server is given.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// The web-style URL (no `.git`), as some providers send it.
    pub fn web_url(&self) -> String {
        self.url().trim_end_matches(".git").to_owned()
    }

    pub fn write(&self, path: &str, contents: &str) -> &Self {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
        self
    }

    pub fn remove(&self, path: &str) -> &Self {
        let _ = std::fs::remove_file(self.work.join(path));
        self
    }

    /// Copies a directory of the source tree (a fixture) into the work tree.
    pub fn copy_dir(&self, from: &Path) -> &Self {
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let name = entry.file_name();
            if name == "node_modules" || name == "dist" {
                continue;
            }
            let dest = self.work.join(&name);
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &dest);
            } else {
                std::fs::copy(entry.path(), dest).unwrap();
            }
        }
        self
    }

    /// Goes back to `main` (its last commit's tree).
    pub fn checkout_main(&self) -> &Self {
        git(&self.work, &["checkout", "-q", "-f", "main"]);
        self
    }

    /// Commits everything on `branch` (created from the current commit when
    /// new) and pushes it; returns the commit id.
    pub fn commit_and_push(&self, branch: &str, message: &str) -> String {
        let exists = Command::new("git")
            .args(["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")])
            .current_dir(&self.work)
            .output()
            .unwrap()
            .status
            .success();
        let has_commits = Command::new("git")
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .current_dir(&self.work)
            .output()
            .unwrap()
            .status
            .success();
        if exists || !has_commits {
            git(&self.work, &["checkout", "-q", "-B", branch]);
        } else {
            git(&self.work, &["checkout", "-q", "-b", branch]);
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "--force", self.bare.to_str().unwrap(), &format!("{branch}:{branch}")]);
        let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&self.work).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `sha256=<hex HMAC-SHA256>` as GitHub (`X-Hub-Signature-256`) and
/// Bitbucket (`X-Hub-Signature`) send it.
pub fn hub_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A provider's example payload from `tests/fixtures/webhooks`, with its
/// `{{PLACEHOLDERS}}` filled in.
pub fn webhook_fixture(name: &str, values: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/webhooks").join(name);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (key, value) in values {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    assert!(!text.contains("{{"), "{name}: unfilled placeholder in {text}");
    text
}

/// The fixtures' directory, for tests that copy a project from it.
pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

/// A private git host: git's own smart-HTTP server (`git http-backend`,
/// run as CGI per request) behind a check of `Authorization: Basic
/// base64(user:token)`. Clones without the token get 401.
pub struct PrivateGitHost {
    pub addr: std::net::SocketAddr,
    /// Authorization headers it saw, in order.
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PrivateGitHost {
    /// Serves the bare repositories under `root` to whoever sends `token`.
    pub async fn start(root: &Path, token: &str) -> PrivateGitHost {
        use base64::Engine;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}")));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let state = (root.to_owned(), expected, seen.clone());
        let app = axum::Router::new().fallback(cgi).with_state(std::sync::Arc::new(state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PrivateGitHost { addr, seen, task }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }
}

impl Drop for PrivateGitHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type HostState = std::sync::Arc<(PathBuf, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>)>;

async fn cgi(
    axum::extract::State(state): axum::extract::State<HostState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (root, expected, seen) = &*state;
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    seen.lock().unwrap().push(auth.clone());
    if auth != *expected {
        return (axum::http::StatusCode::UNAUTHORIZED, [("www-authenticate", "Basic realm=\"git\"")], "no")
            .into_response();
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let encoding = req.headers().get("content-encoding").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let protocol = req.headers().get("git-protocol").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20).await.unwrap_or_default();
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", content_type)
        .env("HTTP_CONTENT_ENCODING", encoding)
        .env("GIT_PROTOCOL", protocol)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &body).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    // A CGI answer: headers, a blank line, the body.
    let split = out.stdout.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else {
        return (axum::http::StatusCode::BAD_GATEWAY, "bad CGI answer").into_response();
    };
    let mut resp = axum::response::Response::new(axum::body::Body::from(out.stdout[at + sep..].to_vec()));
    for line in String::from_utf8_lossy(&out.stdout[..at]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
            *resp.status_mut() = axum::http::StatusCode::from_u16(code).unwrap();
        } else if let (Ok(n), Ok(v)) =
            (axum::http::HeaderName::from_bytes(name.as_bytes()), axum::http::HeaderValue::from_str(value))
        {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}

/// A private git host over SSH: OpenSSH's `sshd` on a free loopback port,
/// accepting one generated deploy key (for root, the user tests run as).
pub struct SshGitHost {
    pub port: u16,
    /// The deploy key's private half, as a user pastes it.
    pub private_key: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl SshGitHost {
    pub fn start() -> SshGitHost {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(sshd.exists(), "sshd is not installed: .ci/run installs it (apt-get install openssh-server)");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for key in ["host", "client"] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .output()
                .unwrap();
            assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n",
            host = d.join("host").display(),
            dir = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .arg("-E")
            .arg(d.join("sshd.log"))
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let private_key = std::fs::read_to_string(d.join("client")).unwrap();
        SshGitHost { port, private_key, child, _dir: dir }
    }

    /// `ssh://root@127.0.0.1:<port>/<absolute path of a bare repository>`.
    pub fn url(&self, bare: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, bare.display())
    }
}

impl Drop for SshGitHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
