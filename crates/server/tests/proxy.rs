//! Proxy rules against a real upstream: what the upstream receives, what
//! the visitor gets back, and the failures (unreachable, disabled).

use helix_core::Digest;
use helix_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// An upstream that answers with what it saw, as JSON.
async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let seen = json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "body": String::from_utf8_lossy(&body),
            "x-forwarded-for": header("x-forwarded-for"),
            "x-forwarded-host": header("x-forwarded-host"),
            "x-forwarded-proto": header("x-forwarded-proto"),
            "connection": header("connection"),
            "x-api-key": header("x-api-key"),
        });
        ([("x-upstream", "yes")], axum::Json(seen))
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A server whose proxy rules may reach this machine's loopback, where
/// the tests' upstreams listen (refused by default).
async fn with_loopback_upstreams() -> TestServer {
    TestServer::start_with(|c| c.edge.proxy.allow = vec!["127.0.0.1/32".into()]).await
}

async fn deploy_proxy(s: &TestServer, project: &str, target: &str) {
    let redirects = format!("/api/*  {target}/:splat  200\n");
    let files = [("/_redirects", redirects.as_bytes()), ("/index.html", b"home".as_slice())];
    let table: serde_json::Map<String, serde_json::Value> =
        files.iter().map(|(p, b)| (p.to_string(), Digest::of(b).to_hex().into())).collect();
    let (_, created) = s
        .call(
            Method::POST,
            &format!("/api/v1/projects/{project}/deployments"),
            Some(json!({"files": table, "production": true, "compat": "netlify"})),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    for (_, b) in files {
        s.put_blob(id, &Digest::of(b).to_hex(), b).await;
    }
    let (status, done) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["routes"]["diagnostics"], json!([]), "a proxy rule is honored: {done}");
    s.wait_for_site(&format!("{project}.localhost")).await;
}

#[tokio::test]
async fn proxy_rules_forward_requests_and_stream_answers() {
    let s = with_loopback_upstreams().await;
    let up = upstream().await;
    deploy_proxy(&s, "px", &up).await;
    let resp = s
        .edge(Method::POST, "px.localhost", "/api/orders/7?expand=1")
        .header("x-forwarded-for", "203.0.113.9")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    let seen: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/orders/7?expand=1");
    assert_eq!(seen["body"], "payload");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-host"], "px.localhost");
    assert_eq!(seen["x-forwarded-proto"], "http");
    // Static files are still served around the rule.
    assert_eq!(s.get_edge("px.localhost", "/").await.text().await.unwrap(), "home");
}

#[tokio::test]
async fn unreachable_upstreams_and_disabled_proxying_answer_502() {
    let s = with_loopback_upstreams().await;
    // Nothing listens on port 9.
    deploy_proxy(&s, "dead", "http://127.0.0.1:9").await;
    let resp = s.get_edge("dead.localhost", "/api/x").await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(resp.text().await.unwrap().contains("could not be reached"));

    let off = TestServer::start_with(|c| c.edge.proxy.disabled = true).await;
    let up = upstream().await;
    deploy_proxy(&off, "off", &up).await;
    let resp = off.get_edge("off.localhost", "/api/x").await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(resp.text().await.unwrap().contains("disabled"));
}

#[tokio::test]
async fn netlify_toml_proxy_rules_send_their_headers_upstream() {
    let s = with_loopback_upstreams().await;
    let up = upstream().await;
    let toml = format!(
        "[[redirects]]\nfrom = \"/api/*\"\nto = \"{up}/:splat\"\nstatus = 200\n[redirects.headers]\nX-Api-Key = \"s3cret\"\n"
    );
    let index = b"home".as_slice();
    let (_, created) = s
        .call(
            Method::POST,
            "/api/v1/projects/keyed/deployments",
            Some(json!({
                "files": {"/index.html": Digest::of(index).to_hex()},
                "config": {"netlify.toml": Digest::of(toml.as_bytes()).to_hex()},
                "production": true,
            })),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    s.put_blob(id, &Digest::of(index).to_hex(), index).await;
    s.put_blob(id, &Digest::of(toml.as_bytes()).to_hex(), toml.as_bytes()).await;
    let (status, done) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["routes"]["platform"], "netlify");
    assert_eq!(done["routes"]["diagnostics"], json!([]));
    s.wait_for_site("keyed.localhost").await;
    let seen: serde_json::Value = s.get_edge("keyed.localhost", "/api/v1/me").await.json().await.unwrap();
    assert_eq!(seen["uri"], "/v1/me");
    assert_eq!(seen["x-api-key"], "s3cret");
}

