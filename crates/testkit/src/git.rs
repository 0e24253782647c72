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
