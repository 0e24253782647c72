//! Vercel: `vercel.json` `redirects`, `rewrites`, `headers`, `cleanUrls`,
//! `trailingSlash` (SPEC §3). Sources are path-to-regexp patterns (strict,
//! case-sensitive), compiled here to anchored regexes with one named group
//! per parameter; the edge only runs them.

use std::collections::BTreeSet;

use helix_core::routes::v1::{HeaderRule, Redirect, RouteTable};
use helix_core::routes::{Conditions, Diagnostic, DiagnosticKind, MatchOn, Matcher, Origin};
use serde_json::Value;

use crate::diag;

const FILE: &str = "vercel.json";
const MAX_RULES: usize = 2048;
const MAX_PATTERN_CHARS: usize = 4096;

pub(crate) fn compile(text: &str, table: &mut RouteTable, diags: &mut Vec<Diagnostic>) {
    let json: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            diags.push(diag(FILE, e.line(), DiagnosticKind::Rejected, format!("invalid JSON: {e}")));
            return;
        }
    };
    let Some(obj) = json.as_object() else {
        diags.push(diag(FILE, 0, DiagnosticKind::Rejected, "vercel.json must be a JSON object"));
        return;
    };
    let mut reject = |msg: String| diags.push(diag(FILE, 0, DiagnosticKind::Rejected, msg));
    match obj.get("cleanUrls") {
        None => {}
        Some(Value::Bool(b)) => table.clean_urls = *b,
        Some(_) => reject("cleanUrls must be true or false".into()),
    }
    match obj.get("trailingSlash") {
        None => {}
        Some(Value::Bool(b)) => table.trailing_slash = Some(*b),
        Some(_) => reject("trailingSlash must be true or false".into()),
    }
    if let Some(routes) = obj.get("routes") {
        let modern = ["redirects", "rewrites", "headers", "cleanUrls", "trailingSlash"];
        if modern.iter().any(|k| obj.contains_key(*k)) {
            reject(
                "`routes` cannot be used together with redirects, rewrites, headers, cleanUrls or trailingSlash".into(),
            );
        } else {
            legacy_routes(routes, text, table, diags);
        }
        return;
    }
    table.redirects = rules(obj.get("redirects"), "redirects", text, diags, Kind::Redirect);
    table.rewrites = rules(obj.get("rewrites"), "rewrites", text, diags, Kind::Rewrite);
    table.headers = headers(obj.get("headers"), text, diags);
}

/// The legacy `routes` table (SPEC §3.7), mapped onto the same rule kinds:
/// a 3xx with `Location` is a redirect, a `dest` before the filesystem is a
/// rewrite that files do not shadow (status 200 in `redirects`), a `dest`
/// after `{"handle": "filesystem"}` is a rewrite, `continue: true` with
/// headers is a header rule. Other shapes and phases are reported.
fn legacy_routes(value: &Value, text: &str, table: &mut RouteTable, diags: &mut Vec<Diagnostic>) {
    let mut after_filesystem = false;
    let (mut srcs, mut handles) = (0, 0);
    for (i, route) in entries(Some(value), "routes", diags).iter().enumerate() {
        let line = if route.get("handle").is_some() {
            handles += 1;
            line_of_key(text, "\"handle\"", handles - 1)
        } else {
            srcs += 1;
            line_of_key(text, "\"src\"", srcs - 1)
        };
        let mut note = |kind, msg: String| diags.push(diag(FILE, line, kind, format!("routes[{i}]: {msg}")));
        let Some(obj) = route.as_object() else {
            note(DiagnosticKind::Rejected, "must be an object".into());
            continue;
        };
        if let Some(handle) = obj.get("handle") {
            match handle.as_str() {
                Some("filesystem") if !after_filesystem => after_filesystem = true,
                Some("filesystem") => note(DiagnosticKind::Rejected, "`handle: filesystem` may appear once".into()),
                other => note(DiagnosticKind::NotHonored, format!("handle {other:?} phases are not supported yet")),
            }
            continue;
        }
        let Some(src) = obj.get("src").and_then(Value::as_str) else {
            note(DiagnosticKind::Rejected, "missing `src`".into());
            continue;
        };
        let regex = match legacy_regex(src) {
            Ok(r) => r,
            Err(m) => {
                note(DiagnosticKind::NotHonored, format!("src {src:?}: {m}"));
                continue;
            }
        };
        let headers: Vec<(String, String)> = obj
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| h.iter().filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_owned()))).collect())
            .unwrap_or_default();
        let status = obj.get("status").and_then(Value::as_u64).map(|s| s as u16);
        let dest = obj.get("dest").and_then(Value::as_str);
        let continues = obj.get("continue").and_then(Value::as_bool).unwrap_or(false);
        let location = headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.clone());
        let (has, missing) = match (matchers(obj.get("has")), matchers(obj.get("missing"))) {
            (Ok(h), Ok(m)) => (h, m),
            (Err(e), _) | (_, Err(e)) => {
                note(DiagnosticKind::Rejected, e);
                continue;
            }
        };
        let methods: Vec<String> = obj
            .get("methods")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(Value::as_str).map(str::to_ascii_uppercase).collect())
            .unwrap_or_default();
        let rule = |to: String, status: u16| Redirect {
            from: regex.clone(),
            query: Vec::new(),
            to,
            status,
            force: true,
            conditions: Conditions::default(),
            has: has.clone(),
            missing: missing.clone(),
            methods: methods.clone(),
            proxy_headers: Vec::new(),
            origin: Origin { file: FILE.into(), line: line as u32 },
        };
        match (status, location, dest, continues) {
            (Some(code @ 300..=399), Some(to), _, false) => table.redirects.push(rule(to, code)),
            (None, None, Some(to), false) if after_filesystem => table.rewrites.push(rule(to.to_owned(), 200)),
            (status, None, Some(to), false) => table.redirects.push(rule(to.to_owned(), status.unwrap_or(200))),
            (None, None, None, true) if !headers.is_empty() => {
                let mut block = crate::header_block(&regex, FILE, line);
                block.set = headers;
                table.headers.push(block);
            }
            _ => note(
                DiagnosticKind::NotHonored,
                "this combination of status, headers, dest and continue is not supported yet".into(),
            ),
        }
    }
}

