//! The request lifecycle (see `docs/edge-phases.md`): one context per
//! request, the phases in order in [`Edge::run`], and one exit,
//! [`Edge::finish`], which every response leaves through — static,
//! redirect, proxy or error — to get its request id and split cookie and
//! to hand its record to the request log (non-blocking: the request never
//! waits on a log write).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Empty, Full};

use helix_core::routes::Platform;

use crate::Edge;
use crate::hosts::{SiteRef, Target};
use crate::route::{Outcome, RequestFacts, RouteNotes, target};

pub type EdgeBody = Either<Full<Bytes>, UnsyncBoxBody<Bytes, std::io::Error>>;

const REQUEST_ID: &str = "x-request-id";
/// Pins a visitor to one variant of a split (for testing).
pub const SPLIT_HEADER: &str = "x-helix-split";
/// Keeps a visitor on the variant first drawn for them.
pub const SPLIT_COOKIE: &str = "helix-split";
/// Longest request path the edge routes; longer ones get 414.
const MAX_PATH_BYTES: usize = 16 * 1024;

/// What a hostname resolved to.
enum Resolved {
    Site(Arc<SiteRef>),
    /// A custom domain that redirects to another (apex ↔ `www`).
    Redirect(Arc<str>),
}

/// What one request carries through its phases.
pub(crate) struct RequestCtx {
    pub id: HeaderValue,
    pub started: Instant,
    /// The deployment that served it, once resolved.
    pub site: Option<Arc<SiteRef>>,
    /// Set when a split drew this visitor's variant.
    pub split_cookie: Option<HeaderValue>,
    pub notes: RouteNotes,
    /// What went wrong that an operator may need to know.
    pub problem: Option<Problem>,
}

/// Something the request log reports (the visitor gets a plain status).
#[derive(Debug)]
pub(crate) enum Problem {
    SiteUnavailable {
        error: String,
    },
    BlobUnreadable {
        digest: helix_core::Digest,
        error: String,
    },
    ProxyRefused {
        url: String,
        reason: String,
    },
    ProxyFailed {
        url: String,
        error: String,
    },
    Loop {
        hops: usize,
    },
    /// A lookaround pattern hit its step limit (and did not match).
    BacktrackLimit,
}

impl RequestCtx {
    pub fn new(id: HeaderValue) -> RequestCtx {
        RequestCtx {
            id,
            started: Instant::now(),
            site: None,
            split_cookie: None,
            notes: RouteNotes::default(),
            problem: None,
        }
    }

    pub fn problem(&mut self, problem: Problem) {
        self.problem = Some(problem);
    }
}

