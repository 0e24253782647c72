//! Build caches, per project (DESIGN.md §7).
//!
//! `<cache>/<project>/home` is the sandbox's `/cache`: package managers'
//! download caches, safe to share between lockfiles. Installed
//! dependencies (`node_modules`) are kept under the SHA-256 of the lockfile
//! and restored only for the same lockfile, which lets an unchanged
//! lockfile skip the install. Framework caches (`.next/cache`, `.astro`,
//! Hugo's `resources/_gen`, …) are kept by path.
//!
//! Restore and save are renames within one file system: free, and atomic,
//! so two builds of one project never share a directory: the second finds
//! nothing and starts cold.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub struct ProjectCache {
    root: PathBuf,
}

impl ProjectCache {
    pub fn open(caches: &Path, project: &str) -> std::io::Result<ProjectCache> {
        let root = caches.join(project);
        std::fs::create_dir_all(root.join("home"))?;
        std::fs::create_dir_all(root.join("deps"))?;
        std::fs::create_dir_all(root.join("framework"))?;
        Ok(ProjectCache { root })
    }

    /// Mounted at `/cache` in the sandbox.
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// The dependency cache key of a lockfile: its SHA-256, hex.
    pub fn lockfile_key(lockfile: &Path) -> std::io::Result<String> {
        Ok(hex::encode(Sha256::digest(std::fs::read(lockfile)?)))
    }

    /// Moves the installed dependencies kept for `key` into `dest`;
    /// whether there were any.
    pub fn restore_deps(&self, key: &str, dest: &Path) -> bool {
        let kept = self.root.join("deps").join(key);
        !dest.exists() && std::fs::rename(&kept, dest).is_ok()
    }

    /// Keeps `src` (installed dependencies) for `key`, dropping those kept
    /// for other lockfiles.
    pub fn save_deps(&self, key: &str, src: &Path) {
        let deps = self.root.join("deps");
        if let Ok(entries) = std::fs::read_dir(&deps) {
            for e in entries.flatten() {
                if e.file_name() != key {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        if src.is_dir() {
            let _ = std::fs::rename(src, deps.join(key));
        }
    }

    /// Moves a kept framework cache into the workspace at `rel` (under
    /// `base`); directories it creates on the way go to `owner`.
    pub fn restore_framework(&self, rel: &str, base: &Path, owner: Option<u32>) -> bool {
        let kept = self.framework_dir(rel);
        let dest = base.join(rel);
        if dest.exists() || !kept.exists() {
            return false;
        }
        let mut missing = Vec::new();
        let mut dir = dest.parent();
        while let Some(d) = dir.filter(|d| !d.exists()) {
            missing.push(d.to_owned());
            dir = d.parent();
        }
        for d in missing.iter().rev() {
            if std::fs::create_dir(d).is_err() {
                return false;
            }
            if let Some(uid) = owner {
                let _ = std::os::unix::fs::lchown(d, Some(uid), Some(uid));
            }
        }
        std::fs::rename(&kept, &dest).is_ok()
    }

    /// Clears the download caches when they hold over `max_bytes`;
    /// whether it did.
    pub fn trim(&self, max_bytes: u64) -> bool {
        if crate::sandbox::disk_usage(&self.home()) <= max_bytes {
            return false;
        }
        let _ = std::fs::remove_dir_all(self.home());
        std::fs::create_dir_all(self.home()).is_ok()
    }

    pub fn save_framework(&self, rel: &str, base: &Path) {
        let src = base.join(rel);
        if !src.is_dir() || src.is_symlink() {
            return;
        }
        let kept = self.framework_dir(rel);
        let _ = std::fs::remove_dir_all(&kept);
        if let Some(parent) = kept.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::rename(&src, &kept);
    }

    fn framework_dir(&self, rel: &str) -> PathBuf {
        self.root.join("framework").join(rel.replace('/', "%2F"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_back_only_for_the_same_lockfile() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProjectCache::open(dir.path(), "p").unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("node_modules/x")).unwrap();
        cache.save_deps("aaa", &ws.join("node_modules"));
        assert!(!ws.join("node_modules").exists());
        assert!(!cache.restore_deps("bbb", &ws.join("node_modules")));
        assert!(cache.restore_deps("aaa", &ws.join("node_modules")));
        assert!(ws.join("node_modules/x").is_dir());
        // Taken: a second build of the project finds nothing.
        assert!(!cache.restore_deps("aaa", &dir.path().join("other")));
        cache.save_deps("ccc", &ws.join("node_modules"));
        assert!(!dir.path().join("p/deps/aaa").exists(), "other lockfiles' dependencies are dropped");
    }

    #[test]
    fn framework_caches_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProjectCache::open(dir.path(), "p").unwrap();
        let base = dir.path().join("ws");
        std::fs::create_dir_all(base.join(".next/cache/images")).unwrap();
        cache.save_framework(".next/cache", &base);
        assert!(!base.join(".next/cache").exists());
        std::fs::remove_dir_all(base.join(".next")).unwrap();
        assert!(cache.restore_framework(".next/cache", &base, None));
        assert!(base.join(".next/cache/images").is_dir());
    }
}
