//! The request phases: `resolve_host` → `route` → `respond_static`,
//! each a function of its own; `handle` strings them together.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH, RANGE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Empty, Full};

use crate::Edge;
use helix_core::routes::Platform;

use crate::routing::{Outcome, RequestFacts};
use crate::snapshot::{Representation, ServedFile, Site, Target};

pub type EdgeBody = Either<Full<Bytes>, UnsyncBoxBody<Bytes, std::io::Error>>;

const REQUEST_ID: &str = "x-request-id";
/// Pins a visitor to one variant of a split (for testing).
pub const SPLIT_HEADER: &str = "x-helix-split";
/// Keeps a visitor on the variant first drawn for them.
pub const SPLIT_COOKIE: &str = "helix-split";
static CACHE_DEFAULT: HeaderValue = HeaderValue::from_static("public, max-age=0, must-revalidate");

impl Edge {
    /// Serves one request; every response carries a request id.
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut resp = match self.resolve_host(&req) {
            Some((site, split_cookie)) => {
                let mut resp = self.serve_site(&site, req).await;
                if let Some(cookie) = split_cookie {
                    resp.headers_mut().append(http::header::SET_COOKIE, cookie);
                }
                resp
            }
            None => unknown_host(&req),
        };
        resp.headers_mut().insert(REQUEST_ID, self.request_ids.next());
        resp
    }

    /// Phase `resolve_host`: one lookup in the current snapshot.
    /// With a split, the site is the visitor's variant: pinned by the
    /// `x-helix-split` header or the `helix-split` cookie, else drawn by
    /// weight, and then the cookie to set so the visitor stays on it.
    fn resolve_host<B>(&self, req: &Request<B>) -> Option<(Arc<Site>, Option<HeaderValue>)> {
        let host = host_of(req)?;
        let snapshot = self.snapshot.load();
        let target = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            snapshot.target(&host.to_ascii_lowercase()).cloned()
        } else {
            snapshot.target(host).cloned()
        }?;
        match target {
            Target::Site(site) => Some((site, None)),
            Target::Split(split) => {
                let header = req.headers().get(SPLIT_HEADER).and_then(|v| v.to_str().ok());
                if let Some(site) = header.and_then(|id| split.pinned(id.trim())) {
                    return Some((site.clone(), None));
                }
                if let Some(site) = cookie(req.headers(), SPLIT_COOKIE).and_then(|id| split.pinned(id)) {
                    return Some((site.clone(), None));
                }
                let site = split.draw(self.draws.next_percent()).clone();
                let cookie = format!("{SPLIT_COOKIE}={}; Path=/; Max-Age=604800; SameSite=Lax", site.deployment);
                Some((site, HeaderValue::from_str(&cookie).ok()))
            }
        }
    }

    async fn serve_site<B>(&self, site: &Site, req: Request<B>) -> Response<EdgeBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(path) = decode_path(req.uri().path()) else {
            return text(StatusCode::BAD_REQUEST, "malformed path: not valid percent-encoded UTF-8\n");
        };
        let facts = RequestFacts {
            path: &path,
            method: req.method().as_str(),
            headers: Some(req.headers()),
            query: req.uri().query(),
            host: host_of(&req).unwrap_or_default(),
            country: if site.router.needs_country() { self.country_of(&req) } else { None },
            jwt_secret: self.config.role_jwt_secret.as_deref(),
            language: if site.router.needs_language() { language_of(req.headers()) } else { None },
        };
        let router = &site.router;
        let outcome = router.route(site, &facts);
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
        let decoration = header_path.map(|p| router.headers_for(facts.host, p));
        drop(facts);
        let mut resp = match outcome {
            Outcome::Proxy { url, headers } => {
                let host = host_of(&req).unwrap_or_default().to_owned();
                return self.proxy.forward(req, &url, &host, &headers).await;
            }
            Outcome::File { file, status, .. } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                self.respond_static(file, &req, status).await
            }
            Outcome::Redirect { status, location } => redirect(status, &location),
            Outcome::NotFound => text(StatusCode::NOT_FOUND, "404 not found\n"),
            Outcome::MethodNotAllowed => {
                let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                resp
            }
        };
        if let Some(rules) = decoration {
            apply_rule_headers(resp.headers_mut(), rules);
        }
        if router.platform == Platform::CloudflarePages && resp.status() == StatusCode::NOT_FOUND {
            resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        resp
    }

    /// The visitor's country: the `nf_country` cookie, else the trusted
    /// country header when one is configured, else the MaxMind database.
    fn country_of<'r, B>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>> {
        if let Some(c) = cookie(req.headers(), "nf_country") {
            return Some(Cow::Borrowed(c));
        }
        if let Some(name) = &self.config.country_header
            && let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok())
        {
            return Some(Cow::Borrowed(v.trim()));
        }
        let ip = req.extensions().get::<crate::ClientAddr>()?.0.ip();
        self.config.geoip.as_ref()?.country(ip).map(Cow::Owned)
    }

    /// Phase `respond_static`: conditional request, encoding, range, body.
    async fn respond_static<B>(&self, file: &ServedFile, req: &Request<B>, status: StatusCode) -> Response<EdgeBody> {
        let headers = req.headers();
        let full = status == StatusCode::OK;
        let ranged = full && headers.contains_key(RANGE);
        let (rep, encoding) = if ranged { (&file.identity, None) } else { choose_encoding(file, headers) };

        let mut resp = Response::builder().status(status);
        let h = resp.headers_mut().expect("builder has no error yet");
        h.insert(CONTENT_TYPE, file.content_type.clone());
        h.insert(CACHE_CONTROL, CACHE_DEFAULT.clone());
        if full {
            h.insert(ETAG, rep.etag.clone());
            h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        if file.br.is_some() || file.gzip.is_some() {
            h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if let Some(enc) = encoding {
            h.insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
        }

        if full && etag_matches(headers.get(IF_NONE_MATCH), &rep.etag) {
            return resp.status(StatusCode::NOT_MODIFIED).body(empty()).expect("valid response");
        }
        let range = if ranged { parse_range(headers.get(RANGE), rep.size) } else { RangeSpec::Whole };
        let (status, start, len) = match range {
            RangeSpec::Whole => (status, 0, rep.size),
            RangeSpec::Part { start, end } => {
                let v = format!("bytes {start}-{end}/{}", rep.size);
                resp = resp.header(CONTENT_RANGE, v);
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            RangeSpec::Unsatisfiable => {
                return resp
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(CONTENT_RANGE, format!("bytes */{}", rep.size))
                    .body(empty())
                    .expect("valid response");
            }
        };
        let resp = resp.status(status).header(CONTENT_LENGTH, len);
        if req.method() == Method::HEAD {
            return resp.body(empty()).expect("valid response");
        }
        match self.body_of(rep, start, len).await {
            Ok(body) => resp.body(body).expect("valid response"),
            Err(e) => {
                tracing::error!(error = %e, digest = %rep.digest, "edge cannot read a blob of a ready deployment");
                text(StatusCode::BAD_GATEWAY, "the file could not be read from storage\n")
            }
        }
    }

    async fn body_of(
        &self,
        rep: &Representation,
        start: u64,
        len: u64,
    ) -> Result<EdgeBody, helix_artifacts::BlobError> {
        if rep.size <= self.config.cache_max_blob_bytes {
            let bytes = self.blob(rep.digest).await?;
            let (s, e) = (start as usize, (start + len) as usize);
            let bytes = if s == 0 && e == bytes.len() { bytes } else { bytes.slice(s..e.min(bytes.len())) };
            return Ok(Either::Left(Full::new(bytes)));
        }
        let stream = self.blobs.get_range(rep.digest, start, len).await?;
        let body =
            http_body_util::StreamBody::new(futures_util::StreamExt::map(stream, |r| r.map(hyper::body::Frame::data)));
        Ok(Either::Right(BodyExt::boxed_unsync(body)))
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
fn apply_rule_headers(headers: &mut HeaderMap, rules: Vec<(String, Option<String>)>) {
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

/// Characters a `Location` may not carry raw: controls, space, quotes,
/// angle brackets, backtick and everything beyond ASCII. `%` stays as is, so
/// escapes already in a rule's target survive.
const LOCATION_UNSAFE: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');

/// A redirect; the target (which may hold decoded path segments captured
/// from the request) is percent-encoded where a URL needs it.
fn redirect(status: u16, location: &str) -> Response<EdgeBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    let location = percent_encoding::utf8_percent_encode(location, LOCATION_UNSAFE).to_string();
    Response::builder()
        .status(status)
        .header(CACHE_CONTROL, "public, max-age=0, must-revalidate")
        .header(http::header::LOCATION, location)
        .body(empty())
        .expect("an encoded location is a valid header value")
}

fn host_of<B>(req: &Request<B>) -> Option<&str> {
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

fn decode_path(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    percent_encoding::percent_decode_str(raw).decode_utf8().ok()
}

fn choose_encoding<'f>(file: &'f ServedFile, headers: &HeaderMap) -> (&'f Representation, Option<&'static str>) {
    if file.br.is_none() && file.gzip.is_none() {
        return (&file.identity, None);
    }
    let accept = headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some(br) = &file.br
        && accepts(accept, "br")
    {
        return (br, Some("br"));
    }
    if let Some(gz) = &file.gzip
        && accepts(accept, "gzip")
    {
        return (gz, Some("gzip"));
    }
    (&file.identity, None)
}

/// Whether an `Accept-Encoding` value accepts `coding` (q > 0, or `*`).
fn accepts(header: &str, coding: &str) -> bool {
    let mut star = false;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if name.eq_ignore_ascii_case(coding) {
            return !q_zero;
        }
        if name == "*" {
            star = !q_zero;
        }
    }
    star
}

/// `If-None-Match` with weak comparison: any listed tag, or `*`.
fn etag_matches(header: Option<&HeaderValue>, etag: &HeaderValue) -> bool {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else { return false };
    let ours = etag.to_str().unwrap_or("");
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    Whole,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// A single `bytes=` range. Several ranges, other units or syntax errors
/// are ignored (the whole file is sent), as RFC 9110 allows.
fn parse_range(header: Option<&HeaderValue>, size: u64) -> RangeSpec {
    let Some(spec) = header.and_then(|v| v.to_str().ok()).and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeSpec::Whole;
    };
    if spec.contains(',') {
        return RangeSpec::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeSpec::Whole };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, true) => return RangeSpec::Whole,
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeSpec::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), size.saturating_sub(1))),
            Err(_) => return RangeSpec::Whole,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else { return RangeSpec::Whole };
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(end) if end >= start => end.min(size.saturating_sub(1)),
                    _ => return RangeSpec::Whole,
                }
            };
            Some((start, end))
        }
    };
    match parsed {
        Some((start, end)) if size > 0 && start < size => RangeSpec::Part { start, end },
        _ => RangeSpec::Unsatisfiable,
    }
}

