//! Lowering: a route table as the platforms write it ([`v1::RouteTable`],
//! patterns in their own syntax) → the platform-neutral table the edge
//! runs ([`RouteTable`]).
//!
//! Every pattern becomes the cheapest form that matches exactly what the
//! platform's pattern matches: an exact path (one hash lookup), a prefix,
//! `/`-separated segments, or — only when nothing simpler will do — an
//! anchored regex (linear-time; lookaround runs on a bounded backtracking
//! matcher). Targets and header values become templates of text and
//! captures. Here, once for every platform, framing and hop-by-hop headers
//! are taken out of header rules and proxy rules, and the per-deployment
//! rule limits are enforced.

use std::collections::BTreeSet;

use helix_core::routes::{
    Diagnostic, DiagnosticKind, HeaderRule, MAX_LOOKAROUND_RULES, MAX_REGEX_RULES, MAX_RULES, MAX_UNANCHORED_RULES,
    PathPattern, PatternForm, Piece, Platform, QueryMatch, QueryValue, Rest, RouteTable, Rule, Segment, Template,
    forbidden_request_header, forbidden_response_header, v1,
};

use crate::diag;

/// Lowers `source`, reporting (with file and line) what cannot be kept and
/// refusing tables over the limits.
pub fn lower(source: &v1::RouteTable, diags: &mut Vec<Diagnostic>) -> RouteTable {
    let platform = source.platform;
    let mut table = RouteTable {
        platform,
        redirects: rules(platform, &source.redirects, diags),
        rewrites: rules(platform, &source.rewrites, diags),
        headers: source.headers.iter().filter_map(|h| header_rule(platform, h, diags)).collect(),
        clean_urls: source.clean_urls,
        trailing_slash: source.trailing_slash,
    };
    let refuse = |diags: &mut Vec<Diagnostic>, message: String| {
        diags.push(Diagnostic { file: "(all routing files)".into(), line: 0, kind: DiagnosticKind::Rejected, message })
    };
    let count = table.rule_count();
    if count > MAX_RULES {
        refuse(diags, format!("{count} routing rules, over the limit of {MAX_RULES} per deployment"));
    }
    let (regex, lookaround, unanchored) = pattern_counts(&table);
    if unanchored > MAX_UNANCHORED_RULES {
        refuse(
            diags,
            format!(
                "{unanchored} rules have no literal path segment to index them by (like `/:a/:b`), over the limit \
                 of {MAX_UNANCHORED_RULES} per deployment"
            ),
        );
    }
    if regex > MAX_REGEX_RULES {
        refuse(
            diags,
            format!(
                "{regex} rules need a regex (wildcards inside a segment, custom groups), over the limit of \
                 {MAX_REGEX_RULES} per deployment; use `:name` placeholders and trailing `*` splats"
            ),
        );
    }
    if lookaround > MAX_LOOKAROUND_RULES {
        refuse(diags, format!("{lookaround} rules use lookaround, over the limit of {MAX_LOOKAROUND_RULES}"));
    }
    if diags.iter().any(|d| d.kind == DiagnosticKind::Rejected && d.file == "(all routing files)") {
        table.redirects.clear();
        table.rewrites.clear();
        table.headers.clear();
    }
    table
}

/// Lowers a table read from a version 1 manifest. Nothing is reported
/// (the deploy that made it is long done); rules past the limits are left
/// out, so an old manifest costs no more than a new one may.
pub fn lower_legacy(source: &v1::RouteTable) -> RouteTable {
    let mut ignored = Vec::new();
    let mut table = RouteTable {
        platform: source.platform,
        redirects: rules(source.platform, &source.redirects, &mut ignored),
        rewrites: rules(source.platform, &source.rewrites, &mut ignored),
        headers: source.headers.iter().filter_map(|h| header_rule(source.platform, h, &mut ignored)).collect(),
        clean_urls: source.clean_urls,
        trailing_slash: source.trailing_slash,
    };
    let (mut regex, mut lookaround, mut total) = (0, 0, 0);
    let mut keep = |p: &PathPattern| {
        total += 1;
        match &p.form {
            PatternForm::Regex { lookaround: true, .. } => lookaround += 1,
            PatternForm::Regex { .. } => regex += 1,
            _ => {}
        }
        total <= MAX_RULES && regex <= MAX_REGEX_RULES && lookaround <= MAX_LOOKAROUND_RULES
    };
    table.redirects.retain(|r| keep(&r.pattern));
    table.rewrites.retain(|r| keep(&r.pattern));
    table.headers.retain(|h| keep(&h.pattern));
    table
}