impl Edge {
    /// Serves one request.
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut ctx = RequestCtx::new(self.request_ids.next());
        let resp = self.run(&mut ctx, req).await;
        self.finish(ctx, resp)
    }

    /// The phases, in order; each may end the request with a response.
    async fn run<B>(&self, ctx: &mut RequestCtx, req: Request<B>) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A request that came through one of this edge's own proxy rules
        // (or through too many hops) goes no further.
        if let Some(hops) = self.proxy.loop_detected(req.headers()) {
            ctx.problem(Problem::Loop { hops });
            return text(StatusCode::LOOP_DETECTED, "508 loop detected: this request already passed through here\n");
        }

        // resolve_host: hostnames compare without case.
        let host: Cow<'_, str> = match host_of(&req) {
            Some(h) if h.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Owned(h.to_ascii_lowercase()),
            Some(h) => Cow::Borrowed(h),
            None => return unknown_host(&req),
        };
        // A custom domain's proof, answered before it serves anything.
        if let Some(token) = req.uri().path().strip_prefix(helix_core::domains::CHALLENGE_PATH)
            && self.hosts.is_challenge(&host, token)
        {
            return challenge_answer(token);
        }
        let site_ref = match self.resolve_host(ctx, &req, &host) {
            Some(Resolved::Site(site)) => site,
            Some(Resolved::Redirect(to)) => return domain_redirect(&req, &to),
            None => return unknown_host(&req),
        };
        ctx.site = Some(site_ref.clone());

        // load_site: from memory, or loaded now (once, however many wait).
        let site = match self.sites.get(&site_ref).await {
            Ok(site) => site,
            Err(e) => {
                ctx.problem(Problem::SiteUnavailable { error: e.to_string() });
                return text(StatusCode::BAD_GATEWAY, "this deployment cannot be loaded right now\n");
            }
        };

        // route
        if req.uri().path().len() > MAX_PATH_BYTES {
            return text(StatusCode::URI_TOO_LONG, "414 the request path is too long\n");
        }
        let Some(path) = decode_path(req.uri().path()) else {
            return text(StatusCode::BAD_REQUEST, "malformed path: not valid percent-encoded UTF-8\n");
        };
        let router = &site.router;
        let facts = RequestFacts {
            path: &path,
            method: req.method().as_str(),
            headers: Some(req.headers()),
            query: req.uri().query(),
            host: &host,
            country: if router.needs_country() { self.country_of(&req) } else { None },
            jwt_secret: self.config.role_jwt_secret.as_deref().map(str::as_bytes),
            language: if router.needs_language() { language_of(req.headers()) } else { None },
            functions: true,
            after_edge: false,
        };
        let outcome = router.route(&site.files, &facts, &mut ctx.notes);
        if let Outcome::Function(chosen) = outcome {
            let target = crate::invoke::Target {
                function: chosen.function.clone(),
                params: chosen.params,
                rewritten: chosen.rewritten,
                sources: site.function_sources.clone(),
                env: site.function_env.clone(),
            };
            drop(facts);
            let (host, path) = (host.into_owned(), path.into_owned());
            let coding = crate::compress::negotiate(req.headers());
            let resp = self.respond_chosen(ctx, req, &site, target, &host, path).await;
            return crate::compress::response(resp, coding);
        }
        // Header rules: which path they match, if they apply at all.
        let header_path = match (&outcome, router.platform) {
            _ if !router.has_header_rules() => None,
            (Outcome::Proxy { .. }, _) => None,
            (Outcome::File { rewritten: Some(target), .. }, Platform::Netlify | Platform::Helix) => {
                Some(target.as_str())
            }
            (Outcome::File { .. }, _) | (_, Platform::CloudflarePages) => Some(&*path),
            _ => None,
        };
        let decoration = header_path.map(|p| router.headers_for(&host, p, &mut ctx.notes));
        drop(facts);
        let host = host.into_owned();

        // respond: proxy | static | redirect | error
        let mut resp = match outcome {
            Outcome::Proxy { url, headers } => {
                let coding = crate::compress::negotiate(req.headers());
                let resp = self.proxy.forward(ctx, req, &url, &host, headers).await;
                return crate::compress::response(resp, coding);
            }
            Outcome::File { file, status, .. } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                self.respond_static(ctx, file, &req, status).await
            }
            Outcome::Redirect { status, location } => redirect(status, &location),
            Outcome::NotFound | Outcome::Function(_) => text(StatusCode::NOT_FOUND, "404 not found\n"),
            Outcome::MethodNotAllowed => {
                let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                resp
            }
        };

        // decorate
        if let Some(rules) = decoration {
            apply_rule_headers(resp.headers_mut(), rules);
        }
        if router.platform == Platform::CloudflarePages && resp.status() == StatusCode::NOT_FOUND {
            resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        resp
    }

    /// The one exit: request id, split cookie, request log.
    fn finish(&self, ctx: RequestCtx, mut resp: Response<EdgeBody>) -> Response<EdgeBody> {
        let headers = resp.headers_mut();
        headers.insert(REQUEST_ID, ctx.id.clone());
        if let Some(cookie) = ctx.split_cookie.clone() {
            headers.append(http::header::SET_COOKIE, cookie);
        }
        self.log.record(ctx, resp.status());
        resp
    }

    /// Phase `resolve_host`: one lookup in the host map. With a split,
    /// the visitor's variant: pinned by the `x-helix-split` header or the
    /// `helix-split` cookie, else drawn by weight (and the cookie to set
    /// so the visitor stays on it).
    fn resolve_host<B>(&self, ctx: &mut RequestCtx, req: &Request<B>, host: &str) -> Option<Resolved> {
        let target = self.hosts.get(host)?;
        let site = match target {
            Target::Site(site) => site,
            Target::Redirect(to) => return Some(Resolved::Redirect(to)),
            Target::Split(split) => {
                let header = req.headers().get(SPLIT_HEADER).and_then(|v| v.to_str().ok());
                if let Some(site) = header.and_then(|id| split.pinned(id.trim())) {
                    return Some(Resolved::Site(site.clone()));
                }
                if let Some(site) = cookie(req.headers(), SPLIT_COOKIE).and_then(|id| split.pinned(id)) {
                    return Some(Resolved::Site(site.clone()));
                }
                let site = split.draw(self.draws.next_percent()).clone();
                let cookie = format!("{SPLIT_COOKIE}={}; Path=/; Max-Age=604800; SameSite=Lax", site.deployment);
                ctx.split_cookie = HeaderValue::from_str(&cookie).ok();
                site
            }
        };
        Some(Resolved::Site(site))
    }

    /// The visitor's country: the `nf_country` cookie, else the trusted
    /// country header when one is configured, else the MaxMind database.
    fn country_of<'r, B>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>> {
        if let Some(c) = cookie(req.headers(), "nf_country") {
            return Some(Cow::Borrowed(c));
        }
        if let Some(name) = &self.country_header
            && let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok())
        {
            return Some(Cow::Borrowed(v.trim()));
        }
        let ip = req.extensions().get::<crate::ClientAddr>()?.0.ip();
        self.geoip.as_ref()?.country(ip).map(Cow::Owned)
    }
}

