//! Netlify: `_redirects`, `_headers` and `netlify.toml` (SPEC §1).

use helix_core::routes::v1::{HeaderRule, Redirect, RouteTable};
use helix_core::routes::{Conditions, Diagnostic, DiagnosticKind, Origin};

use crate::{content_lines, diag, header_block, push_header};

/// `_redirects` rules first, then `netlify.toml`'s; exact duplicates keep
/// the position of their last occurrence. Headers: `_headers`, then toml.
pub(crate) fn compile(
    redirects: Option<&str>,
    headers: Option<&str>,
    toml: Option<&str>,
    table: &mut RouteTable,
    diags: &mut Vec<Diagnostic>,
) {
    let mut rules = redirects.map(|t| parse_redirects(t, "_redirects", diags)).unwrap_or_default();
    let mut header_rules = headers.map(|t| parse_headers(t, "_headers", diags)).unwrap_or_default();
    if let Some(toml) = toml {
        let parsed = parse_toml(toml, diags);
        rules.extend(parsed.0);
        header_rules.extend(parsed.1);
    }
    table.redirects = dedup_keep_last(rules);
    table.headers = header_rules;
}

/// Removes rules identical (but for their origin) to a later one.
fn dedup_keep_last(rules: Vec<Redirect>) -> Vec<Redirect> {
    let same = |a: &Redirect, b: &Redirect| {
        a.from == b.from
            && a.query == b.query
            && a.to == b.to
            && a.status == b.status
            && a.force == b.force
            && a.conditions == b.conditions
    };
    let mut out: Vec<Redirect> = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        if !rules[i + 1..].iter().any(|later| same(rule, later)) {
            out.push(rule.clone());
        }
    }
    out
}

/// One `_redirects` file (SPEC §1.2). Bad lines are reported and skipped;
/// the valid ones apply.
pub(crate) fn parse_redirects(text: &str, file: &str, diags: &mut Vec<Diagnostic>) -> Vec<Redirect> {
    let mut out = Vec::new();
    for (line_no, line) in content_lines(text) {
        let tokens: Vec<&str> = line.split_whitespace().take_while(|t| !t.starts_with('#')).collect();
        match parse_redirect_line(&tokens) {
            Ok(Some(fields)) => {
                if let Some(rule) = finish_rule(fields, file, line_no, diags) {
                    out.push(rule);
                }
            }
            Ok(None) => {}
            Err(message) => diags.push(diag(file, line_no, DiagnosticKind::Ignored, message)),
        }
    }
    out
}

/// The fields of a rule before validation, from either source.
struct RuleFields {
    from: String,
    to: Option<String>,
    status: Option<u16>,
    force: bool,
    query: Vec<(String, String)>,
    conditions: Vec<(String, String)>,
    /// `netlify.toml` `headers`: sent to a proxied upstream.
    proxy_headers: Vec<(String, String)>,
}

fn parse_redirect_line(tokens: &[&str]) -> Result<Option<RuleFields>, String> {
    let Some((&from, rest)) = tokens.split_first() else { return Ok(None) };
    if rest.is_empty() {
        return Err("Missing destination path/URL".into());
    }
    let (query, to, after) = if leading_int(rest[0]).is_some() {
        (&rest[..0], None, rest)
    } else {
        let Some(k) =
            rest.iter().position(|t| t.starts_with('/') || t.starts_with("http://") || t.starts_with("https://"))
        else {
            return Err("The destination path/URL must start with \"/\", \"http:\" or \"https:\"".into());
        };
        (&rest[..k], Some(rest[k].to_owned()), &rest[k + 1..])
    };
    let (status, force, conditions) = match after.split_first() {
        Some((status, conditions)) => {
            let (code, force) = parse_status(status)?;
            (Some(code), force, conditions)
        }
        None => (None, false, after),
    };
    Ok(Some(RuleFields {
        from: from.to_owned(),
        to,
        status,
        force,
        query: query.iter().map(|t| split_pair(t)).collect(),
        conditions: conditions.iter().map(|t| split_pair(t)).collect(),
        proxy_headers: Vec::new(),
    }))
}

/// `key=value`, keeping only the first two `=`-separated pieces as
/// Netlify's parser does; a bare key gets an empty value.
fn split_pair(token: &str) -> (String, String) {
    let mut parts = token.split('=');
    let key = parts.next().unwrap_or_default().to_owned();
    let value = parts.next().unwrap_or_default().to_owned();
    (key, value)
}

