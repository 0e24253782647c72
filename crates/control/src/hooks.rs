//! Webhooks from git hosts: `POST /hooks/github`, `/hooks/gitlab`,
//! `/hooks/bitbucket` (each also with `/{project}`), and the generic
//! `/hooks/git/{project}` for any other host.
//!
//! A delivery's body is capped (25 MB, GitHub's own maximum) and, while
//! unverified, counts against a budget shared by all deliveries (past it
//! they wait, then get 503). It is read (400 when malformed), matched to
//! the projects linked to its repository, by any URL form the provider
//! sends, or to the one in the path, and verified against each project's
//! secret as that provider signs. An unknown repository or project and a
//! bad signature get the same 401, so a stranger learns nothing of which
//! projects exist. Only then is anything queued. A delivery id seen before
//! queues nothing and answers what it queued the first time; the generic
//! hook refuses a replay of a signed delivery it has seen (409). The
//! source is always fetched from the linked repository URL, never from one
//! the payload names.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use helix_core::ProjectName;
use helix_core::api::HookResponse;
use helix_core::build::{BuildContext, is_branch_name, is_commit_id};
use helix_store::LinkRow;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::builds::BuildRequest;
use crate::problem::ApiError;
use crate::routes::Cp;

/// How far a generic hook's timestamp may be from now.
const GENERIC_MAX_SKEW_SECS: u64 = 300;

/// Largest webhook body (GitHub caps its payloads at 25 MB).
pub(crate) const MAX_HOOK_BODY: u64 = 25 * 1024 * 1024;
/// The unverified-body budget counts in units of this many bytes.
pub(crate) const BUDGET_UNIT: u64 = 4096;
/// How long a delivery waits for room in the budget before 503.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    GitHub,
    GitLab,
    Bitbucket,
    Generic,
}

impl Provider {
    fn name(self) -> &'static str {
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
enum HookEvent {
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

pub(crate) async fn github(State(cp): Cp, headers: HeaderMap, body: Body) -> Result<impl IntoResponse, ApiError> {
    receive(&cp, Provider::GitHub, None, &headers, body).await
}

pub(crate) async fn github_project(
    State(cp): Cp,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    receive(&cp, Provider::GitHub, Some(&project), &headers, body).await
}

pub(crate) async fn gitlab(State(cp): Cp, headers: HeaderMap, body: Body) -> Result<impl IntoResponse, ApiError> {
    receive(&cp, Provider::GitLab, None, &headers, body).await
}

pub(crate) async fn gitlab_project(
    State(cp): Cp,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    receive(&cp, Provider::GitLab, Some(&project), &headers, body).await
}

pub(crate) async fn bitbucket(State(cp): Cp, headers: HeaderMap, body: Body) -> Result<impl IntoResponse, ApiError> {
    receive(&cp, Provider::Bitbucket, None, &headers, body).await
}

pub(crate) async fn bitbucket_project(
    State(cp): Cp,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    receive(&cp, Provider::Bitbucket, Some(&project), &headers, body).await
}

pub(crate) async fn generic(
    State(cp): Cp,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    receive(&cp, Provider::Generic, Some(&project), &headers, body).await
}

/// Reads an unverified body: refused past the cap, and held against the
/// budget of unverified bytes (the permit goes with the body).
async fn read_body(
    cp: &crate::ControlPlane,
    provider: Provider,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let too_large = || {
        ApiError::TooLarge(format!(
            "{} webhook body is over the limit of {MAX_HOOK_BODY} bytes (GitHub's own maximum)",
            provider.name()
        ))
    };
    let declared = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_HOOK_BODY) {
        return Err(too_large());
    }
    // A body of unknown length may be as large as the cap.
    let reserve = declared.unwrap_or(MAX_HOOK_BODY).div_ceil(BUDGET_UNIT).max(1) as u32;
    let permit = tokio::time::timeout(BUDGET_WAIT, cp.hook_budget.clone().acquire_many_owned(reserve))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::Unavailable("too many webhook deliveries are being read at once; retry shortly".into())
        })?;
    let limit = declared.unwrap_or(MAX_HOOK_BODY) as usize;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            ApiError::BadRequest(format!("{} webhook body could not be read: {e}", provider.name()))
        }
    })?;
    Ok((bytes, permit))
}

