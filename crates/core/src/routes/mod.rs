//! The compiled route table of a deployment (part of the manifest).
//!
//! `helix-config` compiles a project's routing files (`_redirects`,
//! `_headers`, `netlify.toml`, `vercel.json`, `helix.toml`) into this form
//! at deploy time: every pattern becomes one of a few platform-neutral
//! [`PatternForm`]s and every target a [`Template`] of text and captures,
//! so the edge executes the table without knowing any platform's pattern
//! syntax. Only the *order* in which rules apply stays the platform's
//! ([`Platform`]). Tables of manifest format 1 hold the platforms' own
//! syntax ([`v1`]) and are lowered by `helix-config` when read.

pub mod v1;

use serde::{Deserialize, Serialize};

/// Whose evaluation order the table follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// HelixStack's own `helix.toml` rules (Netlify's evaluation order and
    /// patterns, plus conditions on headers, cookies, query, host and
    /// method); with no rules, plain static serving with pretty URLs.
    #[default]
    Helix,
    Netlify,
    CloudflarePages,
    Vercel,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Helix => "helix",
            Platform::Netlify => "netlify",
            Platform::CloudflarePages => "cloudflare-pages",
            Platform::Vercel => "vercel",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "helix" => Some(Platform::Helix),
            "netlify" => Some(Platform::Netlify),
            "cloudflare-pages" | "cloudflare" | "pages" => Some(Platform::CloudflarePages),
            "vercel" => Some(Platform::Vercel),
            _ => None,
        }
    }

    /// The names `--compat` and `compat =` accept, for messages.
    pub const NAMES: &'static str = "netlify, cloudflare-pages, vercel, helix";
}

/// A deployment's rules, in a form the edge runs without parsing anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub platform: Platform,
    /// Redirects, rewrites and custom-status rules tried before the
    /// filesystem (Netlify and helix.toml: unless a file shadows them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderRule>,
    /// Vercel `rewrites`: tried after the filesystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<Rule>,
    /// Vercel `cleanUrls`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clean_urls: bool,
    /// Vercel `trailingSlash` (absent: both forms served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailing_slash: Option<bool>,
}

impl RouteTable {
    pub fn is_empty(&self) -> bool {
        self.platform == Platform::Helix
            && self.redirects.is_empty()
            && self.headers.is_empty()
            && self.rewrites.is_empty()
    }

    /// Every rule of the table, counted against the per-deployment limits.
    pub fn rule_count(&self) -> usize {
        self.redirects.len() + self.rewrites.len() + self.headers.len()
    }
}

/// Most rules (redirects, rewrites and header rules together) one
/// deployment may carry; a deploy with more is refused.
pub const MAX_RULES: usize = 50_000;
/// Most rules whose pattern needs a regex ([`PatternForm::Regex`]).
pub const MAX_REGEX_RULES: usize = 4_096;
/// Most rules whose pattern has no literal segment among its first 16
/// (`/:lang/:page`): the edge cannot index those and tries each on every
/// request.
pub const MAX_UNANCHORED_RULES: usize = 1_000;
/// Most rules whose pattern needs lookaround (a bounded backtracking
/// matcher runs them, one by one).
pub const MAX_LOOKAROUND_RULES: usize = 32;
/// Steps the backtracking matcher may take on one request for one rule
/// before the rule counts as not matching.
pub const LOOKAROUND_BACKTRACK_LIMIT: usize = 20_000;

/// What a rule's path must look like, and what it captures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathPattern {
    #[serde(flatten)]
    pub form: PatternForm,
    /// The subject is lowercased before matching (the form is written in
    /// lowercase).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fold_case: bool,
    /// One trailing `/` of the subject is dropped before matching (but `/`
    /// stays `/`); the form is written without one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub slash_optional: bool,
}

impl PathPattern {
    pub fn exact(path: impl Into<String>) -> Self {
        PathPattern { form: PatternForm::Exact { path: path.into() }, fold_case: false, slash_optional: false }
    }
}

