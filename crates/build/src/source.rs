//! Fetching the source with the `git` CLI: a shallow fetch of exactly the
//! commit (or the branch tip), checked out detached.
//!
//! A token travels in an HTTP header set through `GIT_CONFIG_*` variables
//! and a deploy key through a file only root can read; neither appears on
//! a command line or in the log. Only the transports a host can serve are
//! allowed (no `ext::`).

use std::path::Path;
use std::process::Stdio;

use base64::Engine;
use tokio::process::Command;
use tokio::time::Instant;

use crate::log::LogSink;

/// Transports git may use.
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("git {step} failed (exit {status}): {detail}")]
    Git { step: &'static str, status: i32, detail: String },
    #[error("commit {want} is not the tip of {git_ref} any more (it is {got}), and git cannot fetch it by id")]
    Moved { want: String, git_ref: String, got: String },
    #[error(
        "commit {commit} is no longer the tip of {git_ref} (the tip is {tip:?}): a newer push builds that, \
         and an old delivery must not roll the branch back"
    )]
    NotTip { commit: String, git_ref: String, tip: String },
    #[error("fetching the source ran past the build's time limit")]
    Timeout,
    #[error("running git: {0}")]
    Io(#[from] std::io::Error),
}

impl FetchError {
    /// Whether trying again may help: the host or network failed, not the
    /// request.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Git { detail, .. } => {
                let d = detail.to_ascii_lowercase();
                ["could not resolve host", "connection refused", "timed out", "connection reset", "early eof"]
                    .iter()
                    .any(|s| d.contains(s))
            }
            FetchError::Io(_) => true,
            FetchError::Moved { .. } | FetchError::NotTip { .. } | FetchError::Timeout => false,
        }
    }
}

/// What to fetch.
pub struct Fetch<'a> {
    pub repo: &'a str,
    pub git_ref: &'a str,
    /// The exact commit (full or a prefix), when the trigger named one.
    pub commit: Option<&'a str>,
    /// Refuse a commit that is no longer the tip of `git_ref` (pushes: a
    /// replayed old delivery must not roll the branch back).
    pub must_be_tip: bool,
    /// A token or an SSH deploy key.
    pub credential: Option<&'a str>,
}

/// Fetches the commit (or the tip of the ref) into `dest`, a new
/// directory. Returns the full commit id checked out.
pub async fn fetch(what: &Fetch<'_>, dest: &Path, deadline: Instant, log: &LogSink) -> Result<String, FetchError> {
    let Fetch { repo, git_ref, commit, must_be_tip, credential } = *what;
    std::fs::create_dir_all(dest)?;
    let scratch = dest.with_extension("git-home");
    std::fs::create_dir_all(&scratch)?;
    let mut env: Vec<(String, String)> = vec![
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_ALLOW_PROTOCOL".into(), ALLOWED_PROTOCOLS.into()),
        ("HOME".into(), scratch.display().to_string()),
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
    ];
    match credential {
        Some(key) if key.trim_start().starts_with("-----BEGIN") => {
            let key_file = scratch.join("deploy-key");
            write_private(&key_file, key)?;
            env.push((
                "GIT_SSH_COMMAND".into(),
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={}",
                    key_file.display(),
                    scratch.join("known_hosts").display()
                ),
            ));
        }
        Some(token) => {
            let user_pass = if token.contains(':') { token.to_owned() } else { format!("x-access-token:{token}") };
            let basic = base64::engine::general_purpose::STANDARD.encode(user_pass);
            env.extend([
                ("GIT_CONFIG_COUNT".into(), "1".into()),
                ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
                ("GIT_CONFIG_VALUE_0".into(), format!("Authorization: Basic {basic}")),
            ]);
        }
        None => {}
    }
    let git = Git { dir: dest, env: &env, deadline, log };
    git.run("init", &["init", "-q"]).await?;
    git.run("remote", &["remote", "add", "origin", repo]).await?;
    log.line(&format!("fetching {} at {}", redact_url(repo), commit.unwrap_or(git_ref)));
    let full_commit = commit.filter(|c| c.len() == 40);
    let by_id = match full_commit {
        Some(c) => git.run("fetch", &["fetch", "-q", "--depth", "1", "--no-tags", "origin", c]).await.is_ok(),
        None => false,
    };
    if !by_id {
        // Branch names were checked not to start with `-` (helix-core).
        git.run("fetch", &["fetch", "-q", "--depth", "1", "--no-tags", "origin", git_ref]).await?;
    }
    git.run("checkout", &["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", "FETCH_HEAD"]).await?;
    let head = git.output("rev-parse", &["rev-parse", "HEAD"]).await?;
    if let Some(want) = commit
        && !head.starts_with(&want.to_ascii_lowercase())
    {
        return Err(FetchError::Moved { want: want.to_owned(), git_ref: git_ref.to_owned(), got: head });
    }
    if must_be_tip && by_id {
        let remote = git.output("ls-remote", &["ls-remote", "origin", &format!("refs/heads/{git_ref}")]).await?;
        let tip = remote.split_whitespace().next().unwrap_or_default();
        if tip != head {
            return Err(FetchError::NotTip { commit: head, git_ref: git_ref.to_owned(), tip: tip.to_owned() });
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_dir_all(dest.join(".git"));
    Ok(head)
}

struct Git<'a> {
    dir: &'a Path,
    env: &'a [(String, String)],
    deadline: Instant,
    log: &'a LogSink,
}

impl Git<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.args(args).current_dir(self.dir).env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        c.stdin(Stdio::null()).kill_on_drop(true);
        c
    }

    async fn run(&self, step: &'static str, args: &[&str]) -> Result<(), FetchError> {
        self.output(step, args).await.map(drop)
    }

    async fn output(&self, step: &'static str, args: &[&str]) -> Result<String, FetchError> {
        let out = tokio::time::timeout_at(self.deadline, self.command(args).output())
            .await
            .map_err(|_| FetchError::Timeout)??;
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            self.log.line(&format!("git: {line}"));
        }
        if !out.status.success() {
            let detail = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_owned();
            return Err(FetchError::Git { step, status: out.status.code().unwrap_or(-1), detail });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut bytes = text.as_bytes().to_vec();
    if !text.ends_with('\n') {
        bytes.push(b'\n');
    }
    helix_sandbox::write_private(path, &bytes)
}

/// A URL without any `user:password@` part, for the log.
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            return format!("{}://{}", &url[..scheme_end], &rest[at + 1..]);
        }
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("https://user:tok@git.example.com/a/b.git"), "https://git.example.com/a/b.git");
        assert_eq!(redact_url("git@github.com:me/x.git"), "git@github.com:me/x.git");
        assert_eq!(redact_url("file:///tmp/r.git"), "file:///tmp/r.git");
    }
}
