//! The edge's [`Invoker`] over the runtime plane, and the environment a
//! function sees: the variables each platform sets for its functions
//! (`VERCEL_*`, Netlify's `CONTEXT`/`URL`, `CF_PAGES*`) and HelixStack's.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use helix_artifacts::BlobStore;
use helix_core::events::Event;
use helix_core::manifest::Manifest;
use helix_edge::{FunctionBody, FunctionCall, FunctionResponseBody, Invoker};
use helix_runtime::{Call, Runtime};
use http::{Request, Response};
use http_body_util::BodyExt;

pub(crate) struct RuntimeInvoker {
    pub runtime: Runtime,
    pub base_domain: Arc<str>,
}

impl RuntimeInvoker {
    /// The runtime's view of a call: the edge's, with the environment.
    fn call(&self, call: FunctionCall) -> Call {
        let (configured, base_domain) = (call.env, self.base_domain.clone());
        Call {
            deployment: call.deployment,
            project: call.project.to_string(),
            function: call.function,
            sources: call.sources,
            request_id: call.request_id,
            url: call.url,
            params: call.params,
            env: Arc::new(move |call| environment(call, &configured, &base_domain)),
        }
    }

    /// Follows the bus: when a project's production moves to another
    /// deployment, that deployment's functions get as many instances
    /// started as the previous production deployment's had alive (the
    /// traffic it had), before the first request.
    pub async fn prewarm_on_promote(self: Arc<Self>, mut events: helix_bus::Subscription, blobs: Arc<dyn BlobStore>) {
        while let Some(env) = events.next().await {
            let (Event::DeployPromoted { project, deployment, manifest }
            | Event::DeployRolledBack { project, deployment, manifest }) = env.event
            else {
                continue;
            };
            let mut alive: HashMap<String, usize> = HashMap::new();
            for s in self.runtime.stats() {
                if s.project == project.as_str() && s.deployment != deployment.as_str() && s.instances > 0 {
                    let n = alive.entry(s.function).or_default();
                    *n = (*n).max(s.instances);
                }
            }
            if alive.is_empty() {
                continue;
            }
            let Ok(bytes) = blobs.get(manifest).await else { continue };
            let Ok(m) = Manifest::from_json(&bytes) else { continue };
            let sources = Arc::new(m.function_sources.clone());
            let env = Arc::new(m.function_env.clone().into_iter().collect::<Vec<_>>());
            for f in m.functions {
                let Some(&count) = alive.get(&f.name) else { continue };
                let call = self.call(FunctionCall {
                    deployment: deployment.clone(),
                    project: project.clone(),
                    function: Arc::new(f),
                    sources: sources.clone(),
                    request_id: String::new(),
                    url: format!("http://{project}.{}/", self.base_domain),
                    params: Vec::new(),
                    env: env.clone(),
                });
                let runtime = self.runtime.clone();
                tokio::spawn(async move { runtime.prewarm(call, count).await });
            }
        }
    }
}

impl Invoker for RuntimeInvoker {
    fn invoke(
        &self,
        call: FunctionCall,
        req: Request<FunctionBody>,
    ) -> BoxFuture<'static, Response<FunctionResponseBody>> {
        let call = self.call(call);
        let runtime = self.runtime.clone();
        Box::pin(async move { runtime.invoke(call, req).await })
    }
}

/// A function instance's project variables come from the control plane
/// (held weakly: the control plane holds the runtime), for the
/// environment its deployment was made in: `production`, `development`
/// for Netlify's `dev` context, else `preview`; and its branch.
pub(crate) fn project_env(control: &Arc<helix_control::ControlPlane>) -> helix_runtime::ProjectEnv {
    let control = Arc::downgrade(control);
    Arc::new(move |call, env| {
        let control = control.clone();
        let last = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let (context, branch) = (last("CONTEXT"), last("BRANCH").unwrap_or_default());
        let project = call.project.clone();
        let reader = helix_control::Reader {
            kind: "function",
            name: format!("function {} of deployment {}", call.function.name, call.deployment),
            deployment: serde_json::json!({
                "id": call.deployment.as_str(), "branch": (!branch.is_empty()).then_some(&branch),
                "context": context, "production": context.as_deref() == Some("production"),
            }),
        };
        Box::pin(async move {
            let Some(control) = control.upgrade() else { return Ok(Vec::new()) };
            let environment = match context.as_deref() {
                Some("production") => "production",
                Some("dev") => "development",
                _ => "preview",
            };
            let vars = control.resolve_env(&project, environment, &branch, &reader).await?;
            Ok(vars.into_iter().map(|(name, value, _)| (name, value)).collect())
        })
    })
}

