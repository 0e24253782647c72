//! Cloudflare Pages: `_redirects` and `_headers` (SPEC §2.1–2.3).

use std::collections::HashSet;

use helix_core::routes::v1::{HeaderRule, Redirect};
use helix_core::routes::{Conditions, Diagnostic, DiagnosticKind, Origin};

use crate::{content_lines, diag, header_block, push_header};

const MAX_LINE_CHARS: usize = 2000;
const MAX_STATIC_REDIRECTS: usize = 2000;
const MAX_DYNAMIC_REDIRECTS: usize = 100;
/// Pages documents 100 header rules; its parser admits one more.
const MAX_HEADER_RULES: usize = 101;
const STATUSES: &[u16] = &[200, 301, 302, 303, 307, 308];

/// Whether a `from` counts against the dynamic budget.
fn is_dynamic(from: &str) -> bool {
    from.contains('*')
        || from.match_indices(':').any(|(i, _)| from[i + 1..].chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
}

/// Removes an inline comment: whitespace, `#`, and the rest of the line.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] == b'#' && bytes[i - 1].is_ascii_whitespace() {
            return line[..i].trim_end();
        }
    }
    line
}

pub(crate) fn parse_redirects(text: &str, file: &str, diags: &mut Vec<Diagnostic>) -> Vec<Redirect> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let (mut statics, mut dynamics) = (0usize, 0usize);
    let mut dynamic_from_here = false;
    for (line_no, line) in content_lines(text) {
        let mut ignore = |msg: String| diags.push(diag(file, line_no, DiagnosticKind::Ignored, msg));
        if line.chars().count() > MAX_LINE_CHARS {
            ignore(format!("line is longer than {MAX_LINE_CHARS} characters"));
            continue;
        }
        let tokens: Vec<&str> = strip_comment(line).split_whitespace().collect();
        if !(2..=3).contains(&tokens.len()) {
            ignore(format!(
                "Expected exactly 2 or 3 whitespace-separated tokens. Got {} (`from to [status]`; Pages has no query or condition fields)",
                tokens.len()
            ));
            continue;
        }
        let status = match tokens.get(2) {
            None => 302,
            Some(t) => match t.parse::<u16>() {
                Ok(s) if STATUSES.contains(&s) => s,
                _ => {
                    ignore(format!("Valid status codes are 200, 301, 302 (default), 303, 307, or 308. Got {t}"));
                    continue;
                }
            },
        };
        let raw_from = tokens[0];
        if raw_from.contains("://") {
            ignore(format!("Only relative URLs are allowed as a source on Pages: {raw_from:?}"));
            continue;
        }
        let from = normalize_from(raw_from);
        let to = tokens[1].to_owned();
        let absolute = to.starts_with("https://") || to.starts_with("http://");
        if to.starts_with("http://") {
            ignore(format!("{to:?}: only https:// destinations are URLs on Pages"));
            continue;
        }
        if status == 200 && absolute {
            ignore(format!("{to:?}: a 200 rule must point to a relative path; Pages does not proxy"));
            continue;
        }
        let to_index = matches!(to.as_str(), "/index" | "/index.html");
        if to_index && (from == "/" || from.ends_with("/*")) {
            ignore(format!(
                "Infinite loop detected: {from} → {to}; Pages drops it (without a 404.html it serves index.html for misses)"
            ));
            continue;
        }
        if !seen.insert(from.clone()) {
            ignore(format!("{from} is already redirected by an earlier line"));
            continue;
        }
        dynamic_from_here |= is_dynamic(&from);
        if dynamic_from_here {
            dynamics += 1;
            if dynamics > MAX_DYNAMIC_REDIRECTS {
                ignore(format!(
                    "more than {MAX_DYNAMIC_REDIRECTS} dynamic rules: Pages drops this line and every later one"
                ));
                break;
            }
        } else {
            statics += 1;
            if statics > MAX_STATIC_REDIRECTS {
                ignore(format!("more than {MAX_STATIC_REDIRECTS} static rules"));
                continue;
            }
        }
        if from.matches('*').count() > 1 {
            ignore(format!("{from:?}: only one `*` is allowed"));
            continue;
        }
        out.push(Redirect {
            from,
            query: Vec::new(),
            to,
            status,
            force: true,
            conditions: Conditions::default(),
            has: Vec::new(),
            missing: Vec::new(),
            methods: Vec::new(),
            proxy_headers: Vec::new(),
            origin: Origin { file: file.to_owned(), line: line_no as u32 },
        });
    }
    out
}

