//! Function logs and counters for the API: what this server's runtime
//! plane kept, per project (`helix logs`, `helix functions`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use helix_core::ProjectName;
use helix_runtime::{FunctionStats, LogQuery, LogRecord};

use crate::ControlPlane;
use crate::problem::ApiError;

/// Most records one read returns.
const MAX_READ: usize = 5000;

impl ControlPlane {
    fn log_query(
        project: &str,
        function: Option<String>,
        deployment: Option<String>,
        after: u64,
    ) -> Result<LogQuery, ApiError> {
        let project = ProjectName::parse(project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(LogQuery { project: project.to_string(), function, deployment, after })
    }

    pub(crate) fn function_logs(
        &self,
        project: &str,
        function: Option<String>,
        deployment: Option<String>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LogRecord>, ApiError> {
        let q = Self::log_query(project, function, deployment, after)?;
        Ok(self.runtime.logs().read(&q, limit.clamp(1, MAX_READ)))
    }

    /// The records kept, then each new one as it is written, as
    /// server-sent `line` events (id = sequence number).
    pub(crate) fn follow_function_logs(
        self: Arc<Self>,
        project: &str,
        function: Option<String>,
        deployment: Option<String>,
        after: u64,
    ) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>>, ApiError> {
        let q = Self::log_query(project, function, deployment, after)?;
        // Subscribed before the backlog is read: nothing falls between.
        let live = self.runtime.logs().subscribe();
        let backlog = self.runtime.logs().read(&q, MAX_READ);
        let last = backlog.last().map_or(after, |r| r.seq);
        let event = |r: &LogRecord| {
            let data = serde_json::to_string(r).unwrap_or_default();
            Ok(SseEvent::default().event("line").id(r.seq.to_string()).data(data))
        };
        let first: Vec<_> = backlog.iter().map(event).collect();
        let rest = futures_util::stream::unfold((live, q, last), move |(mut live, q, last)| async move {
            loop {
                match live.recv().await {
                    Ok(r) if r.seq > last && q.matches(&r) => {
                        let seq = r.seq;
                        return Some((event(&r), (live, q, seq)));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let stream = futures_util::StreamExt::chain(futures_util::stream::iter(first), rest);
        Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
    }

    pub(crate) fn function_stats(&self, project: &str) -> Result<Vec<FunctionStats>, ApiError> {
        let project = ProjectName::parse(project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(self.runtime.stats().into_iter().filter(|s| s.project == project.as_str()).collect())
    }
}

/// One schedule as `helix crons` shows it.
#[derive(serde::Serialize)]
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
        let production = self.store.production_manifests().await?;
        let Some((_, deployment, digest)) = production.into_iter().find(|(p, _, _)| *p == project) else {
            return Ok(Vec::new());
        };
        let manifest = helix_core::manifest::Manifest::from_json(&self.blobs.get(digest).await?)
            .map_err(|e| ApiError::Internal(format!("reading the production manifest: {e}")))?;
        let runs = self.store.cron_runs(&project, 500).await?;
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
}