/// The line of the `n`th occurrence of `needle` (best effort).
fn line_of_key(text: &str, needle: &str, n: usize) -> usize {
    text.match_indices(needle).nth(n).map_or(0, |(i, _)| text[..i].matches('\n').count() + 1)
}

/// A legacy `src` (a regex, anchored by Vercel) with its unnamed groups
/// named `_1`, `_2`… so `$1` in `dest` can refer to them.
fn legacy_regex(src: &str) -> Result<String, String> {
    let mut out = String::with_capacity(src.len() + 16);
    let mut n = 0;
    let mut chars = src.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '(' if !in_class && chars.peek() != Some(&'?') => {
                n += 1;
                out.push_str(&format!("(?P<_{n}>"));
            }
            _ => out.push(c),
        }
    }
    let anchored =
        format!("{}{out}{}", if out.starts_with('^') { "" } else { "^" }, if out.ends_with('$') { "" } else { "$" });
    crate::regex_needs_backtracking(&anchored)?;
    Ok(anchored)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Redirect,
    Rewrite,
}

/// The line where the `n`th object of a top-level array starts (best
/// effort: counts `"source"` keys after the array's key).
fn line_of(text: &str, key: &str, n: usize) -> usize {
    let start = text.find(&format!("\"{key}\"")).unwrap_or(0);
    text[start..].match_indices("\"source\"").nth(n).map_or(0, |(i, _)| text[..start + i].matches('\n').count() + 1)
}

fn entries<'v>(value: Option<&'v Value>, key: &str, diags: &mut Vec<Diagnostic>) -> &'v [Value] {
    match value {
        None => &[],
        Some(Value::Array(items)) if items.len() <= MAX_RULES => items,
        Some(Value::Array(_)) => {
            diags.push(diag(FILE, 0, DiagnosticKind::Rejected, format!("{key} has more than {MAX_RULES} entries")));
            &[]
        }
        Some(_) => {
            diags.push(diag(FILE, 0, DiagnosticKind::Rejected, format!("{key} must be an array")));
            &[]
        }
    }
}

fn rules(value: Option<&Value>, key: &str, text: &str, diags: &mut Vec<Diagnostic>, kind: Kind) -> Vec<Redirect> {
    let mut out = Vec::new();
    for (i, item) in entries(value, key, diags).iter().enumerate() {
        let line = line_of(text, key, i);
        match rule(item, kind) {
            Ok(r) => out.push(Redirect { origin: Origin { file: FILE.into(), line: line as u32 }, ..r }),
            Err((kind, msg)) => diags.push(diag(FILE, line, kind, format!("{key}[{i}]: {msg}"))),
        }
    }
    out
}

