//! Keeping the host inside the build's tree. The worker reads and moves
//! files of the build as the server's user (often root): a symlink the
//! repository or a build step left must never lead it elsewhere.

use std::path::{Component, Path, PathBuf};

/// Checks that `path` (which need not exist) resolves inside `root`:
/// every existing part of it, symlinks followed, stays under `root`.
pub fn inside(root: &Path, path: &Path) -> Result<(), String> {
    let root = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
    let shown = path.strip_prefix(&root).unwrap_or(path).display().to_string();
    // The longest existing prefix, resolved; the rest cannot be a link.
    let mut existing = path.to_path_buf();
    let mut rest: Vec<PathBuf> = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        let Some(name) = existing.file_name().map(PathBuf::from) else { break };
        rest.push(name);
        if !existing.pop() {
            break;
        }
    }
    let resolved = existing.canonicalize().map_err(|_| format!("{shown} is a broken symlink"))?;
    if !resolved.starts_with(&root) {
        return Err(format!("{shown} leads outside the build (to {}): refused", resolved.display()));
    }
    if rest.iter().any(|p| p.components().any(|c| !matches!(c, Component::Normal(_)))) {
        return Err(format!("{shown} is not a plain path"));
    }
    Ok(())
}

/// Refuses a tree holding a symlink whose target leaves it (or dangles).
pub fn no_escaping_symlinks(root: &Path) -> Result<(), String> {
    let canonical = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.path_is_symlink() {
            let shown = entry.path().strip_prefix(root).unwrap_or(entry.path()).display().to_string();
            match entry.path().canonicalize() {
                Ok(target) if target.starts_with(&canonical) => {}
                Ok(target) => {
                    return Err(format!(
                        "the repository's symlink {shown} points outside it (to {}); refusing to build",
                        target.display()
                    ));
                }
                // A dangling link is harmless only if nothing follows it;
                // the host never does without this check.
                Err(_) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_out_of_the_tree_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        std::fs::create_dir_all(root.join("site/public")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("site", root.join("inner-link")).unwrap();
        assert!(inside(&root, &root.join("site/public")).is_ok());
        assert!(inside(&root, &root.join("site/not-yet/deeper")).is_ok());
        assert!(inside(&root, &root.join("inner-link/public")).is_ok());
        let e = inside(&root, &root.join("etc-link/ssh")).unwrap_err();
        assert!(e.contains("outside"), "{e}");
        assert!(inside(&root, &root.join("etc-link/missing/x")).is_err());
        let e = no_escaping_symlinks(&root).unwrap_err();
        assert!(e.contains("etc-link"), "{e}");
        std::fs::remove_file(root.join("etc-link")).unwrap();
        assert!(no_escaping_symlinks(&root).is_ok());
    }
}
