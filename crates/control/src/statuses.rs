//! Commit statuses: the git host hears how the build of a commit went, as
//! Vercel and Netlify tell it — pending while it builds, then success with
//! the preview (or production) URL, failure with the error, or canceled.
//!
//! The provider is the one whose webhook queued the build, or for API and
//! generic-hook builds the one the repository's host is (github.com,
//! gitlab.com, bitbucket.org). The status is posted with the project's
//! linked git token, in each host's documented shape:
//!
//! - GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, bearer
//!   token, `state` pending|success|failure|error, `context`.
//! - GitLab: `POST {api}/projects/{url-encoded path}/statuses/{sha}`,
//!   `PRIVATE-TOKEN`, `state` running|success|failed|canceled, `name`.
//! - Bitbucket Cloud: `POST {api}/repositories/{workspace}/{repo}/commit/{sha}/statuses/build`,
//!   bearer token (or `user:app-password` as basic), `state`
//!   INPROGRESS|SUCCESSFUL|FAILED|STOPPED, `key`, `url`.
//!
//! Each post reads the build as it is then, so a status posted late still
//! tells the host the latest state (a build that failed fast is never
//! said to be pending), and a state already posted is not posted again;
//! the posts of one build never overlap. What the host answered is kept on the build
//! (`commit_status`). The host is the tenant's to name (`status_api`), so
//! posts go through the outbound guard as webhooks do. Posts are retried
//! a few times within the process; one still pending when the server
//! stops is not posted again after it starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use helix_core::build::BuildState;
use helix_http::guard::Guard;
use helix_store::{BuildRow, LinkRow};

use crate::ControlPlane;
use crate::problem::ApiError;

/// What every status is called at the host.
const CONTEXT: &str = "helixstack/deploy";
/// Builds waiting for a status post, at most.
const QUEUE: usize = 10_000;
/// Posts in flight at once.
const CONCURRENT: usize = 8;
/// Attempts at one post (transport errors, 429 and 5xx are retried).
const ATTEMPTS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Bitbucket,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Bitbucket => "bitbucket",
        }
    }

    /// The provider whose hook queued a build (`trigger`), else the one
    /// the repository's host is.
    pub fn of(trigger: &str, repo_key: &str) -> Option<Provider> {
        match trigger {
            "github" => return Some(Provider::GitHub),
            "gitlab" => return Some(Provider::GitLab),
            "bitbucket" => return Some(Provider::Bitbucket),
            _ => {}
        }
        match repo_key.split('/').next()? {
            "github.com" => Some(Provider::GitHub),
            "gitlab.com" => Some(Provider::GitLab),
            "bitbucket.org" => Some(Provider::Bitbucket),
            _ => None,
        }
    }

    /// The public API of the provider, or the conventional API of a
    /// self-hosted GitHub Enterprise or GitLab at the repository's host.
    fn default_api(self, repo_url: &str, host: &str) -> Option<String> {
        let scheme = if repo_url.starts_with("http://") { "http" } else { "https" };
        match (self, host) {
            (_, "file") => None,
            (Provider::GitHub, "github.com") => Some("https://api.github.com".into()),
            (Provider::GitHub, host) => Some(format!("{scheme}://{host}/api/v3")),
            (Provider::GitLab, host) => Some(format!("{scheme}://{host}/api/v4")),
            (Provider::Bitbucket, "bitbucket.org") => Some("https://api.bitbucket.org/2.0".into()),
            // Bitbucket Data Center has another API: say where it is.
            (Provider::Bitbucket, _) => None,
        }
    }
}

/// The state a commit is told, in each host's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pending,
    Success,
    Failure,
    Canceled,
}

impl Phase {
    fn of(state: BuildState) -> Phase {
        match state {
            BuildState::Queued | BuildState::Building => Phase::Pending,
            BuildState::Ready => Phase::Success,
            BuildState::Error => Phase::Failure,
            BuildState::Canceled => Phase::Canceled,
        }
    }