#[tokio::test]
async fn proxied_responses_are_compressed_on_the_fly_when_worth_it() {
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(200);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = text.clone();
    let app = axum::Router::new()
        .route(
            "/big",
            axum::routing::get(move || async move {
                ([("content-type", "text/plain; charset=utf-8"), ("etag", "\"v1\"")], body)
            }),
        )
        .route("/small", axum::routing::get(|| async { ([("content-type", "application/json")], "{\"ok\":true}") }))
        .route("/png", axum::routing::get(|| async { ([("content-type", "image/png")], vec![7u8; 8192]) }))
        .route(
            "/events",
            axum::routing::get(|| async { ([("content-type", "text/event-stream")], "data: x\n\n".repeat(300)) }),
        )
        .route(
            "/keep",
            axum::routing::get(|| async {
                ([("content-type", "text/plain"), ("cache-control", "no-transform")], "k".repeat(4096))
            }),
        )
        .route("/huge", axum::routing::get(|| async { ([("content-type", "text/plain")], "h".repeat(9 << 20)) }))
        .route(
            "/stream",
            axum::routing::get(|| async {
                let chunks =
                    futures_util::stream::iter((0..50).map(|_| Ok::<_, std::io::Error>("chunk of text ".repeat(20))));
                ([("content-type", "text/plain")], axum::body::Body::from_stream(chunks))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let s = with_loopback_upstreams().await;
    deploy_proxy(&s, "zip", &format!("http://{addr}")).await;
    let get = |path: &'static str, accept: &'static str| {
        let req = s.edge(Method::GET, "zip.localhost", path);
        async move { req.header("accept-encoding", accept).send().await.unwrap() }
    };

    // Brotli preferred; the body decodes to what the upstream sent.
    let resp = get("/api/big", "gzip, deflate, br, zstd").await;
    assert_eq!(resp.headers()["content-encoding"], "br");
    assert!(resp.headers().get_all("vary").iter().any(|v| v.to_str().unwrap().contains("accept-encoding")));
    assert_eq!(resp.headers()["etag"], "W/\"v1\"", "another representation, a weak validator");
    assert!(resp.headers().get("content-length").is_none_or(|l| l != text.len().to_string().as_str()));
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.len() < text.len() / 10, "{} bytes", bytes.len());
    let mut plain = Vec::new();
    brotli::BrotliDecompress(&mut &bytes[..], &mut plain).unwrap();
    assert_eq!(plain, text.as_bytes());

    // gzip when that is what is accepted; zstd too.
    let resp = get("/api/big", "gzip").await;
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&resp.bytes().await.unwrap()[..]), &mut plain)
        .unwrap();
    assert_eq!(plain, text);
    assert_eq!(get("/api/big", "zstd").await.headers()["content-encoding"], "zstd");

    // Left as they are: nothing accepted, small bodies, images, event
    // streams, no-transform, bodies streamed without a length, bodies
    // over 8 MiB (the edge's CPU is every tenant's).
    for (path, accept) in [
        ("/api/big", "identity"),
        ("/api/small", "br"),
        ("/api/png", "br"),
        ("/api/events", "br"),
        ("/api/keep", "br"),
        ("/api/stream", "br"),
        ("/api/huge", "br"),
    ] {
        let resp = get(path, accept).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp.headers().get("content-encoding").is_none(), "{path} with {accept}: {:?}", resp.headers());
    }
}
