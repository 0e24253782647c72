//! Outgoing webhooks and their deliveries.

use helix_core::events::Envelope;

use crate::Webhooks;
use crate::pool::WritePool;
use crate::{NewAudit, Pool, StoreError};

/// A project's webhook (its secret sealed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    pub project: String,
    pub url: String,
    pub secret_sealed: String,
    /// Event types, or `*`.
    pub events: Vec<String>,
    pub created_at_ms: i64,
}

/// One delivery of one event to one webhook.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook: String,
    pub seq: i64,
    pub event: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    pub attempts: i64,
    pub next_at_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// A delivery due now, with what sending it takes.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub id: String,
    pub url: String,
    pub secret_sealed: String,
    pub project: String,
    pub event: String,
    pub payload: String,
    pub attempts: i64,
}

/// What came of an attempt.
pub enum Attempt<'a> {
    Delivered { status: i64 },
    Retry { status: Option<i64>, error: &'a str, next_at_ms: i64 },
    GiveUp { status: Option<i64>, error: &'a str },
}

type HookTuple = (String, String, String, String, String, i64);
type DeliveryTuple = (String, String, i64, String, String, i64, i64, Option<i64>, Option<String>, Option<i64>, i64);

fn hook(t: HookTuple) -> WebhookRow {
    let (id, project, url, secret_sealed, events, created_at_ms) = t;
    WebhookRow {
        id,
        project,
        url,
        secret_sealed,
        events: events.split(',').map(str::to_owned).collect(),
        created_at_ms,
    }
}

const HOOK_COLUMNS: &str = "w.id, p.name, w.url, w.secret_sealed, w.events, w.created_at_ms";

impl Webhooks<'_> {
    pub async fn create_webhook(
        &self,
        project_id: &str,
        url: &str,
        secret_sealed: &str,
        events: &[String],
        audit: &NewAudit<'_>,
    ) -> Result<String, StoreError> {
        let id = self.new_row_id();
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO project_webhooks (id, project_id, url, secret_sealed, events, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&id).bind(project_id).bind(url).bind(secret_sealed).bind(events.join(",")).bind(audit.at_ms)
                .execute(&mut *tx).await?;
            let audit = NewAudit { target: Some(&id), ..audit.clone() };
            insert_audit!(tx, audit);
            tx.commit().await?;
        });
        Ok(id)
    }

    pub async fn webhooks(&self, project_id: &str) -> Result<Vec<WebhookRow>, StoreError> {
        let rows: Vec<HookTuple> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {HOOK_COLUMNS} FROM project_webhooks w JOIN projects p ON p.id = w.project_id \
             WHERE w.project_id = $1 ORDER BY w.created_at_ms, w.id")))
            .bind(project_id).fetch_all(p).await?);
        Ok(rows.into_iter().map(hook).collect())
    }

    /// Removes a webhook of the project; false when it has none by that id.
    pub async fn delete_webhook(&self, project_id: &str, id: &str, audit: &NewAudit<'_>) -> Result<bool, StoreError> {
        let n = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("DELETE FROM project_webhooks WHERE id = $1 AND project_id = $2")
                .bind(id).bind(project_id).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                sqlx::query("DELETE FROM outgoing_deliveries WHERE webhook_id = $1 AND state = 'pending'")
                    .bind(id).execute(&mut *tx).await?;
                insert_audit!(tx, audit);
            }
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Queues a delivery of `envelope` to each webhook of its project that
    /// wants its type; a repeat (the relay republishing) queues nothing.
    pub async fn enqueue_deliveries(&self, envelope: &Envelope, now_ms: i64) -> Result<u64, StoreError> {
        let Some(project) = envelope.event.project() else { return Ok(0) };
        let topic = envelope.event.topic();
        let hooks: Vec<(String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT w.id, w.events FROM project_webhooks w JOIN projects p ON p.id = w.project_id WHERE p.name = $1")
            .bind(project.as_str()).fetch_all(p).await?);
        let payload = envelope.to_webhook_json().to_string();
        let mut queued = 0;
        for (webhook, events) in hooks {
            if !events.split(',').any(|e| e == "*" || e == topic) {
                continue;
            }
            let id = self.new_row_id();
            queued += on_pool!(self, p => sqlx::query(
                "INSERT INTO outgoing_deliveries (id, webhook_id, seq, event_type, payload, state, next_at_ms, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) ON CONFLICT (webhook_id, seq) DO NOTHING")
                .bind(&id).bind(&webhook).bind(envelope.seq as i64).bind(topic).bind(&payload).bind(now_ms)
                .execute(p).await?.rows_affected());
        }
        Ok(queued)
    }

    /// Pending deliveries due at `now_ms`, oldest first.
    pub async fn due_deliveries(&self, now_ms: i64, limit: i64) -> Result<Vec<DueDelivery>, StoreError> {
        let rows: Vec<(String, String, String, String, String, String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT d.id, w.url, w.secret_sealed, p.name, d.event_type, d.payload, d.attempts FROM outgoing_deliveries d \
             JOIN project_webhooks w ON w.id = d.webhook_id JOIN projects p ON p.id = w.project_id \
             WHERE d.state = 'pending' AND d.next_at_ms <= $1 ORDER BY d.next_at_ms, d.seq LIMIT $2")
            .bind(now_ms).bind(limit).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|(id, url, secret_sealed, project, event, payload, attempts)| DueDelivery {
                id,
                url,
                secret_sealed,
                project,
                event,
                payload,
                attempts,
            })
            .collect())
    }

    pub async fn record_attempt(&self, id: &str, attempt: Attempt<'_>, now_ms: i64) -> Result<(), StoreError> {
        let (state, status, error, next_at, delivered) = match attempt {
            Attempt::Delivered { status } => ("delivered", Some(status), None, now_ms, Some(now_ms)),
            Attempt::Retry { status, error, next_at_ms } => ("pending", status, Some(error), next_at_ms, None),
            Attempt::GiveUp { status, error } => ("failed", status, Some(error), now_ms, None),
        };
        on_pool!(self, p => sqlx::query(
            "UPDATE outgoing_deliveries SET state = $1, attempts = attempts + 1, last_status = $2, last_error = $3, \
             next_at_ms = $4, delivered_at_ms = $5 WHERE id = $6")
            .bind(state).bind(status).bind(error).bind(next_at).bind(delivered).bind(id)
            .execute(p).await.map(drop)?);
        Ok(())
    }

    /// The project's deliveries, newest first.
    pub async fn deliveries(&self, project_id: &str, limit: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        let rows: Vec<DeliveryTuple> = on_pool!(self, p => sqlx::query_as(
            "SELECT d.id, d.webhook_id, d.seq, d.event_type, d.state, d.attempts, d.next_at_ms, d.last_status, \
             d.last_error, d.delivered_at_ms, d.created_at_ms FROM outgoing_deliveries d \
             JOIN project_webhooks w ON w.id = d.webhook_id WHERE w.project_id = $1 \
             ORDER BY d.seq DESC, d.id DESC LIMIT $2")
            .bind(project_id).bind(limit).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    webhook,
                    seq,
                    event,
                    state,
                    attempts,
                    next_at_ms,
                    last_status,
                    last_error,
                    delivered_at_ms,
                    created_at_ms,
                )| {
                    DeliveryRow {
                        id,
                        webhook,
                        seq,
                        event,
                        state,
                        attempts,
                        next_at_ms,
                        last_status,
                        last_error,
                        delivered_at_ms,
                        created_at_ms,
                    }
                },
            )
            .collect())
    }
}