    fn word(self, provider: Provider) -> &'static str {
        match (provider, self) {
            (Provider::GitHub, Phase::Pending) => "pending",
            (Provider::GitHub, Phase::Success) => "success",
            (Provider::GitHub, Phase::Failure) => "failure",
            (Provider::GitHub, Phase::Canceled) => "error",
            (Provider::GitLab, Phase::Pending) => "running",
            (Provider::GitLab, Phase::Success) => "success",
            (Provider::GitLab, Phase::Failure) => "failed",
            (Provider::GitLab, Phase::Canceled) => "canceled",
            (Provider::Bitbucket, Phase::Pending) => "INPROGRESS",
            (Provider::Bitbucket, Phase::Success) => "SUCCESSFUL",
            (Provider::Bitbucket, Phase::Failure) => "FAILED",
            (Provider::Bitbucket, Phase::Canceled) => "STOPPED",
        }
    }
}

/// One status, ready to send.
#[derive(Debug, PartialEq)]
pub(crate) struct Post {
    pub url: String,
    pub auth: (&'static str, String),
    pub body: serde_json::Value,
}

/// What to say about a build, whatever the host.
struct Status<'a> {
    sha: &'a str,
    phase: Phase,
    /// Where the deployment is (or will be) served.
    target: &'a str,
    description: String,
}

/// The request that posts `status` to `provider` at `api` for the
/// repository `path` (`owner/repo`, or a GitLab group path).
fn post_for(provider: Provider, api: &str, path: &str, token: &str, status: &Status<'_>) -> Post {
    let api = api.trim_end_matches('/');
    let state = status.phase.word(provider);
    let description: String = status.description.chars().take(140).collect();
    let target = (status.phase == Phase::Success).then_some(status.target);
    let owner_repo = {
        let mut segments: Vec<&str> = path.rsplitn(3, '/').take(2).collect();
        segments.reverse();
        segments.join("/")
    };
    match provider {
        Provider::GitHub => Post {
            url: format!("{api}/repos/{owner_repo}/statuses/{}", status.sha),
            auth: ("authorization", format!("Bearer {token}")),
            body: serde_json::json!({
                "state": state, "target_url": target, "description": description, "context": CONTEXT,
            }),
        },
        Provider::GitLab => Post {
            url: format!("{api}/projects/{}/statuses/{}", path.replace('/', "%2F"), status.sha),
            auth: ("private-token", token.to_owned()),
            body: serde_json::json!({
                "state": state, "target_url": target, "description": description, "name": CONTEXT,
            }),
        },
        Provider::Bitbucket => {
            use base64::Engine;
            let auth = match token.split_once(':') {
                Some(_) => format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(token)),
                None => format!("Bearer {token}"),
            };
            Post {
                url: format!("{api}/repositories/{owner_repo}/commit/{}/statuses/build", status.sha),
                auth: ("authorization", auth),
                // Bitbucket requires a URL whatever the state.
                body: serde_json::json!({
                    "key": CONTEXT, "state": state, "url": status.target, "name": "HelixStack",
                    "description": description,
                }),
            }
        }
    }
}

/// A `status_api` as given on a link: an http(s) URL with a host and no
/// credentials, without a trailing slash.
pub(crate) fn check_api_url(url: &str) -> Result<String, ApiError> {
    let parsed = reqwest::Url::parse(url.trim())
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && u.query().is_none()
        })
        .filter(|_| url.len() <= 2048)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status API {:?} must be an http:// or https:// URL with a host, no credentials and no query, \
                 at most 2,048 characters",
                url.chars().take(200).collect::<String>()
            ))
        })?;
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// Builds waiting for their status to be posted.
pub(crate) struct StatusQueue {
    tx: tokio::sync::mpsc::Sender<String>,
    rx: Mutex<Option<tokio::sync::mpsc::Receiver<String>>>,
}

impl StatusQueue {
    pub(crate) fn new() -> StatusQueue {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        StatusQueue { tx, rx: Mutex::new(Some(rx)) }
    }
}

impl ControlPlane {
    /// Asks for the build's commit status to be posted (again).
    pub(crate) fn report_status(&self, build: &str) {
        if self.statuses.tx.try_send(build.to_owned()).is_err() {
            tracing::warn!(build, "commit statuses: queue full, this one is not posted");
        }
    }