/// Rules whose pattern is a regex, of those the ones with lookaround, and
/// segment rules with no literal segment to index them by.
fn pattern_counts(table: &RouteTable) -> (usize, usize, usize) {
    let patterns = table.redirects.iter().chain(&table.rewrites).map(|r| &r.pattern);
    let patterns = patterns.chain(table.headers.iter().map(|h| &h.pattern));
    let (mut regex, mut lookaround, mut unanchored) = (0, 0, 0);
    for p in patterns {
        match &p.form {
            PatternForm::Regex { lookaround: l, .. } => {
                regex += 1;
                lookaround += usize::from(*l);
            }
            PatternForm::Segments { segments, .. } => {
                let anchored = segments.iter().take(16).any(|s| matches!(s, Segment::Literal(_)));
                unanchored += usize::from(!anchored);
            }
            _ => {}
        }
    }
    (regex, lookaround, unanchored)
}

fn rules(platform: Platform, source: &[v1::Redirect], diags: &mut Vec<Diagnostic>) -> Vec<Rule> {
    source.iter().filter_map(|r| rule(platform, r, diags)).collect()
}

fn rule(platform: Platform, r: &v1::Redirect, diags: &mut Vec<Diagnostic>) -> Option<Rule> {
    let not_honored = |diags: &mut Vec<Diagnostic>, message: String| {
        diags.push(diag(&r.origin.file, r.origin.line as usize, DiagnosticKind::NotHonored, message));
    };
    let (pattern, mut bound) = match path_pattern(platform, &r.from) {
        Ok(p) => p,
        Err(why) => {
            not_honored(diags, format!("{:?}: {why}", r.from));
            return None;
        }
    };
    let query: Vec<QueryMatch> = r
        .query
        .iter()
        .map(|(key, want)| {
            let value = match want.strip_prefix(':') {
                Some(name) => {
                    bound.insert(name.to_owned());
                    QueryValue::Capture(name.to_owned())
                }
                None => QueryValue::Equals(want.clone()),
            };
            QueryMatch { key: key.clone(), value }
        })
        .collect();
    let to = match platform {
        Platform::Vercel => vercel_template(&r.to, &bound),
        _ => colon_template(&r.to, &bound),
    };
    let mut proxy_headers = Vec::new();
    for (name, value) in &r.proxy_headers {
        if forbidden_request_header(name) {
            not_honored(diags, format!("header {name} cannot be sent upstream by a rule: {FRAMING}"));
        } else {
            proxy_headers.push((name.clone(), value.clone()));
        }
    }
    Some(Rule {
        pattern,
        query,
        to,
        status: r.status,
        force: r.force,
        conditions: r.conditions.clone(),
        has: r.has.clone(),
        missing: r.missing.clone(),
        methods: r.methods.clone(),
        proxy_headers,
        origin: r.origin.clone(),
    })
}

const FRAMING: &str = "it frames the message or describes the connection, which only the edge decides";