/// A leading `/` is added; query and fragment are dropped, as Pages does.
fn normalize_from(raw: &str) -> String {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if path.starts_with('/') { path.to_owned() } else { format!("/{path}") }
}

pub(crate) fn parse_headers(text: &str, file: &str, diags: &mut Vec<Diagnostic>) -> Vec<HeaderRule> {
    let mut rules: Vec<HeaderRule> = Vec::new();
    let mut skipping = false;
    for (line_no, line) in content_lines(text) {
        let mut ignore = |msg: String| diags.push(diag(file, line_no, DiagnosticKind::Ignored, msg));
        if line.chars().count() > MAX_LINE_CHARS {
            ignore(format!("line is longer than {MAX_LINE_CHARS} characters"));
            continue;
        }
        let opens_rule = line.starts_with('/') || line.split_whitespace().next().is_some_and(|t| t.contains("://"));
        if opens_rule {
            skipping = true;
            if line.contains("://") {
                let host = line.strip_prefix("https://").map(|rest| rest.split('/').next().unwrap_or_default());
                match host {
                    None => {
                        ignore(format!("{line:?}: absolute URLs must use https://"));
                        continue;
                    }
                    Some(h) if h.contains(':') && !h.starts_with(':') => {
                        ignore(format!("{line:?}: a port is not allowed"));
                        continue;
                    }
                    Some(_) => {}
                }
            }
            if line.matches('*').count() > 1 || (line.contains('*') && line.contains(":splat")) {
                ignore(format!("{line:?}: only one `*` per path, and not together with :splat"));
                continue;
            }
            if rules.len() >= MAX_HEADER_RULES {
                ignore(format!("more than {} header rules", MAX_HEADER_RULES - 1));
                continue;
            }
            skipping = false;
            // A later block for the same path replaces the earlier one.
            rules.retain(|r| r.path != line);
            rules.push(header_block(line, file, line_no));
            continue;
        }
        if skipping {
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            ignore("a header before any path".into());
            continue;
        };
        if let Some(name) = line.strip_prefix("! ") {
            rule.unset.push(name.trim().to_ascii_lowercase());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            ignore(format!("{line:?} is neither a path nor `Name: value`"));
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name.is_empty() || name.contains(char::is_whitespace) {
            ignore(format!("invalid header name {name:?}"));
            continue;
        }
        push_header(rule, &name, value);
    }
    let (kept, empty): (Vec<_>, Vec<_>) = rules.into_iter().partition(|r| !r.set.is_empty() || !r.unset.is_empty());
    for r in empty {
        diags.push(diag(file, r.origin.line as usize, DiagnosticKind::Ignored, format!("{} has no headers", r.path)));
    }
    kept
}

/// `_routes.json` (SPEC §2.6): which paths go to Pages Functions, as
/// `(include, exclude)`. Checked as Pages checks it: an invalid file is
/// rejected (and fails the deploy).
pub(crate) fn routes_json(text: &str, diags: &mut Vec<Diagnostic>) -> Option<(Vec<String>, Vec<String>)> {
    const FILE: &str = "_routes.json";
    let mut reject = |msg: String| {
        diags.push(diag(FILE, 0, DiagnosticKind::Rejected, msg));
        None
    };
    let json: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return reject(format!("invalid JSON: {e}")),
    };
    if json.get("version").and_then(serde_json::Value::as_u64) != Some(1) {
        return reject("`version` must be 1".into());
    }
    let list = |key: &str| -> Result<Vec<String>, String> {
        match json.get(key) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("`{key}` must list strings")))
                .collect(),
            Some(_) => Err(format!("`{key}` must be an array")),
        }
    };
    let (include, exclude) = match (list("include"), list("exclude")) {
        (Ok(i), Ok(e)) => (i, e),
        (Err(e), _) | (_, Err(e)) => return reject(e),
    };
    if include.is_empty() {
        return reject("Routes must have at least 1 include rule".into());
    }
    if include.len() + exclude.len() > 100 {
        return reject(format!(
            "Routes may have at most 100 include and exclude rules together, found {}",
            include.len() + exclude.len()
        ));
    }
    for rule in include.iter().chain(&exclude) {
        if !rule.starts_with('/') {
            return reject(format!("All rules must start with '/': {rule:?}"));
        }
        if rule.len() > 100 {
            return reject(format!("Rules are limited to 100 characters: {rule:?}"));
        }
    }
    for rules in [&include, &exclude] {
        if let Some((a, b)) = overlap(rules) {
            return reject(format!("Overlapping rules found: {a:?} covers {b:?}"));
        }
    }
    Some((include, exclude))
}

