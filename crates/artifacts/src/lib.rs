//! Content-addressed blobs: the bytes of every deployment, stored once per
//! SHA-256 digest however many files, deployments and projects share them.
//!
//! [`BlobStore`] is the interface; [`LocalBlobStore`] is the embedded adapter
//! (a directory on local disk). [`variants`] makes the precompressed
//! encodings of a file at deploy time. A blob becomes visible only whole and
//! verified: it is streamed to a temporary file, checked against its digest,
//! fsynced and renamed into place; [`BlobStore::sync`] makes the renames
//! durable before a deployment that needs them is committed. This crate never decides which blobs are
//! needed; callers (control plane, edge) do.

mod local;
pub mod variants;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use helix_core::Digest;

pub use local::LocalBlobStore;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} not found")]
    NotFound(Digest),
    #[error("uploaded bytes hash to {actual}, not to the digest {expected} they were sent under")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("upload interrupted: {0}")]
    Body(std::io::Error),
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Facts about a stored blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    /// Last modification, Unix seconds (used by GC's grace period).
    pub modified_unix: i64,
}

pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A store of immutable blobs addressed by SHA-256.
pub trait BlobStore: Send + Sync + 'static {
    /// Size and age of a blob, or `None` when absent.
    fn stat(&self, digest: Digest) -> BoxFuture<'_, Result<Option<BlobInfo>, BlobError>>;

    /// Stores `body` under `expected` if its bytes hash to it and are at
    /// most `max_bytes`; otherwise stores nothing. Returns the size.
    fn put_stream(&self, expected: Digest, body: ByteStream, max_bytes: u64) -> BoxFuture<'_, Result<u64, BlobError>>;

    /// Stores bytes already in memory, computing their digest.
    fn put_bytes(&self, bytes: Bytes) -> BoxFuture<'_, Result<Digest, BlobError>> {
        Box::pin(async move {
            let digest = Digest::of(&bytes);
            let len = bytes.len() as u64;
            let body: ByteStream = Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
            self.put_stream(digest, body, len).await?;
            Ok(digest)
        })
    }

    /// The whole blob in memory.
    fn get(&self, digest: Digest) -> BoxFuture<'_, Result<Bytes, BlobError>>;

    /// `len` bytes from `offset` as a stream, for blobs too large to hold.
    fn get_range(&self, digest: Digest, offset: u64, len: u64) -> BoxFuture<'_, Result<ByteStream, BlobError>>;

    /// Every stored digest (for garbage collection).
    fn list(&self) -> BoxFuture<'_, Result<Vec<Digest>, BlobError>>;

    /// Makes every blob stored so far durable (a barrier before a commit
    /// that references them). `put_stream` makes each blob's bytes durable
    /// before it becomes visible; this makes the names durable too, once
    /// for a whole deploy instead of once per blob.
    fn sync(&self) -> BoxFuture<'_, Result<(), BlobError>>;

    /// Removes a blob; absent blobs are not an error.
    fn delete(&self, digest: Digest) -> BoxFuture<'_, Result<(), BlobError>>;
}
