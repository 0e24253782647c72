//! Outgoing webhooks: a project's subscriptions to its events, and the
//! deliverer that POSTs each event's envelope to them — signed with HMAC
//! as the generic incoming hook is (`X-Helix-Timestamp`,
//! `X-Helix-Signature-256: sha256=HMAC(secret, "<timestamp>.<body>")`),
//! retried with exponential backoff, every attempt recorded. Each
//! delivery is sent in its own task, a few at a time per URL, so a slow
//! or dead endpoint delays only its own.
//!
//! The outbox relay queues one delivery per event and webhook before it
//! lets the event go, so a crash never loses one, and a republished event
//! is not queued twice. A webhook is the tenant's URL: it never reaches
//! this machine's or internal addresses unless the operator allows them.

use std::sync::Arc;
use std::time::Duration;

use helix_core::api::{CreateWebhook, Webhook};
use helix_store::{Attempt, DeliveryRow, NewAudit, WebhookRow};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::access::{Ctx, Need};
use crate::problem::ApiError;
use crate::{ControlPlane, now_ms};

/// How deliveries are made.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// The wait after the first failure; doubled after each one, at most an
    /// hour.
    pub retry_base: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: i64,
    /// Networks or hosts webhooks may reach although internal.
    pub allow: Vec<String>,
    pub timeout: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry_base: Duration::from_secs(5),
            max_attempts: 8,
            allow: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// At most this many webhooks per project.
const MAX_WEBHOOKS: usize = 20;

/// Deliveries being sent at once, in all and to one URL.
const IN_FLIGHT: usize = 32;
const PER_URL: usize = 4;

/// The deliveries being sent now (by id, and how many to each URL), and
/// those finished since the last look for due ones: a row read before
/// its attempt was recorded must not be sent again.
#[derive(Default)]
struct Sending(std::sync::Mutex<SendingState>);

#[derive(Default)]
struct SendingState {
    ids: std::collections::HashSet<String>,
    urls: std::collections::HashMap<String, usize>,
    finished: std::collections::HashSet<String>,
}

impl Sending {
    fn lock(&self) -> std::sync::MutexGuard<'_, SendingState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called before reading the due deliveries.
    fn looking(&self) {
        self.lock().finished.clear();
    }

    /// Whether delivery `id` to `url` may start now (and marks it).
    fn start(&self, id: &str, url: &str) -> bool {
        let mut s = self.lock();
        if s.ids.contains(id)
            || s.finished.contains(id)
            || s.ids.len() >= IN_FLIGHT
            || s.urls.get(url).copied().unwrap_or(0) >= PER_URL
        {
            return false;
        }
        s.ids.insert(id.to_owned());
        *s.urls.entry(url.to_owned()).or_default() += 1;
        true
    }

    fn done(&self, id: &str, url: &str) {
        let mut s = self.lock();
        s.ids.remove(id);
        s.finished.insert(id.to_owned());
        if let Some(n) = s.urls.get_mut(url) {
            *n -= 1;
            if *n == 0 {
                s.urls.remove(url);
            }
        }
    }
}

/// What the webhook's secret is sealed with.
fn secret_context(project: &str, url: &str) -> String {
    format!("webhook:{project}:{url}")
}

fn view(row: &WebhookRow) -> Webhook {
    Webhook {
        id: row.id.clone(),
        project: row.project.clone(),
        url: row.url.clone(),
        events: row.events.clone(),
        created_at_ms: row.created_at_ms,
        secret: None,
    }
}

/// The delay before attempt `attempts + 1`.
fn backoff(base: Duration, attempts: i64) -> Duration {
    let factor = 2u32.saturating_pow(attempts.clamp(0, 20) as u32);
    base.saturating_mul(factor).min(Duration::from_secs(3600))
}

