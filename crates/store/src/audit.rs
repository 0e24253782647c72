//! The audit log: entries appended inside the transaction of the change
//! they record (or alone, for denials and reads), read back by
//! organisation, and walked whole for verification.

use helix_core::audit::AuditEntry;

use crate::Audit;
use crate::pool::WritePool;
use crate::{Pool, StoreError};

/// An entry being appended; its number and links are the store's.
#[derive(Clone, Debug)]
pub struct NewAudit<'a> {
    pub org: &'a str,
    pub actor: &'a str,
    pub token: Option<&'a str>,
    pub action: &'a str,
    pub project: Option<&'a str>,
    pub target: Option<&'a str>,
    pub outcome: &'a str,
    pub detail: serde_json::Value,
    pub request_id: Option<&'a str>,
    pub at_ms: i64,
}

impl NewAudit<'_> {
    /// The entry as stored, once numbered and linked.
    pub(crate) fn entry(&self, seq: i64, prev_hash: String) -> AuditEntry {
        let mut e = AuditEntry {
            seq: seq as u64,
            at_ms: self.at_ms,
            org: self.org.to_owned(),
            actor: self.actor.to_owned(),
            token: self.token.map(str::to_owned),
            action: self.action.to_owned(),
            project: self.project.map(str::to_owned),
            target: self.target.map(str::to_owned),
            outcome: self.outcome.to_owned(),
            detail: self.detail.clone(),
            request_id: self.request_id.map(str::to_owned),
            prev_hash,
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }
}

type AuditTuple = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    String,
);

const AUDIT_COLUMNS: &str =
    "seq, at_ms, org, actor, token_id, action, project, target, outcome, detail, request_id, prev_hash, hash";

fn from_tuple(t: AuditTuple) -> Result<AuditEntry, StoreError> {
    let (seq, at_ms, org, actor, token, action, project, target, outcome, detail, request_id, prev_hash, hash) = t;
    Ok(AuditEntry {
        seq: seq as u64,
        at_ms,
        org,
        actor,
        token,
        action,
        project,
        target,
        outcome,
        detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt(format!("audit entry {seq}: {e}")))?,
        request_id,
        prev_hash,
        hash,
    })
}

impl Audit<'_> {
    /// Appends an entry in a transaction of its own (a denial, a read).
    pub async fn append_audit(&self, new: &NewAudit<'_>) -> Result<u64, StoreError> {
        let seq = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let seq = insert_audit!(tx, new);
            tx.commit().await?;
            seq
        });
        Ok(seq)
    }

    /// Entries after `after`, oldest first: the organisation's (`None`:
    /// every one), optionally only one project's.
    pub async fn audit_entries(
        &self,
        org: Option<&str>,
        project: Option<&str>,
        after: u64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditTuple> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 AND ($2 IS NULL OR org = $2) \
             AND ($3 IS NULL OR project = $3) ORDER BY seq LIMIT $4")))
            .bind(after as i64).bind(org).bind(project).bind(limit).fetch_all(p).await?);
        rows.into_iter().map(from_tuple).collect()
    }

    /// The whole log in stored order (by number), and the head: the number
    /// and hash of the last entry written.
    pub async fn audit_chain(&self) -> Result<(Vec<AuditEntry>, u64, String), StoreError> {
        let (rows, head): (Vec<AuditTuple>, (i64, String)) = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq")))
                .fetch_all(&mut *tx).await?;
            let head = sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?;
            tx.commit().await?;
            (rows, head)
        });
        let entries = rows.into_iter().map(from_tuple).collect::<Result<_, _>>()?;
        Ok((entries, head.0 as u64, head.1))
    }
}
