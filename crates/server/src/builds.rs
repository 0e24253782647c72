//! The build plane's ports, wired to the embedded backends: the job queue
//! over the state store (builds are the queue: a lease marks a claimed
//! job) and the host the workers report to.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use helix_build::BuildHost;
use helix_bus::{BusError, ClaimedJob, JobQueue, JobStatus};
use helix_control::ControlPlane;
use helix_core::build::{BuildContext, BuildId, BuildJob, BuildOutcome, BuildState};
use helix_core::hosts::PublicEdge;
use helix_store::{BuildEnd, Store};
use tokio::sync::Notify;

/// How the embedded build queue behaves.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// How long a claimed job stays with its worker without a heartbeat.
    pub lease: Duration,
    /// Attempts before an infrastructure failure fails the build.
    pub max_attempts: i64,
    /// How often idle workers look for work without being woken.
    pub poll: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings { lease: Duration::from_secs(30), max_attempts: 3, poll: Duration::from_secs(1) }
    }
}

pub(crate) struct StoreQueue {
    pub store: Arc<Store>,
    pub wake: Arc<Notify>,
    pub settings: QueueSettings,
}

fn backend(e: impl std::fmt::Display) -> BusError {
    BusError::Backend(e.to_string())
}

impl JobQueue for StoreQueue {
    fn claim(&self) -> BoxFuture<'_, Result<Option<ClaimedJob>, BusError>> {
        Box::pin(async move {
            let lease = self.settings.lease.as_millis() as i64;
            let max = self.settings.max_attempts;
            let Some((id, json, attempt)) =
                self.store.builds().claim_build(lease, max, now_ms()).await.map_err(backend)?
            else {
                return Ok(None);
            };
            match serde_json::from_str::<BuildJob>(&json) {
                Ok(job) => Ok(Some(ClaimedJob { job, attempt: attempt as u32 })),
                Err(e) => {
                    let end = BuildEnd {
                        state: BuildState::Error,
                        deployment_id: None,
                        error: Some(&format!("the queued job cannot be read: {e}")),
                        failed_step: None,
                        exit_status: None,
                        now_ms: now_ms(),
                    };
                    self.store.builds().finish_build(&id, attempt, end).await.map_err(backend)?;
                    Ok(None)
                }
            }
        })
    }

    fn heartbeat<'a>(&'a self, build: &'a BuildId, attempt: u32) -> BoxFuture<'a, Result<JobStatus, BusError>> {
        Box::pin(async move {
            let until = now_ms() + self.settings.lease.as_millis() as i64;
            let held =
                self.store.builds().extend_build_lease(build.as_str(), attempt as i64, until).await.map_err(backend)?;
            Ok(if held { JobStatus::Wanted } else { JobStatus::Canceled })
        })
    }

    fn complete<'a>(
        &'a self,
        build: &'a BuildId,
        attempt: u32,
        outcome: &'a BuildOutcome,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let end = BuildEnd {
                state: outcome.state,
                deployment_id: outcome.deployment.as_deref(),
                error: outcome.error.as_deref(),
                failed_step: outcome.failed_step.as_deref(),
                exit_status: outcome.exit_status,
                now_ms: now_ms(),
            };
            self.store.builds().finish_build(build.as_str(), attempt as i64, end).await.map_err(backend)?;
            self.store.identity().revoke_build_tokens(build.as_str(), now_ms()).await.map_err(backend)
        })
    }

    fn retry<'a>(&'a self, build: &'a BuildId, attempt: u32, error: &'a str) -> BoxFuture<'a, Result<bool, BusError>> {
        Box::pin(async move {
            let again = self
                .store
                .builds()
                .requeue_build(build.as_str(), attempt as i64, error, self.settings.max_attempts, now_ms())
                .await
                .map_err(backend)?;
            self.store.identity().revoke_build_tokens(build.as_str(), now_ms()).await.map_err(backend)?;
            self.wake.notify_waiters();
            Ok(again)
        })
    }

    fn wait(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        })
    }
}

pub(crate) struct Host {
    pub store: Arc<Store>,
    pub control: Arc<ControlPlane>,
    pub edge: PublicEdge,
    /// Where build workers reach the API (each with its build's token).
    pub api_url: String,
}

impl BuildHost for Host {
    fn append_log<'a>(
        &'a self,
        build: &'a BuildId,
        lines: Vec<helix_build::log::Line>,
        total_bytes: u64,
        truncated: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.store.builds().append_build_log(build.as_str(), &lines, total_bytes as i64, truncated).await?;
            Ok(())
        })
    }

    fn log_end<'a>(&'a self, build: &'a BuildId) -> BoxFuture<'a, anyhow::Result<i64>> {
        Box::pin(async move { Ok(self.store.builds().build_log_end(build.as_str()).await?) })
    }

    fn note<'a>(
        &'a self,
        build: &'a BuildId,
        commit: Option<&'a str>,
        detected: Option<&'a str>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { Ok(self.store.builds().note_build(build.as_str(), commit, detected).await?) })
    }

    fn git_credential<'a>(&'a self, project: &'a str) -> BoxFuture<'a, anyhow::Result<Option<String>>> {
        Box::pin(async move { self.control.git_credential(project).await.map_err(anyhow::Error::msg) })
    }

    fn deploy_url(&self, job: &BuildJob) -> String {
        match job.context.alias(&job.git_ref, &job.project) {
            Some(alias) => self.edge.alias_url(&alias, &job.project),
            None => self.edge.production_url(&job.project),
        }
    }

    fn environment<'a>(&'a self, job: &'a BuildJob) -> BoxFuture<'a, anyhow::Result<Vec<(String, String, bool)>>> {
        Box::pin(async move {
            let environment = if job.context == BuildContext::Production { "production" } else { "preview" };
            let reader = helix_control::Reader {
                kind: "build",
                name: format!("build {}", job.build),
                deployment: serde_json::json!({
                    "branch": job.git_ref, "commit": job.commit, "source": "git",
                    "context": job.context.netlify_name(), "build_status": "building",
                    "production": job.context == BuildContext::Production,
                }),
            };
            let vars = self.control.resolve_env(job.project.as_str(), environment, &job.git_ref, &reader).await;
            vars.map_err(anyhow::Error::msg)
        })
    }

    fn api<'a>(&'a self, job: &'a BuildJob) -> BoxFuture<'a, anyhow::Result<helix_client::Api>> {
        Box::pin(async move {
            let token =
                self.control.build_token(job.build.as_str(), job.project.as_str()).await.map_err(anyhow::Error::msg)?;
            helix_client::Api::new(&self.api_url, Some(token))
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
