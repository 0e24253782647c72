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
use helix_core::build::BuildContext;
use helix_store::LinkRow;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::builds::BuildRequest;
use crate::problem::ApiError;
use crate::routes::Cp;
use payload::{HookEvent, Provider};

pub mod payload;

pub(crate) use payload::repo_key;

/// How far a generic hook's timestamp may be from now.
const GENERIC_MAX_SKEW_SECS: u64 = 300;

/// Largest webhook body (GitHub caps its payloads at 25 MB).
pub(crate) const MAX_HOOK_BODY: u64 = 25 * 1024 * 1024;
/// The unverified-body budget counts in units of this many bytes.
pub(crate) const BUDGET_UNIT: u64 = 4096;
/// How long a delivery waits for room in the budget before 503.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a delivery's body may take to arrive (the providers send it at
/// once; a trickle holds the budget only this long).
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

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
    // A body of unknown length may be as large as the cap (or the whole
    // budget, when the operator set it smaller).
    let reserve = (declared.unwrap_or(MAX_HOOK_BODY).div_ceil(BUDGET_UNIT).max(1) as u32).min(cp.hook_budget_units);
    let permit = tokio::time::timeout(BUDGET_WAIT, cp.hook_budget.clone().acquire_many_owned(reserve))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::Unavailable("too many webhook deliveries are being read at once; retry shortly".into())
        })?;
    let limit = declared.unwrap_or(MAX_HOOK_BODY).min(u64::from(reserve) * BUDGET_UNIT) as usize;
    let read = tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, limit)).await.map_err(|_| {
        ApiError::BadRequest(format!(
            "{} webhook body did not arrive within {} s",
            provider.name(),
            BODY_DEADLINE.as_secs()
        ))
    })?;
    let bytes = read.map_err(|e| {
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
    let delivery = payload::parse(provider, event_name.unwrap_or(""), body).map_err(ApiError::BadRequest)?;
    let event = delivery.event;

    // Which projects: the one in the path, or those linked to the
    // repository. None at all answers as a bad signature does.
    let candidates: Vec<LinkRow> = match project {
        Some(name) => match ProjectName::parse(name) {
            Ok(name) => cp.store.builds().project_link(&name).await?.into_iter().collect(),
            Err(_) => Vec::new(),
        },
        None => {
            let keys = delivery.repo_keys;
            if keys.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "{} webhook payload names no repository URL",
                    provider.name()
                )));
            }
            let mut found: Vec<LinkRow> = Vec::new();
            for key in keys {
                for link in cp.store.builds().links_by_repo(&key).await? {
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
        std::hint::black_box(verify(provider, headers, body, UNKNOWN_PROJECT_SECRET));
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
        cp.store.builds().cancel_builds_of(&project, branch, pull_request, gone, crate::now_ms()).await?;
        if let Some(alias) = alias_of(link, &project)
            && cp.store.builds().remove_alias(&project, &alias, crate::now_ms()).await?.is_some()
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
        // Hex in any case verifies the same: one spelling per delivery.
        .map(|v| v.trim().chars().take(200).collect::<String>().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

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
