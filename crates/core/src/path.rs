//! Site paths: the keys of a deployment's file table.
//!
//! A site path is what a URL path maps to: it starts with `/`, its segments
//! are non-empty, never `.` or `..`, and contain no backslash, NUL or other
//! control character. Uploads are normalized (a missing leading `/` is added,
//! repeated `/` collapse) before they are checked, so two spellings of one
//! path are caught as duplicates.

use std::fmt;

/// Longest site path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest single segment accepted, in bytes (a common file-name limit).
pub const MAX_SEGMENT_BYTES: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path {0:?} is empty")]
    Empty(String),
    #[error("path {0:?} contains a `.` or `..` segment")]
    DotSegment(String),
    #[error("path {0:?} contains a backslash")]
    Backslash(String),
    #[error("path {0:?} contains a NUL or control character")]
    Control(String),
    #[error("path {0:?} ends with `/`: name a file, not a directory")]
    TrailingSlash(String),
    #[error("path {0:?} is longer than {MAX_PATH_BYTES} bytes or has a segment over {MAX_SEGMENT_BYTES}")]
    TooLong(String),
    #[error("path {0:?} is absolute on the uploader's machine (a drive letter or `//`)")]
    Absolute(String),
}

/// A validated, normalized site path such as `/blog/index.html`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SitePath(String);

impl SitePath {
    /// Normalizes and validates an uploaded path.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let shown = || raw.chars().take(120).collect::<String>();
        if raw.is_empty() || raw == "/" {
            return Err(PathError::Empty(shown()));
        }
        if raw.chars().any(char::is_control) {
            return Err(PathError::Control(shown()));
        }
        if raw.contains('\\') {
            return Err(PathError::Backslash(shown()));
        }
        // `C:/x` or a UNC-like `//host/x` name a place on the uploader's disk.
        let bytes = raw.as_bytes();
        if (bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic()) || raw.starts_with("//") {
            return Err(PathError::Absolute(shown()));
        }
        if raw.ends_with('/') {
            return Err(PathError::TrailingSlash(shown()));
        }
        let mut out = String::with_capacity(raw.len() + 1);
        for segment in raw.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." {
                return Err(PathError::DotSegment(shown()));
            }
            if segment.len() > MAX_SEGMENT_BYTES {
                return Err(PathError::TooLong(shown()));
            }
            out.push('/');
            out.push_str(segment);
        }
        if out.is_empty() {
            return Err(PathError::Empty(shown()));
        }
        if out.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(shown()));
        }
        Ok(SitePath(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file-name extension, without the dot, if any.
    pub fn extension(&self) -> Option<&str> {
        let name = self.0.rsplit('/').next().unwrap_or_default();
        name.rsplit_once('.').map(|(_, ext)| ext).filter(|e| !e.is_empty())
    }
}

impl fmt::Display for SitePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SitePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SitePath({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(SitePath::parse("a/b.html").unwrap().as_str(), "/a/b.html");
        assert_eq!(SitePath::parse("/a//b").unwrap().as_str(), "/a/b");
        assert_eq!(SitePath::parse("/index.html").unwrap().extension(), Some("html"));
        assert_eq!(SitePath::parse("/Makefile").unwrap().extension(), None);
    }

    #[test]
    fn rejects_hostile_paths() {
        type Case = (&'static str, fn(String) -> PathError);
        let cases: &[Case] = &[
            ("", PathError::Empty),
            ("/", PathError::Empty),
            ("/a/../b", PathError::DotSegment),
            ("/../etc/passwd", PathError::DotSegment),
            ("/./a", PathError::DotSegment),
            ("/a\\b", PathError::Backslash),
            ("/a\0b", PathError::Control),
            ("/a\nb", PathError::Control),
            ("/dir/", PathError::TrailingSlash),
            ("//server/share", PathError::Absolute),
            ("C:/Windows", PathError::Absolute),
        ];
        for (raw, want) in cases {
            assert_eq!(SitePath::parse(raw), Err(want(raw.to_string())), "{raw:?}");
        }
        assert!(matches!(SitePath::parse(&format!("/{}", "a".repeat(256))), Err(PathError::TooLong(_))));
        assert!(matches!(SitePath::parse(&"/aaaa".repeat(300)), Err(PathError::TooLong(_))));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any input either fails with an error or yields a normalized path
        /// that is its own normal form and carries nothing hostile.
        #[test]
        fn parse_is_total_and_normalizes(raw in "\\PC{0,64}|[a-z./\\\\:\\x00-\\x1f]{0,32}") {
            if let Ok(p) = SitePath::parse(&raw) {
                let s = p.as_str();
                prop_assert!(s.starts_with('/') && !s.ends_with('/') && !s.contains("//"));
                prop_assert!(s.split('/').skip(1).all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
                prop_assert!(!s.contains('\\') && !s.chars().any(char::is_control));
                let again = SitePath::parse(s);
                prop_assert_eq!(again, Ok(p.clone()));
            }
        }
    }
}
