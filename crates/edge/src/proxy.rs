//! Phase `proxy`: a rule that rewrites to another origin (Netlify `200` to
//! an absolute URL, a Vercel rewrite to `https://…`) forwards the request
//! there and streams the answer back, with `X-Forwarded-*` headers, a
//! connect and a total timeout, and a cap on each body.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderName};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Either, StreamBody};

use crate::respond::EdgeBody;

/// The client's address, put on each request by the accept phase.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Proxy settings of an edge.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Off: proxy rules answer 502 and nothing leaves the edge.
    pub enabled: bool,
    pub connect_timeout: Duration,
    /// The whole exchange, as Netlify's 26 s.
    pub timeout: Duration,
    pub max_body_bytes: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            enabled: true,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(26),
            max_body_bytes: 100 * 1024 * 1024,
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

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

pub(crate) struct Proxy {
    client: Option<reqwest::Client>,
    config: ProxyConfig,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Proxy {
        // One TLS provider per process; ring needs no C toolchain.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .no_proxy()
            .build();
        if let Err(e) = &client {
            tracing::error!(error = %e, "edge cannot build its proxy client; proxy rules will answer 502");
        }
        Proxy { client: client.ok(), config }
    }

    /// Forwards `req` to `url` and streams the answer.
    pub async fn forward<B>(
        &self,
        req: Request<B>,
        url: &str,
        host: &str,
        extra: &[(String, String)],
    ) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(client) = self.client.as_ref().filter(|_| self.config.enabled) else {
            return bad_gateway("proxying to other origins is disabled on this server");
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
        headers.insert("x-forwarded-proto", http::HeaderValue::from_static("http"));
        for (name, value) in extra {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value)) {
                headers.insert(n, v);
            }
        }
        let limit = self.config.max_body_bytes;
        let limited = http_body_util::Limited::new(body, limit as usize);
        let stream = BodyStream::new(limited).filter_map(|frame| async move {
            match frame {
                Ok(f) => f.into_data().ok().map(Ok),
                Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
            }
        });
        let upstream =
            client.request(parts.method, url).headers(headers).body(reqwest::Body::wrap_stream(stream)).send().await;
        let upstream = match upstream {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return gateway_timeout(),
            Err(e) => {
                tracing::warn!(error = %e, url, "proxy request failed");
                return bad_gateway("the upstream of this proxy rule could not be reached");
            }
        };
        let status = upstream.status();
        let mut out_headers = upstream.headers().clone();
        strip_hop_by_hop(&mut out_headers);
        let mut sent = 0u64;
        let body = upstream.bytes_stream().map(move |chunk| {
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
    crate::respond::text(StatusCode::BAD_GATEWAY, why)
}

fn gateway_timeout() -> Response<EdgeBody> {
    crate::respond::text(StatusCode::GATEWAY_TIMEOUT, "the upstream of this proxy rule did not answer in time")
}
