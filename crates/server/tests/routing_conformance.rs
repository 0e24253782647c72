//! Routing conformance: every HTTP case in `tests/routing/` deployed to the
//! real server through the API and requested through the real edge.
//!
//! Each case is its own project; `{host}` in a case stands for that
//! project's production hostname. A case with `skip:` is listed with its
//! reason and not run; any failure fails the test with every difference.

use helix_core::Digest;
use helix_testkit::TestServer;
use helix_testkit::cases::{self, Case};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn http_cases() {
    let s = TestServer::start_with(|c| {
        c.edge.country_header = Some("x-country".into());
        // The cases' upstreams listen on this machine's loopback.
        c.edge.proxy.allow = vec!["127.0.0.1/32".into()];
    })
    .await;
    let upstream = echo_upstream().await;
    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (mut ran, mut failures, mut skipped) = (0, Vec::new(), Vec::new());
    for case in cases::load_all().into_iter().filter(|c| c.kind == "http") {
        if let Some(reason) = &case.skip {
            skipped.push(format!("{}: {reason}", case.id));
            continue;
        }
        ran += 1;
        if let Err(problems) = run(&s, &client, &case, &upstream).await {
            failures.push(format!("{}:\n    {}", case.id, problems.join("\n    ")));
        }
    }
    eprintln!("routing conformance: {ran} run, {} failed, {} skipped", failures.len(), skipped.len());
    for s in &skipped {
        eprintln!("  skipped {s}");
    }
    assert!(failures.is_empty(), "{} of {ran} cases failed:\n{}", failures.len(), failures.join("\n"));
    assert!(ran > 50, "only {ran} cases ran");
}

async fn run(s: &TestServer, client: &reqwest::Client, case: &Case, upstream: &str) -> Result<(), Vec<String>> {
    let project = case.id.to_ascii_lowercase();
    let host = format!("{project}.localhost");
    let sub = |text: &str| text.replace("{host}", &host).replace("{upstream}", upstream);
    let mut files = serde_json::Map::new();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for (path, content) in case.published() {
        let bytes = sub(content).into_bytes();
        files.insert(path, Digest::of(&bytes).to_hex().into());
        blobs.push(bytes);
    }
    let mut config = serde_json::Map::new();
    for name in helix_config::ROOT_CONFIG_FILES {
        if let Some(content) = case.root_file(name) {
            let bytes = sub(content).into_bytes();
            config.insert((*name).to_owned(), Digest::of(&bytes).to_hex().into());
            blobs.push(bytes);
        }
    }
    let mut functions = serde_json::Map::new();
    for (path, content) in case.function_sources() {
        let bytes = sub(content).into_bytes();
        functions.insert(path.to_owned(), Digest::of(&bytes).to_hex().into());
        blobs.push(bytes);
    }
    let body = json!({
        "files": files, "config": config, "functions": functions, "compat": case.compat, "production": true,
    });
    let (status, created) = s.call(Method::POST, &format!("/api/v1/projects/{project}/deployments"), Some(body)).await;
    if status != StatusCode::CREATED {
        return Err(vec![format!("create: {status} {created}")]);
    }
    let id = created["id"].as_str().unwrap_or_default();
    for bytes in &blobs {
        s.put_blob(id, &Digest::of(bytes).to_hex(), bytes).await;
    }
    let (status, done) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    if status != StatusCode::OK {
        return Err(vec![format!("finalize: {status} {done}")]);
    }
    s.wait_for_site(&host).await;

    let req = case.request.as_ref().ok_or_else(|| vec!["no request".to_owned()])?;
    let method = Method::from_bytes(req.method.as_bytes()).map_err(|e| vec![e.to_string()])?;
    let mut builder =
        client.request(method, format!("http://{}{}", s.running.edge_addr, sub(&req.path))).header("host", &host);
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("host") {
            builder = builder.header(k, sub(v));
        }
    }
    let resp = builder.send().await.map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    let e = &case.expect;
    if let Some(want) = e.status
        && resp.status().as_u16() != want
    {
        problems.push(format!("status {} (want {want})", resp.status().as_u16()));
    }
    for (name, want) in &e.headers {
        let got = resp.headers().get(name).and_then(|v| v.to_str().ok());
        if got != Some(sub(want).as_str()) {
            problems.push(format!("header {name}: {got:?} (want {:?})", sub(want)));
        }
    }
    for name in &e.absent {
        if let Some(v) = resp.headers().get(name) {
            problems.push(format!("header {name} should be absent, is {v:?}"));
        }
    }
    let got = resp.text().await.unwrap_or_default();
    let want_body = match (&e.body_file, &e.body, &e.proxy_to) {
        (Some(f), _, _) => Some(case.file(f).map(sub).unwrap_or_else(|| format!("<no file {f}>"))),
        (None, Some(b), _) => Some(sub(b)),
        // The echo upstream answers with the URL it was asked for.
        (None, None, Some(url)) => Some(sub(url)),
        _ => None,
    };
    if let Some(want) = want_body
        && got != want
    {
        problems.push(format!("body {:?} (want {want:?})", got.chars().take(120).collect::<String>()));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// A real HTTP server standing in for a proxy rule's upstream: it answers
/// every request with the URL it was asked for.
async fn echo_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        format!("http://{host}{target}")
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}