type RuleError = (DiagnosticKind, String);

fn rule(item: &Value, kind: Kind) -> Result<Redirect, RuleError> {
    let reject = |m: String| (DiagnosticKind::Rejected, m);
    let obj = item.as_object().ok_or_else(|| reject("must be an object".into()))?;
    let string = |k: &str| obj.get(k).and_then(Value::as_str);
    let source = string("source").ok_or_else(|| reject("missing `source`".into()))?;
    let destination = string("destination").ok_or_else(|| reject("missing `destination`".into()))?;
    if source.len() > MAX_PATTERN_CHARS || destination.len() > MAX_PATTERN_CHARS {
        return Err(reject(format!("source and destination are limited to {MAX_PATTERN_CHARS} characters")));
    }
    let status_code = obj.get("statusCode").map(|v| v.as_u64().filter(|c| (100..=999).contains(c)));
    let status = match (kind, obj.get("permanent"), status_code) {
        (Kind::Redirect, Some(_), Some(_)) => {
            return Err(reject("cannot define both `permanent` and `statusCode`".into()));
        }
        (_, _, Some(None)) => return Err(reject("statusCode must be a number from 100 to 999".into())),
        (Kind::Redirect, Some(Value::Bool(false)), None) => 307,
        (Kind::Redirect, Some(Value::Bool(true)) | None, None) => 308,
        (Kind::Redirect, Some(_), None) => return Err(reject("permanent must be true or false".into())),
        (_, _, Some(Some(code))) => code as u16,
        (Kind::Rewrite, _, None) => 200,
    };
    if source.starts_with("/.well-known") {
        return Err((DiagnosticKind::Ignored, "/.well-known cannot be redirected or rewritten".into()));
    }
    let pattern = source_regex(source).map_err(|m| (DiagnosticKind::NotHonored, format!("source {source:?}: {m}")))?;
    let has = matchers(obj.get("has")).map_err(reject)?;
    let missing = matchers(obj.get("missing")).map_err(reject)?;
    let mut known: BTreeSet<String> = pattern.params.iter().cloned().collect();
    known.extend(has.iter().flat_map(|m| crate::lower::group_names(m.value.as_deref().unwrap_or_default())));
    if has.iter().any(|m| m.on == MatchOn::Host && m.value.is_some()) {
        known.insert("host".into());
    }
    for param in destination_params(destination) {
        if !known.contains(&param) {
            return Err(reject(format!(
                "has segment \":{param}\" in `destination` property but not in `source` or `has` property"
            )));
        }
    }
    Ok(Redirect {
        from: pattern.regex,
        query: Vec::new(),
        to: destination.to_owned(),
        status,
        force: true,
        conditions: Conditions::default(),
        has,
        missing,
        methods: Vec::new(),
        proxy_headers: Vec::new(),
        origin: Origin::default(),
    })
}

fn headers(value: Option<&Value>, text: &str, diags: &mut Vec<Diagnostic>) -> Vec<HeaderRule> {
    let mut out = Vec::new();
    for (i, item) in entries(value, "headers", diags).iter().enumerate() {
        let line = line_of(text, "headers", i);
        let mut fail = |kind, msg: String| diags.push(diag(FILE, line, kind, format!("headers[{i}]: {msg}")));
        let Some(source) = item.get("source").and_then(Value::as_str) else {
            fail(DiagnosticKind::Rejected, "missing `source`".into());
            continue;
        };
        let pattern = match source_regex(source) {
            Ok(p) => p,
            Err(m) => {
                fail(DiagnosticKind::NotHonored, format!("source {source:?}: {m}"));
                continue;
            }
        };
        if item.get("has").is_some() || item.get("missing").is_some() {
            fail(DiagnosticKind::NotHonored, "`has`/`missing` on header rules are not supported yet".into());
            continue;
        }
        let mut rule = crate::header_block(&pattern.regex, FILE, line);
        for h in item.get("headers").and_then(Value::as_array).into_iter().flatten() {
            match (h.get("key").and_then(Value::as_str), h.get("value").and_then(Value::as_str)) {
                // Later entries for a name win (a route-by-route override).
                (Some(k), Some(v)) => {
                    let name = k.to_ascii_lowercase();
                    rule.set.retain(|(n, _)| *n != name);
                    rule.set.push((name, v.to_owned()));
                }
                _ => fail(DiagnosticKind::Rejected, "each header needs a string `key` and `value`".into()),
            }
        }
        out.push(rule);
    }
    out
}