/// Two rules in one list where the first (ending in `*`) covers the other.
fn overlap(rules: &[String]) -> Option<(&str, &str)> {
    for a in rules {
        // Only a `/x/*` rule covers others (`/x*` next to `/x/*` is fine).
        let Some(prefix) = a.strip_suffix("/*").map(|p| format!("{p}/")) else { continue };
        for b in rules {
            if a != b && b.starts_with(&prefix) {
                return Some((a, b));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_follow_pages_rules() {
        let mut d = Vec::new();
        let text = "/a /b\n/c?x=1 /d 301\nyeah.com /e\n/f /g 404\n/h /i 301 extra\n/* /index.html 200\nhttps://x.com/a /b\n/a /dup\n/p/:id /q/:id 200\n/x https://ext.com 200\n";
        let r = parse_redirects(text, "_redirects", &mut d);
        let got: Vec<(&str, &str, u16)> = r.iter().map(|r| (r.from.as_str(), r.to.as_str(), r.status)).collect();
        assert_eq!(got, [("/a", "/b", 302), ("/c", "/d", 301), ("/yeah.com", "/e", 302), ("/p/:id", "/q/:id", 200)]);
        assert_eq!(d.iter().map(|d| d.line).collect::<Vec<_>>(), [4, 5, 6, 7, 8, 10]);
    }

    #[test]
    fn dynamic_budget_drops_the_rest_of_the_file() {
        let mut text = String::from("/static /s\n");
        for i in 0..105 {
            text.push_str(&format!("/d{i}/* /x\n"));
        }
        let mut d = Vec::new();
        let r = parse_redirects(&text, "_redirects", &mut d);
        assert_eq!(r.len(), 101);
        assert_eq!(d.len(), 1, "one report for the dropped tail");
    }

    #[test]
    fn headers_unset_join_and_replace() {
        let mut d = Vec::new();
        let h =
            parse_headers("/a\n  X-A: 1\n  x-a: 2\n  ! Server\n/a\n  X-B: 3\n/b\n/*/*\n  X: y\n", "_headers", &mut d);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].set, vec![("x-b".to_owned(), "3".to_owned())]);
        assert_eq!(d.len(), 2, "{d:?}");
        let h = parse_headers("/a\n  X-A: 1\n  x-a: 2\n  ! Server\n", "_headers", &mut d);
        assert_eq!(h[0].set, vec![("x-a".to_owned(), "1, 2".to_owned())]);
        assert_eq!(h[0].unset, vec!["server".to_owned()]);
    }
}
