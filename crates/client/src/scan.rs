//! Reading a site directory: every file, its site path and SHA-256.
//!
//! Refuses (naming the file) symlinks that leave the directory, names that
//! are not UTF-8, and anything over the limits, before a byte is uploaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, anyhow, bail};
use helix_core::Digest;
use helix_core::limits::Limits;
use helix_core::path::SitePath;
use indicatif::ProgressBar;

/// Names never deployed: version control and desktop litter.
const SKIPPED: &[&str] = &[".git", ".hg", ".svn", ".DS_Store", "Thumbs.db"];

pub struct ScannedFile {
    pub disk: PathBuf,
    pub size: u64,
    pub digest: Digest,
}

pub struct Scan {
    /// Site path → file.
    pub files: BTreeMap<String, ScannedFile>,
    pub total_bytes: u64,
}

/// Lists the files of `root`.
pub fn list(root: &Path, limits: &Limits) -> anyhow::Result<Vec<(String, PathBuf, u64)>> {
    let canonical_root = root.canonicalize().with_context(|| format!("cannot open directory {}", root.display()))?;
    if !canonical_root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(&canonical_root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !SKIPPED.iter().any(|s| e.file_name() == *s));
    for entry in walker {
        let entry = entry.map_err(|e| {
            let at = e.path().map(|p| p.display().to_string()).unwrap_or_default();
            if e.loop_ancestor().is_some() { anyhow!("symlink loop at {at}") } else { anyhow!("cannot read {at}: {e}") }
        })?;
        let path = entry.path();
        if entry.path_is_symlink() {
            let target =
                path.canonicalize().with_context(|| format!("symlink {} points to nothing", path.display()))?;
            if !target.starts_with(&canonical_root) {
                bail!(
                    "symlink {} points outside the site directory (to {}); refusing to deploy it",
                    path.display(),
                    target.display()
                );
            }
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = path.strip_prefix(&canonical_root).expect("walked paths are under the root");
        let Some(rel_str) = rel.to_str() else {
            bail!("file name {} is not valid UTF-8; rename it to deploy", path.display());
        };
        let site_path = SitePath::parse(rel_str).map_err(|e| anyhow!("cannot deploy {}: {e}", path.display()))?;
        let size = entry.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
        if size > limits.max_file_bytes {
            bail!("{} is {size} bytes, over the limit of {} bytes per file", path.display(), limits.max_file_bytes);
        }
        out.push((site_path.as_str().to_owned(), path.to_owned(), size));
        if out.len() > limits.max_files {
            bail!("{} has more than {} files, the limit per deployment", root.display(), limits.max_files);
        }
    }
    if out.is_empty() {
        bail!("{} has no files to deploy", root.display());
    }
    let total: u64 = out.iter().map(|(_, _, s)| s).sum();
    if total > limits.max_total_bytes {
        bail!(
            "{} holds {total} bytes, over the limit of {} bytes per deployment",
            root.display(),
            limits.max_total_bytes
        );
    }
    Ok(out)
}

/// Hashes the listed files on every core.
pub fn hash(files: Vec<(String, PathBuf, u64)>, progress: &ProgressBar) -> anyhow::Result<Scan> {
    let total_bytes = files.iter().map(|(_, _, s)| s).sum();
    let work = Mutex::new(files.into_iter());
    let results = Mutex::new(BTreeMap::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let next = work.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some((site, disk, _)) = next else { return };
                    match std::fs::read(&disk) {
                        Ok(bytes) => {
                            let file = ScannedFile { size: bytes.len() as u64, digest: Digest::of(&bytes), disk };
                            progress.inc(file.size);
                            results.lock().unwrap_or_else(|p| p.into_inner()).insert(site, file);
                        }
                        Err(e) => {
                            let err = anyhow!("cannot read {}: {e}", disk.display());
                            first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(err);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(Scan { files: results.into_inner().unwrap_or_else(|p| p.into_inner()), total_bytes })
}
