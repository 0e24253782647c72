//! The edge's [`Invoker`] over the runtime plane, and the environment a
//! function sees: the variables each platform sets for its functions
//! (`VERCEL_*`, Netlify's `CONTEXT`/`URL`, `CF_PAGES*`) and HelixStack's.

use futures_util::future::BoxFuture;
use helix_edge::{FunctionBody, FunctionCall, FunctionResponseBody, Invoker};
use helix_runtime::{Call, Runtime};
use http::{Request, Response};

pub(crate) struct RuntimeInvoker {
    pub runtime: Runtime,
    pub base_domain: String,
}

impl Invoker for RuntimeInvoker {
    fn invoke(
        &self,
        call: FunctionCall,
        req: Request<FunctionBody>,
    ) -> BoxFuture<'static, Response<FunctionResponseBody>> {
        let env = environment(&call, &self.base_domain);
        let call = Call {
            deployment: call.deployment,
            project: call.project.to_string(),
            function: call.function,
            sources: call.sources,
            request_id: call.request_id,
            url: call.url,
            params: call.params,
            env,
        };
        let runtime = self.runtime.clone();
        Box::pin(async move { runtime.invoke(call, req).await })
    }
}

/// The platform variables functions commonly read, then the project's.
fn environment(call: &FunctionCall, base_domain: &str) -> Vec<(String, String)> {
    let origin = call.url.split_once("://").map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
    let host = origin.split(':').next().unwrap_or(origin);
    let production = host == format!("{}.{base_domain}", call.project);
    let url = format!("http://{origin}");
    let (vercel_env, context) = if production { ("production", "production") } else { ("preview", "deploy-preview") };
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
    .chain(call.env.iter().filter(|(k, _)| !k.starts_with("HELIX_")).cloned())
    .collect()
}
