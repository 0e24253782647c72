//! Which platform's semantics apply (SPEC §0): from the files present.

use helix_core::routes::Platform;

use crate::ProjectFiles;

/// The platform and a sentence saying why.
pub fn detect(files: &ProjectFiles) -> (Platform, String) {
    // A helix.toml with only build settings does not decide routing.
    if files.root.get("helix.toml").is_some_and(|b| crate::helix::has_rules(&String::from_utf8_lossy(b))) {
        return (Platform::Helix, "helix (helix.toml has routing rules)".into());
    }
    if files.root.contains_key("netlify.toml") {
        return (Platform::Netlify, "netlify (netlify.toml is present)".into());
    }
    if files.root.contains_key("vercel.json") {
        return (Platform::Vercel, "vercel (vercel.json is present)".into());
    }
    if files.root.contains_key("wrangler.toml") || files.publish.contains_key("_routes.json") {
        return (Platform::CloudflarePages, "cloudflare-pages (wrangler.toml or _routes.json is present)".into());
    }
    let redirects = files.publish.get("_redirects").map(|b| String::from_utf8_lossy(b).into_owned());
    if let Some(text) = redirects {
        if let Some(line) = text.lines().map(str::trim).find(|l| netlify_only(l)) {
            return (Platform::Netlify, format!("netlify (_redirects uses Netlify-only syntax: {line:?})"));
        }
        return (
            Platform::Netlify,
            "netlify (_redirects is valid for Netlify and Cloudflare Pages; Netlify is assumed — set compat to choose)"
                .into(),
        );
    }
    if files.publish.contains_key("_headers") {
        return (Platform::Netlify, "netlify (_headers without other hints; set compat to choose)".into());
    }
    (Platform::Helix, "helix (no routing files)".into())
}

/// A `_redirects` line only Netlify would accept: a forced status,
/// conditions, query matches, custom statuses, or more than three fields.
fn netlify_only(line: &str) -> bool {
    if line.is_empty() || line.starts_with('#') {
        return false;
    }
    let tokens: Vec<&str> = line.split_whitespace().take_while(|t| !t.starts_with('#')).collect();
    tokens.len() > 3
        || tokens.iter().any(|t| t.ends_with('!') || t.contains('='))
        || tokens.get(2).is_some_and(|s| matches!(*s, "404" | "410" | "451"))
        || tokens.first().is_some_and(|f| f.starts_with("http"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(root: &[&str], publish: &[(&str, &str)]) -> ProjectFiles {
        ProjectFiles {
            root: root.iter().map(|n| (n.to_string(), Vec::new())).collect(),
            publish: publish.iter().map(|(n, c)| (n.to_string(), c.as_bytes().to_vec())).collect(),
        }
    }

    #[test]
    fn detects() {
        assert_eq!(detect(&files(&["netlify.toml"], &[])).0, Platform::Netlify);
        assert_eq!(detect(&files(&["wrangler.toml"], &[("_redirects", "/a /b")])).0, Platform::CloudflarePages);
        assert_eq!(detect(&files(&[], &[("_routes.json", "{}")])).0, Platform::CloudflarePages);
        let (p, why) = detect(&files(&[], &[("_redirects", "/a /b 200!")]));
        assert_eq!(p, Platform::Netlify);
        assert!(why.contains("200!"), "{why}");
        assert_eq!(detect(&files(&[], &[])).0, Platform::Helix);
        let mut build_only = files(&[], &[("_redirects", "/a /b 200!")]);
        build_only.root.insert("helix.toml".into(), b"[build]\npublish = \"dist\"\n".to_vec());
        assert_eq!(detect(&build_only).0, Platform::Netlify, "build settings alone do not pick helix");
        build_only.root.insert("helix.toml".into(), b"[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\n".to_vec());
        assert_eq!(detect(&build_only).0, Platform::Helix);
    }
}