/// The subject a request path becomes before a pattern with these flags
/// ([`PathPattern::fold_case`], [`PathPattern::slash_optional`]) looks at it.
pub fn normalize_subject(path: &str, fold_case: bool, slash_optional: bool) -> std::borrow::Cow<'_, str> {
    let trimmed = if slash_optional && path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
    if fold_case && trimmed.chars().any(char::is_uppercase) {
        std::borrow::Cow::Owned(trimmed.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// The platform-neutral pattern forms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "match", rename_all = "kebab-case")]
pub enum PatternForm {
    /// The subject is exactly `path`.
    Exact { path: String },
    /// The subject starts with `prefix`; what follows is captured as
    /// `capture`, when named.
    Prefix {
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capture: Option<String>,
    },
    /// `/`-separated segments, each a literal or a capture of one
    /// non-empty segment, then optionally the rest of the path.
    Segments {
        segments: Vec<Segment>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rest: Option<Rest>,
    },
    /// An anchored regex with a named group per capture. Linear-time unless
    /// `lookaround`, in which case a backtracking matcher runs it with a
    /// step limit ([`LOOKAROUND_BACKTRACK_LIMIT`]).
    Regex {
        regex: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lookaround: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Segment {
    Literal(String),
    Capture(String),
}

/// What may follow a [`PatternForm::Segments`] pattern's segments: `/` and
/// anything (captured), or — when `optional` — nothing at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rest {
    pub capture: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A target or header value: literal text and captured values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Template(pub Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Piece {
    /// Text as the rule wrote it (percent-encoded where a URL needs it).
    Text(String),
    /// The value of a capture (decoded text from the request).
    Capture { capture: String },
}

impl Template {
    pub fn text(s: impl Into<String>) -> Self {
        Template(vec![Piece::Text(s.into())])
    }

    /// The literal text the template starts with ("" when it starts with a
    /// capture).
    pub fn leading_text(&self) -> &str {
        match self.0.first() {
            Some(Piece::Text(t)) => t,
            _ => "",
        }
    }

    /// Whether the scheme and host of the target are fixed by the rule's
    /// own text, or it is a path on the same host: captured request text can
    /// then never make it point elsewhere.
    pub fn names_its_host(&self) -> bool {
        let lead = self.leading_text();
        let Some(rest) = lead.strip_prefix("https://").or_else(|| lead.strip_prefix("http://")) else {
            return false;
        };
        rest.contains(['/', '?', '#']) || self.0.len() == 1
    }

    /// Whether the target is another origin's URL (proxied or redirected
    /// there), as far as the rule's own text says.
    pub fn is_absolute(&self) -> bool {
        let lead = self.leading_text();
        lead.starts_with("https://") || lead.starts_with("http://")
    }

    /// The template with its captures written as `:name` (for reports).
    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Capture { capture } => format!(":{capture}"),
            })
            .collect()
    }
}

/// One redirect, rewrite, proxy or custom-status rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub pattern: PathPattern,
    /// Required query parameters (Netlify); a capture binds the value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<QueryMatch>,
    pub to: Template,
    pub status: u16,
    /// Applies even when a file exists at the path (Netlify `!`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// Every one must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub has: Vec<Matcher>,
    /// None may hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<Matcher>,
    /// The rule applies only to these methods (uppercase); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers sent to the upstream of a proxy rule; never framing or
    /// hop-by-hop headers (see [`forbidden_request_header`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_headers: Vec<(String, String)>,
    pub origin: Origin,
}

/// A required query parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryMatch {
    pub key: String,
    #[serde(flatten)]
    pub value: QueryValue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueryValue {
    /// The parameter has exactly this value.
    Equals(String),
    /// Any value, bound to this capture.
    Capture(String),
}

/// Headers for every request whose path (and host, when given) matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRule {
    /// An anchored regex over the request's host, with named groups
    /// (Cloudflare Pages `https://:sub.example.com/*` rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub pattern: PathPattern,
    /// Names lowercased, in file order; never framing or hop-by-hop
    /// headers (see [`forbidden_response_header`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, Template)>,
    /// Names to remove (Cloudflare `! Name`), lowercased.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unset: Vec<String>,
    pub origin: Origin,
}

/// Headers that describe the connection or the message's framing, or that
/// only the edge may decide: no routing rule may set or remove them on a
/// response, whatever the platform (a forged `Content-Length` would let a
/// site's bytes be read as the next response on a shared connection).
pub fn forbidden_response_header(name: &str) -> bool {
    const NAMES: &[&str] =
        &["content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "host"];
    let name = name.trim();
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
        || name.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("proxy-"))
}

/// Headers a proxy rule may not send upstream: the framing and hop-by-hop
/// ones, and the loop detector's `CDN-Loop`.
pub fn forbidden_request_header(name: &str) -> bool {
    forbidden_response_header(name) || name.trim().eq_ignore_ascii_case("cdn-loop")
}