    /// Runs the poster until the process ends.
    pub fn spawn_commit_statuses(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, String> {
        let guard = Arc::new(Guard::new(&self.delivery.allow, "--webhook-allow")?);
        let client = guard.client(self.delivery.timeout, "HelixStack-Status/1")?;
        let mut rx = self
            .statuses
            .rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or("the commit status poster runs once")?;
        let cp = self.clone();
        Ok(tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
            // Build → whether it was asked for again while being posted.
            let running: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
            while let Some(build) = rx.recv().await {
                {
                    let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(again) = running.get_mut(&build) {
                        *again = true;
                        continue;
                    }
                    running.insert(build.clone(), false);
                }
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (cp, client, guard, running) = (cp.clone(), client.clone(), guard.clone(), running.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    loop {
                        if let Err(e) = cp.post_status(&client, &guard, &build).await {
                            tracing::warn!(build, error = %e, "commit status not posted");
                        }
                        let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
                        if running.get(&build) == Some(&true) {
                            running.insert(build.clone(), false);
                            continue;
                        }
                        running.remove(&build);
                        return;
                    }
                });
            }
        }))
    }

    /// Posts the build's status as it is now and keeps what the host said.
    async fn post_status(&self, client: &reqwest::Client, guard: &Guard, build: &str) -> Result<(), ApiError> {
        let Some(row) = self.store.builds().build(build).await? else { return Ok(()) };
        let Some(link) = self.store.builds().project_link(&row.project).await? else { return Ok(()) };
        let Some(outcome) = self.status_outcome(client, guard, &row, &link).await else { return Ok(()) };
        self.store.builds().note_commit_status(row.id.as_str(), &outcome).await?;
        Ok(())
    }

    /// What posting the build's status came to, or `None` when the build
    /// is not one a git host tracks (no provider, no commit yet).
    async fn status_outcome(
        &self,
        client: &reqwest::Client,
        guard: &Guard,
        row: &BuildRow,
        link: &LinkRow,
    ) -> Option<String> {
        let sha = row.commit.as_deref().filter(|c| c.len() >= 7 && c.bytes().all(|b| b.is_ascii_hexdigit()))?;
        let provider = Provider::of(&row.trigger, &link.repo_key)?;
        let phase = Phase::of(row.state);
        let label = format!("{} {}", provider.name(), phase.word(provider));
        // Told already (a post asked for twice, or a fast build whose
        // pending post found it finished): nothing new to say.
        if row.commit_status.as_deref().is_some_and(|said| said.starts_with(&format!("{label}: posted"))) {
            return None;
        }
        let (host, path) = link.repo_key.split_once('/')?;
        let token = match self.credential_of(link) {
            Ok(Some(c)) if c.trim_start().starts_with("-----BEGIN") => {
                return Some(format!(
                    "{label}: not posted: the linked credential is a deploy key; statuses need a token"
                ));
            }
            Ok(Some(token)) => token,
            Ok(None) => {
                return Some(format!(
                    "{label}: not posted: no git token is linked (helix projects link --git-token-env)"
                ));
            }
            Err(e) => return Some(format!("{label}: not posted: the git credential cannot be opened: {e}")),
        };
        let Some(api) = link.status_api.clone().or_else(|| provider.default_api(&link.repo_url, host)) else {
            return Some(format!(
                "{label}: not posted: say where the host's API is (helix projects link --status-api)"
            ));
        };
        let view = self.build_view(row);
        let description = match phase {
            Phase::Pending => "Building on HelixStack".to_owned(),
            Phase::Success => format!("Deployed to {}", view.url),
            Phase::Failure => format!("Build failed: {}", row.error.as_deref().unwrap_or("see the build log")),
            Phase::Canceled => "Build canceled".to_owned(),
        };
        let status = Status { sha, phase, target: &view.url, description };
        let post = post_for(provider, &api, path, &token, &status);
        Some(format!("{label}: {}", send(client, guard, &post).await))
    }
}

