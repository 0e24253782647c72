//! Organisations' policy modules.

use crate::Policies;
use crate::pool::WritePool;
use crate::{NewAudit, Pool, StoreError};

/// An organisation's stored module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRow {
    pub source: String,
    pub version: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

impl Policies<'_> {
    pub async fn policy_version(&self, org_id: &str) -> Result<Option<i64>, StoreError> {
        let v = on_pool!(self, p => sqlx::query_scalar("SELECT version FROM policies WHERE org_id = $1")
            .bind(org_id).fetch_optional(p).await?);
        Ok(v)
    }

    pub async fn policy(&self, org_id: &str) -> Result<Option<PolicyRow>, StoreError> {
        let row: Option<(String, i64, i64, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT source, version, updated_at_ms, updated_by FROM policies WHERE org_id = $1")
            .bind(org_id).fetch_optional(p).await?);
        Ok(row.map(|(source, version, updated_at_ms, updated_by)| PolicyRow {
            source,
            version,
            updated_at_ms,
            updated_by,
        }))
    }

    /// Replaces the module (`None`: removes it) with its audit entry; the
    /// new version, if one is set.
    pub async fn set_policy(
        &self,
        org_id: &str,
        source: Option<&str>,
        by: &str,
        audit: &NewAudit<'_>,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let version = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let version = match source {
                Some(source) => {
                    let v: i64 = sqlx::query_scalar(
                        "INSERT INTO policies (org_id, source, version, updated_at_ms, updated_by) VALUES ($1, $2, 1, $3, $4) \
                         ON CONFLICT (org_id) DO UPDATE SET source = $2, version = policies.version + 1, \
                         updated_at_ms = $3, updated_by = $4 RETURNING version")
                        .bind(org_id).bind(source).bind(now_ms).bind(by).fetch_one(&mut *tx).await?;
                    Some(v)
                }
                None => {
                    sqlx::query("DELETE FROM policies WHERE org_id = $1").bind(org_id).execute(&mut *tx).await?;
                    None
                }
            };
            insert_audit!(tx, audit);
            tx.commit().await?;
            version
        });
        Ok(version)
    }
}
