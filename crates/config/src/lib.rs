//! Project configuration → one normalized route table.
//!
//! Reads the routing files of Netlify (`_redirects`, `_headers`,
//! `netlify.toml`), Cloudflare Pages (`_redirects`, `_headers`), Vercel
//! (`vercel.json`) and HelixStack (`helix.toml`), decides whose semantics
//! apply, parses them into the platform's own form
//! ([`helix_core::routes::v1::RouteTable`]) and lowers that into the
//! platform-neutral [`helix_core::routes::RouteTable`] the edge runs, with a
//! report of every rule that could not be honored exactly. Pure: callers
//! hand in file contents; this crate does no I/O and never serves anything.

mod build;
mod cloudflare;
mod detect;
pub mod functions;
mod helix;
mod lower;
pub mod netlify;
mod vercel;

use std::collections::BTreeMap;

use helix_core::routes::v1::{HeaderRule, RouteTable as SourceTable};
use helix_core::routes::{Diagnostic, DiagnosticKind, Platform, RouteTable};

pub use build::{BuildSettings, build_settings};
pub use detect::detect;
pub use lower::lower_legacy;

/// Config files read from the project root (not served).
pub const ROOT_CONFIG_FILES: &[&str] = &["helix.toml", "netlify.toml", "wrangler.toml", "vercel.json"];
/// Routing files read from the publish directory (not served either).
pub const PUBLISH_CONFIG_FILES: &[&str] = &["_redirects", "_headers", "_routes.json"];

/// Largest routing file read (10 MiB: about 200,000 `_redirects` lines;
/// the platforms recommend wildcards long before that).
pub const MAX_CONFIG_BYTES: usize = 10 * 1024 * 1024;

/// The files a compile looks at: name → contents.
#[derive(Debug, Default)]
pub struct ProjectFiles {
    /// `netlify.toml` and friends, from the project root.
    pub root: BTreeMap<String, Vec<u8>>,
    /// `_redirects`, `_headers`, from the publish directory's top level.
    pub publish: BTreeMap<String, Vec<u8>>,
}

/// The outcome of a compile.
#[derive(Debug)]
pub struct Compiled {
    /// What the edge runs.
    pub table: RouteTable,
    /// The rules as the files wrote them (for reports).
    pub source: SourceTable,
    /// Why this platform's semantics were chosen.
    pub reason: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// Whether the platform itself would refuse the deploy.
    pub fn rejected(&self) -> bool {
        self.diagnostics.iter().any(|d| d.kind == DiagnosticKind::Rejected)
    }
}