fn matchers(value: Option<&Value>) -> Result<Vec<Matcher>, String> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let items = value.as_array().ok_or("has/missing must be arrays")?;
    if items.len() > 16 {
        return Err("has/missing are limited to 16 items".into());
    }
    items
        .iter()
        .map(|m| {
            let on = match m.get("type").and_then(Value::as_str) {
                Some("header") => MatchOn::Header,
                Some("cookie") => MatchOn::Cookie,
                Some("query") => MatchOn::Query,
                Some("host") => MatchOn::Host,
                other => return Err(format!("unknown has/missing type {other:?}")),
            };
            let key = m.get("key").and_then(Value::as_str).unwrap_or_default();
            if on != MatchOn::Host && key.is_empty() {
                return Err("has/missing items need a `key`".into());
            }
            let value = match m.get("value") {
                None => None,
                Some(Value::String(v)) => Some(crate::anchored_regex(v)?),
                Some(_) => return Err("condition objects in has/missing values are not supported yet".into()),
            };
            let key = if on == MatchOn::Header { key.to_ascii_lowercase() } else { key.to_owned() };
            Ok(Matcher { on, key, value })
        })
        .collect()
}

/// `:name` references in a destination.
fn destination_params(destination: &str) -> Vec<String> {
    let path_part =
        destination.split_once("://").map_or(destination, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let mut out = Vec::new();
    for (i, _) in path_part.match_indices(':') {
        let name: String = path_part[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
            out.push(name);
        }
    }
    out
}

pub(crate) struct Pattern {
    pub regex: String,
    pub params: Vec<String>,
}

/// path-to-regexp (v6, `strict`, `sensitive`) → an anchored regex.
/// Parameters become named groups; unnamed `(…)` groups are numbered
/// `$1`, `$2`… in order.
pub(crate) fn source_regex(source: &str) -> Result<Pattern, String> {
    const SEGMENT: &str = "[^/#?]+?";
    let chars: Vec<char> = source.chars().collect();
    let mut re = String::from("^");
    let mut params = Vec::new();
    let mut i = 0;
    let mut unnamed = 0;
    while i < chars.len() {
        let c = chars[i];
        // A parameter or group, with the `/` before it as its prefix.
        let prefix_slash = c == '/' && matches!(chars.get(i + 1), Some(':') | Some('('));
        let start = if prefix_slash { i + 1 } else { i };
        let (name, body, next) = match chars.get(start) {
            Some(':') if chars.get(start + 1).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') => {
                let mut j = start + 1;
                let mut name = String::new();
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    name.push(chars[j]);
                    j += 1;
                }
                let (body, j) = if chars.get(j) == Some(&'(') { group(&chars, j)? } else { (SEGMENT.to_owned(), j) };
                (Some(name), body, j)
            }
            Some('(') => {
                let (body, j) = group(&chars, start)?;
                unnamed += 1;
                (None, body, j)
            }
            _ => {
                if c == '{' || c == '}' {
                    return Err("`{…}` groups are not supported yet".into());
                }
                re.push_str(&regex_escape(c));
                i += 1;
                continue;
            }
        };
        let modifier = chars.get(next).copied().filter(|m| matches!(m, '?' | '*' | '+'));
        let after = next + usize::from(modifier.is_some());
        let group_name = match &name {
            Some(n) => {
                params.push(n.clone());
                format!("?P<{n}>")
            }
            None => format!("?P<_{unnamed}>"),
        };
        let prefix = if prefix_slash { "/" } else { "" };
        let piece = match modifier {
            None => format!("{prefix}({group_name}{body})"),
            Some('?') => format!("(?:{prefix}({group_name}{body}))?"),
            Some('+') => format!("{prefix}({group_name}(?:{body})(?:{prefix}(?:{body}))*)"),
            _ => format!("(?:{prefix}({group_name}(?:{body})(?:{prefix}(?:{body}))*))?"),
        };
        re.push_str(&piece);
        i = after;
    }
    re.push('$');
    // The edge compiles the same string; an invalid one is refused here,
    // where it can be reported, rather than skipped there.
    crate::regex_needs_backtracking(&re)?;
    Ok(Pattern { regex: re, params })
}