async fn receive(
    cp: &crate::ControlPlane,
    provider: Provider,
    project: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<HookResponse>), ApiError> {
    let (body, _unverified) = read_body(cp, provider, headers, body).await?;
    let body = &body[..];
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let event_name = match provider {
        Provider::GitHub => Some(header("x-github-event").ok_or_else(|| missing("X-GitHub-Event"))?),
        Provider::GitLab => Some(header("x-gitlab-event").ok_or_else(|| missing("X-Gitlab-Event"))?),
        Provider::Bitbucket => Some(header("x-event-key").ok_or_else(|| missing("X-Event-Key"))?),
        Provider::Generic => None,
    };
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("{} webhook body is not JSON: {e}", provider.name())))?;
    if !payload.is_object() {
        return Err(ApiError::BadRequest(format!("{} webhook body is not a JSON object", provider.name())));
    }
    let event = read_event(provider, event_name.unwrap_or(""), &payload)?;

    // Which projects: the one in the path, or those linked to the
    // repository. None at all answers as a bad signature does.
    let candidates: Vec<LinkRow> = match project {
        Some(name) => match ProjectName::parse(name) {
            Ok(name) => cp.store.project_link(&name).await?.into_iter().collect(),
            Err(_) => Vec::new(),
        },
        None => {
            let keys: Vec<String> = repo_urls(provider, &payload).iter().filter_map(|u| repo_key(u)).collect();
            if keys.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "{} webhook payload names no repository URL",
                    provider.name()
                )));
            }
            let mut found: Vec<LinkRow> = Vec::new();
            for key in dedup(keys) {
                for link in cp.store.links_by_repo(&key).await? {
                    if !found.iter().any(|f| f.project == link.project) {
                        found.push(link);
                    }
                }
            }
            found
        }
    };

    let verified: Vec<LinkRow> =
        candidates.iter().filter(|link| verify(provider, headers, body, &link.webhook_secret)).cloned().collect();
    if candidates.is_empty() {
        // The same work as a bad signature, so neither the answer nor its
        // time tells that no such project exists.
        verify(provider, headers, body, UNKNOWN_PROJECT_SECRET);
    }
    if verified.is_empty() {
        return Err(ApiError::Unauthorized(unauthorized_reason(provider, headers)));
    }

    // Events that build nothing answer 200 with what was done.
    let done =
        |message: String| Ok((StatusCode::OK, Json(HookResponse { builds: Vec::new(), duplicate: false, message })));
    let (branch, commit, pr) = match event {
        HookEvent::Ignored(why) => return done(format!("ignored: {why}")),
        HookEvent::BranchDeleted { branch } => {
            let alias_of = |link: &LinkRow, project: &ProjectName| {
                (branch != link.production_branch).then(|| helix_core::hosts::branch_alias(&branch, project))
            };
            return done(remove_previews(cp, &verified, &branch, None, alias_of).await?);
        }
        HookEvent::PullRequestClosed { number } => {
            let preview = format!("deploy-preview-{number}");
            return done(remove_previews(cp, &verified, "", Some(number), |_, _| Some(preview.clone())).await?);
        }
        HookEvent::Push { branch, commit } => (branch, commit, None),
        HookEvent::PullRequest { number, branch, commit, fork } => (branch, commit, Some((number, fork))),
    };
    let mut requests = Vec::new();
    for link in verified {
        let project = ProjectName::parse(&link.project).map_err(|e| ApiError::Internal(e.to_string()))?;
        let context = match pr {
            Some((number, fork)) => BuildContext::PullRequest { number, fork },
            None if branch == link.production_branch => BuildContext::Production,
            None => BuildContext::Branch,
        };
        requests.push(BuildRequest {
            project,
            repo: link.repo_url,
            branch: branch.clone(),
            commit: Some(commit.clone()),
            context,
        });
    }
    // A delivery id is the provider's; one sent to a project's own path is
    // only that project's (a sender cannot silence another project's
    // deliveries by reusing an id).
    let delivery = delivery_id(provider, headers);
    let scope = match project {
        Some(p) => format!("{}/{p}", provider.name()),
        None => provider.name().to_owned(),
    };
    let (builds, duplicate) =
        cp.queue_builds(provider.name(), delivery.as_deref().map(|d| (scope.as_str(), d)), requests).await?;
    if duplicate && provider == Provider::Generic {
        return Err(ApiError::Conflict(
            "this signed delivery was received before: a replay is refused (send a new timestamp and signature)".into(),
        ));
    }
    let (status, message) = if duplicate {
        (StatusCode::OK, "delivery seen before: nothing new queued".to_owned())
    } else {
        (StatusCode::ACCEPTED, format!("queued {} build(s)", builds.len()))
    };
    Ok((status, Json(HookResponse { builds, duplicate, message })))
}

/// Cancels each linked project's unfinished builds of the branch or pull
/// request and removes the preview alias that `alias_of` names.
async fn remove_previews(
    cp: &crate::ControlPlane,
    links: &[LinkRow],
    branch: &str,
    pull_request: Option<u64>,
    alias_of: impl Fn(&LinkRow, &ProjectName) -> Option<String>,
) -> Result<String, ApiError> {
    let mut removed = Vec::new();
    for link in links {
        let project = ProjectName::parse(&link.project).map_err(|e| ApiError::Internal(e.to_string()))?;
        let gone = if pull_request.is_some() { "the pull request was closed" } else { "the branch was deleted" };
        cp.store.cancel_builds_of(&project, branch, pull_request, gone, crate::now_ms()).await?;
        if let Some(alias) = alias_of(link, &project)
            && cp.store.remove_alias(&project, &alias, crate::now_ms()).await?.is_some()
        {
            removed.push(helix_core::hosts::alias_host(&alias, &project, &cp.edge.base_domain));
        }
    }
    cp.publish_soon();
    Ok(if removed.is_empty() { "no preview to remove".into() } else { format!("removed {}", removed.join(", ")) })
}

