//! Buildpacks' `detect` (DESIGN.md §7): from a checked-out source tree to a
//! plan (where to build, how to install, how to build, what to publish,
//! what to cache), with the reasons for each choice in words a user reads
//! in the build log.
//!
//! Explicit settings from the config files come first; framework detection
//! fills in what they leave open. Pure: it reads files, runs nothing.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// How the source will be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The directory to build in, relative to the repository root.
    pub base: PathBuf,
    /// What was detected (`vite`, `hugo`, `static`, …).
    pub framework: &'static str,
    /// Why, one clause per decision.
    pub reasons: Vec<String>,
    pub package_manager: Option<PackageManager>,
    /// The directory the install runs in (where the lockfile is: the base,
    /// or a workspace root above it), relative to the repository root.
    pub install_dir: PathBuf,
    /// The lockfile that keys the dependency cache.
    pub lockfile: Option<PathBuf>,
    pub install: Option<String>,
    pub build: Option<String>,
    /// The publish directory, relative to `base`.
    pub publish: PathBuf,
    /// Framework caches kept between builds, relative to `base`.
    pub caches: Vec<&'static str>,
    /// Environment from the config file's `[build.environment]`.
    pub environment: BTreeMap<String, String>,
    /// The `netlify.toml` in effect (the base directory's, else the
    /// root's), for its `[context.*]` environment.
    pub netlify_toml: Option<String>,
    /// Directories of function sources (relative to `base`) that exist:
    /// Netlify's `netlify/functions`, Vercel's `api`, Cloudflare Pages'
    /// `functions`. Collected into the deployment, not served.
    pub functions: Vec<PathBuf>,
}

impl Plan {
    /// One line for the log and the build record.
    pub fn summary(&self) -> String {
        let pm = self.package_manager.map(|p| format!(" with {}", p.name())).unwrap_or_default();
        format!("{}{pm}: {}", self.framework, self.reasons.join("; "))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageManager {
    Npm,
    Pnpm,
    Yarn,
    Bun,
    Deno,
}

impl PackageManager {
    pub fn name(self) -> &'static str {
        match self {
            PackageManager::Npm => "npm",
            PackageManager::Pnpm => "pnpm",
            PackageManager::Yarn => "yarn",
            PackageManager::Bun => "bun",
            PackageManager::Deno => "deno",
        }
    }

    /// Install from the lockfile exactly (or, without one, resolve).
    fn install(self, locked: bool) -> &'static str {
        match (self, locked) {
            (PackageManager::Npm, true) => "npm ci",
            (PackageManager::Npm, false) => "npm install",
            (PackageManager::Pnpm, _) => "pnpm install --frozen-lockfile",
            (PackageManager::Yarn, _) => "yarn install --frozen-lockfile",
            (PackageManager::Bun, _) => "bun install --frozen-lockfile",
            (PackageManager::Deno, _) => "deno install",
        }
    }

    fn run(self, script: &str) -> String {
        match self {
            PackageManager::Deno => format!("deno task {script}"),
            PackageManager::Yarn => format!("yarn {script}"),
            other => format!("{} run {script}", other.name()),
        }
    }
}

/// Lockfiles in the order they are trusted.
const LOCKFILES: &[(&str, PackageManager)] = &[
    ("package-lock.json", PackageManager::Npm),
    ("npm-shrinkwrap.json", PackageManager::Npm),
    ("pnpm-lock.yaml", PackageManager::Pnpm),
    ("yarn.lock", PackageManager::Yarn),
    ("bun.lock", PackageManager::Bun),
    ("bun.lockb", PackageManager::Bun),
];

/// JavaScript frameworks: (dependency, name, publish dir, fallback build
/// command, framework caches). The first dependency found wins, so
/// meta-frameworks come before the tools they are built on.
const JS_FRAMEWORKS: &[(&str, &str, &str, &str, &[&str])] = &[
    ("next", "nextjs", "out", "next build", &[".next/cache"]),
    ("astro", "astro", "dist", "astro build", &[".astro", "node_modules/.astro"]),
    ("@sveltejs/kit", "sveltekit", "build", "vite build", &[".svelte-kit"]),
    ("gatsby", "gatsby", "public", "gatsby build", &[".cache"]),
    ("@11ty/eleventy", "eleventy", "_site", "eleventy", &[".cache"]),
    ("vite", "vite", "dist", "vite build", &[]),
];