fn empty() -> EdgeBody {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn ranges() {
        let r = |s: &str, size| parse_range(Some(&hv(s)), size);
        assert_eq!(r("bytes=0-4", 10), RangeSpec::Part { start: 0, end: 4 });
        assert_eq!(r("bytes=5-", 10), RangeSpec::Part { start: 5, end: 9 });
        assert_eq!(r("bytes=-3", 10), RangeSpec::Part { start: 7, end: 9 });
        assert_eq!(r("bytes=-30", 10), RangeSpec::Part { start: 0, end: 9 });
        assert_eq!(r("bytes=5-100", 10), RangeSpec::Part { start: 5, end: 9 });
        assert_eq!(r("bytes=10-", 10), RangeSpec::Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), RangeSpec::Unsatisfiable);
        assert_eq!(r("bytes=0-1,3-4", 10), RangeSpec::Whole);
        assert_eq!(r("items=0-1", 10), RangeSpec::Whole);
        assert_eq!(r("bytes=4-2", 10), RangeSpec::Whole);
        assert_eq!(r("bytes=x-2", 10), RangeSpec::Whole);
        assert_eq!(parse_range(None, 10), RangeSpec::Whole);
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0", "gzip"));
        assert!(!accepts("br;q=0, *", "br"));
        assert!(accepts("*", "br"));
        assert!(!accepts("", "br"));
        assert!(!accepts("identity", "gzip"));
    }

    #[test]
    fn if_none_match() {
        let ours = hv("\"abc\"");
        assert!(etag_matches(Some(&hv("\"abc\"")), &ours));
        assert!(etag_matches(Some(&hv("\"x\", W/\"abc\"")), &ours));
        assert!(etag_matches(Some(&hv("*")), &ours));
        assert!(!etag_matches(Some(&hv("\"abd\"")), &ours));
        assert!(!etag_matches(None, &ours));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the header says, a range is inside the file or refused.
        #[test]
        fn ranges_stay_inside_the_file(header in "bytes=[0-9]{0,4}-[0-9]{0,4}|\\PC{0,20}", size in 0u64..5000) {
            let Ok(value) = HeaderValue::from_str(&header) else { return Ok(()) };
            if let RangeSpec::Part { start, end } = parse_range(Some(&value), size) {
                prop_assert!(start <= end && end < size);
            }
        }

        #[test]
        fn accept_encoding_never_panics(header in "\\PC{0,60}") {
            let _ = accepts(&header, "br");
        }
    }
}
