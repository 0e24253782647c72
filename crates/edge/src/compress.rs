//! Compression on the fly for what the edge did not have precompressed:
//! function and proxied responses. The visitor's `Accept-Encoding` picks
//! brotli, zstd or gzip (in that order of preference); a body of known
//! length is encoded as it streams, so nothing is buffered whole, and a
//! body streamed without a length passes as it is (its pieces must reach
//! the visitor as they are written).
//! Static files keep their precompressed variants and never come here.

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use futures_util::TryStreamExt;
use http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, VARY};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

use crate::request::EdgeBody;

/// Bodies shorter than this are sent as they are: the framing would eat
/// the gain.
const MIN_BYTES: u64 = 1024;
/// Nor longer than this: encoding runs on the serving threads, and one
/// tenant's huge answers must not take their CPU from everyone else's.
const MAX_BYTES: u64 = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    Brotli,
    Zstd,
    Gzip,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }
}

/// The coding the request accepts, preferring brotli, then zstd, then
/// gzip (as static files prefer their brotli variant), if any.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    let accept = headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok())?;
    [Coding::Brotli, Coding::Zstd, Coding::Gzip].into_iter().find(|c| accepts(accept, c.token()))
}

/// Whether an `Accept-Encoding` value accepts `coding` (q > 0, or `*`).
pub(crate) fn accepts(header: &str, coding: &str) -> bool {
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

/// Whether a response of this type is worth compressing (text, JSON,
/// JavaScript, XML, SVG, WebAssembly; never an event stream, which must
/// reach the visitor as each event is written).
fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence == "text/event-stream" {
        return false;
    }
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/wasm"
                | "application/manifest+json"
                | "image/svg+xml"
                | "application/x-javascript"
        )
}

/// `resp`, encoded with `coding` when it is worth it and allowed.
pub(crate) fn response(resp: Response<EdgeBody>, coding: Option<Coding>) -> Response<EdgeBody> {
    let Some(coding) = coding else { return resp };
    let headers = resp.headers();
    let status = resp.status();
    // A body of unknown length is being streamed (a function writing as
    // it goes, an upstream's chunked answer): the encoder would hold its
    // pieces back until its buffer fills, so it passes as it is.
    let worth_it = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| (MIN_BYTES..=MAX_BYTES).contains(&n));
    let no_transform = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("no-transform")));
    let eligible = status.is_success()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::PARTIAL_CONTENT
        && !headers.contains_key(CONTENT_ENCODING)
        && !headers.contains_key(http::header::CONTENT_RANGE)
        && headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(compressible)
        && worth_it
        && !no_transform;
    if !eligible {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    parts.headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    // Another representation: a strong validator would claim the bytes.
    if let Some(etag) = parts.headers.get(ETAG).and_then(|v| v.to_str().ok())
        && !etag.starts_with("W/")
        && let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}"))
    {
        parts.headers.insert(ETAG, weak);
    }
    let reader =
        tokio_util::io::StreamReader::new(body.into_data_stream().map_err(|e| std::io::Error::other(e.to_string())));
    // Fast settings: this runs per request, on the serving threads.
    let encoded: EdgeBody = match coding {
        Coding::Brotli => stream(BrotliEncoder::with_quality(reader, Level::Precise(4))),
        Coding::Zstd => stream(ZstdEncoder::with_quality(reader, Level::Precise(3))),
        Coding::Gzip => stream(GzipEncoder::with_quality(reader, Level::Precise(5))),
    };
    Response::from_parts(parts, encoded)
}

fn stream<R: tokio::io::AsyncRead + Send + 'static>(reader: R) -> EdgeBody {
    let frames = tokio_util::io::ReaderStream::new(reader).map_ok(http_body::Frame::data);
    http_body_util::Either::Right(http_body_util::StreamBody::new(frames).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Option<Coding> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        negotiate(&h)
    }

    #[test]
    fn the_best_accepted_coding_wins() {
        assert_eq!(accept("gzip, deflate, br, zstd"), Some(Coding::Brotli));
        assert_eq!(accept("gzip;q=1, br;q=0.5"), Some(Coding::Brotli), "preference, not weight");
        assert_eq!(accept("br;q=0, gzip"), Some(Coding::Gzip));
        assert_eq!(accept("zstd, gzip"), Some(Coding::Zstd));
        assert_eq!(accept("identity"), None);
        assert_eq!(accept("*"), Some(Coding::Brotli));
        assert_eq!(accept("br;q=0, zstd;q=0, *"), Some(Coding::Gzip));
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    #[test]
    fn only_text_like_types_are_compressed() {
        for t in ["text/html; charset=utf-8", "application/json", "image/svg+xml", "application/ld+json"] {
            assert!(compressible(t), "{t}");
        }
        for t in ["image/png", "text/event-stream", "application/octet-stream", "video/mp4"] {
            assert!(!compressible(t), "{t}");
        }
    }
}