fn header_rule(platform: Platform, h: &v1::HeaderRule, diags: &mut Vec<Diagnostic>) -> Option<HeaderRule> {
    let report = |diags: &mut Vec<Diagnostic>, message: String| {
        diags.push(diag(&h.origin.file, h.origin.line as usize, DiagnosticKind::NotHonored, message));
    };
    let lowered = match platform {
        Platform::CloudflarePages => cloudflare_header_pattern(&h.path),
        Platform::Vercel => vercel_pattern(&h.path).map(|(p, bound)| (None, p, bound)),
        Platform::Netlify | Platform::Helix => netlify_header_pattern(&h.path).map(|p| (None, p, BTreeSet::new())),
    };
    let (host, pattern, bound) = match lowered {
        Ok(l) => l,
        Err(why) => {
            report(diags, format!("header path {:?}: {why}", h.path));
            return None;
        }
    };
    let mut set = Vec::new();
    for (name, value) in &h.set {
        if forbidden_response_header(name) {
            report(diags, format!("header {name} cannot be set by a routing rule: {FRAMING}"));
            continue;
        }
        let value = match platform {
            // Netlify writes header values as they are.
            Platform::Netlify | Platform::Helix => Template::text(value.clone()),
            _ => colon_template(value, &bound),
        };
        set.push((name.clone(), value));
    }
    let mut unset = Vec::new();
    for name in &h.unset {
        if forbidden_response_header(name) {
            report(diags, format!("header {name} cannot be removed by a routing rule: {FRAMING}"));
        } else {
            unset.push(name.clone());
        }
    }
    if set.is_empty() && unset.is_empty() {
        return None;
    }
    Some(HeaderRule { host, pattern, set, unset, origin: h.origin.clone() })
}

/// A redirect's `from`, in the platform's syntax, and the captures it binds.
fn path_pattern(platform: Platform, from: &str) -> Result<(PathPattern, BTreeSet<String>), String> {
    match platform {
        Platform::Vercel => vercel_pattern(from),
        Platform::CloudflarePages => Ok(cloudflare_pattern(from)),
        Platform::Netlify | Platform::Helix => Ok(netlify_pattern(from)),
    }
}

/// Netlify (and `helix.toml`): `/`-separated segments, `:name` one
/// segment, a final `*` the rest (the `/` before it optional); the request
/// path's trailing slash does not matter; case-sensitive.
pub(crate) fn netlify_pattern(from: &str) -> (PathPattern, BTreeSet<String>) {
    let raw: Vec<&str> = from.split('/').filter(|s| !s.is_empty()).collect();
    let mut segments = Vec::new();
    let mut rest = None;
    let mut bound = BTreeSet::new();
    for (i, seg) in raw.iter().enumerate() {
        if *seg == "*" && i + 1 == raw.len() {
            rest = Some(Rest { capture: "splat".into(), optional: true });
            bound.insert("splat".to_owned());
        } else if let Some(name) = seg.strip_prefix(':').filter(|n| is_name(n)) {
            segments.push(Segment::Capture(name.to_owned()));
            bound.insert(name.to_owned());
        } else {
            literal_segments(seg, &mut segments);
        }
    }
    let form = segments_form(segments, rest);
    (PathPattern { form, fold_case: false, slash_optional: true }, bound)
}

/// Netlify `_headers` paths: case-insensitive, trailing slash optional,
/// `*` anything (slashes included), `:name` one segment.
fn netlify_header_pattern(path: &str) -> Result<PathPattern, String> {
    let lower = decode(path).to_lowercase();
    let raw: Vec<&str> = lower.split('/').filter(|s| !s.is_empty()).collect();
    let pattern = |form| Ok(PathPattern { form, fold_case: true, slash_optional: true });
    let dynamic = |s: &str| s.contains('*') || s.strip_prefix(':').is_some_and(is_name);
    let Some((last, init)) = raw.split_last() else { return pattern(PatternForm::Exact { path: "/".into() }) };
    if !init.iter().any(|s| dynamic(s)) {
        let head: String = init.iter().map(|s| format!("/{s}")).collect();
        if !dynamic(last) {
            return pattern(PatternForm::Exact { path: format!("{head}/{last}") });
        }
        if *last == "*" {
            // `/?(.*)` after the head: the head, then anything.
            return pattern(PatternForm::Prefix { prefix: head, capture: None });
        }
    }
    let mut re = String::from("^");
    for seg in &raw {
        if *seg == "*" {
            re.push_str("/?(?:.*)");
        } else if seg.strip_prefix(':').is_some_and(is_name) {
            re.push_str("/(?:[^/]+)");
        } else {
            re.push('/');
            re.push_str(&seg.split('*').map(regex::escape).collect::<Vec<_>>().join("(?:.*)"));
        }
    }
    re.push('$');
    pattern(PatternForm::Regex { regex: re, lookaround: false })
}