fn missing(header: &str) -> ApiError {
    ApiError::BadRequest(format!("missing the {header} header"))
}

fn read_event(provider: Provider, name: &str, p: &Value) -> Result<HookEvent, ApiError> {
    let text = |ptr: &str| p.pointer(ptr).and_then(Value::as_str);
    let bad = |what: &str| ApiError::BadRequest(format!("{} {name} payload: {what}", provider.name()));
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

fn push(branch: &str, commit: &str, bad: &dyn Fn(&str) -> ApiError) -> Result<HookEvent, ApiError> {
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
    bad: &dyn Fn(&str) -> ApiError,
) -> Result<HookEvent, ApiError> {
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

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// A repository URL reduced to `host/path` (lowercase; no scheme, user,
/// port or `.git`): the same for the clone, SSH and web URLs of one
/// repository. `None` for what is not a git URL.
pub(crate) fn repo_key(url: &str) -> Option<String> {
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

fn verify(provider: Provider, headers: &HeaderMap, body: &[u8], secret: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    match provider {
        Provider::GitHub => header("x-hub-signature-256").is_some_and(|sig| hmac_matches(secret, &[body], sig)),
        Provider::Bitbucket => header("x-hub-signature").is_some_and(|sig| hmac_matches(secret, &[body], sig)),
        Provider::GitLab => header("x-gitlab-token").is_some_and(|t| constant_time_eq(t.as_bytes(), secret.as_bytes())),
        Provider::Generic => {
            let Some(ts) = header("x-helix-timestamp") else { return false };
            let now = crate::now_ms() / 1000;
            let fresh = ts.parse::<i64>().is_ok_and(|t| now.abs_diff(t) <= GENERIC_MAX_SKEW_SECS);
            fresh
                && header("x-helix-signature-256")
                    .is_some_and(|sig| hmac_matches(secret, &[ts.as_bytes(), b".", body], sig))
        }
    }
}

/// What unknown projects are "verified" against (never a real secret:
/// those are random hex).
const UNKNOWN_PROJECT_SECRET: &str = "(no project)";

/// Why a delivery did not verify; the same whether or not the project or
/// repository exists.
fn unauthorized_reason(provider: Provider, headers: &HeaderMap) -> String {
    let (name, header) = match provider {
        Provider::GitHub => ("X-Hub-Signature-256", "x-hub-signature-256"),
        Provider::Bitbucket => ("X-Hub-Signature", "x-hub-signature"),
        Provider::GitLab => ("X-Gitlab-Token", "x-gitlab-token"),
        Provider::Generic => ("X-Helix-Signature-256", "x-helix-signature-256"),
    };
    if !headers.contains_key(header) {
        return format!("unsigned {} webhook: the {name} header is missing", provider.name());
    }
    if provider == Provider::Generic {
        return "the X-Helix-Signature-256 does not match, or X-Helix-Timestamp is missing or over 5 minutes away \
                from now"
            .into();
    }
    format!("the {name} header does not match the webhook secret of any project linked at this URL")
}

/// `sha256=<hex>` of HMAC-SHA256 over the parts, compared in constant time.
fn hmac_matches(secret: &str, parts: &[&[u8]], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else { return false };
    let Ok(expected) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(&expected).is_ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The provider's id of this delivery, the same on a redelivery.
fn delivery_id(provider: Provider, headers: &HeaderMap) -> Option<String> {
    let names: &[&str] = match provider {
        Provider::GitHub => &["x-github-delivery"],
        // Idempotency-Key stays the same across GitLab's retries; the event
        // UUID is what older GitLab versions send.
        Provider::GitLab => &["idempotency-key", "x-gitlab-event-uuid"],
        Provider::Bitbucket => &["x-request-uuid"],
        // A signed generic delivery is its own id: the signature covers
        // the timestamp and the body, so a replay carries the same one.
        Provider::Generic => &["x-helix-signature-256"],
    };
    names
        .iter()
        .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
        .map(|v| v.trim().chars().take(200).collect::<String>())
        .filter(|v| !v.is_empty())
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

    #[test]
    fn signatures_verify_as_providers_sign() {
        // GitHub's documented test vector.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(hmac_matches("It's a Secret to Everybody", &[b"Hello, World!"], sig));
        assert!(!hmac_matches("wrong", &[b"Hello, World!"], sig));
        assert!(!hmac_matches("It's a Secret to Everybody", &[b"Hello, World!"], "sha1=abc"));
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }
}
