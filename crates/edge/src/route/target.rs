//! Turning a rule's [`Template`] and a request's captures into a target:
//! a `Location`, a proxied URL, a path to look up, a header value.
//!
//! Captures are request text. They are percent-encoded where a URL needs
//! it, and a redirect whose template is a path on this host stays one: no
//! capture can turn it into `//evil.example` or move an absolute target to
//! another host than the one the rule wrote.

use helix_core::routes::{Piece, Template};
use percent_encoding::{AsciiSet, CONTROLS};

/// Captured values of one match, by name (names borrowed from the rule).
/// Values from the path are decoded text; values from the query string
/// are as the request encoded them (`raw`).
#[derive(Debug, Default)]
pub(crate) struct Captures<'r> {
    pairs: Vec<(&'r str, String, bool)>,
}

impl<'r> Captures<'r> {
    /// A decoded value (from the path).
    pub fn push(&mut self, name: &'r str, value: impl Into<String>) {
        self.pairs.push((name, value.into(), false));
    }

    /// A value still percent-encoded (from the query string).
    pub fn push_raw(&mut self, name: &'r str, value: impl Into<String>) {
        self.pairs.push((name, value.into(), true));
    }

    /// The named values taken from the path (not numbered groups, not
    /// query values).
    pub fn named(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .filter(|(n, _, raw)| !raw && !n.is_empty() && !n.bytes().all(|b| b.is_ascii_digit()))
            .map(|(n, v, _)| (*n, v.as_str()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entry(name).map(|(v, _)| v)
    }

    fn entry(&self, name: &str) -> Option<(&str, bool)> {
        self.pairs.iter().rev().find(|(n, _, _)| *n == name).map(|(_, v, raw)| (v.as_str(), *raw))
    }

    pub fn extend(&mut self, other: Captures<'r>) {
        self.pairs.extend(other.pairs);
    }
}

/// What a capture may not carry raw into a URL: controls, space, the
/// characters that end or escape a path (`?`, `#`, `%`, `\`) and those a
/// URL never holds raw.
const CAPTURE_IN_URL: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Characters a `Location` may not carry raw whoever wrote them: controls,
/// space, quotes, angle brackets, backtick, backslash and everything beyond
/// ASCII. `%` stays, so escapes a rule wrote survive.
const LOCATION_UNSAFE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`').add(b'\\');

/// The template as a URL (a `Location` or a proxied URL): text as the rule
/// wrote it, captures percent-encoded.
pub(crate) fn render_url(template: &Template, caps: &Captures<'_>) -> String {
    let mut out = String::new();
    for piece in &template.0 {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Capture { capture } => match caps.entry(capture) {
                Some((value, true)) => out.push_str(value),
                Some((value, false)) => out.extend(percent_encoding::utf8_percent_encode(value, CAPTURE_IN_URL)),
                None => {}
            },
        }
    }
    out
}

/// The template as a path to look up in the deployment: text decoded (the
/// file table holds decoded paths), captures as they are.
pub(crate) fn render_path(template: &Template, caps: &Captures<'_>) -> String {
    let mut out = String::new();
    for piece in &template.0 {
        match piece {
            Piece::Text(t) => match percent_encoding::percent_decode_str(t).decode_utf8() {
                Ok(decoded) => out.push_str(&decoded),
                Err(_) => out.push_str(t),
            },
            Piece::Capture { capture } => match caps.entry(capture) {
                Some((value, true)) => match percent_encoding::percent_decode_str(value).decode_utf8() {
                    Ok(decoded) => out.push_str(&decoded),
                    Err(_) => out.push_str(value),
                },
                Some((value, false)) => out.push_str(value),
                None => {}
            },
        }
    }
    out
}

/// The template as a header value: text and captures as they are.
pub(crate) fn render_text(template: &Template, caps: &Captures<'_>) -> String {
    let mut out = String::new();
    for piece in &template.0 {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Capture { capture } => out.push_str(caps.get(capture).unwrap_or_default()),
        }
    }
    out
}

/// A redirect target that cannot leave the host its rule names: a path
/// template renders to a path (never `//host` or `/\host`); an absolute
/// template keeps the host its own text spells out. `rendered` is what
/// [`render_url`] made of `template`.
pub(crate) fn confine(template: &Template, rendered: String) -> String {
    let lead = template.leading_text();
    if template.is_absolute() {
        if template.names_its_host() {
            return rendered;
        }
        // The rule's text ends inside the host: what follows it is a path.
        let scheme_end = lead.find("://").map_or(0, |i| i + 3);
        if lead.len() == scheme_end {
            // The rule takes the whole host from the request; it says so.
            return rendered;
        }
        let Some(rest) = rendered.strip_prefix(lead) else { return rendered };
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            return rendered;
        }
        return format!("{lead}/{rest}");
    }
    if let Some(authority) = lead.strip_prefix("//") {
        // Protocol-relative by the rule's own text: it keeps its host too.
        if authority.contains(['/', '?', '#']) {
            return rendered;
        }
        let Some(rest) = rendered.strip_prefix(lead) else { return rendered };
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            return rendered;
        }
        return format!("{lead}/{rest}");
    }
    let path = rendered.trim_start_matches(['/', '\\']);
    format!("/{path}")
}