/// A parenthesized group starting at `open`: its body and the index after.
fn group(chars: &[char], open: usize) -> Result<(String, usize), String> {
    let mut depth = 0;
    let mut body = String::new();
    let mut j = open;
    while j < chars.len() {
        let c = chars[j];
        if c == '\\' {
            body.push(c);
            if let Some(n) = chars.get(j + 1) {
                body.push(*n);
            }
            j += 2;
            continue;
        }
        if c == '(' {
            depth += 1;
            if depth == 1 {
                j += 1;
                continue;
            }
        }
        if c == ')' {
            depth -= 1;
            if depth == 0 {
                return Ok((body, j + 1));
            }
        }
        body.push(c);
        j += 1;
    }
    Err("unbalanced `(` in source".into())
}

fn regex_escape(c: char) -> String {
    if "\\.+*?()|[]{}^$#&-~".contains(c) { format!("\\{c}") } else { c.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_to_regexp() {
        assert_eq!(source_regex("/old").unwrap().regex, "^/old$");
        let p = source_regex("/old/:segment/path").unwrap();
        assert_eq!(p.params, ["segment"]);
        assert_eq!(p.regex, "^/old/(?P<segment>[^/#?]+?)/path$");
        assert_eq!(
            source_regex("/docs/:slug*").unwrap().regex,
            "^/docs(?:/(?P<slug>(?:[^/#?]+?)(?:/(?:[^/#?]+?))*))?$"
        );
        assert_eq!(source_regex("/(.*)").unwrap().regex, "^/(?P<_1>.*)$");
        assert!(source_regex("/:path((?!uk/).*)").is_ok(), "lookaround runs on the bounded matcher");
        assert!(source_regex("/:path((?!uk/).*\\1)").is_err(), "backreferences are not supported");
        assert!(source_regex("/a(b").is_err());
        assert!(source_regex("/:id([a-)").is_err(), "an invalid custom pattern is refused at deploy time");
    }

    #[test]
    fn rules_and_validation() {
        let mut table = RouteTable::default();
        let mut d = Vec::new();
        compile(
            r#"{"redirects": [{"source": "/a", "destination": "/b", "permanent": true, "statusCode": 301},
                               {"source": "/u", "destination": "/v", "permanent": false}],
                "rewrites": [{"source": "/a/:x", "destination": "/b/:y"}], "cleanUrls": true}"#,
            &mut table,
            &mut d,
        );
        assert_eq!(table.redirects.len(), 1);
        assert_eq!(table.redirects[0].status, 307);
        assert!(table.clean_urls);
        assert!(d[0].message.contains("cannot define both `permanent` and `statusCode`"), "{d:?}");
        assert!(d[1].message.contains("has segment \":y\" in `destination`"), "{d:?}");
        let mut d = Vec::new();
        compile("{ nope", &mut table, &mut d);
        assert_eq!(d[0].kind, DiagnosticKind::Rejected);
    }
}

#[cfg(test)]
mod legacy_tests {
    use super::*;

    #[test]
    fn legacy_routes_map_onto_rule_kinds() {
        let mut table = RouteTable::default();
        let mut d = Vec::new();
        compile(
            r#"{"routes": [
                {"src": "/legacy/(.*)", "status": 301, "headers": {"Location": "/modern/$1"}},
                {"src": "/assets/(.*)", "headers": {"cache-control": "immutable"}, "continue": true},
                {"src": "/blog/(?<slug>[^/]+)", "dest": "/posts/$slug.html"},
                {"handle": "filesystem"},
                {"src": "/(.*)", "dest": "/index.html"},
                {"src": "/x", "status": 404},
                {"handle": "miss"},
                {"src": "/(?!api).*", "dest": "/y"}
            ]}"#,
            &mut table,
            &mut d,
        );
        assert_eq!(table.redirects.len(), 2, "{:?}", table.redirects);
        assert_eq!((table.redirects[0].status, table.redirects[0].to.as_str()), (301, "/modern/$1"));
        assert_eq!(table.redirects[0].from, "^/legacy/(?P<_1>.*)$");
        assert_eq!(table.redirects[1].status, 200);
        // Lookahead runs on the bounded backtracking matcher.
        assert_eq!(table.rewrites.len(), 2);
        assert_eq!(table.rewrites[1].from, "^/(?!api).*$");
        assert_eq!(table.headers.len(), 1);
        let kinds: Vec<_> = d.iter().map(|d| (d.kind, d.line)).collect();
        assert_eq!(kinds.len(), 2, "{d:?}");
        assert!(d.iter().all(|d| d.kind == DiagnosticKind::NotHonored && d.line > 0), "{d:?}");
    }
}
