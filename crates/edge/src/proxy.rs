//! Phase `proxy`: a rule that rewrites to another origin (Netlify `200` to
//! an absolute URL, a Vercel rewrite to `https://…`) forwards the request
//! there and streams the answer back, with `X-Forwarded-*` headers, a
//! connect and a total timeout, and a cap on each body.
//!
//! A tenant writes these rules, so the proxy cannot be turned against the
//! platform: a destination that resolves to loopback, link-local (cloud
//! metadata), private, unspecified or this machine's own addresses is
//! refused (502, logged) unless the operator allows it (`--proxy-allow`).
//! The check runs on the resolved addresses and the connection goes to the
//! checked address (no DNS rebinding between check and connect). Every
//! forwarded request carries this edge's `CDN-Loop` token (RFC 8586); a
//! request that comes back with it, or through too many hops, gets 508.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Either, StreamBody};

use helix_http::guard::{Guard, refusal_of};

use crate::request::{EdgeBody, Problem, RequestCtx, text};

/// The client's address, put on each request by the accept phase.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// The share of the descriptor limit proxied exchanges may take.
const PROXY_FD_SHARE_PERCENT: u64 = 20;

/// Most entries a request's `CDN-Loop` may list (any CDN's) before it is
/// refused as a loop.
pub const MAX_HOPS: usize = 8;

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// The whole exchange, as Netlify's 26 s.
const DEFAULT_TIMEOUT_MS: u64 = 26_000;
const DEFAULT_MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;

/// Proxy settings of an edge.
#[derive(Clone, Debug, clap::Args)]
pub struct ProxySettings {
    /// Refuse proxy rules (rewrites to other origins): they answer 502.
    #[arg(long = "disable-proxy", env = "HELIX_DISABLE_PROXY")]
    pub disabled: bool,
    /// Let proxy rules reach an internal address range or host that is
    /// otherwise refused (CIDR, address or host name; repeat or separate
    /// with commas), e.g. an API on this machine.
    #[arg(long = "proxy-allow", env = "HELIX_PROXY_ALLOW", value_delimiter = ',', value_name = "CIDR|HOST")]
    pub allow: Vec<String>,
    #[arg(long = "proxy-connect-timeout-ms", env = "HELIX_PROXY_CONNECT_TIMEOUT_MS", default_value_t = DEFAULT_CONNECT_TIMEOUT_MS)]
    pub connect_timeout_ms: u64,
    /// The whole exchange, as Netlify's 26 s.
    #[arg(long = "proxy-timeout-ms", env = "HELIX_PROXY_TIMEOUT_MS", default_value_t = DEFAULT_TIMEOUT_MS)]
    pub timeout_ms: u64,
    /// Largest request or response body a proxy rule passes on.
    #[arg(long = "proxy-max-body-bytes", env = "HELIX_PROXY_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: u64,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            disabled: false,
            allow: Vec::new(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Headers that describe one hop and are never forwarded.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

pub(crate) struct Proxy {
    client: reqwest::Client,
    /// Proxied exchanges in flight at once: each holds an upstream
    /// connection, so they share the descriptor limit with everything else.
    slots: Arc<tokio::sync::Semaphore>,
    guard: Arc<Guard>,
    settings: ProxySettings,
    /// This edge's `CDN-Loop` id.
    cdn_id: String,
}

impl Proxy {
    pub fn new(settings: ProxySettings) -> Result<Proxy, String> {
        let guard = Arc::new(Guard::new(&settings.allow, "--proxy-allow")?);
        // One TLS provider per process; ring needs no C toolchain.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.timeout_ms))
            .dns_resolver(guard.clone())
            .no_proxy()
            .build()
            .map_err(|e| format!("building the proxy client: {e}"))?;
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        let cdn_id = format!("helix-{}", id.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let slots = Arc::new(tokio::sync::Semaphore::new(helix_http::auto_max_connections(PROXY_FD_SHARE_PERCENT)));
        Ok(Proxy { client, slots, guard, settings, cdn_id })
    }

    /// The number of `CDN-Loop` entries when the request already passed
    /// through this edge, or through more than [`MAX_HOPS`] CDNs.
    pub fn loop_detected(&self, headers: &HeaderMap) -> Option<usize> {
        let mut hops = 0;
        let mut ours = false;
        for value in headers.get_all("cdn-loop") {
            let Ok(value) = value.to_str() else { continue };
            for entry in value.split(',') {
                let id = entry.split(';').next().unwrap_or_default().trim();
                if id.is_empty() {
                    continue;
                }
                hops += 1;
                ours |= id == self.cdn_id;
            }
        }
        (ours || hops > MAX_HOPS).then_some(hops)
    }

    /// Forwards `req` to `url` and streams the answer.
    pub async fn forward<B>(
        &self,
        ctx: &mut RequestCtx,
        req: Request<B>,
        url: &str,
        host: &str,
        extra: &[(String, String)],
    ) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if self.settings.disabled {
            return bad_gateway("proxying to other origins is disabled on this server\n");
        }
        let client = &self.client;
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            _ => {
                ctx.problem(Problem::ProxyRefused { url: url.to_owned(), reason: "not an http(s) URL".into() });
                return bad_gateway("the target of this proxy rule is not a valid http(s) URL\n");
            }
        };
        // Literal addresses never reach the resolver: check them here.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && let Err(reason) = self.guard.check(None, ip)
        {
            ctx.problem(Problem::ProxyRefused { url: url.to_owned(), reason: reason.clone() });
            return refused(&reason);
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            ctx.problem(Problem::ProxyFailed {
                url: url.to_owned(),
                error: "too many proxied requests in flight".into(),
            });
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "503: too many proxied requests are in flight; retry shortly\n",
            );
        };
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        let client_ip = parts.extensions.get::<ClientAddr>().map(|a| a.0.ip().to_string());
        if let Some(ip) = client_ip {
            let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip,
            };
            if let Ok(v) = chain.parse() {
                headers.insert("x-forwarded-for", v);
            }
        }
        if let Ok(v) = host.parse() {
            headers.insert("x-forwarded-host", v);
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        for (name, value) in extra {
            // The compiler never lets a rule set these; a manifest from
            // elsewhere does not either.
            if helix_core::routes::forbidden_request_header(name) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                headers.insert(n, v);
            }
        }
        let prior_loop: Vec<String> =
            headers.get_all("cdn-loop").iter().filter_map(|v| v.to_str().ok().map(str::to_owned)).collect();
        headers.remove("cdn-loop");
        let chain = prior_loop.into_iter().chain([self.cdn_id.clone()]).collect::<Vec<_>>().join(", ");
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert("cdn-loop", v);
        }
        let limit = self.settings.max_body_bytes;
        let limited = http_body_util::Limited::new(body, limit as usize);
        let stream = BodyStream::new(limited).filter_map(|frame| async move {
            match frame {
                Ok(f) => f.into_data().ok().map(Ok),
                Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
            }
        });
        let upstream =
            client.request(parts.method, parsed).headers(headers).body(reqwest::Body::wrap_stream(stream)).send().await;
        let upstream = match upstream {
            Ok(r) => r,
            Err(e) => {
                if let Some(reason) = refusal_of(&e) {
                    ctx.problem(Problem::ProxyRefused { url: url.to_owned(), reason: reason.clone() });
                    return refused(&reason);
                }
                ctx.problem(Problem::ProxyFailed { url: url.to_owned(), error: helix_http::error_chain(&e) });
                if e.is_timeout() {
                    return text(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the upstream of this proxy rule did not answer in time\n",
                    );
                }
                return bad_gateway("the upstream of this proxy rule could not be reached\n");
            }
        };
        let status = upstream.status();
        let mut out_headers = upstream.headers().clone();
        strip_hop_by_hop(&mut out_headers);
        let mut sent = 0u64;
        let body = upstream.bytes_stream().map(move |chunk| {
            // The slot is held until the answer has streamed through.
            let _slot = &slot;
            let chunk = chunk.map_err(std::io::Error::other)?;
            sent += chunk.len() as u64;
            if sent > limit {
                return Err(std::io::Error::other("proxied response over the size limit"));
            }
            Ok(hyper::body::Frame::data(chunk))
        });
        let mut resp = Response::new(Either::Right(BodyExt::boxed_unsync(StreamBody::new(body))));
        *resp.status_mut() = status;
        *resp.headers_mut() = out_headers;
        resp
    }
}