/// A redirect the edge makes from the request's own (decoded) path, such
/// as trailing-slash and clean-URL 308s: encoded again where a URL needs
/// it, with one leading `/`, so a path like `//evil.example/` can never
/// become a protocol-relative `Location`.
pub(crate) fn on_this_site(path: String) -> String {
    percent_encoding::utf8_percent_encode(&one_leading_slash(path), CAPTURE_IN_URL).to_string()
}

/// `//x`, `/\x` → `/x`: a path that no browser reads as another host.
pub(crate) fn one_leading_slash(path: String) -> String {
    if path.starts_with("//") || path.starts_with("/\\") {
        format!("/{}", path.trim_start_matches(['/', '\\']))
    } else {
        path
    }
}

/// A `Location` header value: unsafe characters percent-encoded.
pub(crate) fn location_value(target: &str) -> String {
    percent_encoding::utf8_percent_encode(target, LOCATION_UNSAFE).to_string()
}

/// Appends the request's query unless the target has one of its own.
pub(crate) fn with_query(target: String, query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else { return target };
    let (base, fragment) = match target.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (target.as_str(), None),
    };
    if base.contains('?') {
        return target;
    }
    match fragment {
        Some(f) => format!("{base}?{q}#{f}"),
        None => format!("{base}?{q}"),
    }
}

pub(crate) fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// The path part of a target (before `?` or `#`).
pub(crate) fn path_part(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(pieces: &[&str]) -> Template {
        Template(
            pieces
                .iter()
                .map(|p| match p.strip_prefix(':') {
                    Some(c) => Piece::Capture { capture: c.into() },
                    None => Piece::Text((*p).into()),
                })
                .collect(),
        )
    }

    fn caps(pairs: &[(&'static str, &str)]) -> Captures<'static> {
        let mut c = Captures::default();
        for (n, v) in pairs {
            c.push(n, *v);
        }
        c
    }

    #[test]
    fn captures_never_make_a_path_leave_the_host() {
        let t = template(&["/", ":splat"]);
        let c = caps(&[("splat", "//evil.com")]);
        assert_eq!(confine(&t, render_url(&t, &c)), "/evil.com");
        let c = caps(&[("splat", "\\evil.com")]);
        assert_eq!(confine(&t, render_url(&t, &c)), "/%5Cevil.com");
        let t = template(&[":splat"]);
        let c = caps(&[("splat", "https://evil.com/")]);
        assert_eq!(confine(&t, render_url(&t, &c)), "/https://evil.com/");
        let t = template(&["https://example.com", ":splat"]);
        let c = caps(&[("splat", ".evil.com/x")]);
        assert_eq!(confine(&t, render_url(&t, &c)), "https://example.com/.evil.com/x");
        let c = caps(&[("splat", "/x")]);
        assert_eq!(confine(&t, render_url(&t, &c)), "https://example.com/x");
        let t = template(&["//cdn.example.com/", ":splat"]);
        assert_eq!(confine(&t, render_url(&t, &caps(&[("splat", "a")]))), "//cdn.example.com/a");
        let t = template(&["//cdn.example.com", ":splat"]);
        assert_eq!(confine(&t, render_url(&t, &caps(&[("splat", ".evil.com/x")]))), "//cdn.example.com/.evil.com/x");
    }

    #[test]
    fn the_edges_own_redirects_stay_on_the_site() {
        assert_eq!(on_this_site("//evil.com/".into()), "/evil.com/");
        assert_eq!(on_this_site("/\\evil.com".into()), "/evil.com");
        assert_eq!(on_this_site("/a//b/".into()), "/a//b/");
        assert_eq!(on_this_site("/a?b#c%/".into()), "/a%3Fb%23c%25/");
    }

    #[test]
    fn captures_are_encoded_in_urls_and_decoded_text_in_paths() {
        let t = template(&["/some%20dir/", ":x"]);
        let c = caps(&[("x", "a b?c%")]);
        assert_eq!(render_url(&t, &c), "/some%20dir/a%20b%3Fc%25");
        assert_eq!(render_path(&t, &c), "/some dir/a b?c%");
        assert_eq!(location_value("/a b\\c\"é"), "/a%20b%5Cc%22%C3%A9");
    }

    #[test]
    fn queries() {
        assert_eq!(with_query("/b".into(), Some("x=1")), "/b?x=1");
        assert_eq!(with_query("/b?y=2".into(), Some("x=1")), "/b?y=2");
        assert_eq!(with_query("/b#f".into(), Some("x=1")), "/b?x=1#f");
        assert_eq!(collapse_slashes("/a//b///c"), "/a/b/c");
    }
}
