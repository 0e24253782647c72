//! Cron runs: the lease a server takes to fire a schedule for one minute,
//! and what came of it.

use helix_core::{DeploymentId, Digest, ProjectName};

use crate::Crons;
use crate::{Pool, StoreError, parse_digest, parse_id, parse_project};

/// One firing of a schedule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CronRun {
    pub name: String,
    /// The minute it fired for, Unix ms.
    pub slot_ms: i64,
    pub deployment: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `running`, `ok` or `error`.
    pub status: String,
    pub detail: String,
}

impl Crons<'_> {
    /// Every project's production deployment and its manifest.
    pub async fn production_manifests(&self) -> Result<Vec<(ProjectName, DeploymentId, Digest)>, StoreError> {
        let rows: Vec<(String, String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT p.name, d.id, d.manifest_digest FROM projects p JOIN deployments d ON d.id = p.production_deployment_id \
             WHERE d.state = 'ready' ORDER BY p.name").fetch_all(p).await?);
        rows.into_iter().map(|(p, d, m)| Ok((parse_project(&p)?, parse_id(&d)?, parse_digest(&m)?))).collect()
    }

    /// Takes the lease for `name` at `slot_ms`: true for the one caller
    /// whose row landed, false for every other.
    pub async fn claim_cron_run(
        &self,
        project: &ProjectName,
        name: &str,
        slot_ms: i64,
        deployment: &DeploymentId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, p => sqlx::query(
            "INSERT INTO cron_runs (project, name, slot_ms, deployment_id, started_at_ms, status) \
             VALUES ($1, $2, $3, $4, $5, 'running') ON CONFLICT (project, name, slot_ms) DO NOTHING")
            .bind(project.as_str()).bind(name).bind(slot_ms).bind(deployment.as_str()).bind(now_ms)
            .execute(p).await?.rows_affected());
        Ok(done == 1)
    }

    pub async fn finish_cron_run(
        &self,
        project: &ProjectName,
        name: &str,
        slot_ms: i64,
        ok: bool,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let status = if ok { "ok" } else { "error" };
        on_pool!(self, p => sqlx::query(
            "UPDATE cron_runs SET status = $1, detail = $2, finished_at_ms = $3 WHERE project = $4 AND name = $5 AND slot_ms = $6")
            .bind(status).bind(detail).bind(now_ms).bind(project.as_str()).bind(name).bind(slot_ms)
            .execute(p).await.map(drop)?);
        Ok(())
    }

    /// A project's latest runs, newest first.
    pub async fn cron_runs(&self, project: &ProjectName, limit: i64) -> Result<Vec<CronRun>, StoreError> {
        type Row = (String, i64, String, i64, Option<i64>, String, String);
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT name, slot_ms, deployment_id, started_at_ms, finished_at_ms, status, detail FROM cron_runs \
             WHERE project = $1 ORDER BY slot_ms DESC, name LIMIT $2")
            .bind(project.as_str()).bind(limit).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|(name, slot_ms, deployment, started_at_ms, finished_at_ms, status, detail)| CronRun {
                name,
                slot_ms,
                deployment,
                started_at_ms,
                finished_at_ms,
                status,
                detail,
            })
            .collect())
    }
}