/// Cloudflare Pages: exact and case-sensitive; `*` (the first one) matches
/// anything, slashes included; `:name` one segment's worth of characters.
pub(crate) fn cloudflare_pattern(pattern: &str) -> (PathPattern, BTreeSet<String>) {
    let tokens = cloudflare_tokens(pattern);
    let bound: BTreeSet<String> = tokens
        .iter()
        .filter_map(|t| match t {
            CfToken::Param(n) => Some(n.clone()),
            CfToken::Splat => Some("splat".to_owned()),
            CfToken::Text(_) => None,
        })
        .collect();
    let form = cloudflare_form(&tokens);
    (PathPattern { form, fold_case: false, slash_optional: false }, bound)
}

#[derive(Debug, PartialEq)]
enum CfToken {
    /// Decoded literal text.
    Text(String),
    Param(String),
    Splat,
}

fn cloudflare_tokens(pattern: &str) -> Vec<CfToken> {
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut splat_used = false;
    let mut rest = pattern;
    let flush = |text: &mut String, tokens: &mut Vec<CfToken>| {
        if !text.is_empty() {
            tokens.push(CfToken::Text(decode(text).into_owned()));
            text.clear();
        }
    };
    while let Some(c) = rest.chars().next() {
        if c == '*' && !splat_used {
            flush(&mut text, &mut tokens);
            tokens.push(CfToken::Splat);
            splat_used = true;
            rest = &rest[1..];
            continue;
        }
        if c == ':' {
            let name: String = rest[1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if is_name(&name) && name != "splat" {
                flush(&mut text, &mut tokens);
                rest = &rest[1 + name.len()..];
                tokens.push(CfToken::Param(name));
                continue;
            }
        }
        text.push(c);
        rest = &rest[c.len_utf8()..];
    }
    flush(&mut text, &mut tokens);
    tokens
}

fn cloudflare_form(tokens: &[CfToken]) -> PatternForm {
    // Exact: text only.
    if let [CfToken::Text(t)] = tokens {
        return PatternForm::Exact { path: t.clone() };
    }
    // Prefix: text, then the splat last.
    if let [CfToken::Text(t), CfToken::Splat] = tokens
        && !t.ends_with('/')
    {
        return PatternForm::Prefix { prefix: t.clone(), capture: Some("splat".into()) };
    }
    // Segments: every parameter a whole segment, the splat (if any) after
    // a final `/`.
    if let Some(form) = cloudflare_segments(tokens) {
        return form;
    }
    let mut re = String::from("^");
    for t in tokens {
        match t {
            CfToken::Text(t) => re.push_str(&regex::escape(t)),
            CfToken::Param(n) => re.push_str(&format!("(?P<{n}>[^/]+)")),
            CfToken::Splat => re.push_str("(?P<splat>.*)"),
        }
    }
    re.push('$');
    PatternForm::Regex { regex: re, lookaround: false }
}

fn cloudflare_segments(tokens: &[CfToken]) -> Option<PatternForm> {
    // The tokens of each `/`-separated segment (the text before the first
    // `/` must be empty: Pages paths start with one).
    let mut segs: Vec<Vec<CfToken>> = Vec::new();
    let mut current: Option<Vec<CfToken>> = None;
    for t in tokens {
        match t {
            CfToken::Text(text) => {
                for (k, part) in text.split('/').enumerate() {
                    if k > 0 {
                        segs.extend(current.take());
                        current = Some(Vec::new());
                    }
                    if !part.is_empty() {
                        current.as_mut()?.push(CfToken::Text(part.to_owned()));
                    }
                }
            }
            CfToken::Param(name) => current.as_mut()?.push(CfToken::Param(name.clone())),
            CfToken::Splat => current.as_mut()?.push(CfToken::Splat),
        }
    }
    segs.extend(current);
    let mut segments = Vec::new();
    let mut rest = None;
    let count = segs.len();
    for (i, seg) in segs.into_iter().enumerate() {
        match <[CfToken; 1]>::try_from(seg).ok()? {
            [CfToken::Text(t)] => segments.push(Segment::Literal(t)),
            [CfToken::Param(name)] => segments.push(Segment::Capture(name)),
            [CfToken::Splat] if i + 1 == count => rest = Some(Rest { capture: "splat".into(), optional: false }),
            _ => return None,
        }
    }
    Some(segments_form(segments, rest))
}

/// Cloudflare `_headers` paths: `https://host/path` rules match the host
/// too (`:name` labels capture), others any host.
fn cloudflare_header_pattern(path: &str) -> Result<(Option<String>, PathPattern, BTreeSet<String>), String> {
    let Some(url) = path.strip_prefix("https://") else {
        let (pattern, bound) = cloudflare_pattern(path);
        return Ok((None, pattern, bound));
    };
    let (host, path) = url.split_at(url.find('/').unwrap_or(url.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut bound = BTreeSet::new();
    let labels: Vec<String> = host
        .split('.')
        .map(|label| match label.strip_prefix(':').filter(|n| is_name(n)) {
            Some(name) => {
                bound.insert(name.to_owned());
                format!("(?P<{name}>[^/.]+)")
            }
            None => regex::escape(&label.to_ascii_lowercase()),
        })
        .collect();
    let (pattern, path_bound) = cloudflare_pattern(path);
    bound.extend(path_bound);
    Ok((Some(format!("^{}$", labels.join(r"\."))), pattern, bound))
}

/// Vercel: the anchored regex its path-to-regexp `source` compiled to; a
/// regex that is only an escaped path is an exact match.
fn vercel_pattern(regex: &str) -> Result<(PathPattern, BTreeSet<String>), String> {
    let plain = |form| PathPattern { form, fold_case: false, slash_optional: false };
    if let Some(path) = literal_of_regex(regex) {
        return Ok((plain(PatternForm::Exact { path }), BTreeSet::new()));
    }
    let lookaround = crate::regex_needs_backtracking(regex)?;
    let bound = group_names(regex).into_iter().collect();
    Ok((plain(PatternForm::Regex { regex: regex.to_owned(), lookaround }), bound))
}

/// `^/a/b\.html$` → `/a/b.html`; `None` when the regex is more than an
/// escaped literal.
fn literal_of_regex(re: &str) -> Option<String> {
    let body = re.strip_prefix('^')?.strip_suffix('$')?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                // Only an escaped metacharacter is itself (`\<` is a word
                // boundary, `\d` a class).
                let next = chars.next()?;
                if !"\\.+*?()|[]{}^$#&-~/".contains(next) {
                    return None;
                }
                out.push(next);
            }
            '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => return None,
            c => out.push(c),
        }
    }
    out.starts_with('/').then_some(out)
}

