//! A deployed site's routing files written to hurt the platform: each
//! attack found by probing the edge, against the real server.

use std::time::{Duration, Instant};

use helix_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A proxy rule pointing back at the edge (its own public URL, and with
/// `Host` forced in `[redirects.headers]`): refused while loopback is
/// closed, and a loop answered 508 once the operator opens loopback; the
/// server stays up either way.
#[tokio::test]
async fn a_proxy_rule_pointing_at_the_edge_itself_does_not_loop() {
    for allow_loopback in [false, true] {
        let s = TestServer::start_with(|c| {
            if allow_loopback {
                c.edge.proxy.allow = vec!["127.0.0.0/8".into()];
            }
        })
        .await;
        let edge = s.running.edge_addr;
        // The edge by name (what a site's own public URL resolves to here).
        let own_url = format!("http://localhost:{}", edge.port());
        let toml = format!(
            "[[redirects]]\nfrom = \"/a/*\"\nto = \"{own_url}/a/:splat\"\nstatus = 200\n\n\
             [[redirects]]\nfrom = \"/b/*\"\nto = \"http://{edge}/b/:splat\"\nstatus = 200\n\
             [redirects.headers]\nHost = \"loop.localhost\"\n"
        );
        let (status, done) =
            s.deploy_with("loop", &[("/index.html", b"home")], &[("netlify.toml", toml.as_bytes())], true).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        let diags = done["routes"]["diagnostics"].to_string();
        assert!(diags.contains("header host cannot be sent upstream"), "Host is never sent by a rule: {diags}");
        for path in ["/a/x", "/b/x"] {
            let started = Instant::now();
            let resp = s.get_edge("loop.localhost", path).await;
            let status = resp.status();
            let body = resp.text().await.unwrap();
            if allow_loopback {
                assert_eq!(status, StatusCode::LOOP_DETECTED, "{path}: {body}");
            } else {
                assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}: {body}");
                assert!(body.contains("loopback"), "{path}: {body}");
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{path} answered at once");
        }
        assert_eq!(s.get_edge("loop.localhost", "/").await.text().await.unwrap(), "home", "still serving");
        let health = s.http.get(s.api("/healthz")).send().await.unwrap();
        assert!(health.status().is_success());
    }
}

/// `_redirects` proxying to the control API, to another service on this
/// machine (by address, by `localhost`, over IPv6), or to the cloud
/// metadata address: refused with 502 and the reason; nothing reaches them.
#[tokio::test]
async fn proxy_rules_cannot_reach_the_control_plane_or_this_machine() {
    let s = TestServer::start().await;
    let api = s.running.api_addr;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let redirects = format!(
        "/api/* http://{api}/api/:splat 200\n\
         /local/* http://{local}/:splat 200\n\
         /named/* http://localhost:{}/:splat 200\n\
         /v6/* http://[::1]:{}/:splat 200\n\
         /meta/* http://169.254.169.254/latest/:splat 200\n\
         /zero/* http://0.0.0.0:{}/:splat 200\n",
        local.port(),
        local.port(),
        local.port()
    );
    let (status, done) = s
        .deploy_with(
            "ssrf",
            &[("/_redirects", redirects.as_bytes()), ("/index.html", b"home")],
            &[("netlify.toml", b"")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    s.wait_for_site("ssrf.localhost").await;
    let token = s.token().to_owned();
    for (path, says) in [
        ("/api/v1/projects/ssrf/deployments", "loopback"),
        ("/local/x", "loopback"),
        ("/named/x", "loopback"),
        ("/v6/x", "loopback"),
        ("/meta/meta-data", "metadata"),
        ("/zero/x", "unspecified"),
    ] {
        let resp = s
            .edge(Method::GET, "ssrf.localhost", path)
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}: {body}");
        assert!(body.contains("refused") && body.contains(says), "{path}: {body}");
        assert!(!body.contains("\"id\""), "{path}: the API's answer never comes through: {body}");
    }
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0, "no connection reached the local service");
}

/// Header rules of every platform that set or remove framing headers are
/// reported (file and line) and never sent: the response's framing is
/// the edge's own.
#[tokio::test]
async fn no_header_rule_of_any_platform_can_forge_framing() {
    let s = TestServer::start().await;
    let body = "a body longer than one byte".as_bytes();
    let forged = ["Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "TE", "Trailer"];
    let pairs = |sep: &str| forged.iter().map(|h| format!("  {h}{sep} 1\n")).collect::<String>();
    let vercel = json!({ "headers": [{ "source": "/(.*)", "headers": forged.iter().map(|h| json!({"key": h, "value": "1"})).collect::<Vec<_>>() }] }).to_string();
    let vercel_legacy = json!({ "routes": [{ "src": "/(.*)", "headers": {"Content-Length": "1", "Proxy-Authenticate": "x"}, "continue": true }] }).to_string();
    let helix = format!(
        "[[headers]]\nfor = \"/*\"\nvalues = {{ {} }}\n",
        forged.iter().map(|h| format!("\"{h}\" = \"1\"")).collect::<Vec<_>>().join(", ")
    );
    let cloudflare = format!("/*\n{}  ! Content-Length\n  X-Ok: yes\n", pairs(":"));
    let netlify_toml = format!(
        "[[headers]]\nfor = \"/*\"\n[headers.values]\n{}",
        forged.iter().map(|h| format!("{h} = \"1\"\n")).collect::<String>()
    );
    type Files = Vec<(&'static str, Vec<u8>)>;
    let cases: Vec<(&str, Files, Files)> = vec![
        ("vercel", vec![], vec![("vercel.json", vercel.into_bytes())]),
        ("vercel-legacy", vec![], vec![("vercel.json", vercel_legacy.into_bytes())]),
        ("helix", vec![], vec![("helix.toml", helix.into_bytes())]),
        (
            "cloudflare",
            vec![("/_headers", cloudflare.into_bytes())],
            vec![("wrangler.toml", b"name = \"x\"\n".to_vec())],
        ),
        ("netlify", vec![], vec![("netlify.toml", netlify_toml.into_bytes())]),
    ];
    for (project, extra, config) in cases {
        let mut files: Vec<(&str, &[u8])> = vec![("/index.html", body)];
        files.extend(extra.iter().map(|(p, b)| (*p, b.as_slice())));
        let config: Vec<(&str, &[u8])> = config.iter().map(|(p, b)| (*p, b.as_slice())).collect();
        let (status, done) = s.deploy_with(project, &files, &config, true).await;
        assert_eq!(status, StatusCode::OK, "{project}: {done}");
        let diags = done["routes"]["diagnostics"].as_array().cloned().unwrap_or_default();
        let reported = diags.iter().filter(|d| {
            let m = d["message"].as_str().unwrap_or_default().to_ascii_lowercase();
            (m.contains("content-length") || m.contains("transfer-encoding")) && d["line"].as_u64() > Some(0)
        });
        assert!(reported.count() >= 1, "{project}: framing rules are reported with their line: {diags:?}");
        s.wait_for_site(&format!("{project}.localhost")).await;
        let resp = s.get_edge(&format!("{project}.localhost"), "/").await;
        assert_eq!(resp.status(), StatusCode::OK, "{project}");
        let headers = resp.headers().clone();
        assert_eq!(
            headers.get("content-length").map(|v| v.to_str().unwrap().to_owned()),
            Some(body.len().to_string()),
            "{project}: {headers:?}"
        );
        for h in ["transfer-encoding", "te", "trailer", "upgrade", "keep-alive", "proxy-authenticate"] {
            assert!(!headers.contains_key(h), "{project}: {h} was sent: {headers:?}");
        }
        assert_eq!(resp.bytes().await.unwrap().as_ref(), body, "{project}: the whole body, framed by the edge");
    }
}

/// A redirect whose target is built from request text stays on the host
/// its rule names.
#[tokio::test]
async fn redirects_built_from_request_text_never_leave_the_site() {
    let s = TestServer::start().await;
    let redirects = b"/r/* /:splat 301\n/abs/* https://example.com:splat 302\n/x/* /:splat 200\n";
    let (status, done) = s
        .deploy_with("open", &[("/_redirects", redirects), ("/index.html", b"home")], &[("netlify.toml", b"")], true)
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    s.wait_for_site("open.localhost").await;
    for (path, want) in [
        ("/r/%2f%2fevil.com", "/evil.com"),
        ("/r/%5c%5cevil.com", "/%5C%5Cevil.com"),
        ("/r/%2F%5Cevil.com/x", "/%5Cevil.com/x"),
        ("/r/https:%2f%2fevil.com", "/https://evil.com"),
        ("/abs/.evil.com/x", "https://example.com/.evil.com/x"),
        ("/r/a%3Fb", "/a%3Fb"),
    ] {
        let resp = s.get_edge("open.localhost", path).await;
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(location.as_deref(), Some(want), "{path}");
    }
}

/// A 20,000-rule `_redirects` compiles once per deployment into little
/// memory, and while it compiles another project's rollback reaches the
/// edge within 100 ms.
#[tokio::test]
async fn a_huge_rule_table_neither_bloats_nor_stalls_other_projects() {
    let s = TestServer::start().await;
    let mut table = String::new();
    for i in 0..20_000 {
        table.push_str(&format!("/p{i}/* /q{i}/:splat 301\n"));
    }
    let (status, done) = s
        .deploy_with(
            "huge",
            &[("/_redirects", table.as_bytes()), ("/index.html", b"i")],
            &[("netlify.toml", b"")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["routes"]["redirects"], 20_000);
    s.deploy("other", &[("/index.html", b"one")], true).await;
    s.deploy("other", &[("/index.html", b"two")], true).await;
    s.wait_for_host("other.localhost", |b| b == "two").await;

    // The first request to the huge site loads and compiles it...
    let edge = s.running.edge.clone();
    let (loaded_before, _, _) = edge.site_cache_usage();
    let client = s.http.clone();
    let url = format!("http://{}/p19999/deep/path", s.running.edge_addr);
    let first = tokio::spawn(async move {
        let resp = client.get(url).header("host", "huge.localhost").send().await.unwrap();
        (resp.status(), resp.headers().get("location").cloned())
    });
    // ...while another project rolls back.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let started = Instant::now();
    let (status, back) = s.call(Method::POST, "/api/v1/projects/other/rollback", Some(json!({}))).await;
    let answered = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(back["propagation"]["served"], true, "{back}");
    assert_eq!(s.get_edge("other.localhost", "/").await.text().await.unwrap(), "one", "served once answered");
    let waited = back["propagation"]["waited_ms"].as_u64().unwrap();
    assert!(waited < 100, "the edge applied the rollback {waited} ms after the commit (API answered in {answered:?})");

    let (status, location) = first.await.unwrap();
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(location.unwrap(), "/q19999/deep/path");
    let (loaded, bytes, budget) = edge.site_cache_usage();
    assert!(loaded > loaded_before);
    assert!(bytes < budget);
}

/// `helix deploy --prod` and then a request: never the old site, 200
/// times in a row.
#[tokio::test]
async fn a_production_deploy_is_served_when_it_answers() {
    let s = TestServer::start().await;
    for i in 0..200 {
        let body = format!("version {i}");
        let done = s.deploy("fresh", &[("/index.html", body.as_bytes())], true).await;
        assert_eq!(done["propagation"]["served"], true, "{done}");
        let got = s.get_edge("fresh.localhost", "/").await.text().await.unwrap();
        assert_eq!(got, body, "round {i}: the edge served the previous deployment");
    }
}

/// Webhook bodies: over GitHub's own 25 MB maximum is refused before it is
/// read, and unverified bodies in flight are bounded together.
#[tokio::test]
async fn webhook_bodies_are_capped_and_bounded_in_total() {
    let s = TestServer::start_with(|c| c.api.hook_inflight_bytes = 256 * 1024).await;
    let too_big = vec![b' '; 25 * 1024 * 1024 + 1];
    let resp = s.http.post(s.api("/hooks/github")).header("x-github-event", "push").body(too_big).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(resp.text().await.unwrap().contains("GitHub's own maximum"));

    // One delivery holds the whole budget while its body trickles in...
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let slow = s
        .http
        .post(s.api("/hooks/github"))
        .header("x-github-event", "push")
        .header("content-length", (200 * 1024).to_string())
        .body(reqwest::Body::wrap_stream(tokio_stream_from(rx)))
        .send();
    let slow = tokio::spawn(slow);
    tx.send(Ok(bytes::Bytes::from(vec![b' '; 1024]))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so the next one waits, then is turned away; nothing is buffered.
    let started = Instant::now();
    let resp = s
        .http
        .post(s.api("/hooks/github"))
        .header("x-github-event", "push")
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{}", resp.text().await.unwrap());
    assert!(started.elapsed() >= Duration::from_secs(1));
    drop(tx);
    let _ = slow.await;
    // With the budget back, deliveries are read again.
    let resp = s.http.post(s.api("/hooks/github")).header("x-github-event", "push").body("{}").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "read, and found to name no repository");
}

/// A stream of the chunks sent on `rx`.
fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// The Bearer scheme's name in any case (RFC 7235).
#[tokio::test]
async fn the_api_takes_the_bearer_scheme_in_any_case() {
    let s = TestServer::start().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = s
            .http
            .get(s.api("/api/v1/projects/none/deployments"))
            .header("authorization", format!("{scheme} {}", s.token()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{scheme}: authorized, and the project is unknown");
    }
}
