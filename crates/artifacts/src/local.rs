//! The local-directory blob store: `<root>/sha256/ab/abcdef…` with
//! temporary files in `<root>/tmp`, which is emptied at open (anything there
//! is a write that a crash interrupted).

use std::io::SeekFrom;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use helix_core::Digest;
use helix_core::digest::Hasher;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{BlobError, BlobInfo, BlobStore, ByteStream};

#[derive(Debug)]
pub struct LocalBlobStore {
    root: PathBuf,
    /// Fan-out directories with renames not yet fsynced.
    dirty_dirs: std::sync::Mutex<std::collections::BTreeSet<PathBuf>>,
}

impl LocalBlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("sha256"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(LocalBlobStore { root, dirty_dirs: Default::default() })
    }

    fn path_of(&self, digest: Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    async fn write_verified(&self, expected: Digest, mut body: ByteStream, max_bytes: u64) -> Result<u64, BlobError> {
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        // Small bodies are gathered in memory and written by one blocking
        // call; a body that outgrows the buffer streams to a temp file.
        let mut pending: Vec<Bytes> = Vec::new();
        let mut streaming: Option<(tokio::fs::File, tempfile::TempPath)> = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BlobError::Body)?;
            size += chunk.len() as u64;
            if size > max_bytes {
                return Err(BlobError::TooLarge { limit: max_bytes });
            }
            hasher.update(&chunk);
            match &mut streaming {
                Some((file, _)) => file.write_all(&chunk).await?,
                None => {
                    pending.push(chunk);
                    if size > BUFFERED_BLOB_BYTES {
                        let (file, path) = self.temp_file()?.into_parts();
                        let mut file = tokio::fs::File::from_std(file);
                        for part in pending.drain(..) {
                            file.write_all(&part).await?;
                        }
                        streaming = Some((file, path));
                    }
                }
            }
        }
        let actual = hasher.finish();
        if actual != expected {
            return Err(BlobError::DigestMismatch { expected, actual });
        }
        let dest = self.path_of(expected);
        let dir = dest.parent().expect("blob paths have a fan-out directory").to_owned();
        match streaming {
            Some((file, path)) => {
                file.sync_all().await?;
                drop(file);
                let dir = dir.clone();
                blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    path.persist(&dest).map_err(|e| e.error)
                })
                .await?;
            }
            None => {
                let tmp = self.temp_file()?;
                let dir = dir.clone();
                blocking(move || {
                    let mut tmp = tmp;
                    for part in &pending {
                        std::io::Write::write_all(&mut tmp, part)?;
                    }
                    tmp.as_file().sync_all()?;
                    std::fs::create_dir_all(&dir)?;
                    // `persist` renames atomically into place.
                    tmp.persist(&dest).map(drop).map_err(|e| e.error)
                })
                .await?;
            }
        }
        self.dirty_dirs.lock().unwrap_or_else(|p| p.into_inner()).insert(dir);
        Ok(size)
    }

    fn temp_file(&self) -> std::io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new().prefix("upload-").tempfile_in(self.root.join("tmp"))
    }
}

/// Bodies up to this size are written with one blocking call.
const BUFFERED_BLOB_BYTES: u64 = 1024 * 1024;

async fn blocking(f: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> std::io::Result<()> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
}

