//! Webhook payloads as the git hosts send them: what a delivery asks for
//! and which repository it names. Pure (bytes in, facts out), so it can be
//! fuzzed alone; the caller verifies signatures before acting on any of it.

use helix_core::build::{is_branch_name, is_commit_id};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Bitbucket,
    Generic,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Bitbucket => "bitbucket",
            Provider::Generic => "git",
        }
    }
}

/// What a delivery asks for, once read.
#[derive(Debug, PartialEq, Eq)]
pub enum HookEvent {
    Push {
        branch: String,
        commit: String,
    },
    PullRequest {
        number: u64,
        branch: String,
        commit: String,
        fork: bool,
    },
    /// The branch is gone: its preview goes too.
    BranchDeleted {
        branch: String,
    },
    /// The pull request was closed or merged: its preview goes.
    PullRequestClosed {
        number: u64,
    },
    /// Read and understood, but nothing to build (ping, tag, …).
    Ignored(String),
}

/// What a delivery says, once read.
#[derive(Debug)]
pub struct Delivery {
    pub event: HookEvent,
    /// The repository, in every URL form the payload gives, as
    /// [`repo_key`]s (sorted, no duplicates).
    pub repo_keys: Vec<String>,
}

/// Reads a delivery's body; an error names what is wrong with it.
pub fn parse(provider: Provider, event_name: &str, body: &[u8]) -> Result<Delivery, String> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| format!("{} webhook body is not JSON: {e}", provider.name()))?;
    if !payload.is_object() {
        return Err(format!("{} webhook body is not a JSON object", provider.name()));
    }
    let event = read_event(provider, event_name, &payload)?;
    let mut repo_keys: Vec<String> = repo_urls(provider, &payload).iter().filter_map(|u| repo_key(u)).collect();
    repo_keys.sort();
    repo_keys.dedup();
    Ok(Delivery { event, repo_keys })
}

fn read_event(provider: Provider, name: &str, p: &Value) -> Result<HookEvent, String> {
    let text = |ptr: &str| p.pointer(ptr).and_then(Value::as_str);
    let bad = |what: &str| format!("{} {name} payload: {what}", provider.name());
    match (provider, name) {
        (Provider::GitHub, "push") | (Provider::GitLab, "Push Hook") => {
            let git_ref = text("/ref").ok_or_else(|| bad("no ref"))?;
            let Some(branch) = git_ref.strip_prefix("refs/heads/") else {
                return Ok(HookEvent::Ignored(format!("{git_ref} is not a branch")));
            };
            let commit = match provider {
                Provider::GitLab => text("/checkout_sha").or(text("/after")),
                _ => text("/after"),
            };
            let deleted = p.get("deleted").and_then(Value::as_bool) == Some(true)
                || commit.is_none_or(|c| c.bytes().all(|b| b == b'0'));
            if deleted {
                return Ok(HookEvent::BranchDeleted { branch: branch.to_owned() });
            }
            push(branch, commit.unwrap_or_default(), &bad)
        }
        (Provider::GitHub, "pull_request") => {
            let action = text("/action").unwrap_or("");
            let number = p.pointer("/pull_request/number").or(p.get("number")).and_then(Value::as_u64);
            if let ("closed", Some(number)) = (action, number) {
                return Ok(HookEvent::PullRequestClosed { number });
            }
            if !["opened", "synchronize", "reopened"].contains(&action) {
                return Ok(HookEvent::Ignored(format!("pull request action {action:?} builds nothing")));
            }
            let head_repo = text("/pull_request/head/repo/full_name");
            let base_repo = text("/pull_request/base/repo/full_name");
            pull_request(
                number,
                text("/pull_request/head/ref"),
                text("/pull_request/head/sha"),
                head_repo.is_none() || head_repo != base_repo,
                &bad,
            )
        }
        (Provider::GitLab, "Merge Request Hook") => {
            let action = text("/object_attributes/action").unwrap_or("");
            let iid = p.pointer("/object_attributes/iid").and_then(Value::as_u64);
            if let ("close" | "merge", Some(number)) = (action, iid) {
                return Ok(HookEvent::PullRequestClosed { number });
            }
            if !["open", "reopen", "update"].contains(&action) {
                return Ok(HookEvent::Ignored(format!("merge request action {action:?} builds nothing")));
            }
            let source = p.pointer("/object_attributes/source_project_id").and_then(Value::as_u64);
            let target = p.pointer("/object_attributes/target_project_id").and_then(Value::as_u64);
            pull_request(
                p.pointer("/object_attributes/iid").and_then(Value::as_u64),
                text("/object_attributes/source_branch"),
                text("/object_attributes/last_commit/id"),
                source.is_none() || source != target,
                &bad,
            )
        }
        (Provider::Bitbucket, "repo:push") => {
            let changes = p.pointer("/push/changes").and_then(Value::as_array).ok_or_else(|| bad("no push.changes"))?;
            // The newest branch update in the push.
            let change =
                changes.iter().rev().find(|c| c.pointer("/new/type").and_then(Value::as_str) == Some("branch"));
            let Some(change) = change else {
                let deleted = changes.iter().rev().find_map(|c| {
                    let closed = c.get("closed").and_then(Value::as_bool) == Some(true);
                    let old = c.pointer("/old/name").and_then(Value::as_str);
                    (closed && c.pointer("/old/type").and_then(Value::as_str) == Some("branch"))
                        .then_some(old)
                        .flatten()
                });
                return Ok(match deleted {
                    Some(branch) => HookEvent::BranchDeleted { branch: branch.to_owned() },
                    None => HookEvent::Ignored("the push updates no branch".into()),
                });
            };
            let branch = change.pointer("/new/name").and_then(Value::as_str).ok_or_else(|| bad("no new.name"))?;
            let commit = change.pointer("/new/target/hash").and_then(Value::as_str).unwrap_or("");
            push(branch, commit, &bad)
        }
        (Provider::Bitbucket, "pullrequest:fulfilled" | "pullrequest:rejected") => {
            let number =
                p.pointer("/pullrequest/id").and_then(Value::as_u64).ok_or_else(|| bad("no pullrequest.id"))?;
            Ok(HookEvent::PullRequestClosed { number })
        }
        (Provider::Bitbucket, "pullrequest:created" | "pullrequest:updated") => {
            let head_repo = text("/pullrequest/source/repository/full_name");
            let base_repo = text("/pullrequest/destination/repository/full_name");
            pull_request(
                p.pointer("/pullrequest/id").and_then(Value::as_u64),
                text("/pullrequest/source/branch/name"),
                text("/pullrequest/source/commit/hash"),
                head_repo.is_none() || head_repo != base_repo,
                &bad,
            )
        }
        (Provider::Generic, _) => {
            let git_ref = text("/ref").ok_or_else(|| bad("no ref"))?;
            let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
            let commit = text("/commit").ok_or_else(|| bad("no commit"))?;
            match p.get("pull_request").and_then(Value::as_u64) {
                Some(n) => pull_request(Some(n), Some(branch), Some(commit), false, &bad),
                None => push(branch, commit, &bad),
            }
        }
        (_, other) => Ok(HookEvent::Ignored(format!("event {other:?} builds nothing"))),
    }
}