/// Compiles the routing files for `compat` (or the detected platform).
pub fn compile(files: &ProjectFiles, compat: Option<Platform>) -> Compiled {
    let mut diagnostics = Vec::new();
    let helix_toml = files
        .root
        .get("helix.toml")
        .filter(|b| b.len() <= MAX_CONFIG_BYTES)
        .map(|b| String::from_utf8_lossy(b).into_owned());
    let from_helix_toml = match helix_toml.as_deref().map(helix::compat) {
        Some(Ok(c)) => c,
        Some(Err(d)) => {
            diagnostics.push(d);
            None
        }
        None => None,
    };
    let (platform, reason) = match (compat, from_helix_toml) {
        (Some(p), _) => (p, format!("{} (set explicitly)", p.as_str())),
        (None, Some(p)) => (p, format!("{} (compat in helix.toml)", p.as_str())),
        (None, None) => detect(files),
    };
    let mut table = SourceTable { platform, ..SourceTable::default() };
    let text = |name: &str, from: &BTreeMap<String, Vec<u8>>, diags: &mut Vec<Diagnostic>| -> Option<String> {
        let bytes = from.get(name)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            diags.push(Diagnostic {
                file: name.to_owned(),
                line: 0,
                kind: DiagnosticKind::Rejected,
                message: format!("the file is {} bytes, over the limit of {MAX_CONFIG_BYTES}", bytes.len()),
            });
            return None;
        }
        match String::from_utf8(bytes.clone()) {
            Ok(s) => Some(s),
            Err(_) => {
                diags.push(Diagnostic {
                    file: name.to_owned(),
                    line: 0,
                    kind: DiagnosticKind::Rejected,
                    message: "the file is not valid UTF-8".into(),
                });
                None
            }
        }
    };
    match platform {
        Platform::Helix => {
            if let Some(text) = &helix_toml {
                helix::compile(text, &mut table, &mut diagnostics);
            }
            for name in PUBLISH_CONFIG_FILES {
                if files.publish.contains_key(*name) {
                    diagnostics.push(Diagnostic {
                        file: (*name).to_owned(),
                        line: 0,
                        kind: DiagnosticKind::Ignored,
                        message: "routing files are read only with a platform's semantics; set compat".into(),
                    });
                }
            }
        }
        Platform::Netlify => {
            let redirects = text("_redirects", &files.publish, &mut diagnostics);
            let headers = text("_headers", &files.publish, &mut diagnostics);
            let toml = text("netlify.toml", &files.root, &mut diagnostics);
            netlify::compile(redirects.as_deref(), headers.as_deref(), toml.as_deref(), &mut table, &mut diagnostics);
        }
        Platform::Vercel => {
            if let Some(t) = text("vercel.json", &files.root, &mut diagnostics) {
                vercel::compile(&t, &mut table, &mut diagnostics);
            }
        }
        Platform::CloudflarePages => {
            if let Some(t) = text("_redirects", &files.publish, &mut diagnostics) {
                table.redirects = cloudflare::parse_redirects(&t, "_redirects", &mut diagnostics);
            }
            if let Some(t) = text("_headers", &files.publish, &mut diagnostics) {
                table.headers = cloudflare::parse_headers(&t, "_headers", &mut diagnostics);
            }
            if let Some(t) = text("_routes.json", &files.publish, &mut diagnostics) {
                // Checked here; the functions compile applies it.
                let _ = cloudflare::routes_json(&t, &mut diagnostics);
            }
        }
    }
    let lowered = lower::lower(&table, &mut diagnostics);
    Compiled { table: lowered, source: table, reason, diagnostics }
}

/// The publish directory the root config names, if any (relative to the
/// root): `netlify.toml` `[build] publish`, `wrangler.toml`
/// `pages_build_output_dir`.
pub fn publish_dir(root: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    if let Some(dir) = root.get("helix.toml").and_then(|b| std::str::from_utf8(b).ok()).and_then(helix::publish_dir) {
        return Some(dir);
    }
    if let Some(toml) = root.get("netlify.toml").and_then(|b| std::str::from_utf8(b).ok())
        && let Some(dir) = netlify::publish_dir(toml)
    {
        return Some(dir);
    }
    if let Some(vercel) = root.get("vercel.json")
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(vercel)
        && let Some(dir) = v.get("outputDirectory").and_then(|d| d.as_str())
    {
        return Some(dir.to_owned());
    }
    #[derive(serde::Deserialize)]
    struct Wrangler {
        pages_build_output_dir: Option<String>,
    }
    let wrangler = std::str::from_utf8(root.get("wrangler.toml")?).ok()?;
    toml::from_str::<Wrangler>(wrangler).ok()?.pages_build_output_dir
}

/// The lines of a routing file that carry something: 1-based number and
/// trimmed text; blank lines and `#` comment lines are skipped.
pub(crate) fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n').enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// A header block for `path`, opened at `line` of `file`.
pub(crate) fn header_block(path: &str, file: &str, line: usize) -> HeaderRule {
    HeaderRule {
        path: path.to_owned(),
        set: Vec::new(),
        unset: Vec::new(),
        origin: helix_core::routes::Origin { file: file.to_owned(), line: line as u32 },
    }
}

