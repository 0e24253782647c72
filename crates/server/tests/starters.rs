//! The slow suite: framework starters, generated at test time by their own
//! generators from the npm registry (Debian's `jekyll` for Jekyll), pushed
//! to a git repository and built by HelixStack with nothing configured.
//! Each downloads its dependencies, so they are `#[ignore]`d by default:
//!
//! ```text
//! cargo test -p helix-server --test starters -- --ignored --test-threads 1
//! ```

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use helix_testkit::TestServer;
use helix_testkit::git::GitRepo;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).current_dir(dir).env("CI", "true").output().expect("runs");
    assert!(
        out.status.success(),
        "{program} {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the work tree of `repo` as project `name`; returns the build and
/// its log.
async fn build(server: &TestServer, name: &str, repo: &GitRepo) -> (Value, String) {
    let (status, body) =
        server.call(Method::PUT, &format!("/api/v1/projects/{name}/link"), Some(json!({ "repo": repo.url() }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    repo.commit_and_push("main", "starter");
    let (status, b) = server.call(Method::POST, &format!("/api/v1/projects/{name}/builds"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let b = loop {
        let (_, b) = server.call(Method::GET, &format!("/api/v1/builds/{id}"), None).await;
        if ["ready", "error", "canceled"].contains(&b["state"].as_str().unwrap()) {
            break b;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "{b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (_, log) = server.call(Method::GET, &format!("/api/v1/builds/{id}/logs"), None).await;
    let log = log["lines"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_owned() + "\n").collect();
    (b, log)
}

/// Builds the starter as project `name`; it must be detected as
/// `framework` and its home page must contain `needle`.
async fn builds_and_serves(repo: &GitRepo, name: &str, framework: &str, needle: &str) {
    let server = TestServer::start().await;
    let (b, log) = build(&server, name, repo).await;
    assert_eq!(b["state"], "ready", "{b}\n{log}");
    assert!(b["detected"].as_str().unwrap().starts_with(framework), "{b}");
    server.wait_for_host(&format!("{name}.localhost"), |body| body.contains(needle)).await;
}

/// An empty work tree's parent, for a generator to make `work` in.
fn generator_dir(repo: &GitRepo) -> std::path::PathBuf {
    std::fs::remove_dir_all(&repo.work).unwrap();
    repo.work.parent().unwrap().to_owned()
}

#[tokio::test]
#[ignore = "slow: downloads a Next.js starter and its dependencies"]
async fn nextjs_static_export_starter() {
    let repo = GitRepo::new();
    let parent = generator_dir(&repo);
    run(
        &parent,
        "npx",
        &[
            "--yes",
            "create-next-app@latest",
            "work",
            "--ts",
            "--no-eslint",
            "--app",
            "--no-tailwind",
            "--no-src-dir",
            "--import-alias",
            "@/*",
            "--use-npm",
            "--skip-install",
            "--disable-git",
            "--yes",
        ],
    );
    run(&repo.work, "git", &["init", "-q", "-b", "main"]);
    // A static export, as Next.js's static-exports guide configures it (the
    // starter's partial prerendering cannot be exported).
    repo.write(
        "next.config.ts",
        "import type { NextConfig } from \"next\";\nconst nextConfig: NextConfig = { output: \"export\" };\nexport default nextConfig;\n",
    );
    // The starter's layout loads Geist through next/font/google, which
    // downloads from fonts.googleapis.com at build time; this machine
    // cannot reach it. The same layout without the Google font:
    let layout = repo.work.join("app/layout.tsx");
    let text = std::fs::read_to_string(&layout).unwrap();
    if text.contains("next/font/google") {
        repo.write(
            "app/layout.tsx",
            "import type { Metadata } from \"next\";\nimport \"./globals.css\";\n\n\
             export const metadata: Metadata = { title: \"Create Next App\" };\n\n\
             export default function RootLayout({ children }: { children: React.ReactNode }) {\n\
             \x20 return (<html lang=\"en\"><body>{children}</body></html>);\n}\n",
        );
    }
    builds_and_serves(&repo, "next", "nextjs", "<html").await;
}

#[tokio::test]
#[ignore = "slow: downloads a SvelteKit starter and its dependencies"]
async fn sveltekit_static_adapter_starter() {
    let repo = GitRepo::new();
    let parent = generator_dir(&repo);
    run(
        &parent,
        "npx",
        &[
            "--yes",
            "sv@latest",
            "create",
            "work",
            "--template",
            "minimal",
            "--types",
            "ts",
            "--no-add-ons",
            "--no-install",
        ],
    );
    run(&repo.work, "npx", &["--yes", "sv@latest", "add", "sveltekit-adapter=adapter:static", "--no-install"]);
    // adapter-static prerenders every page.
    if !repo.work.join("src/routes/+layout.ts").exists() {
        repo.write("src/routes/+layout.ts", "export const prerender = true;\n");
    }
    run(&repo.work, "git", &["init", "-q", "-b", "main"]);
    builds_and_serves(&repo, "kit", "sveltekit", "<html").await;
}

#[tokio::test]
#[ignore = "slow: downloads Astro from the npm registry"]
async fn astro_minimal_site() {
    // create-astro fetches its templates from GitHub, which this machine
    // cannot reach: the site is the minimal template's shape, by hand.
    let repo = GitRepo::new();
    repo.write(
        "package.json",
        r#"{"name":"astro-site","type":"module","version":"0.0.1","scripts":{"build":"astro build"},"dependencies":{"astro":"^5.0.0"}}"#,
    );
    repo.write("astro.config.mjs", "import { defineConfig } from 'astro/config';\nexport default defineConfig({});\n");
    repo.write(
        "src/pages/index.astro",
        "---\nconst title = 'Astro on HelixStack';\n---\n<html><body><h1>{title}</h1></body></html>\n",
    );
    builds_and_serves(&repo, "astro", "astro", "Astro on HelixStack").await;
}

#[tokio::test]
#[ignore = "slow: needs Debian's jekyll and jekyll-theme-minima"]
async fn jekyll_new_site() {
    let repo = GitRepo::new();
    let parent = generator_dir(&repo);
    run(&parent, "jekyll", &["new", "work", "--skip-bundle"]);
    run(&repo.work, "git", &["init", "-q", "-b", "main"]);
    builds_and_serves(&repo, "jk", "jekyll", "Welcome to Jekyll").await;
}
