//! Rows as the store hands them out.

use helix_core::api::DeploymentState;
use helix_core::{DeploymentId, Digest, ProjectName};
use sqlx::{Decode, Row, Type};

use crate::StoreError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentRow {
    pub id: DeploymentId,
    pub project: ProjectName,
    pub state: DeploymentState,
    pub production_requested: bool,
    pub manifest_digest: Option<String>,
    pub file_count: i64,
    pub total_bytes: i64,
    pub created_at_ms: i64,
    pub ready_at_ms: Option<i64>,
    /// The routes report (JSON) of a ready deployment; empty otherwise.
    pub routes_json: String,
    pub is_production: bool,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    /// `api` or `git` (a build's).
    pub source: String,
    /// The deploy context it was made in (`production`, `deploy-preview`, …).
    pub context: Option<String>,
}

impl DeploymentRow {
    /// Project, id and manifest of a ready deployment.
    pub fn identity(&self) -> Result<(ProjectName, DeploymentId, Digest), StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("deployment {}: {what}", self.id));
        let manifest = self
            .manifest_digest
            .as_deref()
            .ok_or_else(|| corrupt("ready without a manifest"))?
            .parse()
            .map_err(|e: helix_core::digest::DigestError| corrupt(&e.to_string()))?;
        Ok((self.project.clone(), self.id.clone(), manifest))
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for DeploymentRow
where
    R: Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let state: String = row.try_get("state")?;
        let corrupt =
            |index: &str, source: String| sqlx::Error::ColumnDecode { index: index.into(), source: source.into() };
        let id: String = row.try_get("id")?;
        let project: String = row.try_get("project")?;
        Ok(DeploymentRow {
            id: DeploymentId::parse(&id).map_err(|e| corrupt("id", e.to_string()))?,
            project: ProjectName::parse(&project).map_err(|e| corrupt("project", e.to_string()))?,
            state: DeploymentState::parse(&state).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "state".into(),
                source: format!("unknown deployment state {state:?}").into(),
            })?,
            production_requested: row.try_get("production_requested")?,
            manifest_digest: row.try_get("manifest_digest")?,
            file_count: row.try_get("file_count")?,
            total_bytes: row.try_get("total_bytes")?,
            created_at_ms: row.try_get("created_at_ms")?,
            ready_at_ms: row.try_get("ready_at_ms")?,
            routes_json: row.try_get("routes_json")?,
            is_production: row.try_get("is_production")?,
            branch: row.try_get("branch")?,
            commit_sha: row.try_get("commit_sha")?,
            source: row.try_get("source")?,
            context: row.try_get("context")?,
        })
    }
}