/// A request property a rule requires (`has`) or forbids (`missing`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub on: MatchOn,
    /// Header (lowercase), cookie or query name; unused for `host`.
    #[serde(default)]
    pub key: String,
    /// An anchored regex the value must match; `None`: present at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchOn {
    Header,
    Cookie,
    Query,
    Host,
}

/// Where a rule came from, for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub file: String,
    pub line: u32,
}

/// Netlify conditions: a rule applies only when each listed one matches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditions {
    /// ISO 3166 alpha-2 codes, lowercase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub country: Vec<String>,
    /// Language codes, lowercase (`en`, `pt-br`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub language: Vec<String>,
    /// Roles, any of which the visitor's `nf_jwt` must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role: Vec<String>,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self.country.is_empty() && self.language.is_empty() && self.role.is_empty()
    }
}

/// Something a deploy's routing files could not get exactly as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem is the whole file.
    pub line: u32,
    pub kind: DiagnosticKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DiagnosticKind {
    /// The platform refuses the whole file (or HelixStack refuses the
    /// deploy, past a limit): the deploy fails.
    Rejected,
    /// The platform drops this rule (and so does HelixStack), usually
    /// silently there; HelixStack says so.
    Ignored,
    /// The platform would honor this rule; HelixStack cannot (yet, or
    /// ever: framing headers), and leaves it out.
    NotHonored,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            DiagnosticKind::Rejected => "rejected",
            DiagnosticKind::Ignored => "ignored",
            DiagnosticKind::NotHonored => "not honored",
        };
        if self.line == 0 {
            write!(f, "{}: {kind}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {kind}: {}", self.file, self.line, self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_headers_are_forbidden_in_any_case() {
        for name in ["Content-Length", "TRANSFER-ENCODING", "connection", "Proxy-Authorization", "proxy-x", "Host"] {
            assert!(forbidden_response_header(name), "{name}");
        }
        for name in ["cache-control", "x-frame-options", "content-type", "proxy"] {
            assert!(!forbidden_response_header(name), "{name}");
        }
        assert!(forbidden_request_header("CDN-Loop"));
    }

    #[test]
    fn patterns_normalize_their_subject() {
        assert_eq!(normalize_subject("/A/", true, true), "/a");
        assert_eq!(normalize_subject("/", true, true), "/");
        assert_eq!(normalize_subject("/A/", false, false), "/A/");
        assert_eq!(normalize_subject("/A/", false, true), "/A");
    }

    #[test]
    fn templates_know_whether_they_fix_their_host() {
        let cap = |c: &str| Piece::Capture { capture: c.into() };
        assert!(Template::text("https://example.com").names_its_host());
        assert!(Template(vec![Piece::Text("https://example.com/".into()), cap("splat")]).names_its_host());
        assert!(!Template(vec![Piece::Text("https://example.com".into()), cap("splat")]).names_its_host());
        assert!(!Template(vec![Piece::Text("/".into()), cap("splat")]).names_its_host());
        assert!(Template::text("http://x/").is_absolute());
    }

    #[test]
    fn table_round_trips_as_json() {
        let table = RouteTable {
            platform: Platform::Netlify,
            redirects: vec![Rule {
                pattern: PathPattern {
                    form: PatternForm::Segments {
                        segments: vec![Segment::Literal("blog".into()), Segment::Capture("year".into())],
                        rest: Some(Rest { capture: "splat".into(), optional: true }),
                    },
                    fold_case: false,
                    slash_optional: true,
                },
                query: vec![QueryMatch { key: "id".into(), value: QueryValue::Capture("id".into()) }],
                to: Template(vec![Piece::Text("/b/".into()), Piece::Capture { capture: "year".into() }]),
                status: 301,
                force: false,
                conditions: Conditions::default(),
                has: Vec::new(),
                missing: Vec::new(),
                methods: Vec::new(),
                proxy_headers: Vec::new(),
                origin: Origin { file: "_redirects".into(), line: 1 },
            }],
            ..RouteTable::default()
        };
        let json = serde_json::to_string(&table).unwrap();
        assert!(json.contains(r#""match":"segments""#), "{json}");
        assert_eq!(serde_json::from_str::<RouteTable>(&json).unwrap(), table);
    }
}
