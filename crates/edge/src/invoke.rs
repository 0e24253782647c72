//! Phase `respond` for functions: the edge hands the request, streaming,
//! to the runtime plane through [`Invoker`] (set by whoever composes the
//! server); it never knows how functions run.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::Either;
use http_body_util::combinators::UnsyncBoxBody;

use helix_core::functions::{Function, Shape};
use helix_core::{DeploymentId, Digest, ProjectName};

use crate::Edge;
use crate::request::{EdgeBody, RequestCtx, apply_rule_headers, empty_request_body, host_of, redirect, text};
use crate::route::{Outcome, RequestFacts};
use crate::sites::Site;

/// A request body on its way to a function.
pub type FunctionBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
/// A function's response body.
pub type FunctionResponseBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// What the runtime plane needs to run one request.
pub struct FunctionCall {
    pub deployment: DeploymentId,
    pub project: ProjectName,
    pub function: Arc<Function>,
    pub sources: Arc<BTreeMap<String, Digest>>,
    pub request_id: String,
    /// The URL as the visitor asked for it.
    pub url: String,
    pub params: Vec<(String, String)>,
    /// The deployment's configured variables.
    pub env: Arc<Vec<(String, String)>>,
}

/// Runs functions. It always answers: a function that could not run gets
/// a 5xx saying so.
pub trait Invoker: Send + Sync + 'static {
    fn invoke(
        &self,
        call: FunctionCall,
        req: Request<FunctionBody>,
    ) -> BoxFuture<'static, Response<FunctionResponseBody>>;
}

/// A Pages app's answer that passes the request on to the static assets
/// (the end of its `next()` chain); the headers it set stay.
pub(crate) const FALLTHROUGH: &str = "x-helix-fallthrough";
/// With [`FALLTHROUGH`] from a Netlify edge function: the path (and
/// query) to go on with.
const REWRITE: &str = "x-helix-rewrite";

/// The function the route phase chose, owned (the request outlives the
/// route phase's borrows).
pub(crate) struct Target {
    pub function: Arc<Function>,
    pub params: Vec<(String, String)>,
    pub rewritten: Option<String>,
    pub sources: Arc<BTreeMap<String, Digest>>,
    pub env: Arc<Vec<(String, String)>>,
}

impl Edge {
    /// Sets the runtime plane (once; later calls are ignored).
    pub fn set_invoker(&self, invoker: Arc<dyn Invoker>) {
        let _ = self.invoker.set(invoker);
    }

    /// Runs the chosen function. A Pages app or an edge function may pass
    /// the request on (their `next()`): it is routed again without them,
    /// and the headers they set are kept.
    pub(crate) async fn respond_chosen<B>(
        &self,
        ctx: &mut RequestCtx,
        req: Request<B>,
        site: &Site,
        target: Target,
        host: &str,
        path: String,
    ) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let shape = target.function.shape;
        if !matches!(shape, Shape::Pages | Shape::NetlifyEdge) {
            return self.respond_function(ctx, req, target, host).await;
        }
        let mut head = Request::new(empty_request_body());
        *head.method_mut() = req.method().clone();
        *head.uri_mut() = req.uri().clone();
        *head.headers_mut() = req.headers().clone();
        let resp = self.respond_function(ctx, req, target, host).await;
        if !resp.headers().contains_key(FALLTHROUGH) {
            return resp;
        }
        let rewrite = resp.headers().get(REWRITE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (path, query) = match &rewrite {
            Some(r) => match r.split_once('?') {
                Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                None => (r.clone(), None),
            },
            None => (path, head.uri().query().map(str::to_owned)),
        };
        let mut out = self.pass_on(ctx, head, site, shape, host, &path, query.as_deref()).await;
        // The app answered with what it got from its `next()` (which it
        // may have changed the headers of): its headers win, but the
        // body's representation and framing are the edge's (it may send
        // another encoding than the app was shown).
        let mut replaced = http::HeaderMap::new();
        for (name, value) in resp.headers() {
            let ours = matches!(name.as_str(), FALLTHROUGH | REWRITE);
            let representation = helix_core::routes::forbidden_response_header(name.as_str())
                || matches!(name.as_str(), "content-encoding" | "content-range" | "accept-ranges" | "etag" | "vary");
            if !ours && !representation {
                replaced.append(name.clone(), value.clone());
            }
        }
        for name in replaced.keys() {
            out.headers_mut().remove(name);
        }
        out.headers_mut().extend(replaced);
        out
    }