/// `sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl ControlPlane {
    pub(crate) async fn create_webhook(&self, ctx: &Ctx, project: &str, body: &[u8]) -> Result<Webhook, ApiError> {
        let project = self.project_for(ctx, project, Need::MANAGE, "manage webhooks").await?;
        let req: CreateWebhook = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not a valid webhook: {e}")))?;
        let url = reqwest::Url::parse(&req.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.username().is_empty())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "webhook URL {:?} must be http:// or https:// with a host and no credentials",
                    req.url.chars().take(200).collect::<String>()
                ))
            })?;
        if url.as_str().len() > 2048 {
            return Err(ApiError::BadRequest("a webhook URL is at most 2,048 characters".into()));
        }
        let events = if req.events.is_empty() { vec!["*".to_owned()] } else { req.events.clone() };
        if let Some(bad) = events.iter().find(|e| {
            e.is_empty()
                || e.len() > 64
                || !e.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_' || b == b'*')
        }) {
            return Err(ApiError::BadRequest(format!("event type {bad:?} is not a type like deploy.ready, or *")));
        }
        let secret = match req.secret {
            Some(s) if s.len() < 16 || s.len() > 256 => {
                return Err(ApiError::BadRequest("a webhook secret is 16 to 256 characters".into()));
            }
            Some(s) => s,
            None => crate::auth::new_secret("whsec_").map_err(ApiError::Internal)?,
        };
        if self.store.webhooks().webhooks(&project.id).await?.len() >= MAX_WEBHOOKS {
            return Err(ApiError::Conflict(format!("a project has at most {MAX_WEBHOOKS} webhooks")));
        }
        let sealed = {
            let _not_rotating = self.rotation.read().await;
            self.secrets
                .seal(&secret_context(&project.name, url.as_str()), &secret)
                .map_err(|e| ApiError::Internal(e.to_string()))?
        };
        let detail = serde_json::json!({ "url": url.as_str(), "events": events });
        let audit = ctx.audit_on(&project, "webhook.create", detail);
        let id = self.store.webhooks().create_webhook(&project.id, url.as_str(), &sealed, &events, &audit).await?;
        let row = self.store.webhooks().webhooks(&project.id).await?.into_iter().find(|w| w.id == id);
        let row = row.ok_or_else(|| ApiError::Internal("webhook vanished".into()))?;
        Ok(Webhook { secret: Some(secret), ..view(&row) })
    }

    pub(crate) async fn list_webhooks(&self, ctx: &Ctx, project: &str) -> Result<Vec<Webhook>, ApiError> {
        let project = self.project_for(ctx, project, Need { write: false, ..Need::MANAGE }, "read webhooks").await?;
        Ok(self.store.webhooks().webhooks(&project.id).await?.iter().map(view).collect())
    }

    pub(crate) async fn delete_webhook(&self, ctx: &Ctx, project: &str, id: &str) -> Result<(), ApiError> {
        let project = self.project_for(ctx, project, Need::MANAGE, "manage webhooks").await?;
        let audit = NewAudit { target: Some(id), ..ctx.audit_on(&project, "webhook.delete", serde_json::json!({})) };
        if !self.store.webhooks().delete_webhook(&project.id, id, &audit).await? {
            return Err(ApiError::NotFound(format!("project {} has no webhook {id}", project.name)));
        }
        Ok(())
    }

    pub(crate) async fn webhook_deliveries(&self, ctx: &Ctx, project: &str) -> Result<Vec<DeliveryRow>, ApiError> {
        let project = self.project_for(ctx, project, Need { write: false, ..Need::MANAGE }, "read webhooks").await?;
        Ok(self.store.webhooks().deliveries(&project.id, 500).await?)
    }

    /// Runs the deliverer until the process ends.
    pub fn spawn_deliverer(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, String> {
        let guard = Arc::new(helix_http::guard::Guard::new(&self.delivery.allow, "--webhook-allow")?);
        let client = guard.client(self.delivery.timeout, "HelixStack-Webhook/1")?;
        let cp = self.clone();
        Ok(tokio::spawn(async move {
            let sending = Arc::new(Sending::default());
            loop {
                if let Err(e) = cp.deliver_due(&client, &guard, &sending).await {
                    tracing::warn!(error = %e, "webhook deliveries: will retry");
                }
                let _ = tokio::time::timeout(Duration::from_millis(500), cp.delivery_wake.notified()).await;
            }
        }))
    }

    /// Starts every delivery due now that is not being sent already, each
    /// in its own task: a slow endpoint holds up only its own deliveries
    /// (at most [`PER_URL`] at a time), never another's.
    async fn deliver_due(
        self: &Arc<Self>,
        client: &reqwest::Client,
        guard: &Arc<helix_http::guard::Guard>,
        sending: &Arc<Sending>,
    ) -> Result<(), ApiError> {
        sending.looking();
        for d in self.store.webhooks().due_deliveries(now_ms(), IN_FLIGHT as i64 * 2).await? {
            if !sending.start(&d.id, &d.url) {
                continue;
            }
            let (cp, client, guard, sending) = (self.clone(), client.clone(), guard.clone(), sending.clone());
            tokio::spawn(async move {
                let outcome = cp.send(&client, &guard, &d).await;
                let now = now_ms();
                let (status, error) = split(&outcome);
                let attempt = match outcome {
                    Ok(s) if (200..300).contains(&s) => Attempt::Delivered { status: s },
                    _ if d.attempts + 1 >= cp.delivery.max_attempts => Attempt::GiveUp { status, error: &error },
                    _ => {
                        let next_at_ms = now + backoff(cp.delivery.retry_base, d.attempts).as_millis() as i64;
                        Attempt::Retry { status, error: &error, next_at_ms }
                    }
                };
                if let Err(e) = cp.store.webhooks().record_attempt(&d.id, attempt, now).await {
                    tracing::warn!(error = %e, delivery = d.id, "recording a webhook delivery failed");
                }
                sending.done(&d.id, &d.url);
                // Whatever waited for a slot may go now.
                cp.delivery_wake.notify_one();
            });
        }
        Ok(())
    }

    /// One POST: its status, or why there was none.
    async fn send(
        &self,
        client: &reqwest::Client,
        guard: &helix_http::guard::Guard,
        d: &helix_store::DueDelivery,
    ) -> Result<i64, String> {
        let url = reqwest::Url::parse(&d.url).map_err(|e| e.to_string())?;
        guard.check_url(&url)?;
        let secret =
            self.secrets.open(&secret_context(&d.project, &d.url), &d.secret_sealed).map_err(|e| e.to_string())?;
        let ts = now_ms() / 1000;
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-helix-event", &d.event)
            .header("x-helix-delivery", &d.id)
            .header("x-helix-timestamp", ts.to_string())
            .header("x-helix-signature-256", signature(&secret, ts, d.payload.as_bytes()))
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| helix_http::guard::refusal_of(&e).unwrap_or_else(|| e.to_string()))?;
        Ok(i64::from(resp.status().as_u16()))
    }
}

/// A failed attempt's status (if the server answered) and error text.
fn split(outcome: &Result<i64, String>) -> (Option<i64>, String) {
    match outcome {
        Ok(status) => (Some(*status), format!("answered {status}")),
        Err(e) => (None, e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 0), Duration::from_secs(5));
        assert_eq!(backoff(base, 3), Duration::from_secs(40));
        assert_eq!(backoff(base, 30), Duration::from_secs(3600));
    }

    #[test]
    fn signatures_are_the_generic_hook_scheme() {
        let sig = signature("s3cret", 1700000000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(sig, format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
    }
}