/// JavaScript `parseInt` on a token: its leading digits.
fn leading_int(token: &str) -> Option<i64> {
    let digits: String = token.chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
    digits.parse().ok()
}

fn parse_status(token: &str) -> Result<(u16, bool), String> {
    let force = token.ends_with('!');
    let number = token.trim_end_matches('!');
    let Some(code) = leading_int(number) else { return Err(format!("Invalid status code {token:?}")) };
    if !(100..=999).contains(&code) {
        return Err(format!("status {code} is not a 3-digit HTTP status code"));
    }
    Ok((code as u16, force))
}

/// Validation and normalization shared by `_redirects` and toml rules.
fn finish_rule(f: RuleFields, file: &str, line: usize, diags: &mut Vec<Diagnostic>) -> Option<Redirect> {
    let mut report = |kind, msg: String| diags.push(diag(file, line, kind, msg));
    if f.from.starts_with("http://") || f.from.starts_with("https://") {
        report(
            DiagnosticKind::NotHonored,
            format!("domain-level rule {:?}: rules on a hostname are not supported yet", f.from),
        );
        return None;
    }
    let from = if f.from.starts_with('/') { f.from.clone() } else { format!("/{}", f.from) };
    if from.starts_with("/.netlify") {
        report(DiagnosticKind::Ignored, format!("{from:?}: a rule's path must not start with /.netlify"));
        return None;
    }
    let status = f.status.unwrap_or(301);
    let proxies = status == 200
        && (f.to.as_deref().unwrap_or_default().starts_with("http://")
            || f.to.as_deref().unwrap_or_default().starts_with("https://"));
    if !f.proxy_headers.is_empty() && !proxies {
        report(
            DiagnosticKind::Ignored,
            "`headers` on a rule only apply to proxies (status 200 to an absolute URL)".into(),
        );
    }
    let to = match f.to {
        Some(to) => to,
        None => {
            if !(from.ends_with("/*") && (200..300).contains(&status)) {
                report(DiagnosticKind::Ignored, "Missing \"to\" field".into());
                return None;
            }
            format!("{}:splat", &from[..from.len() - 1])
        }
    };
    if status == 307 {
        report(DiagnosticKind::NotHonored, "status 307 is not supported by Netlify; it passes the code through".into());
    }
    let mut conditions = Conditions::default();
    let mut has = Vec::new();
    for (key, value) in &f.conditions {
        let list =
            || value.split(',').map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty()).collect::<Vec<_>>();
        match key.to_ascii_lowercase().as_str() {
            "country" => conditions.country = list(),
            "language" => conditions.language = list(),
            // Roles are matched as written (case-sensitive, as JWT claims are).
            "role" => {
                conditions.role = value.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()
            }
            // `Cookie=name`: the rule applies when the visitor sends it.
            "cookie" if !value.is_empty() && !value.contains(',') => has.push(helix_core::routes::Matcher {
                on: helix_core::routes::MatchOn::Cookie,
                key: value.clone(),
                value: None,
            }),
            other => {
                let what = match other {
                    "sign" | "signed" => "signed proxy rules",
                    "cookie" => "Cookie conditions naming several cookies",
                    _ => "unknown condition",
                };
                report(DiagnosticKind::NotHonored, format!("{key}={value}: {what} are not supported yet"));
                return None;
            }
        }
    }
    if let Some(problem) = pattern_problem(&from) {
        report(DiagnosticKind::Ignored, format!("{from:?}: {problem}"));
        return None;
    }
    Some(Redirect {
        from,
        query: f.query,
        to,
        status,
        force: f.force,
        conditions,
        has,
        missing: Vec::new(),
        methods: Vec::new(),
        proxy_headers: if proxies {
            f.proxy_headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()
        } else {
            Vec::new()
        },
        origin: Origin { file: file.to_owned(), line: line as u32 },
    })
}

/// A splat is only meaningful as the last segment on Netlify.
fn pattern_problem(from: &str) -> Option<String> {
    let segments: Vec<&str> = from.split('/').filter(|s| !s.is_empty()).collect();
    for (i, s) in segments.iter().enumerate() {
        if s.contains('*') && (*s != "*" || i + 1 != segments.len()) {
            return Some("a `*` splat works only as the last segment".into());
        }
    }
    None
}

