//! Firing schedules (DESIGN.md §6 "Cron jobs"): each minute, every
//! production deployment's `crons` that match it run once per cluster —
//! the server whose lease row lands (`cron_runs`) fires, the others see
//! the key taken. Vercel's schedules request their path through the edge
//! as Vercel's cron does (GET, `vercel-cron/1.0`); Netlify's scheduled
//! functions are invoked directly (they answer no URL) with
//! `{"next_run": …}`. Each run's status and duration is stored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_artifacts::BlobStore;
use helix_core::cron::{Dialect, Schedule};
use helix_core::functions::Cron;
use helix_core::manifest::Manifest;
use helix_core::{DeploymentId, Digest, ProjectName};
use helix_edge::{FunctionCall, Invoker};
use helix_store::Store;
use http_body_util::BodyExt;

/// How often the clock is looked at.
const TICK: Duration = Duration::from_secs(2);
/// Longest a path cron's request may take.
pub(crate) const REQUEST_LIMIT: Duration = Duration::from_secs(300);

pub(crate) struct Crons {
    pub store: Arc<Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub invoker: Arc<dyn Invoker>,
    pub edge_addr: SocketAddr,
    pub base_domain: String,
    /// Requests path schedules through the edge.
    pub client: reqwest::Client,
}

impl Crons {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let me = Arc::new(self);
        tokio::spawn(async move {
            let mut manifests: HashMap<Digest, Arc<Manifest>> = HashMap::new();
            let mut done_slot = now_ms().div_euclid(60_000) * 60_000;
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let slot = now_ms().div_euclid(60_000) * 60_000;
                if slot <= done_slot {
                    continue;
                }
                done_slot = slot;
                if let Err(e) = me.clone().minute(slot, &mut manifests).await {
                    tracing::warn!("crons: {e:#}");
                }
            }
        })
    }

    /// Fires what is due in the minute starting at `slot`.
    async fn minute(self: Arc<Self>, slot: i64, manifests: &mut HashMap<Digest, Arc<Manifest>>) -> anyhow::Result<()> {
        let production = self.store.crons().production_manifests().await?;
        manifests.retain(|d, _| production.iter().any(|(_, _, m)| m == d));
        for (project, deployment, digest) in production {
            let manifest = match manifests.get(&digest) {
                Some(m) => m.clone(),
                None => {
                    let m = Arc::new(Manifest::from_json(&self.blobs.get(digest).await?)?);
                    manifests.insert(digest, m.clone());
                    m
                }
            };
            for cron in &manifest.crons {
                let dialect = if cron.function.is_some() { Dialect::Netlify } else { Dialect::Vercel };
                let Ok(schedule) = Schedule::parse(&cron.schedule, dialect) else { continue };
                if !schedule.matches(slot) {
                    continue;
                }
                if !self.store.crons().claim_cron_run(&project, cron.name(), slot, &deployment, now_ms()).await? {
                    continue;
                }
                let me = self.clone();
                let (project, deployment, manifest, cron) =
                    (project.clone(), deployment.clone(), manifest.clone(), cron.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let (ok, what) = me.fire(&project, &deployment, &manifest, &cron, &schedule, slot).await;
                    let detail = format!("{what} in {} ms", started.elapsed().as_millis());
                    if let Err(e) =
                        me.store.crons().finish_cron_run(&project, cron.name(), slot, ok, &detail, now_ms()).await
                    {
                        tracing::warn!("crons: recording {}: {e}", cron.name());
                    }
                });
            }
        }
        Ok(())
    }

    async fn fire(
        &self,
        project: &ProjectName,
        deployment: &DeploymentId,
        manifest: &Manifest,
        cron: &Cron,
        schedule: &Schedule,
        slot: i64,
    ) -> (bool, String) {
        let host = format!("{project}.{}", self.base_domain);
        if let Some(path) = &cron.path {
            return match self
                .client
                .get(format!("http://{}{path}", self.edge_addr))
                .header("host", &host)
                .header("user-agent", "vercel-cron/1.0")
                .send()
                .await
            {
                Ok(r) => (r.status().is_success(), format!("GET {path} → {}", r.status().as_u16())),
                Err(e) => (false, format!("GET {path}: {e}")),
            };
        }
        let Some(name) = &cron.function else { return (false, "nothing to run".into()) };
        let Some(function) = manifest.functions.iter().find(|f| &f.name == name) else {
            return (false, format!("no function {name}"));
        };
        let next = schedule.next_after(slot).map(helix_core::cron::rfc3339).unwrap_or_default();
        let body = serde_json::json!({ "next_run": next }).to_string();
        let call = FunctionCall {
            deployment: deployment.clone(),
            project: project.clone(),
            function: Arc::new(function.clone()),
            sources: Arc::new(manifest.function_sources.clone()),
            request_id: format!("cron-{name}-{slot}"),
            url: format!("http://{host}/.netlify/functions/{name}"),
            params: Vec::new(),
            env: Arc::new(manifest.function_env.clone().into_iter().collect()),
        };
        let req = http::Request::post("/")
            .header(http::header::HOST, &host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)).map_err(Into::into).boxed_unsync())
            .expect("valid request");
        let resp = self.invoker.invoke(call, req).await;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        (status.is_success(), format!("{name} → {}", status.as_u16()))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
