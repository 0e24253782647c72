//! Phase `route`: a deployment's compiled route table, evaluated in the
//! order of the platform whose files it came from (SPEC §6).
//!
//! The table arrives platform-neutral (see `helix_core::routes`): patterns
//! are exact paths, prefixes, segments or bounded regexes, targets are
//! templates. [`matcher`] finds the rules a path matches; each platform's
//! module ([`netlify`], [`cloudflare`], [`vercel`]) only decides the order
//! and what a match does; [`headers`] decorates the response.

mod cloudflare;
pub(crate) mod functions;
mod headers;
mod matcher;
mod netlify;
pub(crate) mod target;
mod vercel;

use std::borrow::Cow;

use helix_core::routes::{Conditions, MatchOn, Matcher, Platform, QueryMatch, QueryValue, RouteTable, Rule, Template};
use regex::Regex;

use crate::files::{Files, ServedFile};
use matcher::PatternSet;
use target::Captures;

/// What the route phase decided.
pub(crate) enum Outcome<'s> {
    /// Serve a file with a status (200, or a custom 404/410/…); header
    /// rules match `rewritten` when a rewrite chose the file.
    File {
        file: &'s ServedFile,
        status: u16,
        rewritten: Option<String>,
    },
    Redirect {
        status: u16,
        location: String,
    },
    /// Forward to another origin, adding `headers` to the request.
    Proxy {
        url: String,
        headers: &'s [(String, String)],
    },
    /// Run a function.
    Function(functions::Chosen<'s>),
    /// Nothing matched and there is no 404 page.
    NotFound,
    MethodNotAllowed,
}

/// The request facts rules may look at.
pub struct RequestFacts<'r> {
    /// Percent-decoded.
    pub path: &'r str,
    pub method: &'r str,
    /// The request's headers, for `has`/`missing` conditions.
    pub headers: Option<&'r http::HeaderMap>,
    pub query: Option<&'r str>,
    pub host: &'r str,
    pub country: Option<Cow<'r, str>>,
    /// The secret that signs `nf_jwt` tokens, for `Role=` conditions.
    pub jwt_secret: Option<&'r [u8]>,
    pub language: Option<Cow<'r, str>>,
    /// Whether functions may answer (a Pages app that passed the request
    /// on to the static assets routes it again without).
    pub functions: bool,
    /// Whether Netlify edge functions already ran (and passed it on).
    pub after_edge: bool,
}

/// What routing noticed that the request log should carry.
#[derive(Debug, Default)]
pub(crate) struct RouteNotes {
    /// A lookaround pattern hit its step limit and did not match.
    pub backtrack_limit: bool,
}

/// A deployment's route table, ready to evaluate.
pub(crate) struct Router {
    pub platform: Platform,
    redirects: RuleList,
    /// Vercel `rewrites`, tried after the filesystem.
    rewrites: RuleList,
    headers: headers::HeaderRules,
    pub(crate) functions: functions::Functions,
    clean_urls: bool,
    trailing_slash: Option<bool>,
    needs_country: bool,
    needs_language: bool,
}

impl Router {
    pub fn new(table: RouteTable, functions: Vec<helix_core::functions::Function>) -> Router {
        Router {
            platform: table.platform,
            needs_country: table.redirects.iter().any(|r| !r.conditions.country.is_empty()),
            needs_language: table.redirects.iter().any(|r| !r.conditions.language.is_empty()),
            redirects: RuleList::new(table.redirects),
            rewrites: RuleList::new(table.rewrites),
            headers: headers::HeaderRules::new(table.platform, table.headers),
            functions: functions::Functions::new(functions),
            clean_urls: table.clean_urls,
            trailing_slash: table.trailing_slash,
        }
    }

