//! A deployment's file table as the edge serves it: site path → file, with
//! the response headers each file needs prepared once, when the site loads.

use std::collections::HashMap;

use helix_core::Digest;
use helix_core::manifest::FileEntry;
use http::HeaderValue;

/// Site path (`/a/b.html`) → file.
#[derive(Default)]
pub struct Files(HashMap<Box<str>, ServedFile>);

impl Files {
    pub fn new<'m>(entries: impl IntoIterator<Item = (&'m String, &'m FileEntry)>) -> Files {
        Files(entries.into_iter().map(|(path, entry)| (path.as_str().into(), ServedFile::from_entry(entry))).collect())
    }

    pub fn get(&self, path: &str) -> Option<&ServedFile> {
        self.0.get(path)
    }

    /// Bytes the table takes in memory, roughly (for the site cache).
    pub fn memory_estimate(&self) -> usize {
        self.0.iter().map(|(path, file)| path.len() + file.memory_estimate() + 48).sum::<usize>()
            + self.0.capacity() * 8
    }
}

pub struct ServedFile {
    pub identity: Representation,
    pub content_type: HeaderValue,
    pub br: Option<Representation>,
    pub gzip: Option<Representation>,
}

#[derive(Clone)]
pub struct Representation {
    pub digest: Digest,
    pub size: u64,
    pub etag: HeaderValue,
}

impl Representation {
    fn new(digest: Digest, size: u64, suffix: &str) -> Self {
        let etag = HeaderValue::from_str(&format!("\"{digest}{suffix}\"")).expect("hex is a valid header value");
        Representation { digest, size, etag }
    }
}

impl ServedFile {
    fn from_entry(entry: &FileEntry) -> Self {
        ServedFile {
            identity: Representation::new(entry.digest, entry.size, ""),
            content_type: HeaderValue::from_str(&entry.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
            br: entry.encodings.br.map(|v| Representation::new(v.digest, v.size, ".br")),
            gzip: entry.encodings.gzip.map(|v| Representation::new(v.digest, v.size, ".gz")),
        }
    }

    fn memory_estimate(&self) -> usize {
        let rep = std::mem::size_of::<Representation>() + 72;
        std::mem::size_of::<ServedFile>()
            + self.content_type.len()
            + rep * (1 + usize::from(self.br.is_some()) + usize::from(self.gzip.is_some()))
    }
}