/// Named groups `(?<name>…)` / `(?P<name>…)` in a regex.
pub(crate) fn group_names(re: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in re.match_indices("(?") {
        let rest = &re[i + 2..];
        let rest = rest.strip_prefix('P').unwrap_or(rest);
        if let Some(rest) = rest.strip_prefix('<')
            && let Some(end) = rest.find('>')
            && !rest.starts_with(['=', '!'])
        {
            out.push(rest[..end].to_owned());
        }
    }
    out
}

/// Literal segment text, percent-decoded as the request path is; a decoded
/// `/` splits it.
fn literal_segments(seg: &str, out: &mut Vec<Segment>) {
    for part in decode(seg).split('/').filter(|s| !s.is_empty()) {
        out.push(Segment::Literal(part.to_owned()));
    }
}

/// Segments without captures are an exact path.
fn segments_form(segments: Vec<Segment>, rest: Option<Rest>) -> PatternForm {
    if rest.is_none() && segments.iter().all(|s| matches!(s, Segment::Literal(_))) {
        let path: String = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => format!("/{l}"),
                Segment::Capture(_) => unreachable!("checked: literals only"),
            })
            .collect();
        return PatternForm::Exact { path: if path.is_empty() { "/".into() } else { path } };
    }
    PatternForm::Segments { segments, rest }
}

