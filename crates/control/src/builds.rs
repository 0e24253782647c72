//! Git-linked projects and their builds: linking a repository, queuing
//! builds (from the API and from webhooks), listing and canceling them,
//! and their logs, whole or followed live as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use helix_core::ProjectName;
use helix_core::api::{Build, LinkProject, LogLine, ProjectLink, RequestBuild};
use helix_core::build::{BuildContext, BuildId, BuildJob, is_branch_name};
use helix_store::{BuildRow, LinkRow, NewBuild, NewLink, ProjectRef, Queued};

use crate::access::{Ctx, Need};
use crate::problem::ApiError;
use crate::{ControlPlane, now_ms};

/// How often a followed log looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// One build a trigger asks for.
pub(crate) struct BuildRequest {
    pub project: ProjectName,
    pub repo: String,
    pub branch: String,
    pub commit: Option<String>,
    pub context: BuildContext,
}

impl ControlPlane {
    pub(crate) async fn link_project(&self, ctx: &Ctx, project: &str, body: &[u8]) -> Result<ProjectLink, ApiError> {
        let project = ProjectName::parse(project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let target = self.project_or_new(ctx, &project, Need::MANAGE, "link repositories").await?;
        let req: LinkProject = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not a valid link: {e}")))?;
        let repo_key = crate::hooks::repo_key(&req.repo).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "repository {:?} is not a git URL (https://, ssh://, git://, file:// or user@host:path)",
                req.repo.chars().take(200).collect::<String>()
            ))
        })?;
        if has_password(&req.repo) {
            return Err(ApiError::BadRequest(
                "the repository URL carries a password or token: give it as the git credential \
                 (helix projects link --git-token-env VAR), which is stored sealed"
                    .into(),
            ));
        }
        let status_api = req.status_api.as_deref().map(crate::statuses::check_api_url).transpose()?;
        let branch = req.production_branch.as_deref().unwrap_or("main");
        if !is_branch_name(branch) {
            return Err(ApiError::BadRequest(format!("production branch {branch:?} is not a valid branch name")));
        }
        // Nothing is sealed under a master key while a rotation changes it.
        let _not_rotating = self.rotation.read().await;
        let sealed = match &req.git_credential {
            Some(c) if c.trim().is_empty() => return Err(ApiError::BadRequest("git credential is empty".into())),
            Some(c) => Some(
                self.secrets
                    .seal(&crate::env::credentials_context(project.as_str()), c.trim())
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            ),
            None => None,
        };
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).map_err(|e| ApiError::Internal(e.to_string()))?;
        let detail = serde_json::json!({
            "repo": req.repo,
            "production_branch": branch,
            "git_credential": sealed.is_some(),
            "status_api": status_api,
        });
        let audit = ctx.audit_on(&target, "link", detail);
        let row = self
            .store
            .builds()
            .link_project(NewLink {
                project: &project,
                org_id: &target.org_id,
                audit: &audit,
                repo_url: &req.repo,
                repo_key: &repo_key,
                production_branch: branch,
                webhook_secret: &format!("whsec_{}", hex::encode(secret)),
                git_credential_sealed: sealed.as_deref(),
                status_api: status_api.as_deref(),
                now_ms: now_ms(),
            })
            .await?;
        Ok(self.link_view(&row, true))
    }

    pub(crate) async fn project_link(&self, ctx: &Ctx, project: &str) -> Result<ProjectLink, ApiError> {
        let project = self.project_for(ctx, project, Need::READ, "read repository links").await?;
        let row = self.link_of(&project).await?;
        Ok(self.link_view(&row, false))
    }

    async fn link_of(&self, project: &ProjectRef) -> Result<LinkRow, ApiError> {
        let project = crate::pointers::name_of(project)?;
        self.store.builds().project_link(&project).await?.ok_or_else(|| {
            ApiError::NotFound(format!("project {project} is not linked to a repository (helix projects link)"))
        })
    }

    fn link_view(&self, row: &LinkRow, with_secret: bool) -> ProjectLink {
        let hooks = ["github", "gitlab", "bitbucket", "git"]
            .iter()
            .map(|p| ((*p).to_owned(), format!("{}/hooks/{p}/{}", self.build_link.api_url, row.project)))
            .collect();
        ProjectLink {
            project: row.project.clone(),
            repo: row.repo_url.clone(),
            production_branch: row.production_branch.clone(),
            has_git_credential: row.git_credential_sealed.is_some(),
            webhook_secret: with_secret.then(|| row.webhook_secret.clone()),
            hooks,
            status_api: row.status_api.clone(),
        }
    }

    /// The project's git token or deploy key, unsealed (for build workers).
    pub async fn git_credential(&self, project: &str) -> Result<Option<String>, String> {
        let project = ProjectName::parse(project).map_err(|e| e.to_string())?;
        let Some(row) = self.store.builds().project_link(&project).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        self.credential_of(&row)
    }

    /// A link's git token or deploy key, unsealed.
    pub(crate) fn credential_of(&self, link: &LinkRow) -> Result<Option<String>, String> {
        let context = crate::env::credentials_context(&link.project);
        link.git_credential_sealed
            .as_deref()
            .map(|sealed| self.secrets.open(&context, sealed).map_err(|e| e.to_string()))
            .transpose()
    }

    /// `POST /projects/{p}/builds`: builds the tip of a branch.
    pub(crate) async fn request_build(&self, ctx: &Ctx, project: &str, body: &[u8]) -> Result<Build, ApiError> {
        let project = self.project_for(ctx, project, Need::DEPLOY, "build").await?;
        let link = self.link_of(&project).await?;
        let req: RequestBuild = if body.iter().all(u8::is_ascii_whitespace) {
            RequestBuild::default()
        } else {
            serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("request body is not valid: {e}")))?
        };
        let branch = req.git_ref.unwrap_or_else(|| link.production_branch.clone());
        let branch = branch.strip_prefix("refs/heads/").unwrap_or(&branch).to_owned();
        if !is_branch_name(&branch) {
            return Err(ApiError::BadRequest(format!("ref {branch:?} is not a valid branch name")));
        }
        let context = if branch == link.production_branch { BuildContext::Production } else { BuildContext::Branch };
        let project = ProjectName::parse(&link.project).map_err(|e| ApiError::Internal(e.to_string()))?;
        let request = BuildRequest { project, repo: link.repo_url, branch, commit: None, context };
        let (builds, _) = self.queue_builds("api", None, vec![request]).await?;
        builds.into_iter().next().ok_or_else(|| ApiError::Internal("build vanished".into()))
    }

    /// Queues builds (each canceling older ones of the same branch or pull
    /// request) and wakes the workers. With a delivery, a repeat of it
    /// queues nothing: returns what it queued the first time, and `true`.
    pub(crate) async fn queue_builds(
        &self,
        trigger: &str,
        delivery: Option<(&str, &str)>,
        requests: Vec<BuildRequest>,
    ) -> Result<(Vec<Build>, bool), ApiError> {
        let now = now_ms();
        let mut jobs = Vec::new();
        for r in requests {
            let mut random = [0u8; 16];
            getrandom::fill(&mut random).map_err(|e| ApiError::Internal(e.to_string()))?;
            let id = BuildId::generate(now as u64, u128::from_le_bytes(random));
            let job = BuildJob {
                build: id,
                project: r.project,
                repo: r.repo,
                git_ref: r.branch,
                commit: r.commit,
                context: r.context,
            };
            let json = serde_json::to_string(&job).map_err(|e| ApiError::Internal(e.to_string()))?;
            jobs.push((job, json));
        }
        let rows: Vec<NewBuild<'_>> = jobs
            .iter()
            .map(|(job, json)| NewBuild {
                id: job.build.as_str(),
                project: &job.project,
                trigger,
                branch: &job.git_ref,
                commit: job.commit.as_deref(),
                context: &job.context,
                job_json: json,
                now_ms: now,
            })
            .collect();
        let (ids, duplicate) = match self.store.builds().queue_builds(delivery, &rows, now).await? {
            Queued::New { canceled } => {
                for id in &canceled {
                    tracing::info!(build = %id, "canceled: superseded by a newer push");
                    self.report_status(id);
                }
                self.build_link.wake.notify_waiters();
                (jobs.iter().map(|(j, _)| j.build.to_string()).collect::<Vec<_>>(), false)
            }
            Queued::Duplicate { builds } => (builds, true),
        };
        let mut builds = Vec::new();
        for id in ids {
            if let Some(row) = self.store.builds().build(&id).await? {
                builds.push(self.build_view(&row));
            }
        }
        Ok((builds, duplicate))
    }

    pub(crate) fn build_view(&self, row: &BuildRow) -> Build {
        let project = &row.project;
        let url = match row.context.alias(&row.branch, project) {
            Some(alias) => self.edge.alias_url(&alias, project),
            None => self.edge.production_url(project),
        };
        let ready = row.state == helix_core::build::BuildState::Ready;
        let deployment_url = row.deployment_id.as_ref().filter(|_| ready).and_then(|id| {
            let id = helix_core::DeploymentId::parse(id).ok()?;
            Some(self.edge.deployment_url(&id, project))
        });
        Build {
            id: row.id.to_string(),
            project: row.project.to_string(),
            state: row.state,
            trigger: row.trigger.clone(),
            branch: row.branch.clone(),
            commit: row.commit.clone(),
            context: row.context.clone(),
            url,
            deployment: row.deployment_id.clone(),
            deployment_url,
            detected: row.detected.clone(),
            error: row.error.clone(),
            failed_step: row.failed_step.clone(),
            exit_status: row.exit_status,
            attempts: row.attempts,
            log_truncated: row.log_truncated,
            created_at_ms: row.created_at_ms,
            started_at_ms: row.started_at_ms,
            finished_at_ms: row.finished_at_ms,
            commit_status: row.commit_status.clone(),
        }
    }

    /// The build `id` when the caller may do `need` on its project.
    pub(crate) async fn build_for(&self, ctx: &Ctx, id: &str, need: Need, what: &str) -> Result<BuildRow, ApiError> {
        let id = BuildId::parse(id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let missing = || ApiError::NotFound(format!("build {id} not found"));
        let row = self.store.builds().build(id.as_str()).await?.ok_or_else(missing)?;
        let project = self.store.identity().project_ref(row.project.as_str()).await?.ok_or_else(missing)?;
        if ctx.actor.role_on(&project).is_none() {
            return Err(missing());
        }
        ctx.check(&project, need, what)?;
        Ok(row)
    }

    pub(crate) async fn list_builds(&self, ctx: &Ctx, project: &str) -> Result<Vec<Build>, ApiError> {
        let project = self.project_for(ctx, project, Need::READ, "read builds").await?;
        let rows = self.store.builds().builds(&crate::pointers::name_of(&project)?, 100).await?;
        Ok(rows.iter().map(|r| self.build_view(r)).collect())
    }

    pub(crate) async fn cancel_build(&self, ctx: &Ctx, id: &str) -> Result<Build, ApiError> {
        let row = self.build_for(ctx, id, Need::DEPLOY, "cancel builds").await?;
        if !self.store.builds().cancel_build(row.id.as_str(), now_ms()).await? {
            return Err(ApiError::Conflict(format!("build {} is already {}", row.id, row.state.as_str())));
        }
        self.report_status(row.id.as_str());
        let row = self
            .store
            .builds()
            .build(row.id.as_str())
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("build {} not found", row.id)))?;
        Ok(self.build_view(&row))
    }

    pub(crate) async fn build_log(&self, row: &BuildRow, after: i64) -> Result<(Build, Vec<LogLine>), ApiError> {
        let lines = self.store.builds().build_log(row.id.as_str(), after, 100_000).await?;
        Ok((self.build_view(row), lines.into_iter().map(|(seq, at_ms, line)| LogLine { seq, at_ms, line }).collect()))
    }

    /// The log as server-sent events: `line` events (id = sequence number)
    /// as lines arrive, then one `end` event with the build once it has
    /// finished and every line was sent.
    pub(crate) fn follow_log(
        self: std::sync::Arc<Self>,
        row: BuildRow,
        after: i64,
    ) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
        let state = (self, row.id, after, false);
        let stream = futures_util::stream::unfold(state, |(cp, id, after, done)| async move {
            if done {
                return None;
            }
            loop {
                let finished = match cp.store.builds().build(id.as_str()).await {
                    Ok(Some(row)) => row.state.is_finished().then_some(row),
                    _ => return None,
                };
                let lines = cp.store.builds().build_log(id.as_str(), after, 1000).await.ok()?;
                if !lines.is_empty() {
                    let last = lines.last().map_or(after, |l| l.0);
                    let events: Vec<Result<SseEvent, Infallible>> = lines
                        .into_iter()
                        .map(|(seq, at_ms, line)| {
                            let data = serde_json::to_string(&LogLine { seq, at_ms, line }).unwrap_or_default();
                            Ok(SseEvent::default().event("line").id(seq.to_string()).data(data))
                        })
                        .collect();
                    return Some((futures_util::stream::iter(events), (cp, id, last, false)));
                }
                if let Some(row) = finished {
                    let data = serde_json::to_string(&cp.build_view(&row)).unwrap_or_default();
                    let end = vec![Ok(SseEvent::default().event("end").data(data))];
                    return Some((futures_util::stream::iter(end), (cp, id, after, true)));
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        });
        Sse::new(futures_util::StreamExt::flatten(stream)).keep_alive(KeepAlive::default())
    }
}

/// Whether `url` is `scheme://user:password@host/…`.
fn has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or_default();
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}
