//! Function logs and counters for the API: what this server's runtime
//! plane kept, per project (`helix logs`, `helix functions`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use helix_core::ProjectName;
use helix_runtime::FunctionStats;

use crate::ControlPlane;
use crate::problem::ApiError;

/// Most records one read returns.
const MAX_READ: usize = 5000;

/// How often a follower looks for new lines.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(250);

impl ControlPlane {
    /// A project's stored function log lines: after `after` (an id), or
    /// the newest `limit`.
    pub(crate) async fn function_logs(
        &self,
        project: &str,
        function: Option<&str>,
        deployment: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<helix_store::FunctionLog>, ApiError> {
        let project = ProjectName::parse(project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let limit = limit.clamp(1, MAX_READ) as i64;
        Ok(self.store.function_logs().function_logs(project.as_str(), function, deployment, after, limit).await?)
    }

    /// The newest lines, then each new one as it is stored (from any
    /// server sharing the database), as server-sent `line` events (id =
    /// the line's id).
    pub(crate) fn follow_function_logs(
        self: Arc<Self>,
        project: String,
        function: Option<String>,
        deployment: Option<String>,
        after: Option<String>,
    ) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>> {
        let state = (self, project, function, deployment, after, true);
        let stream =
            futures_util::stream::unfold(state, |(cp, project, function, deployment, after, first)| async move {
                loop {
                    let limit = if first && after.is_none() { 200 } else { MAX_READ as i64 };
                    let cursor = if first && after.is_none() { None } else { Some(after.clone().unwrap_or_default()) };
                    let lines = cp
                        .store
                        .function_logs()
                        .function_logs(&project, function.as_deref(), deployment.as_deref(), cursor.as_deref(), limit)
                        .await
                        .ok()?;
                    if let Some(last) = lines.last() {
                        let next = Some(last.id.clone());
                        let events: Vec<Result<SseEvent, Infallible>> = lines
                            .iter()
                            .map(|l| {
                                let data = serde_json::to_string(l).unwrap_or_default();
                                Ok(SseEvent::default().event("line").id(l.id.clone()).data(data))
                            })
                            .collect();
                        return Some((
                            futures_util::stream::iter(events),
                            (cp, project, function, deployment, next, false),
                        ));
                    }
                    if first && after.is_none() {
                        // Nothing stored yet: follow from the start.
                        return Some((
                            futures_util::stream::iter(Vec::new()),
                            (cp, project, function, deployment, Some(String::new()), false),
                        ));
                    }
                    tokio::time::sleep(FOLLOW_POLL).await;
                }
            });
        Sse::new(futures_util::StreamExt::flatten(stream)).keep_alive(KeepAlive::default())
    }

    pub(crate) fn function_stats(&self, project: &str) -> Vec<FunctionStats> {
        self.runtime.stats().into_iter().filter(|s| s.project == project).collect()
    }
}

/// One schedule as `helix crons` shows it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CronView {
    pub name: String,
    pub schedule: String,
    /// `path` (requested on production) or `function` (invoked).
    pub kind: &'static str,
    pub deployment: String,
    pub next_run: Option<String>,
    pub last_run: Option<helix_store::CronRun>,
}

impl ControlPlane {
    /// The production deployment's schedules, each with its next run and
    /// its latest.
    pub(crate) async fn crons(&self, project: &str) -> Result<Vec<CronView>, ApiError> {
        let project = ProjectName::parse(project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let production = self.store.crons().production_manifests().await?;
        let Some((_, deployment, digest)) = production.into_iter().find(|(p, _, _)| *p == project) else {
            return Ok(Vec::new());
        };
        let manifest = helix_core::manifest::Manifest::from_json(&self.blobs.get(digest).await?)
            .map_err(|e| ApiError::Internal(format!("reading the production manifest: {e}")))?;
        let runs = self.store.crons().cron_runs(&project, 500).await?;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Ok(manifest
            .crons
            .iter()
            .map(|c| {
                let dialect = if c.function.is_some() {
                    helix_core::cron::Dialect::Netlify
                } else {
                    helix_core::cron::Dialect::Vercel
                };
                let next = helix_core::cron::Schedule::parse(&c.schedule, dialect).ok().and_then(|s| s.next_after(now));
                CronView {
                    name: c.name().to_owned(),
                    schedule: c.schedule.clone(),
                    kind: if c.function.is_some() { "function" } else { "path" },
                    deployment: deployment.to_string(),
                    next_run: next.map(helix_core::cron::rfc3339),
                    last_run: runs.iter().find(|r| r.name == c.name()).cloned(),
                }
            })
            .collect())
    }

    /// The schedules of the deployment whose manifest is `digest`.
    /// A manifest is immutable by its digest, so its schedules are read
    /// (and a manifest of 100,000 files parsed) once, not at every promote.
    pub(crate) async fn schedules_of(&self, digest: Option<&str>) -> Result<Schedules, ApiError> {
        let Some(digest) = digest.and_then(|d| d.parse::<helix_core::Digest>().ok()) else {
            return Ok(Schedules::default());
        };
        if let Some(known) = self.schedules.get(&digest) {
            return Ok(known);
        }
        let manifest = helix_core::manifest::Manifest::from_json(&self.blobs.get(digest).await?)
            .map_err(|e| ApiError::Internal(format!("reading manifest {digest}: {e}")))?;
        Ok(self.remember_schedules(digest, &manifest.crons))
    }

    /// The schedules of the manifest `digest` holds, kept for [`Self::schedules_of`].
    pub(crate) fn remember_schedules(
        &self,
        digest: helix_core::Digest,
        crons: &[helix_core::functions::Cron],
    ) -> Schedules {
        let known = Schedules::from(schedules(crons));
        self.schedules.insert(digest, known.clone());
        known
    }

    /// Serving `deployment` in production with schedules `next` is also a
    /// `cron.change` decision when they differ from production's now.
    pub(crate) async fn decide_crons(
        &self,
        ctx: &crate::access::Ctx,
        project: &helix_store::ProjectRef,
        deployment: serde_json::Value,
        next: Schedules,
    ) -> Result<(), ApiError> {
        let name = crate::pointers::name_of(project)?;
        let current = match self.store.deployments().production_deployment(&name).await? {
            Some(row) => self.schedules_of(row.manifest_digest.as_deref()).await?,
            None => Schedules::default(),
        };
        if current == next {
            return Ok(());
        }
        let list = |s: &[(String, String)]| -> Vec<serde_json::Value> {
            s.iter().map(|(name, schedule)| serde_json::json!({ "name": name, "schedule": schedule })).collect()
        };
        let decision = crate::policy::Decision {
            action: "cron.change",
            project: Some(project),
            environment: Some("production"),
            deployment: Some(deployment),
            request: serde_json::json!({ "crons": list(&next[..]), "previous": list(&current[..]) }),
        };
        self.decide_for(ctx, decision).await
    }
}

/// A deployment's (name, schedule) pairs, sorted: what `cron.change`
/// compares.
pub(crate) type Schedules = std::sync::Arc<[(String, String)]>;

/// (name, schedule) of each schedule, sorted.
fn schedules(crons: &[helix_core::functions::Cron]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = crons.iter().map(|c| (c.name().to_owned(), c.schedule.clone())).collect();
    all.sort();
    all
}