/// One `_headers` file (SPEC §1.5).
pub(crate) fn parse_headers(text: &str, file: &str, diags: &mut Vec<Diagnostic>) -> Vec<HeaderRule> {
    let mut rules: Vec<HeaderRule> = Vec::new();
    for (line_no, line) in content_lines(text) {
        if line.starts_with('/') {
            rules.push(header_block(line, file, line_no));
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            diags.push(diag(
                file,
                line_no,
                DiagnosticKind::Ignored,
                format!("{line:?} is neither a path nor `Name: value`"),
            ));
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        let Some(rule) = rules.last_mut() else {
            diags.push(diag(file, line_no, DiagnosticKind::Ignored, "Path should come before header"));
            continue;
        };
        if name.is_empty() {
            diags.push(diag(file, line_no, DiagnosticKind::Ignored, "Missing header name"));
        } else if value.is_empty() {
            diags.push(diag(file, line_no, DiagnosticKind::Ignored, "Missing header value"));
        } else {
            add_header(rule, &name, value, file, line_no, diags);
        }
    }
    rules.retain(|r| !r.set.is_empty());
    rules
}

/// Headers Netlify will not let a site set.
const RESERVED: &[&str] =
    &["content-length", "content-encoding", "location", "server", "date", "age", "connection", "transfer-encoding"];

fn add_header(rule: &mut HeaderRule, name: &str, value: &str, file: &str, line: usize, diags: &mut Vec<Diagnostic>) {
    if RESERVED.contains(&name) {
        diags.push(diag(file, line, DiagnosticKind::Ignored, format!("header {name} cannot be set by a site")));
        return;
    }
    if name == "basic-auth" {
        diags.push(diag(file, line, DiagnosticKind::NotHonored, "Basic-Auth password protection is not supported yet"));
        return;
    }
    push_header(rule, name, value);
}

#[derive(serde::Deserialize)]
struct TomlFile {
    #[serde(default)]
    build: Option<TomlBuild>,
    #[serde(default)]
    redirects: Option<toml::Value>,
    #[serde(default)]
    headers: Option<toml::Value>,
}

#[derive(serde::Deserialize)]
pub(crate) struct TomlBuild {
    pub publish: Option<String>,
    pub command: Option<String>,
    pub base: Option<String>,
    #[serde(default)]
    pub environment: std::collections::BTreeMap<String, String>,
}

/// `[functions] directory`, if set.
pub(crate) fn functions_dir(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct File {
        functions: Option<Functions>,
    }
    #[derive(serde::Deserialize)]
    struct Functions {
        directory: Option<String>,
    }
    toml::from_str::<File>(text).ok()?.functions?.directory
}

/// The Netlify deploy contexts a deployment can be built in.
pub const CONTEXTS: &[&str] = &["production", "deploy-preview", "branch-deploy", "dev"];

/// The variables `[context.<context>.environment]` and then
/// `[context.<branch>.environment]` add (a branch's own context wins, as
/// on Netlify); values that are not strings are skipped.
pub fn context_environment(
    text: &str,
    context: &str,
    branch: Option<&str>,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(value) = toml::from_str::<toml::Value>(text) else { return out };
    let Some(contexts) = value.get("context").and_then(|c| c.as_table()) else { return out };
    for name in std::iter::once(context).chain(branch.filter(|b| *b != context)) {
        let Some(env) = contexts.get(name).and_then(|c| c.get("environment")).and_then(|e| e.as_table()) else {
            continue;
        };
        out.extend(env.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))));
    }
    out
}

/// `[functions."name"] schedule = "…"`, by function name.
pub fn function_schedules(text: &str) -> std::collections::BTreeMap<String, String> {
    let Ok(value) = toml::from_str::<toml::Value>(text) else { return Default::default() };
    let Some(table) = value.get("functions").and_then(|f| f.as_table()) else { return Default::default() };
    table
        .iter()
        .filter_map(|(name, v)| Some((name.clone(), v.as_table()?.get("schedule")?.as_str()?.to_owned())))
        .collect()
}

/// `[[edge_functions]]` declarations, in file order: (path, function).
pub fn edge_function_declarations(text: &str) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        edge_functions: Vec<Decl>,
    }
    #[derive(serde::Deserialize)]
    struct Decl {
        path: Option<String>,
        function: String,
    }
    toml::from_str::<File>(text)
        .map(|f| f.edge_functions.into_iter().filter_map(|d| Some((d.path?, d.function))).collect())
        .unwrap_or_default()
}

/// The `[build]` table; an error names what is wrong with the file.
pub(crate) fn build(text: &str) -> Result<Option<TomlBuild>, String> {
    toml::from_str::<TomlFile>(text).map(|t| t.build).map_err(|e| format!("{TOML}: {e}"))
}

