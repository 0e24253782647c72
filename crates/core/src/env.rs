//! Project environment variables and secrets as the API shows them
//! (`/api/v1/projects/{project}/env`). A secret's value never leaves the
//! server over the API: it is `None` in every answer.

use serde::{Deserialize, Serialize};

/// The environments every project has; custom names are allowed besides.
pub const STANDARD_ENVIRONMENTS: [&str; 3] = ["production", "preview", "development"];

/// One variable in one environment (and branch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnvVar {
    pub name: String,
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub secret: bool,
    /// The value of a plain variable; `None` for a secret.
    pub value: Option<String>,
    pub updated_at_ms: i64,
}

/// `PUT /api/v1/projects/{project}/env/{name}`
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetEnv {
    pub value: String,
    /// Default: production, preview and development.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// Only builds and functions of this branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// `POST /api/v1/projects/{project}/env/import`: a `.env` file's text.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportEnv {
    pub dotenv: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// `GET /api/v1/projects/{project}/env/pull`: what a `.env` for one
/// environment holds. Secrets are named, never given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PulledEnv {
    pub environment: String,
    pub values: std::collections::BTreeMap<String, String>,
    pub secrets: Vec<String>,
}

/// `POST /api/v1/keys/rotate`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rotated {
    /// The master key everything is now sealed under (its id).
    pub key: String,
    pub project_keys: u64,
    pub git_credentials: u64,
}

/// A variable's name: a letter or `_`, then letters, digits and `_`, at
/// most 256; `HELIX_` names are the platform's.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && (name.as_bytes()[0].is_ascii_alphabetic() || name.starts_with('_'))
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(format!(
            "variable name {:?} must be a letter or '_' followed by letters, digits and '_' (at most 256)",
            name.chars().take(300).collect::<String>()
        ));
    }
    if name.starts_with("HELIX_") {
        return Err(format!("variable name {name}: HELIX_ names are set by the platform"));
    }
    Ok(())
}

/// An environment's name: a standard one, or 1–32 of `a-z 0-9 -`.
pub fn check_environment(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then_some(()).ok_or_else(|| format!("environment {name:?} must be 1–32 of a-z, 0-9 and '-'"))
}

/// Largest value: 64 KiB (Vercel's limit for a deployment's variables is
/// 64 KB in all).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Reads a `.env` file: `KEY=value` lines, `export KEY=value`, `#`
/// comments, values in single quotes (literal) or double quotes (`\n`,
/// `\"` and `\\` escapes); an error names the first bad line.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let bad = |why: &str| format!("line {}: {why}", n + 1);
        let (key, value) = line.split_once('=').ok_or_else(|| bad("expected KEY=value"))?;
        let key = key.trim();
        check_name(key).map_err(|e| bad(&e))?;
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('"') {
            let inner = inner.strip_suffix('"').ok_or_else(|| bad("an unclosed double quote"))?;
            let mut v = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => v.push('\n'),
                        Some(other) => v.push(other),
                        None => v.push('\\'),
                    }
                } else {
                    v.push(c);
                }
            }
            v
        } else if let Some(inner) = value.strip_prefix('\'') {
            inner.strip_suffix('\'').ok_or_else(|| bad("an unclosed single quote"))?.to_owned()
        } else {
            // Unquoted: a ` #` starts a comment.
            value.split(" #").next().unwrap_or_default().trim_end().to_owned()
        };
        if value.len() > MAX_VALUE_BYTES || value.contains('\0') {
            return Err(bad(&format!("the value must be at most {MAX_VALUE_BYTES} bytes, without NUL")));
        }
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_files_read_as_tools_write_them() {
        let text = "# comment\nA=1\nexport B = two words # note\nC=\"line\\nbreak \\\"q\\\"\"\nD='lit $X \\n'\n\nE=\n";
        let got = parse_dotenv(text).unwrap();
        let want = [("A", "1"), ("B", "two words"), ("C", "line\nbreak \"q\""), ("D", "lit $X \\n"), ("E", "")];
        assert_eq!(got, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(parse_dotenv("A=1\nnot a pair\n").unwrap_err(), "line 2: expected KEY=value");
        assert!(parse_dotenv("1A=x").unwrap_err().starts_with("line 1:"));
        assert!(parse_dotenv("A=\"open").unwrap_err().contains("unclosed"));
        assert!(parse_dotenv("HELIX_X=1").unwrap_err().contains("platform"));
    }

    #[test]
    fn names_and_environments_are_checked() {
        for ok in ["A", "_x", "DATABASE_URL", "a1"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "HELIX_TOKEN"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_environment("staging-2").is_ok());
        assert!(check_environment("Prod").is_err() && check_environment("").is_err());
    }
}
