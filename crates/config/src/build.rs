//! Build settings a project states in its config files (DESIGN.md §7:
//! explicit settings come before framework detection): `helix.toml
//! [build]`, `netlify.toml [build]`, `vercel.json` `buildCommand`,
//! `installCommand`, `outputDirectory`.

use std::collections::BTreeMap;

/// What a config file says about building; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildSettings {
    /// The file the settings come from.
    pub source: &'static str,
    pub command: Option<String>,
    pub install: Option<String>,
    /// The directory (relative to the repository root) to build in.
    pub base: Option<String>,
    /// The publish directory, relative to `base`.
    pub publish: Option<String>,
    pub environment: BTreeMap<String, String>,
    /// Where function sources are (Netlify `[functions] directory`,
    /// `helix.toml [build] functions`), relative to `base`.
    pub functions: Option<String>,
}

impl BuildSettings {
    fn says_anything(&self) -> bool {
        self.command.is_some()
            || self.install.is_some()
            || self.base.is_some()
            || self.publish.is_some()
            || !self.environment.is_empty()
            || self.functions.is_some()
    }
}

/// The first config file (in the order helix.toml, netlify.toml,
/// vercel.json) that says how to build. A file that cannot be read is an
/// error naming it: a build must not silently ignore its settings.
pub fn build_settings(root: &BTreeMap<String, Vec<u8>>) -> Result<Option<BuildSettings>, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        root.get(name).map(|b| std::str::from_utf8(b).map_err(|_| format!("{name} is not UTF-8"))).transpose()
    };
    if let Some(t) = text("helix.toml")?
        && let Some(b) = crate::helix::build(t)?
    {
        let s = BuildSettings {
            source: "helix.toml [build]",
            command: b.command,
            install: b.install,
            base: b.base,
            publish: b.publish,
            environment: b.environment,
            functions: b.functions,
        };
        if s.says_anything() {
            return Ok(Some(s));
        }
    }
    if let Some(t) = text("netlify.toml")?
        && let Some(b) = crate::netlify::build(t)?
    {
        let s = BuildSettings {
            source: "netlify.toml [build]",
            command: b.command,
            install: None,
            base: b.base,
            publish: b.publish,
            environment: b.environment,
            functions: crate::netlify::functions_dir(t),
        };
        if s.says_anything() {
            return Ok(Some(s));
        }
    }
    if let Some(t) = text("vercel.json")? {
        let v: serde_json::Value = serde_json::from_str(t).map_err(|e| format!("vercel.json: {e}"))?;
        let field = |k: &str| -> Result<Option<String>, String> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("vercel.json: {k} must be a string")),
            }
        };
        let s = BuildSettings {
            source: "vercel.json",
            command: field("buildCommand")?,
            install: field("installCommand")?,
            base: None,
            publish: field("outputDirectory")?,
            environment: BTreeMap::new(),
            functions: None,
        };
        if s.says_anything() {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        list.iter().map(|(n, t)| ((*n).to_owned(), t.as_bytes().to_vec())).collect()
    }

    #[test]
    fn helix_toml_wins_then_netlify_then_vercel() {
        let both = files(&[
            ("helix.toml", "[build]\ncommand = \"make site\"\npublish = \"out\"\n[build.environment]\nA = \"1\"\n"),
            ("netlify.toml", "[build]\ncommand = \"npm run build\"\n"),
        ]);
        let s = build_settings(&both).unwrap().unwrap();
        assert_eq!(
            (s.source, s.command.as_deref(), s.publish.as_deref()),
            ("helix.toml [build]", Some("make site"), Some("out"))
        );
        assert_eq!(s.environment["A"], "1");
        let netlify =
            files(&[("netlify.toml", "[build]\nbase = \"site\"\ncommand = \"hugo\"\npublish = \"public\"\n")]);
        let s = build_settings(&netlify).unwrap().unwrap();
        assert_eq!((s.base.as_deref(), s.command.as_deref()), (Some("site"), Some("hugo")));
        let vercel = files(&[(
            "vercel.json",
            r#"{"buildCommand":"vite build","outputDirectory":"dist","installCommand":"npm i"}"#,
        )]);
        let s = build_settings(&vercel).unwrap().unwrap();
        assert_eq!((s.install.as_deref(), s.publish.as_deref()), (Some("npm i"), Some("dist")));
        assert_eq!(build_settings(&files(&[("netlify.toml", "[[redirects]]\nfrom='/a'\nto='/b'\n")])).unwrap(), None);
    }

    #[test]
    fn unreadable_settings_are_errors_naming_the_file() {
        let e = build_settings(&files(&[("helix.toml", "[build]\ncommand = 3\n")])).unwrap_err();
        assert!(e.contains("helix.toml"), "{e}");
        let e = build_settings(&files(&[("vercel.json", r#"{"buildCommand": 1}"#)])).unwrap_err();
        assert!(e.contains("buildCommand"), "{e}");
    }
}