/// Sends a post, retrying what may pass later; says what came of it.
async fn send(client: &reqwest::Client, guard: &Guard, post: &Post) -> String {
    let url = match reqwest::Url::parse(&post.url) {
        Ok(url) => url,
        Err(e) => return format!("not posted: {} is not a URL: {e}", post.url),
    };
    if let Err(e) = guard.check_url(&url) {
        return format!("not posted: {e}");
    }
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(url.clone())
            .header(post.auth.0, &post.auth.1)
            .header("accept", "application/json")
            .json(&post.body)
            .send()
            .await;
        let retry = match sent {
            Ok(r) if r.status().is_success() => return format!("posted ({})", r.status().as_u16()),
            Ok(r) if matches!(r.status().as_u16(), 401 | 403 | 404) => {
                return format!(
                    "refused ({}): the linked token may not post commit statuses to this repository",
                    r.status().as_u16()
                );
            }
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                format!("the host answered {}", r.status().as_u16())
            }
            Ok(r) => return format!("refused ({})", r.status().as_u16()),
            Err(e) => helix_http::guard::refusal_of(&e).map_or_else(|| e.to_string(), |r| format!("not posted: {r}")),
        };
        if retry.starts_with("not posted") {
            return retry;
        }
        if attempt == ATTEMPTS {
            return format!("failed after {ATTEMPTS} attempts: {retry}");
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    unreachable!("the last attempt returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase) -> Status<'static> {
        Status { sha: "0123abc", phase, target: "https://feat--shop.example.com", description: "d".into() }
    }

    #[test]
    fn the_provider_is_the_hook_or_the_host() {
        assert_eq!(Provider::of("gitlab", "github.com/a/b"), Some(Provider::GitLab));
        assert_eq!(Provider::of("api", "github.com/a/b"), Some(Provider::GitHub));
        assert_eq!(Provider::of("git", "bitbucket.org/a/b"), Some(Provider::Bitbucket));
        assert_eq!(Provider::of("api", "git.example.com/a/b"), None);
    }

    #[test]
    fn each_host_gets_its_own_shape() {
        let gh = post_for(Provider::GitHub, "https://api.github.com/", "acme/shop", "t", &status(Phase::Success));
        assert_eq!(gh.url, "https://api.github.com/repos/acme/shop/statuses/0123abc");
        assert_eq!(gh.auth, ("authorization", "Bearer t".into()));
        assert_eq!(gh.body["state"], "success");
        assert_eq!(gh.body["target_url"], "https://feat--shop.example.com");
        let gl = post_for(Provider::GitLab, "https://gitlab.com/api/v4", "grp/sub/shop", "t", &status(Phase::Pending));
        assert_eq!(gl.url, "https://gitlab.com/api/v4/projects/grp%2Fsub%2Fshop/statuses/0123abc");
        assert_eq!(gl.auth, ("private-token", "t".into()));
        assert_eq!((gl.body["state"].as_str(), gl.body["target_url"].is_null()), (Some("running"), true));
        let bb = post_for(
            Provider::Bitbucket,
            "https://api.bitbucket.org/2.0",
            "ws/shop",
            "me:pw",
            &status(Phase::Canceled),
        );
        assert_eq!(bb.url, "https://api.bitbucket.org/2.0/repositories/ws/shop/commit/0123abc/statuses/build");
        assert_eq!(bb.auth.1, "Basic bWU6cHc=");
        assert_eq!(bb.body["state"], "STOPPED");
        // A longer path (a local repository) keeps its last two segments.
        let deep = post_for(Provider::GitHub, "http://h", "tmp/x/acme/shop", "t", &status(Phase::Failure));
        assert_eq!(deep.url, "http://h/repos/acme/shop/statuses/0123abc");
    }

    #[test]
    fn self_hosted_apis_follow_the_convention_or_must_be_named() {
        assert_eq!(
            Provider::GitHub.default_api("https://ghe.corp/a/b", "ghe.corp").as_deref(),
            Some("https://ghe.corp/api/v3")
        );
        assert_eq!(
            Provider::GitLab.default_api("http://gl.lan/a/b", "gl.lan").as_deref(),
            Some("http://gl.lan/api/v4")
        );
        assert_eq!(Provider::Bitbucket.default_api("https://bb.corp/a/b", "bb.corp"), None);
        assert_eq!(Provider::GitHub.default_api("file:///r.git", "file"), None);
        assert!(check_api_url("https://user:pw@h/api").is_err());
        assert!(check_api_url("ftp://h/api").is_err());
        assert_eq!(check_api_url("https://h/api/v4/").unwrap(), "https://h/api/v4");
    }
}
