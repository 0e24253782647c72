//! HelixStack's own `helix.toml`: `[[redirects]]`, `[[rewrites]]` and
//! `[[headers]]` with Netlify's patterns (`:name`, a final `*`) and order
//! (first match; a file at the path wins unless `force`), plus conditions
//! on the request: `methods`, and `has`/`missing` on headers, cookies,
//! query parameters and the host. `compat` names another platform's
//! semantics for the project's other routing files instead.

use std::collections::BTreeMap;

use helix_core::routes::v1::{Redirect, RouteTable};
use helix_core::routes::{Conditions, Diagnostic, DiagnosticKind, MatchOn, Matcher, Origin, Platform};
use serde::Deserialize;

use crate::diag;

const FILE: &str = "helix.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HelixToml {
    compat: Option<String>,
    build: Option<Build>,
    #[serde(default)]
    redirects: Vec<Rule>,
    #[serde(default)]
    rewrites: Vec<Rule>,
    #[serde(default)]
    headers: Vec<Headers>,
    functions: Option<Functions>,
}

/// `[functions]`: the runtime functions run on, and their environment.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Functions {
    pub runtime: Option<String>,
    #[serde(default)]
    pub environment: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Build {
    pub publish: Option<String>,
    pub command: Option<String>,
    pub install: Option<String>,
    pub base: Option<String>,
    pub functions: Option<String>,
    #[serde(default)]
    pub environment: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    from: String,
    to: String,
    status: Option<u16>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    has: Vec<Condition>,
    #[serde(default)]
    missing: Vec<Condition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Condition {
    #[serde(rename = "type")]
    on: String,
    key: Option<String>,
    /// A regex the whole value must match; absent: present at all.
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Headers {
    #[serde(rename = "for")]
    path: String,
    values: BTreeMap<String, String>,
}

fn parse(text: &str) -> Result<HelixToml, Diagnostic> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        diag(FILE, line, DiagnosticKind::Rejected, format!("invalid helix.toml: {}", e.message()))
    })
}

/// The `compat` a `helix.toml` names, or the error that makes it unusable.
pub(crate) fn compat(text: &str) -> Result<Option<Platform>, Diagnostic> {
    let parsed = parse(text)?;
    match parsed.compat.as_deref() {
        None => Ok(None),
        Some(c) => Platform::parse(c).map(Some).ok_or_else(|| {
            diag(
                FILE,
                1,
                DiagnosticKind::Rejected,
                format!("compat {c:?} is not one of netlify, cloudflare-pages, vercel"),
            )
        }),
    }
}

/// Whether the file has any routing rules (a file with only `[build]`
/// does not choose HelixStack's routing semantics).
pub(crate) fn has_rules(text: &str) -> bool {
    parse(text).is_ok_and(|t| !(t.redirects.is_empty() && t.rewrites.is_empty() && t.headers.is_empty()))
}

pub(crate) fn publish_dir(text: &str) -> Option<String> {
    parse(text).ok()?.build?.publish
}

/// `[functions] runtime`, when it names one (`node`, `bun`, `deno`).
pub(crate) fn functions_runtime(text: &str) -> Option<helix_core::functions::Runtime> {
    helix_core::functions::Runtime::parse(parse(text).ok()?.functions?.runtime.as_deref()?)
}

/// `[functions.environment]`.
pub(crate) fn functions_environment(text: &str) -> std::collections::BTreeMap<String, String> {
    parse(text).ok().and_then(|t| t.functions).map(|f| f.environment).unwrap_or_default()
}

/// The `[build]` table; an error names what is wrong with the file.
pub(crate) fn build(text: &str) -> Result<Option<Build>, String> {
    parse(text).map(|t| t.build).map_err(|e| e.to_string())
}

pub(crate) fn compile(text: &str, table: &mut RouteTable, diags: &mut Vec<Diagnostic>) {
    let parsed = match parse(text) {
        Ok(p) => p,
        Err(d) => return diags.push(d),
    };
    let line_of = |key: &str, n: usize| {
        let marker = format!("[[{key}]]");
        text.lines().enumerate().filter(|(_, l)| l.trim() == marker).nth(n).map_or(0, |(i, _)| i + 1)
    };
    for (kind, rules, default_status) in [("redirects", &parsed.redirects, 301), ("rewrites", &parsed.rewrites, 200)] {
        for (i, rule) in rules.iter().enumerate() {
            let line = line_of(kind, i);
            match redirect(rule, default_status, line) {
                Ok(r) => table.redirects.push(r),
                Err(msg) => diags.push(diag(FILE, line, DiagnosticKind::Rejected, format!("{kind}[{i}]: {msg}"))),
            }
        }
    }
    for (i, h) in parsed.headers.iter().enumerate() {
        let line = line_of("headers", i);
        let path = if h.path.starts_with('/') { h.path.clone() } else { format!("/{}", h.path) };
        let mut rule = crate::header_block(&path, FILE, line);
        for (name, value) in &h.values {
            crate::push_header(&mut rule, &name.to_ascii_lowercase(), value);
        }
        table.headers.push(rule);
    }
}

fn redirect(rule: &Rule, default_status: u16, line: usize) -> Result<Redirect, String> {
    let from = if rule.from.starts_with('/') { rule.from.clone() } else { format!("/{}", rule.from) };
    let segments: Vec<&str> = from.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().enumerate().any(|(i, s)| s.contains('*') && (*s != "*" || i + 1 != segments.len())) {
        return Err(format!("{from:?}: a `*` splat works only as the last segment"));
    }
    let status = rule.status.unwrap_or(default_status);
    if !(100..=999).contains(&status) {
        return Err(format!("status {status} is not a 3-digit HTTP status code"));
    }
    let methods = rule
        .methods
        .iter()
        .map(|m| {
            let m = m.to_ascii_uppercase();
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("{m:?} is not an HTTP method"));
            }
            Ok(m)
        })
        .collect::<Result<_, _>>()?;
    Ok(Redirect {
        from,
        query: Vec::new(),
        to: rule.to.clone(),
        status,
        force: rule.force,
        conditions: Conditions::default(),
        has: matchers(&rule.has)?,
        missing: matchers(&rule.missing)?,
        methods,
        proxy_headers: Vec::new(),
        origin: Origin { file: FILE.into(), line: line as u32 },
    })
}

fn matchers(conditions: &[Condition]) -> Result<Vec<Matcher>, String> {
    conditions
        .iter()
        .map(|c| {
            let on = match c.on.as_str() {
                "header" => MatchOn::Header,
                "cookie" => MatchOn::Cookie,
                "query" => MatchOn::Query,
                "host" => MatchOn::Host,
                other => return Err(format!("condition type {other:?} is not header, cookie, query or host")),
            };
            let key = c.key.clone().unwrap_or_default();
            if on != MatchOn::Host && key.is_empty() {
                return Err(format!("a {} condition needs a `key`", c.on));
            }
            let value = c.value.as_deref().map(crate::anchored_regex).transpose()?;
            let key = if on == MatchOn::Header { key.to_ascii_lowercase() } else { key };
            Ok(Matcher { on, key, value })
        })
        .collect()
}