/// Adds a header to a block; a name repeated in one block joins its
/// values with ", " (both platforms).
pub(crate) fn push_header(rule: &mut HeaderRule, name: &str, value: &str) {
    match rule.set.iter_mut().find(|(n, _)| n == name) {
        Some((_, existing)) => {
            existing.push_str(", ");
            existing.push_str(value);
        }
        None => rule.set.push((name.to_owned(), value.to_owned())),
    }
}

/// Whether a pattern regex needs the bounded backtracking matcher
/// (lookaround); an error names what is wrong with it.
pub(crate) fn regex_needs_backtracking(re: &str) -> Result<bool, String> {
    let linear = match regex::Regex::new(re) {
        Ok(_) => return Ok(false),
        Err(e) => e,
    };
    if !["(?=", "(?!", "(?<=", "(?<!"].iter().any(|l| re.contains(l)) {
        return Err(format!("not a supported pattern: {linear}"));
    }
    if has_backreference(re) {
        return Err("backreferences are not supported".into());
    }
    fancy_regex::RegexBuilder::new(re)
        .backtrack_limit(helix_core::routes::LOOKAROUND_BACKTRACK_LIMIT)
        .build()
        .map(|_| true)
        .map_err(|e| format!("not a supported pattern: {e}"))
}

/// `\1`…`\9` or `\k<name>` outside an escape.
fn has_backreference(re: &str) -> bool {
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.next(), Some('1'..='9' | 'k')) {
            return true;
        }
    }
    false
}

/// A user-written value regex, anchored; refused when it is invalid or
/// needs backtracking (lookaround, backreferences): values are matched in
/// linear time.
pub(crate) fn anchored_regex(value: &str) -> Result<String, String> {
    let anchored = format!("^(?:{value})$");
    regex::Regex::new(&anchored).map_err(|e| format!("value {value:?} is not a supported regex: {e}"))?;
    Ok(anchored)
}

pub(crate) fn diag(file: &str, line: usize, kind: DiagnosticKind, message: impl Into<String>) -> Diagnostic {
    Diagnostic { file: file.to_owned(), line: line as u32, kind, message: message.into() }
}

#[cfg(test)]
mod limits {
    use super::*;

    #[test]
    fn oversized_files_are_refused() {
        let mut files = ProjectFiles::default();
        files.publish.insert("_redirects".into(), "/a /b\n".repeat(MAX_CONFIG_BYTES / 6 + 1).into_bytes());
        let compiled = compile(&files, Some(Platform::Netlify));
        assert!(compiled.rejected());
        assert!(compiled.table.redirects.is_empty());
        assert!(compiled.diagnostics[0].message.contains("over the limit"), "{:?}", compiled.diagnostics);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn files(name: &str, text: &str) -> ProjectFiles {
        let mut f = ProjectFiles::default();
        if name == "netlify.toml" {
            f.root.insert(name.into(), text.as_bytes().to_vec());
        } else {
            f.publish.insert(name.into(), text.as_bytes().to_vec());
        }
        f
    }

    proptest! {
        /// No input makes a parser panic, and every rule it keeps has a
        /// path pattern starting with `/` and a valid status.
        #[test]
        fn parsers_are_total(
            text in "([/:*a-z0-9 !=#.\\t-]{0,40}\\n){0,12}|\\PC{0,200}",
            name in prop::sample::select(vec!["_redirects", "_headers", "netlify.toml"]),
            platform in prop::sample::select(vec![Platform::Netlify, Platform::CloudflarePages]),
        ) {
            let compiled = compile(&files(name, &text), Some(platform));
            for r in &compiled.source.redirects {
                prop_assert!(r.from.starts_with('/'), "{r:?}");
                prop_assert!((100..=999).contains(&r.status), "{r:?}");
            }
            for d in &compiled.diagnostics {
                prop_assert!(!d.message.is_empty());
            }
        }
    }
}