/// The visitor's language: the `nf_lang` cookie, else the first
/// `Accept-Language` entry.
fn language_of(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    if let Some(l) = cookie(headers, "nf_lang") {
        return Some(Cow::Borrowed(l));
    }
    let first = headers.get(http::header::ACCEPT_LANGUAGE)?.to_str().ok()?.split(',').next()?;
    let tag = first.split(';').next()?.trim();
    (!tag.is_empty() && tag != "*").then_some(Cow::Borrowed(tag))
}

pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Sets or removes the headers the route table's rules decided on.
pub(crate) fn apply_rule_headers(headers: &mut HeaderMap, rules: Vec<(String, Option<String>)>) {
    for (name, value) in rules {
        let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) else { continue };
        match value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            Some(v) => {
                headers.insert(name, v);
            }
            None => {
                headers.remove(name);
            }
        }
    }
}

/// A redirect; the target is percent-encoded where a `Location` needs it.
pub(crate) fn redirect(status: u16, location: &str) -> Response<EdgeBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    Response::builder()
        .status(status)
        .header(CACHE_CONTROL, "public, max-age=0, must-revalidate")
        .header(http::header::LOCATION, target::location_value(location))
        .body(empty())
        .expect("an encoded location is a valid header value")
}

pub(crate) fn host_of<B>(req: &Request<B>) -> Option<&str> {
    let raw = match req.headers().get(HOST) {
        Some(h) => h.to_str().ok()?,
        None => req.uri().host()?,
    };
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    Some(host.strip_suffix('.').unwrap_or(host))
}

pub(crate) fn decode_path(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    percent_encoding::percent_decode_str(raw).decode_utf8().ok()
}

/// An empty request body (a request replayed without its body).
pub(crate) fn empty_request_body() -> http_body_util::Empty<Bytes> {
    Empty::new()
}

pub(crate) fn empty() -> EdgeBody {
    Either::Right(BodyExt::boxed_unsync(Empty::new().map_err(|never| match never {})))
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<EdgeBody> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .body(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))))
        .expect("valid response")
}

/// The body a custom domain's HTTP proof expects.
fn challenge_answer(token: &str) -> Response<EdgeBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .body(Either::Left(Full::new(Bytes::copy_from_slice(token.as_bytes()))))
        .expect("valid response")
}

/// `308` to the same path and query on the domain `to` (same scheme, and
/// the port the request came to, if it named one).
fn domain_redirect<B>(req: &Request<B>, to: &str) -> Response<EdgeBody> {
    let scheme = req.uri().scheme_str().unwrap_or("http");
    let port = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .map(|(_, port)| port)
        .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = match port {
        Some(port) => format!("{scheme}://{to}:{port}{path}"),
        None => format!("{scheme}://{to}{path}"),
    };
    redirect(308, &location)
}

fn unknown_host<B>(req: &Request<B>) -> Response<EdgeBody> {
    let host = host_of(req).unwrap_or("(none)");
    let host: String = host.chars().filter(|c| c.is_ascii_graphic()).take(253).collect();
    let host = host.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!doctype html><title>No deployment here</title><h1>404: no deployment serves {host}</h1>\
         <p>HelixStack has no deployment for this hostname. Check the URL, or deploy with <code>helix deploy</code>.</p>\n"
    );
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .body(Either::Left(Full::new(Bytes::from(body))))
        .expect("valid response")
}
