//! Precompressed variants, made once at deploy time so the edge never
//! compresses on the request path.

use std::io::Write;
use std::sync::{Arc, Mutex, mpsc};

use bytes::Bytes;
use tokio::sync::oneshot;

/// Files smaller than this are not worth a variant: the headers cost more.
pub const MIN_COMPRESS_BYTES: usize = 256;
/// Brotli quality. Measured on 800 generated text files (10.9 MB): quality
/// 5 took 4.6 s (its hasher tables dominate small files), quality 4 took
/// 0.32 s for output 5% larger; quality 9 was slower still. Deploys wait
/// for this, so it stays fast.
const BROTLI_QUALITY: u32 = 4;
/// Largest brotli window (4 MiB); small files get a window their size, so
/// the encoder does not allocate and zero tables it will never fill.
const BROTLI_MAX_WINDOW: u32 = 22;
const BROTLI_MIN_WINDOW: u32 = 10;
/// gzip level: 6 is zlib's default balance of speed and size.
const GZIP_LEVEL: u32 = 6;

/// Whether a content type benefits from compression.
pub fn is_compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "application/wasm"
                | "application/manifest+json"
                | "image/svg+xml"
                | "image/x-icon"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
        )
}

/// Brotli and gzip encodings of `bytes`, each kept only when smaller than
/// the original, and brotli only when smaller than gzip too (clients that
/// accept br accept gzip, so a larger br would only cost bytes).
pub fn compress(bytes: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    if bytes.len() < MIN_COMPRESS_BYTES {
        return (None, None);
    }
    let mut br = Vec::with_capacity(bytes.len() / 3);
    {
        let window = (usize::BITS - (bytes.len() - 1).leading_zeros()).clamp(BROTLI_MIN_WINDOW, BROTLI_MAX_WINDOW);
        let mut w = brotli::CompressorWriter::new(&mut br, 64 * 1024, BROTLI_QUALITY, window);
        w.write_all(bytes).expect("writing to a Vec cannot fail");
    }
    let mut gz =
        flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 3), flate2::Compression::new(GZIP_LEVEL));
    gz.write_all(bytes).expect("writing to a Vec cannot fail");
    let gz = gz.finish().expect("writing to a Vec cannot fail");
    let gz = (gz.len() < bytes.len()).then_some(gz);
    let br_limit = gz.as_ref().map_or(bytes.len(), Vec::len);
    let br = (br.len() < br_limit).then_some(br);
    (br, gz)
}

/// Brotli and gzip of one blob, as [`compress`] returns them.
pub type Compressed = (Option<Vec<u8>>, Option<Vec<u8>>);

type Job = (Bytes, oneshot::Sender<Compressed>);

/// A fixed set of threads that compress, one per core. Long-lived threads
/// keep their allocator caches warm: short-lived blocking threads paid a
/// page fault for every page of every encoder table.
#[derive(Clone)]
pub struct CompressionPool {
    jobs: mpsc::Sender<Job>,
}

impl CompressionPool {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("helix-compress-{i}")).spawn(move || {
                loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((bytes, reply)) = job else { return };
                    let _ = reply.send(compress(&bytes));
                }
            })?;
        }
        Ok(CompressionPool { jobs })
    }

    /// Compresses on the pool; `None` if the pool has shut down.
    pub async fn compress(&self, bytes: Bytes) -> Option<Compressed> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((bytes, reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn compresses_text_and_round_trips() {
        let text = "<p>hello helix</p>\n".repeat(100);
        let (br, gz) = compress(text.as_bytes());
        let (br, gz) = (br.unwrap(), gz.unwrap());
        let mut out = String::new();
        brotli::Decompressor::new(&br[..], 4096).read_to_string(&mut out).unwrap();
        assert_eq!(out, text);
        out.clear();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, text);
        assert_eq!(compress(b"tiny"), (None, None));
    }

    #[tokio::test]
    async fn the_pool_compresses() {
        let pool = CompressionPool::new(2).unwrap();
        let text = Bytes::from("<p>hello helix</p>\n".repeat(100));
        assert_eq!(pool.compress(text.clone()).await, Some(compress(&text)));
    }

    #[test]
    fn knows_what_compresses() {
        assert!(is_compressible("text/html; charset=utf-8"));
        assert!(is_compressible("application/javascript"));
        assert!(is_compressible("image/svg+xml"));
        assert!(!is_compressible("image/png"));
        assert!(!is_compressible("application/octet-stream"));
    }
}