    /// What the rest of the deployment answers a request a Pages app or
    /// a Netlify edge function passed on: routed again after them (an
    /// edge function's request may still reach a serverless function; a
    /// Pages app's only the assets).
    #[allow(clippy::too_many_arguments)]
    async fn pass_on<B>(
        &self,
        ctx: &mut RequestCtx,
        req: Request<B>,
        site: &Site,
        shape: Shape,
        host: &str,
        path: &str,
        query: Option<&str>,
    ) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let router = &site.router;
        let facts = RequestFacts {
            path,
            method: req.method().as_str(),
            headers: Some(req.headers()),
            query,
            host,
            country: None,
            jwt_secret: None,
            language: None,
            functions: shape == Shape::NetlifyEdge,
            after_edge: true,
        };
        let outcome = router.route(&site.files, &facts, &mut ctx.notes);
        let decoration = (router.has_header_rules() && matches!(outcome, Outcome::File { .. }))
            .then(|| router.headers_for(host, path, &mut ctx.notes));
        drop(facts);
        let mut out = match outcome {
            Outcome::File { file, status, .. } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                self.respond_static(ctx, file, &req, status).await
            }
            Outcome::Redirect { status, location } => redirect(status, &location),
            Outcome::Proxy { url, headers } => return self.proxy.forward(ctx, req, &url, host, headers).await,
            Outcome::Function(chosen) => {
                let target = Target {
                    function: chosen.function.clone(),
                    params: chosen.params,
                    rewritten: chosen.rewritten,
                    sources: site.function_sources.clone(),
                    env: site.function_env.clone(),
                };
                self.respond_function(ctx, req, target, host).await
            }
            Outcome::MethodNotAllowed => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            Outcome::NotFound => text(StatusCode::NOT_FOUND, "404 not found\n"),
        };
        if let Some(rules) = decoration {
            apply_rule_headers(out.headers_mut(), rules);
        }
        if shape == Shape::Pages && out.status() == StatusCode::NOT_FOUND {
            out.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        out
    }

    /// A function's own request for the rest of its deployment, from the
    /// runtime plane: Pages' `next()` and `env.ASSETS.fetch()`, a Netlify
    /// edge function's `context.next()`. It reaches only the deployment
    /// the function belongs to (the request's host only picks header
    /// rules) and never a function of its own kind, so it cannot recurse.
    pub async fn serve_passed_on<B>(
        &self,
        deployment: &DeploymentId,
        shape: Shape,
        req: Request<B>,
    ) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if !matches!(shape, Shape::Pages | Shape::NetlifyEdge) {
            return text(StatusCode::FORBIDDEN, "only Pages functions and edge functions pass requests on\n");
        }
        let Some(site_ref) = self.hosts.deployment(deployment) else {
            return text(StatusCode::NOT_FOUND, "this deployment is not served here\n");
        };
        let mut ctx = RequestCtx::new(self.request_ids.next());
        ctx.site = Some(site_ref.clone());
        let site = match self.sites.get(&site_ref).await {
            Ok(site) => site,
            Err(_) => return text(StatusCode::BAD_GATEWAY, "this deployment cannot be loaded right now\n"),
        };
        let Some(path) = crate::request::decode_path(req.uri().path()).map(Cow::into_owned) else {
            return text(StatusCode::BAD_REQUEST, "malformed path: not valid percent-encoded UTF-8\n");
        };
        let host = host_of(&req).map(str::to_ascii_lowercase).unwrap_or_default();
        let query = req.uri().query().map(str::to_owned);
        self.pass_on(&mut ctx, req, &site, shape, &host, &path, query.as_deref()).await
    }

    async fn respond_function<B>(
        &self,
        ctx: &mut RequestCtx,
        req: Request<B>,
        target: Target,
        host: &str,
    ) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(invoker) = self.invoker.get() else {
            return text(StatusCode::NOT_IMPLEMENTED, "this server does not run functions\n");
        };
        let Some(site) = ctx.site.clone() else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "no deployment\n");
        };
        let Target { function, params, rewritten, sources, env } = target;
        let path_and_query = match &rewritten {
            Some(p) => p.as_str(),
            None => req.uri().path_and_query().map_or("/", |p| p.as_str()),
        };
        let call = FunctionCall {
            deployment: site.deployment.clone(),
            project: site.project.clone(),
            function: function.clone(),
            sources,
            request_id: ctx.id.to_str().unwrap_or_default().to_owned(),
            url: format!("http://{host}{path_and_query}"),
            params,
            env,
        };
        let (mut parts, body) = req.into_parts();
        let host_value = HeaderValue::from_str(host).ok();
        crate::proxy::strip_hop_by_hop(&mut parts.headers);
        if let Some(h) = host_value {
            parts.headers.insert(http::header::HOST, h);
        }
        // The harness reads these from the edge only.
        let forged: Vec<_> = parts.headers.keys().filter(|k| k.as_str().starts_with("x-helix-")).cloned().collect();
        for name in forged {
            parts.headers.remove(name);
        }
        let req = Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());
        let resp = invoker.invoke(call, req).await;
        let (mut parts, body) = resp.into_parts();
        crate::proxy::strip_hop_by_hop(&mut parts.headers);
        if !matches!(function.shape, Shape::Pages | Shape::NetlifyEdge) {
            parts.headers.remove(FALLTHROUGH);
            parts.headers.remove(REWRITE);
        }
        Response::from_parts(parts, Either::Right(body))
    }
}