/// Percent-decodes `s` when it decodes to UTF-8 (rules are matched against
/// the decoded request path); otherwise keeps it as written.
fn decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return std::borrow::Cow::Borrowed(s);
    }
    match percent_encoding::percent_decode_str(s).decode_utf8() {
        Ok(d) => std::borrow::Cow::Owned(d.into_owned()),
        Err(_) => std::borrow::Cow::Borrowed(s),
    }
}

/// Netlify and Cloudflare targets: `:name` for each bound capture (the
/// longest bound name wins); any other `:` is text.
pub(crate) fn colon_template(text: &str, bound: &BTreeSet<String>) -> Template {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(':') {
        literal.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match bound.iter().filter(|n| after.starts_with(n.as_str())).max_by_key(|n| n.len()) {
            Some(name) => {
                push_text(&mut pieces, &mut literal);
                pieces.push(Piece::Capture { capture: name.clone() });
                rest = &after[name.len()..];
            }
            None => {
                literal.push(':');
                rest = after;
            }
        }
    }
    literal.push_str(rest);
    push_text(&mut pieces, &mut literal);
    Template(pieces)
}

/// Vercel destinations: `:name` (a `*`, `+` or `?` after it is dropped)
/// and `$name` / `$1` (the compiler names unnamed groups `_1`, `_2`…).
pub(crate) fn vercel_template(text: &str, bound: &BTreeSet<String>) -> Template {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find([':', '$']) {
        literal.push_str(&rest[..i]);
        let sigil = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let numbered = format!("_{name}");
        let found = if name.is_empty() {
            None
        } else if sigil == b'$' && bound.contains(&numbered) {
            Some(numbered)
        } else if bound.contains(&name) {
            Some(name.clone())
        } else {
            None
        };
        match found {
            Some(capture) => {
                push_text(&mut pieces, &mut literal);
                pieces.push(Piece::Capture { capture });
                rest = &after[name.len()..];
                if sigil == b':'
                    && let Some(r) = rest.strip_prefix(['*', '+', '?'])
                {
                    rest = r;
                }
            }
            None => {
                literal.push(char::from(sigil));
                rest = after;
            }
        }
    }
    literal.push_str(rest);
    push_text(&mut pieces, &mut literal);
    Template(pieces)
}

fn push_text(pieces: &mut Vec<Piece>, literal: &mut String) {
    if !literal.is_empty() {
        pieces.push(Piece::Text(std::mem::take(literal)));
    }
}

