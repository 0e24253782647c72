//! The compiled route table of a deployment (part of the manifest).
//!
//! `helix-config` compiles a project's routing files (`_redirects`,
//! `_headers`, `netlify.toml`, …) into this form at deploy time; the edge
//! evaluates it and never parses a config file. Patterns are stored as
//! written by the platform's rules, already validated; the edge compiles
//! them to matchers when it loads the manifest.

use serde::{Deserialize, Serialize};

/// Whose semantics the table follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub platform: Platform,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<Redirect>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderRule>,
    /// Vercel `rewrites`: tried after the filesystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<Redirect>,
    /// Vercel `cleanUrls`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clean_urls: bool,
    /// Vercel `trailingSlash` (absent: both forms served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailing_slash: Option<bool>,
}

impl RouteTable {
    pub fn is_empty(&self) -> bool {
        self.platform == Platform::Helix && self.redirects.is_empty() && self.headers.is_empty()
    }
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

/// One redirect, rewrite or custom-status rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// Path pattern: literal segments, `:name` placeholders, `*` splat
    /// (Netlify, Pages); for Vercel, the anchored regex its path-to-regexp
    /// `source` compiles to, with a named group per parameter.
    pub from: String,
    /// Required query parameters: name → `:placeholder` or literal value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
    pub to: String,
    pub status: u16,
    /// Applies even when a file exists at the path (Netlify `!`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// Vercel `has`: every one must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub has: Vec<Matcher>,
    /// Vercel `missing`: none may hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<Matcher>,
    /// `helix.toml` `methods`: the rule applies only to these (uppercase);
    /// empty: any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers sent to the upstream of a proxy rule (`netlify.toml`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_headers: Vec<(String, String)>,
    pub origin: Origin,
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

/// Headers for every path matching `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRule {
    pub path: String,
    /// Names lowercased, in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    /// Names to remove (Cloudflare `! Name`), lowercased.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unset: Vec<String>,
    pub origin: Origin,
}

/// Something a deploy's routing files could not get exactly as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem is the whole file.
    pub line: u32,
    pub kind: DiagnosticKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiagnosticKind {
    /// The platform refuses the whole file: the deploy fails.
    Rejected,
    /// The platform drops this rule (and so does HelixStack), usually
    /// silently there; HelixStack says so.
    Ignored,
    /// The platform would honor this rule; HelixStack cannot yet, and
    /// leaves it out.
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