fn push(branch: &str, commit: &str, bad: &dyn Fn(&str) -> String) -> Result<HookEvent, String> {
    if !is_branch_name(branch) {
        return Err(bad(&format!("branch {:?} is not a valid branch name", trunc(branch))));
    }
    if !is_commit_id(commit) {
        return Err(bad(&format!("commit {:?} is not a commit id", trunc(commit))));
    }
    Ok(HookEvent::Push { branch: branch.to_owned(), commit: commit.to_ascii_lowercase() })
}

fn pull_request(
    number: Option<u64>,
    branch: Option<&str>,
    commit: Option<&str>,
    fork: bool,
    bad: &dyn Fn(&str) -> String,
) -> Result<HookEvent, String> {
    let number = number.filter(|n| *n > 0).ok_or_else(|| bad("no pull request number"))?;
    let HookEvent::Push { branch, commit } = push(branch.unwrap_or(""), commit.unwrap_or(""), bad)? else {
        unreachable!("push() makes pushes")
    };
    Ok(HookEvent::PullRequest { number, branch, commit, fork })
}

fn trunc(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Every URL of the repository the payload names.
fn repo_urls(provider: Provider, p: &Value) -> Vec<String> {
    let pointers: &[&str] = match provider {
        Provider::GitHub => &[
            "/repository/clone_url",
            "/repository/ssh_url",
            "/repository/html_url",
            "/repository/git_url",
            "/repository/svn_url",
        ],
        Provider::GitLab => &[
            "/project/git_http_url",
            "/project/git_ssh_url",
            "/project/web_url",
            "/repository/git_http_url",
            "/repository/git_ssh_url",
            "/repository/homepage",
            "/repository/url",
        ],
        Provider::Bitbucket => &["/repository/links/html/href"],
        Provider::Generic => &[],
    };
    pointers.iter().filter_map(|ptr| p.pointer(ptr).and_then(Value::as_str)).map(str::to_owned).collect()
}

/// A repository URL reduced to `host/path` (lowercase; no scheme, user,
/// port or `.git`): the same for the clone, SSH and web URLs of one
/// repository. `None` for what is not a git URL.
pub fn repo_key(url: &str) -> Option<String> {
    let url = url.trim();
    if url.is_empty()
        || url.len() > 2048
        || url.starts_with('-')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let (host, path) = if let Some(rest) = url.strip_prefix("file://") {
        ("file", rest)
    } else if let Some((scheme, rest)) = url.split_once("://") {
        if !["http", "https", "ssh", "git", "git+ssh", "ssh+git"].contains(&scheme.to_ascii_lowercase().as_str()) {
            return None;
        }
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit('@').next()?.split(':').next()?;
        (host, path)
    } else {
        // scp-like: [user@]host:path
        let (user_host, path) = url.split_once(':')?;
        if user_host.contains('/') || path.starts_with("//") {
            return None;
        }
        (user_host.rsplit('@').next()?, path)
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
    if host.is_empty() || path.is_empty() || path.split('/').any(|seg| seg == "..") {
        return None;
    }
    Some(format!("{}/{}", host.to_ascii_lowercase(), path.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_form_of_a_repository_has_one_key() {
        let want = Some("github.com/me/my-app".to_owned());
        for url in [
            "https://github.com/me/my-app.git",
            "https://github.com/me/my-app",
            "https://user@GitHub.com:443/me/my-app/",
            "git@github.com:me/my-app.git",
            "ssh://git@github.com:22/me/my-app.git",
            "git://github.com/me/my-app.git",
        ] {
            assert_eq!(repo_key(url), want, "{url}");
        }
        assert_eq!(repo_key("file:///tmp/x/repo.git").as_deref(), Some("file/tmp/x/repo"));
        for bad in ["", "ext::sh -c evil", "-u", "https://host", "https://h/a/../b", "not a url"] {
            assert_eq!(repo_key(bad), None, "{bad}");
        }
    }
}