/// Config files that make a directory a Hugo site.
const HUGO_CONFIGS: &[&str] = &["hugo.toml", "hugo.yaml", "hugo.json", "config.toml", "config.yaml"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{0}")]
    Config(String),
    #[error("{what} {path:?} must be a relative path inside the repository")]
    Path { what: &'static str, path: String },
    #[error("base directory {0} does not exist in the repository")]
    MissingBase(String),
    #[error("package.json in {dir}: {error}")]
    PackageJson { dir: String, error: String },
    #[error(
        "nothing to build: {0} has no build settings, no package.json, no Hugo or Jekyll config and no index.html; \
         set [build] command and publish in helix.toml"
    )]
    Nothing(String),
}

/// Plans the build of the source tree at `root`.
pub fn detect(root: &Path) -> Result<Plan, PlanError> {
    let settings = helix_config::build_settings(&config_files(root)).map_err(PlanError::Config)?;
    let mut reasons = Vec::new();
    let base = match settings.as_ref().and_then(|s| s.base.as_deref()) {
        Some(b) => {
            let base = relative("base directory", b)?;
            reasons.push(format!("base directory {} from {}", base.display(), settings.as_ref().unwrap().source));
            base
        }
        None => PathBuf::new(),
    };
    let dir = root.join(&base);
    if !dir.is_dir() {
        return Err(PlanError::MissingBase(base.display().to_string()));
    }
    // A base directory may have its own config files.
    let settings = if base.as_os_str().is_empty() {
        settings
    } else {
        helix_config::build_settings(&config_files(&dir)).map_err(PlanError::Config)?.or(settings)
    };
    let package = read_package_json(&dir)?;
    let (package_manager, install_dir, lockfile) = package_manager(root, &base, package.is_some());
    let framework = package.as_ref().and_then(js_framework);

    let mut plan = Plan {
        base: base.clone(),
        framework: "static",
        reasons: Vec::new(),
        package_manager,
        install_dir,
        lockfile: lockfile.clone(),
        install: None,
        build: None,
        publish: PathBuf::new(),
        caches: Vec::new(),
        environment: BTreeMap::new(),
        netlify_toml: [dir.as_path(), root]
            .into_iter()
            .find_map(|d| config_files(d).remove("netlify.toml"))
            .and_then(|b| String::from_utf8(b).ok()),
        functions: helix_config::functions::source_dirs(None)
            .into_iter()
            .map(PathBuf::from)
            .filter(|d| dir.join(d).is_dir())
            .collect(),
    };
    if let Some(pm) = package_manager {
        plan.install = Some(pm.install(lockfile.is_some()).to_owned());
        match &lockfile {
            Some(l) => reasons.push(format!("{} because of {}", pm.name(), l.display())),
            None => reasons.push(format!("{} (no lockfile)", pm.name())),
        }
    }
    let scripts_build = package.as_ref().and_then(|p| p.pointer("/scripts/build")).and_then(Value::as_str).is_some();
    if let Some((dep, name, publish, command, caches)) = framework {
        plan.framework = name;
        reasons.push(format!("{name} because package.json depends on {dep}"));
        plan.publish = PathBuf::from(publish);
        plan.caches = caches.to_vec();
        plan.build = Some(match (scripts_build, package_manager) {
            (true, Some(pm)) => pm.run("build"),
            _ => format!("npx --no-install {command}"),
        });
        if name == "nextjs" && !next_exports_statically(&dir) {
            reasons.push("next.config does not say output: 'export'; the build must write out/".into());
        }
    } else if let Some(config) = HUGO_CONFIGS.iter().find(|c| dir.join(c).is_file()) {
        plan.framework = "hugo";
        reasons.push(format!("hugo because of {config}"));
        plan.build = Some("hugo".into());
        plan.publish = PathBuf::from("public");
        plan.caches = vec!["resources/_gen"];
    } else if dir.join("_config.yml").is_file() || dir.join("_config.yaml").is_file() {
        plan.framework = "jekyll";
        reasons.push("jekyll because of _config.yml".into());
        plan.build = Some("jekyll build".into());
        plan.publish = PathBuf::from("_site");
        plan.caches = vec![".jekyll-cache"];
    } else if package.is_some() && scripts_build {
        plan.framework = "node";
        reasons.push("package.json has a build script".into());
        plan.build = package_manager.map(|pm| pm.run("build"));
        plan.publish = PathBuf::from("dist");
    } else if dir.join("index.html").is_file() {
        reasons.push("plain static site: index.html at the top".into());
        plan.install = None;
    } else if dir.join("public/index.html").is_file() {
        reasons.push("plain static site: public/index.html".into());
        plan.install = None;
        plan.publish = PathBuf::from("public");
    } else if settings.as_ref().is_none_or(|s| s.command.is_none() && s.publish.is_none()) {
        return Err(PlanError::Nothing(if base.as_os_str().is_empty() {
            "the repository".into()
        } else {
            base.display().to_string()
        }));
    }

    if let Some(s) = settings {
        if let Some(c) = s.command {
            reasons.push(format!("build command from {}", s.source));
            plan.build = Some(c);
        }
        if let Some(i) = s.install {
            reasons.push(format!("install command from {}", s.source));
            plan.install = Some(i);
        }
        if let Some(p) = s.publish {
            reasons.push(format!("publish directory from {}", s.source));
            plan.publish = relative("publish directory", p.trim_start_matches("./"))?;
        }
        if plan.framework == "static" && plan.build.is_some() {
            plan.framework = "custom";
        }
        plan.environment = s.environment;
        if let Some(f) = s.functions {
            let f = relative("functions directory", &f)?;
            if !plan.functions.contains(&f) {
                plan.functions.push(f);
            }
        }
    }
    plan.reasons = reasons;
    Ok(plan)
}