/// Functions' requests for the rest of their deployment go to the edge
/// (held weakly: the edge holds the runtime through its invoker).
pub(crate) fn pass_on(edge: &Arc<helix_edge::Edge>) -> helix_runtime::PassOn {
    let edge = Arc::downgrade(edge);
    Arc::new(move |deployment, shape, req| {
        let edge = edge.clone();
        Box::pin(async move {
            let Some(edge) = edge.upgrade() else {
                return Response::builder()
                    .status(http::StatusCode::SERVICE_UNAVAILABLE)
                    .body(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"the edge has stopped\n"))
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                    )
                    .expect("valid response");
            };
            let resp = edge.serve_passed_on(&deployment, shape, req).await;
            resp.map(|b| b.map_err(std::io::Error::other).boxed_unsync())
        })
    })
}

/// The platform variables functions commonly read, then the project's
/// (which carry the deployment's own `CONTEXT`, and so its `VERCEL_ENV`;
/// a deployment made before deployments recorded one gets both from the
/// host it is called on).
fn environment(call: &Call, configured: &[(String, String)], base_domain: &str) -> Vec<(String, String)> {
    let origin = call.url.split_once("://").map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
    let host = origin.split(':').next().unwrap_or(origin);
    let production = host == format!("{}.{base_domain}", call.project);
    let url = format!("http://{origin}");
    let (mut vercel_env, context) =
        if production { ("production", "production") } else { ("preview", "deploy-preview") };
    // A deployment's recorded context decides Vercel's too: a promoted
    // preview stays `preview`, as on Vercel.
    if let Some((_, recorded)) = configured.iter().find(|(k, _)| k == "CONTEXT") {
        vercel_env = if recorded == "production" { "production" } else { "preview" };
    }
    [
        ("NODE_ENV", "production".to_owned()),
        ("HELIX", "1".to_owned()),
        ("HELIX_PROJECT", call.project.to_string()),
        ("HELIX_DEPLOYMENT_ID", call.deployment.to_string()),
        ("HELIX_FUNCTION", call.function.name.clone()),
        ("HELIX_URL", url.clone()),
        ("VERCEL", "1".to_owned()),
        ("VERCEL_ENV", vercel_env.to_owned()),
        ("VERCEL_URL", origin.to_owned()),
        ("NETLIFY", "true".to_owned()),
        ("CONTEXT", context.to_owned()),
        ("URL", url.clone()),
        ("DEPLOY_URL", url.clone()),
        ("DEPLOY_ID", call.deployment.to_string()),
        ("SITE_NAME", call.project.to_string()),
        ("CF_PAGES", "1".to_owned()),
        ("CF_PAGES_URL", url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    // The project's own, except over HelixStack's.
    .chain(configured.iter().filter(|(k, _)| !k.starts_with("HELIX_")).cloned())
    .collect()
}

/// Stores every function log line the runtime writes, in batches (at most
/// every 200 ms), and forgets lines older than a week.
pub(crate) async fn store_logs(runtime: Runtime, store: Arc<helix_store::Store>) {
    use tokio::sync::broadcast::error::RecvError;
    const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;
    let mut live = runtime.logs().subscribe();
    let mut pruned = std::time::Instant::now();
    loop {
        let mut batch = match live.recv().await {
            Ok(r) => vec![r],
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("function logs: {n} lines were not stored (written faster than stored)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
        while batch.len() < 1000 {
            match tokio::time::timeout_at(until, live.recv()).await {
                Ok(Ok(r)) => batch.push(r),
                Ok(Err(RecvError::Lagged(n))) => tracing::warn!("function logs: {n} lines were not stored"),
                Ok(Err(RecvError::Closed)) | Err(_) => break,
            }
        }
        let stream = |s: helix_runtime::Stream| match s {
            helix_runtime::Stream::Stdout => "stdout",
            helix_runtime::Stream::Stderr => "stderr",
            helix_runtime::Stream::System => "system",
        };
        let rows: Vec<helix_store::NewFunctionLog<'_>> = batch
            .iter()
            .map(|r| helix_store::NewFunctionLog {
                project: &r.project,
                deployment: &r.deployment,
                function: &r.function,
                request_id: &r.request_id,
                stream: stream(r.stream),
                line: &r.line,
                at_ms: r.ts_ms,
            })
            .collect();
        if let Err(e) = store.function_logs().append_function_logs(&rows).await {
            tracing::warn!("function logs: storing {} lines: {e}", rows.len());
        }
        if pruned.elapsed() > std::time::Duration::from_secs(3600) {
            pruned = std::time::Instant::now();
            let now = batch.last().map_or(0, |r| r.ts_ms);
            let _ = store.function_logs().prune_function_logs(now - KEEP_MS).await;
        }
    }
}
