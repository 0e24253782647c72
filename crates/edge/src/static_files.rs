//! Phase `respond_static`: a file from the deployment, with the headers
//! prepared when the site loaded, conditional requests (`If-None-Match` →
//! 304), a precompressed variant when the client accepts it, one byte
//! range, `HEAD`; bytes from the hot-blob cache or streamed from the blob
//! store.

use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, RANGE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};

use crate::Edge;
use crate::compress::accepts;
use crate::files::{Representation, ServedFile};
use crate::request::{EdgeBody, Problem, RequestCtx, empty, text};

static CACHE_DEFAULT: HeaderValue = HeaderValue::from_static("public, max-age=0, must-revalidate");

impl Edge {
    /// Phase `respond_static`: conditional request, encoding, range, body.
    pub(crate) async fn respond_static<B>(
        &self,
        ctx: &mut RequestCtx,
        file: &ServedFile,
        req: &Request<B>,
        status: StatusCode,
    ) -> Response<EdgeBody> {
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
                ctx.problem(Problem::BlobUnreadable { digest: rep.digest, error: e.to_string() });
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