/// The root config files HelixStack reads, from `dir`.
fn config_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    helix_config::ROOT_CONFIG_FILES
        .iter()
        .filter_map(|name| {
            let bytes = std::fs::read(dir.join(name)).ok()?;
            (bytes.len() <= helix_config::MAX_CONFIG_BYTES).then(|| ((*name).to_owned(), bytes))
        })
        .collect()
}

fn read_package_json(dir: &Path) -> Result<Option<Value>, PlanError> {
    let path = dir.join("package.json");
    if !path.is_file() {
        return Ok(None);
    }
    let err = |error: String| PlanError::PackageJson { dir: dir.display().to_string(), error };
    let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
    if bytes.len() > 1 << 20 {
        return Err(err("over 1 MiB".into()));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| err(e.to_string()))
}

/// The package manager by lockfile, looked for from the base up to the
/// repository root (a monorepo's lockfile sits at its root); Deno by
/// `deno.json` when there is no package.json.
fn package_manager(
    root: &Path,
    base: &Path,
    has_package_json: bool,
) -> (Option<PackageManager>, PathBuf, Option<PathBuf>) {
    let mut dir = base.to_owned();
    loop {
        for (file, pm) in LOCKFILES {
            if root.join(&dir).join(file).is_file() {
                return (Some(*pm), dir.clone(), Some(dir.join(file)));
            }
        }
        if !dir.pop() {
            break;
        }
    }
    let here = root.join(base);
    if !has_package_json && (here.join("deno.json").is_file() || here.join("deno.jsonc").is_file()) {
        return (Some(PackageManager::Deno), base.to_owned(), None);
    }
    if has_package_json { (Some(PackageManager::Npm), base.to_owned(), None) } else { (None, base.to_owned(), None) }
}

type JsFramework = (&'static str, &'static str, &'static str, &'static str, &'static [&'static str]);

fn js_framework(package: &Value) -> Option<JsFramework> {
    let has = |dep: &str| {
        ["dependencies", "devDependencies"].iter().any(|k| package.get(k).and_then(|d| d.get(dep)).is_some())
    };
    JS_FRAMEWORKS.iter().find(|(dep, ..)| has(dep)).copied()
}

