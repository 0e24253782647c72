//! Route tables as the platforms write them (manifest format version 1).
//!
//! Patterns and targets are kept in the syntax of the platform they came
//! from (`:name`, `*`, path-to-regexp compiled to a regex for Vercel).
//! `helix-config` parses routing files into this form and then lowers it
//! into the platform-neutral [`super::RouteTable`]; manifests written
//! before format version 2 hold this form and are lowered the same way
//! when an edge loads them.

use serde::{Deserialize, Serialize};

use super::{Conditions, Matcher, Origin, Platform};

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