fn bad_gateway(why: &'static str) -> Response<EdgeBody> {
    text(StatusCode::BAD_GATEWAY, why)
}

fn refused(reason: &str) -> Response<EdgeBody> {
    let body = format!("502: this proxy rule's destination is refused: {reason}\n");
    Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Either::Left(http_body_util::Full::new(Bytes::from(body))))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_refuses_internal_addresses_unless_allowed() {
        let guard = Guard::new(&["10.1.0.0/16".into(), "api.internal".into()], "--proxy-allow").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(guard.check(None, ip("127.0.0.1")).unwrap_err().contains("loopback"));
        assert!(guard.check(None, ip("169.254.169.254")).unwrap_err().contains("metadata"));
        assert!(guard.check(None, ip("10.2.0.1")).is_err());
        assert!(guard.check(None, ip("10.1.2.3")).is_ok());
        assert!(guard.check(Some("api.internal"), ip("127.0.0.1")).is_ok());
        assert!(guard.check(None, ip("93.184.216.34")).is_ok());
        assert!(Guard::new(&["10.0.0.0/99".into()], "--proxy-allow").is_err());
    }

    #[test]
    fn loops_are_detected_by_our_token_or_by_hops() {
        let proxy = Proxy::new(ProxySettings::default()).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(proxy.loop_detected(&h), None);
        h.insert("cdn-loop", HeaderValue::from_static("cloudflare, fastly"));
        assert_eq!(proxy.loop_detected(&h), None);
        h.append("cdn-loop", HeaderValue::from_str(&format!("{}; v=1", proxy.cdn_id)).unwrap());
        assert_eq!(proxy.loop_detected(&h), Some(3));
        let many = ["x"; MAX_HOPS + 1].join(",");
        h.insert("cdn-loop", HeaderValue::from_str(&many).unwrap());
        assert_eq!(proxy.loop_detected(&h), Some(MAX_HOPS + 1));
    }
}