pub(crate) fn publish_dir(text: &str) -> Option<String> {
    toml::from_str::<TomlFile>(text).ok()?.build?.publish
}

const TOML: &str = "netlify.toml";

/// `[[redirects]]` and `[[headers]]` of `netlify.toml` (SPEC §1.3, §1.5).
fn parse_toml(text: &str, diags: &mut Vec<Diagnostic>) -> (Vec<Redirect>, Vec<HeaderRule>) {
    let parsed: TomlFile = match toml::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            diags.push(diag(TOML, line, DiagnosticKind::Rejected, format!("invalid TOML: {}", e.message())));
            return (Vec::new(), Vec::new());
        }
    };
    let line_of = |needle: usize| table_line(text, "redirects", needle);
    let mut redirects = Vec::new();
    match parsed.redirects {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let line = line_of(i);
                match toml_rule(item) {
                    Ok(fields) => redirects.extend(finish_rule(fields, TOML, line, diags)),
                    Err(msg) => diags.push(diag(TOML, line, DiagnosticKind::Rejected, msg)),
                }
            }
        }
        Some(_) => diags.push(diag(TOML, 0, DiagnosticKind::Rejected, "redirects must be an array of tables")),
    }
    let mut headers = Vec::new();
    match parsed.headers {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let line = table_line(text, "headers", i);
                if let Some(rule) = toml_header(item, line, diags) {
                    headers.push(rule);
                }
            }
        }
        Some(_) => diags.push(diag(TOML, 0, DiagnosticKind::Rejected, "headers must be an array of tables")),
    }
    (redirects, headers)
}

/// The line of the `n`th `[[name]]` header in the file (best effort).
fn table_line(text: &str, name: &str, n: usize) -> usize {
    let marker = format!("[[{name}]]");
    text.lines().enumerate().filter(|(_, l)| l.trim().replace(' ', "") == marker).nth(n).map_or(0, |(i, _)| i + 1)
}

fn toml_rule(item: &toml::Value) -> Result<RuleFields, String> {
    let table = item.as_table().ok_or("each [[redirects]] entry must be a table")?;
    let get = |names: &[&str]| names.iter().find_map(|n| table.get(*n));
    let string = |names: &[&str]| -> Result<Option<String>, String> {
        match get(names) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{} must be a string, not {}", names[0], other.type_str())),
        }
    };
    let from = string(&["from", "origin"])?.ok_or("Missing \"from\" field")?;
    let to = string(&["to", "destination"])?;
    let status = match table.get("status") {
        None => None,
        Some(toml::Value::Integer(n)) if (100..=999).contains(n) => Some(*n as u16),
        Some(toml::Value::String(s)) => Some(parse_status(s)?.0),
        Some(other) => return Err(format!("Invalid status code {other}")),
    };
    let force = match table.get("force") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => return Err(format!("force must be true or false, not {other}")),
    };
    let pairs = |names: &[&str]| -> Result<Vec<(String, String)>, String> {
        match get(names) {
            None => Ok(Vec::new()),
            Some(toml::Value::Table(t)) => Ok(t
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","),
                        other => other.to_string(),
                    };
                    (k.clone(), value)
                })
                .collect()),
            Some(_) => Err(format!("{} must be a table", names[0])),
        }
    };
    let mut conditions = pairs(&["conditions"])?;
    if get(&["signed", "sign", "signing"]).is_some() {
        conditions.push(("signed".into(), String::new()));
    }
    let proxy_headers = pairs(&["headers"])?;
    Ok(RuleFields {
        from,
        to,
        status,
        force,
        query: pairs(&["query", "params", "parameters"])?,
        conditions,
        proxy_headers,
    })
}