fn is_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn cap(name: &str) -> Piece {
        Piece::Capture { capture: name.into() }
    }

    fn text(t: &str) -> Piece {
        Piece::Text(t.into())
    }

    #[test]
    fn netlify_patterns_take_the_cheapest_form() {
        let form = |p: &str| netlify_pattern(p).0.form;
        assert_eq!(form("/a/b/"), PatternForm::Exact { path: "/a/b".into() });
        assert_eq!(form("/"), PatternForm::Exact { path: "/".into() });
        assert_eq!(form("/some%20page"), PatternForm::Exact { path: "/some page".into() });
        assert_eq!(
            form("/news/*"),
            PatternForm::Segments {
                segments: vec![Segment::Literal("news".into())],
                rest: Some(Rest { capture: "splat".into(), optional: true })
            }
        );
        let (p, bound) = netlify_pattern("/blog/:year/:slug");
        assert_eq!(bound, set(&["slug", "year"]));
        assert!(matches!(p.form, PatternForm::Segments { rest: None, .. }));
        assert!(p.slash_optional && !p.fold_case);
    }

    #[test]
    fn cloudflare_patterns_take_the_cheapest_form() {
        let form = |p: &str| cloudflare_pattern(p).0.form;
        assert_eq!(form("/about"), PatternForm::Exact { path: "/about".into() });
        assert_eq!(form("/blog*"), PatternForm::Prefix { prefix: "/blog".into(), capture: Some("splat".into()) });
        assert_eq!(
            form("/blog/*"),
            PatternForm::Segments {
                segments: vec![Segment::Literal("blog".into())],
                rest: Some(Rest { capture: "splat".into(), optional: false })
            }
        );
        assert_eq!(
            form("/u/:name/x"),
            PatternForm::Segments {
                segments: vec![
                    Segment::Literal("u".into()),
                    Segment::Capture("name".into()),
                    Segment::Literal("x".into())
                ],
                rest: None
            }
        );
        assert!(matches!(form("/*.jpg"), PatternForm::Regex { .. }));
        assert!(matches!(form("/u/:name.json"), PatternForm::Regex { .. }));
        assert!(matches!(form("/a/:x/*"), PatternForm::Segments { .. }));
        assert!(matches!(form("/:a:b"), PatternForm::Regex { .. }));
    }

    #[test]
    fn netlify_header_paths_fold_case() {
        let form = |p: &str| netlify_header_pattern(p).unwrap().form;
        assert_eq!(form("/Static/*"), PatternForm::Prefix { prefix: "/static".into(), capture: None });
        assert_eq!(form("/*"), PatternForm::Prefix { prefix: "".into(), capture: None });
        assert_eq!(form("/A/b/"), PatternForm::Exact { path: "/a/b".into() });
        assert!(matches!(form("/*/_next/static/chunks/*"), PatternForm::Regex { .. }));
    }

    #[test]
    fn templates() {
        assert_eq!(
            colon_template("/p/:idx/:id", &set(&["id", "idx"])).0,
            [text("/p/"), cap("idx"), text("/"), cap("id")]
        );
        assert_eq!(colon_template("/a:x", &set(&[])).0, [text("/a:x")]);
        assert_eq!(
            vercel_template("/help/:slug*?q=$1&t=:nope", &set(&["slug", "_1"])).0,
            [text("/help/"), cap("slug"), text("?q="), cap("_1"), text("&t=:nope")]
        );
        assert_eq!(
            vercel_template("/posts/$slug.html", &set(&["slug"])).0,
            [text("/posts/"), cap("slug"), text(".html")]
        );
    }

    #[test]
    fn vercel_literal_sources_are_exact() {
        assert_eq!(literal_of_regex(r"^/old\.html$"), Some("/old.html".into()));
        assert_eq!(literal_of_regex(r"^/old/(?P<x>[^/]+)$"), None);
        assert_eq!(literal_of_regex(r"^/a\d$"), None);
        assert_eq!(literal_of_regex(r"^/a\<b$"), None);
        let (p, _) = vercel_pattern(r"^/(?P<_1>(?!api/).*)$").unwrap();
        assert!(matches!(p.form, PatternForm::Regex { lookaround: true, .. }));
    }

    #[test]
    fn framing_headers_are_reported_and_left_out() {
        let source = v1::RouteTable {
            platform: Platform::CloudflarePages,
            headers: vec![v1::HeaderRule {
                path: "/*".into(),
                set: vec![("content-length".into(), "1".into()), ("x-ok".into(), "1".into())],
                unset: vec!["transfer-encoding".into()],
                origin: helix_core::routes::Origin { file: "_headers".into(), line: 3 },
            }],
            ..v1::RouteTable::default()
        };
        let mut d = Vec::new();
        let table = lower(&source, &mut d);
        assert_eq!(table.headers[0].set.len(), 1);
        assert!(table.headers[0].unset.is_empty());
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().all(|d| d.kind == DiagnosticKind::NotHonored && d.line == 3 && d.file == "_headers"));
    }
}