fn next_exports_statically(dir: &Path) -> bool {
    ["next.config.js", "next.config.mjs", "next.config.ts"].iter().any(|name| {
        std::fs::read_to_string(dir.join(name)).is_ok_and(|t| {
            let t: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            t.contains("output:'export'") || t.contains("output:\"export\"")
        })
    })
}

/// A user-given directory as a clean relative path (no `..`, not absolute).
fn relative(what: &'static str, p: &str) -> Result<PathBuf, PlanError> {
    let path = Path::new(p.trim_end_matches('/'));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(PlanError::Path { what, path: p.to_owned() }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn vite_with_npm_lockfile() {
        let t = tree(&[
            ("package.json", r#"{"scripts":{"build":"vite build"},"devDependencies":{"vite":"^7"}}"#),
            ("package-lock.json", "{}"),
        ]);
        let plan = detect(t.path()).unwrap();
        assert_eq!(plan.framework, "vite");
        assert_eq!(plan.install.as_deref(), Some("npm ci"));
        assert_eq!(plan.build.as_deref(), Some("npm run build"));
        assert_eq!(plan.publish, PathBuf::from("dist"));
        assert!(plan.summary().contains("package-lock.json"), "{}", plan.summary());
    }

    #[test]
    fn frameworks_are_told_apart() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("package.json", r#"{"dependencies":{"next":"15","react":"19"}}"#)], "nextjs", "out"),
            (&[("package.json", r#"{"dependencies":{"astro":"5","vite":"6"}}"#)], "astro", "dist"),
            (&[("package.json", r#"{"devDependencies":{"@sveltejs/kit":"2","vite":"6"}}"#)], "sveltekit", "build"),
            (&[("package.json", r#"{"dependencies":{"gatsby":"5"}}"#)], "gatsby", "public"),
            (&[("package.json", r#"{"devDependencies":{"@11ty/eleventy":"3"}}"#)], "eleventy", "_site"),
            (&[("hugo.toml", "title = 'x'")], "hugo", "public"),
            (&[("_config.yml", "title: x")], "jekyll", "_site"),
            (&[("index.html", "<h1>hi</h1>")], "static", ""),
        ];
        for (files, framework, publish) in cases {
            let plan = detect(tree(files).path()).unwrap();
            assert_eq!((plan.framework, plan.publish.to_str().unwrap()), (*framework, *publish), "{files:?}");
        }
    }

    #[test]
    fn lockfiles_choose_the_package_manager() {
        for (lock, pm) in [("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lockb", "bun")] {
            let t = tree(&[("package.json", r#"{"devDependencies":{"vite":"7"}}"#), (lock, "")]);
            assert_eq!(detect(t.path()).unwrap().package_manager.unwrap().name(), pm);
        }
        let deno = tree(&[("deno.json", "{}"), ("index.html", "x")]);
        assert_eq!(detect(deno.path()).unwrap().package_manager, Some(PackageManager::Deno));
    }

    #[test]
    fn explicit_settings_win_and_monorepo_bases_find_the_root_lockfile() {
        let t = tree(&[
            ("netlify.toml", "[build]\nbase = \"apps/web\"\ncommand = \"npm run site\"\npublish = \"out\"\n"),
            ("package-lock.json", "{}"),
            ("apps/web/package.json", r#"{"devDependencies":{"vite":"7"}}"#),
        ]);
        let plan = detect(t.path()).unwrap();
        assert_eq!(plan.base, PathBuf::from("apps/web"));
        assert_eq!(plan.install_dir, PathBuf::new());
        assert_eq!(plan.lockfile, Some(PathBuf::from("package-lock.json")));
        assert_eq!(plan.build.as_deref(), Some("npm run site"));
        assert_eq!(plan.publish, PathBuf::from("out"));
    }

    #[test]
    fn bad_settings_are_named() {
        let t = tree(&[("helix.toml", "[build]\npublish = \"../etc\"\ncommand = \"true\"\n")]);
        assert!(matches!(detect(t.path()), Err(PlanError::Path { .. })));
        let t = tree(&[("README.md", "hi")]);
        assert!(detect(t.path()).unwrap_err().to_string().contains("nothing to build"));
        let t = tree(&[("package.json", "{nope")]);
        assert!(matches!(detect(t.path()), Err(PlanError::PackageJson { .. })));
    }
}
