//! Reading the audit log (`helix audit`), following it live, and checking
//! its hash chain (`helix audit verify`). Entries are written by the
//! operations themselves, in the transaction of the change they record;
//! denials are written here, by the request layer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use helix_core::audit::{AuditEntry, ChainReport};
use helix_core::identity::Role;

use crate::ControlPlane;
use crate::access::{Ctx, Need};
use crate::problem::ApiError;

/// Reading the log takes an organisation admin.
pub(crate) const READ_AUDIT: Need = Need { role: Role::Admin, ..Need::READ };

/// How often a follower looks for new entries.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Most entries one read returns.
const MAX_READ: i64 = 5000;

impl ControlPlane {
    /// Entries after `after`, oldest first: the caller's organisation's
    /// (every one, for the server admin), optionally one project's.
    pub(crate) async fn audit_entries(
        &self,
        ctx: &Ctx,
        project: Option<&str>,
        after: u64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, ApiError> {
        ctx.check_org(READ_AUDIT, "read the audit log")?;
        let org = (!ctx.actor.token.server_admin).then_some(ctx.actor.token.org.as_str());
        Ok(self.store.audit().audit_entries(org, project, after, limit.clamp(1, MAX_READ)).await?)
    }

    /// New entries as server-sent `entry` events (id = number), forever.
    pub(crate) fn follow_audit(
        self: Arc<Self>,
        ctx: Arc<Ctx>,
        project: Option<String>,
        after: u64,
    ) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>> {
        let stream =
            futures_util::stream::unfold((self, ctx, project, after), |(cp, ctx, project, after)| async move {
                loop {
                    let entries = cp.audit_entries(&ctx, project.as_deref(), after, MAX_READ).await.ok()?;
                    if let Some(last) = entries.last() {
                        let next = last.seq;
                        let events: Vec<Result<SseEvent, Infallible>> = entries
                            .iter()
                            .map(|e| {
                                let data = serde_json::to_string(e).unwrap_or_default();
                                Ok(SseEvent::default().event("entry").id(e.seq.to_string()).data(data))
                            })
                            .collect();
                        return Some((futures_util::stream::iter(events), (cp, ctx, project, next)));
                    }
                    tokio::time::sleep(FOLLOW_POLL).await;
                }
            });
        Sse::new(futures_util::StreamExt::flatten(stream)).keep_alive(KeepAlive::default())
    }

    /// Walks the whole chain against its head.
    pub(crate) async fn verify_audit(&self, ctx: &Ctx) -> Result<ChainReport, ApiError> {
        ctx.check_org(READ_AUDIT, "verify the audit log")?;
        let (entries, head_seq, head_hash) = self.store.audit().audit_chain().await?;
        Ok(helix_core::audit::verify(&entries, head_seq, &head_hash))
    }

    /// `helix login`: who the token is, recorded.
    pub(crate) async fn login(&self, ctx: &Ctx) -> Result<helix_core::identity::WhoAmI, ApiError> {
        let who = self.whoami(ctx).await?;
        self.store
            .audit()
            .append_audit(&ctx.audit("login", serde_json::json!({ "token_name": who.token_name })))
            .await?;
        Ok(who)
    }

    /// Records a refused request (a 403), with what was asked.
    pub(crate) async fn audit_denial(&self, ctx: &Ctx, method: &str, path: &str, why: &str) {
        let detail = serde_json::json!({ "method": method, "path": path, "why": why });
        let entry = helix_store::NewAudit { outcome: "denied", ..ctx.audit("denied", detail) };
        if let Err(e) = self.store.audit().append_audit(&entry).await {
            tracing::warn!(error = %e, "recording a denial in the audit log failed");
        }
    }
}