    /// Decides what a request gets.
    pub fn route<'s>(&'s self, files: &'s Files, req: &RequestFacts<'_>, notes: &mut RouteNotes) -> Outcome<'s> {
        let outcome = match self.platform {
            // helix.toml rules follow Netlify's order; with no rules this is
            // plain static serving with pretty URLs.
            Platform::Helix | Platform::Netlify => netlify::route(self, files, req, notes),
            Platform::CloudflarePages => cloudflare::route(self, files, req, notes),
            Platform::Vercel => vercel::route(self, files, req, notes),
        };
        // Files answer GET and HEAD only; redirects and proxies take any
        // method (a proxied API receives its POSTs).
        match outcome {
            Outcome::File { .. } | Outcome::NotFound if !matches!(req.method, "GET" | "HEAD") => {
                Outcome::MethodNotAllowed
            }
            other => other,
        }
    }

    /// Whether any rule looks at the visitor's country (looking it up may
    /// cost a database search, so it is done only then).
    pub fn needs_country(&self) -> bool {
        self.needs_country
    }

    /// Whether any rule looks at the visitor's language.
    pub fn needs_language(&self) -> bool {
        self.needs_language
    }

    pub fn has_header_rules(&self) -> bool {
        !self.headers.is_empty()
    }

    /// Headers the rules add for `path`, merged the platform's way:
    /// `(name, Some(value))` to set, `(name, None)` to remove.
    pub fn headers_for(&self, host: &str, path: &str, notes: &mut RouteNotes) -> Vec<(String, Option<String>)> {
        self.headers.for_request(host, path, notes)
    }

    /// Bytes the router takes, roughly (for the site cache).
    pub fn memory_estimate(&self) -> usize {
        self.redirects.memory_estimate()
            + self.rewrites.memory_estimate()
            + self.headers.memory_estimate()
            + self.functions.memory_estimate()
    }
}

/// The rules of one list and their patterns, matched together.
pub(crate) struct RuleList {
    rules: Vec<CompiledRule>,
    patterns: PatternSet,
}

/// A rule as the edge runs it: what every rule has inline, and what few
/// rules have (conditions, query parameters, methods, proxy headers) boxed
/// apart, so a table of tens of thousands of plain rules stays small. Its
/// pattern lives in the list's [`PatternSet`].
pub(crate) struct CompiledRule {
    pub to: Template,
    pub status: u16,
    pub force: bool,
    extra: Option<Box<Extra>>,
}

/// The parts of a rule most rules do not have.
#[derive(Default)]
struct Extra {
    query: Vec<QueryMatch>,
    conditions: Conditions,
    /// `has` and `missing` with their value regexes compiled once.
    has: Vec<(Matcher, Option<Regex>)>,
    missing: Vec<(Matcher, Option<Regex>)>,
    methods: Vec<String>,
    proxy_headers: Vec<(String, String)>,
}

impl RuleList {
    fn new(rules: Vec<Rule>) -> RuleList {
        let mut patterns = Vec::with_capacity(rules.len());
        let compiled = rules
            .into_iter()
            .map(|rule| {
                patterns.push(rule.pattern);
                CompiledRule::new(
                    rule.to,
                    rule.status,
                    rule.force,
                    Extra {
                        query: rule.query,
                        conditions: rule.conditions,
                        has: compile_matchers(rule.has),
                        missing: compile_matchers(rule.missing),
                        methods: rule.methods,
                        proxy_headers: rule.proxy_headers,
                    },
                )
            })
            .collect();
        RuleList { rules: compiled, patterns: PatternSet::new(patterns) }
    }

    /// Rules whose pattern matches `path`, in rule order, with captures.
    fn matching<'s>(&'s self, path: &str, notes: &mut RouteNotes) -> Vec<(&'s CompiledRule, Captures<'s>)> {
        if self.patterns.is_empty() {
            return Vec::new();
        }
        let mut gave_up = false;
        let found = self.patterns.matches(path, &mut gave_up);
        notes.backtrack_limit |= gave_up;
        found.into_iter().map(|(i, caps)| (&self.rules[i], caps)).collect()
    }

    fn memory_estimate(&self) -> usize {
        self.patterns.memory_estimate() + self.rules.iter().map(CompiledRule::memory_estimate).sum::<usize>()
    }
}

/// `has`/`missing` conditions with their value regexes compiled. The
/// compiler checked every one; one that does not compile here (a manifest
/// from elsewhere) never matches.
fn compile_matchers(ms: Vec<Matcher>) -> Vec<(Matcher, Option<Regex>)> {
    ms.into_iter()
        .map(|m| {
            let re = m.value.as_deref().map(|v| Regex::new(v).unwrap_or_else(|_| never()));
            (m, re)
        })
        .collect()
}

/// A regex that matches nothing.
fn never() -> Regex {
    Regex::new(r"[^\s\S]").expect("a valid empty class")
}

impl CompiledRule {
    fn new(mut to: Template, status: u16, force: bool, extra: Extra) -> CompiledRule {
        to.0.shrink_to_fit();
        let plain = extra.query.is_empty()
            && extra.conditions.is_empty()
            && extra.has.is_empty()
            && extra.missing.is_empty()
            && extra.methods.is_empty()
            && extra.proxy_headers.is_empty();
        CompiledRule { to, status, force, extra: (!plain).then(|| Box::new(extra)) }
    }