fn sync_dirs(dirs: Vec<PathBuf>) -> std::io::Result<()> {
    for dir in dirs {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn not_found_as(digest: Digest) -> impl Fn(std::io::Error) -> BlobError {
    move |e| {
        if e.kind() == std::io::ErrorKind::NotFound { BlobError::NotFound(digest) } else { BlobError::Io(e) }
    }
}

impl BlobStore for LocalBlobStore {
    fn stat(&self, digest: Digest) -> BoxFuture<'_, Result<Option<BlobInfo>, BlobError>> {
        Box::pin(async move {
            match tokio::fs::metadata(self.path_of(digest)).await {
                Ok(meta) => {
                    let modified_unix = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs() as i64);
                    Ok(Some(BlobInfo { size: meta.len(), modified_unix }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn put_stream(&self, expected: Digest, body: ByteStream, max_bytes: u64) -> BoxFuture<'_, Result<u64, BlobError>> {
        Box::pin(self.write_verified(expected, body, max_bytes))
    }

    fn get(&self, digest: Digest) -> BoxFuture<'_, Result<Bytes, BlobError>> {
        Box::pin(async move {
            let bytes = tokio::fs::read(self.path_of(digest)).await.map_err(not_found_as(digest))?;
            Ok(Bytes::from(bytes))
        })
    }

    fn get_range(&self, digest: Digest, offset: u64, len: u64) -> BoxFuture<'_, Result<ByteStream, BlobError>> {
        Box::pin(async move {
            let mut file = tokio::fs::File::open(self.path_of(digest)).await.map_err(not_found_as(digest))?;
            file.seek(SeekFrom::Start(offset)).await?;
            let reader = file.take(len);
            let stream = futures_util::stream::unfold(reader, |mut reader| async move {
                let mut buf = vec![0u8; 64 * 1024];
                match reader.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), reader))
                    }
                    Err(e) => Some((Err(e), reader)),
                }
            });
            Ok(Box::pin(stream) as ByteStream)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Digest>, BlobError>> {
        Box::pin(async move {
            let root = self.root.join("sha256");
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for fan in std::fs::read_dir(root)? {
                    for entry in std::fs::read_dir(fan?.path())? {
                        if let Some(d) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
                            out.push(d);
                        }
                    }
                }
                Ok(out)
            })
            .await
            .map_err(std::io::Error::other)?
        })
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), BlobError>> {
        Box::pin(async move {
            let dirs: Vec<PathBuf> =
                std::mem::take(&mut *self.dirty_dirs.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
            if dirs.is_empty() {
                return Ok(());
            }
            let result = tokio::task::spawn_blocking({
                let dirs = dirs.clone();
                move || sync_dirs(dirs)
            })
            .await
            .map_err(std::io::Error::other)?;
            if let Err(e) = result {
                // Not synced: keep them dirty for the next barrier.
                self.dirty_dirs.lock().unwrap_or_else(|p| p.into_inner()).extend(dirs);
                return Err(e.into());
            }
            Ok(())
        })
    }

    fn delete(&self, digest: Digest) -> BoxFuture<'_, Result<(), BlobError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path_of(digest)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        Box::pin(futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()))
    }

    #[tokio::test]
    async fn stores_verified_blobs_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        let d = Digest::of(b"hello world");
        assert_eq!(store.put_stream(d, body(&[b"hello ", b"world"]), 100).await.unwrap(), 11);
        assert_eq!(store.get(d).await.unwrap(), Bytes::from_static(b"hello world"));
        assert_eq!(store.stat(d).await.unwrap().unwrap().size, 11);

        let other = Digest::of(b"other");
        let err = store.put_stream(other, body(&[b"not other"]), 100).await.unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }), "{err}");
        assert!(matches!(store.put_stream(other, body(&[b"other"]), 3).await, Err(BlobError::TooLarge { limit: 3 })));
        assert_eq!(store.stat(other).await.unwrap(), None);
        assert!(matches!(store.get(other).await, Err(BlobError::NotFound(_))));
        // Nothing half-written is left behind.
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(store.list().await.unwrap(), vec![d]);
        store.sync().await.unwrap();
        store.sync().await.unwrap();

        // A body over the in-memory buffer streams to disk; same guarantees.
        let chunk: &'static [u8] = Box::leak(vec![7u8; 300 * 1024].into_boxed_slice());
        let big: Vec<u8> = chunk.repeat(4);
        let big_digest = Digest::of(&big);
        assert!(matches!(
            store.put_stream(Digest::of(b"x"), body(&[chunk, chunk, chunk, chunk]), 10 << 20).await,
            Err(BlobError::DigestMismatch { .. })
        ));
        assert!(matches!(
            store.put_stream(big_digest, body(&[chunk, chunk, chunk, chunk]), 1 << 20).await,
            Err(BlobError::TooLarge { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(
            store.put_stream(big_digest, body(&[chunk, chunk, chunk, chunk]), 10 << 20).await.unwrap(),
            big.len() as u64
        );
        assert_eq!(store.get(big_digest).await.unwrap(), big);
        store.delete(big_digest).await.unwrap();

        let mut range = store.get_range(d, 6, 3).await.unwrap();
        assert_eq!(range.next().await.unwrap().unwrap(), Bytes::from_static(b"wor"));
        store.delete(d).await.unwrap();
        store.delete(d).await.unwrap();
        assert_eq!(store.stat(d).await.unwrap(), None);
    }
}