fn toml_header(item: &toml::Value, line: usize, diags: &mut Vec<Diagnostic>) -> Option<HeaderRule> {
    let table = item.as_table()?;
    let path = table.get("for")?.as_str()?.trim();
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let values = table.get("values")?.as_table()?;
    let mut rule = HeaderRule {
        path,
        set: Vec::new(),
        unset: Vec::new(),
        origin: Origin { file: TOML.into(), line: line as u32 },
    };
    for (name, value) in values {
        let value = match value {
            toml::Value::Array(items) => {
                items.iter().filter_map(|v| v.as_str()).map(str::trim).collect::<Vec<_>>().join(", ")
            }
            toml::Value::String(s) => {
                s.split(',').map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(", ")
            }
            other => other.to_string(),
        };
        add_header(&mut rule, &name.trim().to_ascii_lowercase(), &value, TOML, line, diags);
    }
    (!rule.set.is_empty()).then_some(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Redirect>, Vec<Diagnostic>) {
        let mut d = Vec::new();
        let r = parse_redirects(text, "_redirects", &mut d);
        (r, d)
    }

    #[test]
    fn redirect_lines() {
        let (r, d) = parse(
            "# comment\n/a /b\n/c /d 302!\n/store id=:id /blog/:id 301\n/admin/* 200\n/x /y 200 Country=us,CA Language=en\n/blog/my-post#ads /z # inline\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(r.len(), 6);
        assert_eq!((r[0].from.as_str(), r[0].to.as_str(), r[0].status, r[0].force), ("/a", "/b", 301, false));
        assert_eq!((r[1].status, r[1].force), (302, true));
        assert_eq!(r[2].query, vec![("id".to_owned(), ":id".to_owned())]);
        assert_eq!(r[3].to, "/admin/:splat");
        assert_eq!(r[4].conditions.country, ["us", "ca"]);
        assert_eq!(r[4].conditions.language, ["en"]);
        assert_eq!((r[5].from.as_str(), r[5].origin.line), ("/blog/my-post#ads", 7));
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_apply() {
        let (r, d) =
            parse("/only\n/ index.html\n/a /b not_a_status\n/ok /fine\n/admin 200\n/.netlify/x /y\n/a/*/b /c\n");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].from, "/ok");
        let lines: Vec<u32> = d.iter().map(|d| d.line).collect();
        assert_eq!(lines, [1, 2, 3, 5, 6, 7]);
        assert!(d[0].message.contains("Missing destination"));
        assert!(d[1].message.contains("must start with"));
        assert!(d[2].message.contains("Invalid status"));
        assert!(d[3].message.contains("Missing \"to\""));
    }

    #[test]
    fn toml_rules_merge_after_the_file_and_dedupe() {
        let toml = "[[redirects]]\nfrom = \"/one\"\nto = \"/two\"\n\n[[redirects]]\norigin = \"/one\"\ndestination = \"/three\"\nstatus = \"302\"\n";
        let mut table = RouteTable::default();
        let mut d = Vec::new();
        compile(Some("/one /two\n/one /four\n"), None, Some(toml), &mut table, &mut d);
        assert!(d.is_empty(), "{d:?}");
        let got: Vec<(&str, u16)> = table.redirects.iter().map(|r| (r.to.as_str(), r.status)).collect();
        assert_eq!(got, [("/four", 301), ("/two", 301), ("/three", 302)]);
    }

    #[test]
    fn headers() {
        let mut d = Vec::new();
        let h = parse_headers(
            "/*\n  X-Test: one\n  X-Test: two\n  test = one\n/a\n  Location: /nope\n",
            "_headers",
            &mut d,
        );
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].set, vec![("x-test".to_owned(), "one, two".to_owned())]);
        assert_eq!(d.len(), 2, "{d:?}");
        let mut d = Vec::new();
        parse_headers("X-Before: path\n", "_headers", &mut d);
        assert!(d[0].message.contains("Path should come before header"));
    }

    #[test]
    fn invalid_toml_is_rejected_with_a_line() {
        let mut table = RouteTable::default();
        let mut d = Vec::new();
        compile(None, None, Some("[build]\npublish = \n"), &mut table, &mut d);
        assert_eq!(d[0].kind, DiagnosticKind::Rejected);
        assert_eq!(d[0].line, 2, "{d:?}");
        let mut d = Vec::new();
        compile(None, None, Some("[redirects]\nfrom = \"/a\"\n"), &mut table, &mut d);
        assert!(d[0].message.contains("array"), "{d:?}");
    }

    const TOML: &str = r#"
[build.environment]
A = "build"
[context.production.environment]
A = "prod"
B = "prod"
[context.deploy-preview.environment]
A = "preview"
[context.staging.environment]
B = "staging"
N = 1
"#;

    #[test]
    fn the_context_then_the_branch() {
        let prod = context_environment(TOML, "production", Some("main"));
        assert_eq!((prod["A"].as_str(), prod["B"].as_str()), ("prod", "prod"));
        let staging = context_environment(TOML, "branch-deploy", Some("staging"));
        assert_eq!(staging["B"], "staging");
        assert!(!staging.contains_key("A") && !staging.contains_key("N"), "{staging:?}");
        assert_eq!(context_environment(TOML, "deploy-preview", None)["A"], "preview");
        assert!(context_environment("not toml [", "production", None).is_empty());
    }
}