    /// Whether the rule matches on query parameters (Netlify).
    pub fn matches_query(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| !e.query.is_empty())
    }

    /// Headers sent to a proxy rule's upstream.
    pub fn proxy_headers(&self) -> &[(String, String)] {
        self.extra.as_ref().map_or(&[], |e| &e.proxy_headers)
    }

    fn memory_estimate(&self) -> usize {
        let template: usize = self.to.0.len() * 48 + self.to.display().len();
        let extra = self.extra.as_ref().map_or(0, |e| {
            std::mem::size_of::<Extra>()
                + (e.has.len() + e.missing.len()) * 2048
                + e.query.len() * 64
                + e.proxy_headers.len() * 96
        });
        std::mem::size_of::<CompiledRule>() + template + extra
    }

    /// Whether every `has` holds, no `missing` does, and the method is one
    /// the rule takes.
    fn request_conditions_hold(&self, req: &RequestFacts<'_>) -> bool {
        let Some(e) = &self.extra else { return true };
        (e.methods.is_empty() || e.methods.iter().any(|m| m == req.method))
            && e.has.iter().all(|(m, re)| matcher_holds(m, re.as_ref(), req))
            && !e.missing.iter().any(|(m, re)| matcher_holds(m, re.as_ref(), req))
    }

    /// Netlify's query parameters (binding their captures) and its country,
    /// role and language conditions.
    fn netlify_conditions_hold<'s>(&'s self, req: &RequestFacts<'_>, caps: &mut Captures<'s>) -> bool {
        let Some(e) = &self.extra else { return true };
        if !e.query.is_empty() {
            let pairs: Vec<(&str, &str)> = req
                .query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect();
            for q in &e.query {
                let Some((_, got)) = pairs.iter().find(|(k, _)| *k == q.key) else { return false };
                match &q.value {
                    QueryValue::Capture(name) => caps.push_raw(name, *got),
                    QueryValue::Equals(want) if want == got => {}
                    QueryValue::Equals(_) => return false,
                }
            }
        }
        let c = &e.conditions;
        if !c.country.is_empty() {
            let Some(country) = req.country.as_deref() else { return false };
            if !c.country.contains(&country.to_ascii_lowercase()) {
                return false;
            }
        }
        if !c.role.is_empty() {
            let roles = (|| {
                let token = crate::request::cookie(req.headers?, "nf_jwt")?;
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                crate::roles::roles(token, req.jwt_secret?, now)
            })();
            if !roles.is_some_and(|roles| c.role.iter().any(|r| roles.contains(r))) {
                return false;
            }
        }
        if !c.language.is_empty() {
            let Some(lang) = req.language.as_deref() else { return false };
            let lang = lang.to_ascii_lowercase();
            let primary = lang.split('-').next().unwrap_or_default();
            if !c.language.iter().any(|x| *x == lang || *x == primary) {
                return false;
            }
        }
        true
    }
}

/// Whether one `has`/`missing` condition holds for the request.
fn matcher_holds(m: &Matcher, value_re: Option<&Regex>, req: &RequestFacts<'_>) -> bool {
    let value: Option<&str> = match m.on {
        MatchOn::Host => Some(req.host),
        MatchOn::Header => req.headers.and_then(|h| h.get(m.key.as_str())).and_then(|v| v.to_str().ok()),
        MatchOn::Cookie => req.headers.and_then(|h| crate::request::cookie(h, &m.key)),
        MatchOn::Query => req
            .query
            .unwrap_or("")
            .split('&')
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .find(|(k, _)| *k == m.key)
            .map(|(_, v)| v),
    };
    match (value, value_re) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(v), Some(re)) => re.is_match(v),
    }
}

/// The deployment's page for a miss, with status 404, if it has one.
fn not_found_page<'s>(files: &'s Files, page: &str) -> Outcome<'s> {
    match files.get(page) {
        Some(file) => Outcome::File { file, status: 404, rewritten: None },
        None => Outcome::NotFound,
    }
}

/// The exact path, then `path/index.html`, then `path.html` (Netlify's
/// pretty URLs; also HelixStack's own default).
pub(crate) fn pretty_lookup<'s>(files: &'s Files, path: &str) -> Option<&'s ServedFile> {
    if let Some(dir) = path.strip_suffix('/') {
        return files
            .get(&format!("{dir}/index.html"))
            .or_else(|| if dir.is_empty() { None } else { files.get(&format!("{dir}.html")) });
    }
    files.get(path).or_else(|| files.get(&format!("{path}/index.html"))).or_else(|| files.get(&format!("{path}.html")))
}
