//! The edge against the real server: hostnames, static semantics, and
//! promote/rollback switching production while deployment URLs stay put.

use std::io::Read;

use helix_core::Digest;
use helix_testkit::TestServer;
use reqwest::{Method, StatusCode};

fn page(n: u32) -> Vec<u8> {
    format!("<!doctype html><h1>version {n}</h1>{}", "<p>padding so it compresses</p>".repeat(40)).into_bytes()
}

async fn site(s: &TestServer, n: u32, production: bool) -> String {
    let index = page(n);
    let d = s
        .deploy(
            "blog",
            &[
                ("/index.html", &index),
                ("/docs/index.html", b"<h1>docs</h1>"),
                ("/about.html", b"<h1>about</h1>"),
                ("/404.html", b"<h1>custom 404</h1>"),
                ("/data.bin", &(0..=255u8).collect::<Vec<_>>()),
            ],
            production,
        )
        .await;
    d["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn serves_files_by_host_with_index_and_404() {
    let s = TestServer::start().await;
    let id = site(&s, 1, true).await;
    s.wait_for_host("blog.localhost", |b| b.contains("version 1")).await;
    for host in
        ["blog.localhost", "BLOG.LocalHost", "blog.localhost:8080", "blog.localhost.", &format!("{id}--blog.localhost")]
    {
        let resp = s.get_edge(host, "/").await;
        assert_eq!(resp.status(), StatusCode::OK, "{host}");
        assert!(resp.headers().contains_key("x-request-id"));
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(resp.headers()["cache-control"], "public, max-age=0, must-revalidate");
    }
    for (path, want) in
        [("/docs/", "docs"), ("/docs", "docs"), ("/about", "about"), ("/docs/index.html", "docs"), ("/%64ocs/", "docs")]
    {
        let resp = s.get_edge("blog.localhost", path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp.text().await.unwrap().contains(want), "{path}");
    }
    let resp = s.get_edge("blog.localhost", "/missing").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.text().await.unwrap(), "<h1>custom 404</h1>");
    let resp = s.get_edge("blog.localhost", "/%ff").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let resp = s.get_edge("nobody.localhost", "/").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.headers().contains_key("x-request-id"));
    assert!(resp.text().await.unwrap().contains("no deployment serves nobody.localhost"));

    let resp = s.edge(Method::POST, "blog.localhost", "/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn etag_range_head_and_encodings() {
    let s = TestServer::start().await;
    site(&s, 1, true).await;
    s.wait_for_host("blog.localhost", |b| b.contains("version 1")).await;
    let index = page(1);
    let digest = Digest::of(&index).to_hex();

    // Identity with a strong ETag from the digest, then 304.
    let resp = s.edge(Method::GET, "blog.localhost", "/").header("accept-encoding", "identity").send().await.unwrap();
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{digest}\""));
    assert_eq!(resp.headers()["vary"], "Accept-Encoding");
    assert_eq!(resp.bytes().await.unwrap(), index.as_slice());
    let resp = s
        .edge(Method::GET, "blog.localhost", "/")
        .header("accept-encoding", "identity")
        .header("if-none-match", format!("\"other\", {etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()["etag"], etag.as_str());
    assert!(resp.bytes().await.unwrap().is_empty());

    // Precompressed variants by Accept-Encoding, each with its own ETag.
    let resp = s.edge(Method::GET, "blog.localhost", "/").header("accept-encoding", "gzip, br").send().await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "br");
    let br_etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(br_etag, etag);
    let body = resp.bytes().await.unwrap();
    assert!(body.len() < index.len());
    let mut out = Vec::new();
    brotli::Decompressor::new(&body[..], 4096).read_to_end(&mut out).unwrap();
    assert_eq!(out, index);
    let resp =
        s.edge(Method::GET, "blog.localhost", "/").header("accept-encoding", "gzip;q=1, br;q=0").send().await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let body = resp.bytes().await.unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).unwrap();
    assert_eq!(out, index);
    // A file too small to compress has no variants and no Vary.
    let resp = s.edge(Method::GET, "blog.localhost", "/about").header("accept-encoding", "br").send().await.unwrap();
    assert!(!resp.headers().contains_key("content-encoding"));
    assert!(!resp.headers().contains_key("vary"));

    // Range.
    let resp = s.edge(Method::GET, "blog.localhost", "/data.bin").header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], "bytes 10-19/256");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), (10..20u8).collect::<Vec<_>>().as_slice());
    let resp = s.edge(Method::GET, "blog.localhost", "/data.bin").header("range", "bytes=-6").send().await.unwrap();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), (250..=255u8).collect::<Vec<_>>().as_slice());
    let resp = s.edge(Method::GET, "blog.localhost", "/data.bin").header("range", "bytes=300-").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(resp.headers()["content-range"], "bytes */256");
    // A range request gets identity bytes even when compression is accepted.
    let resp = s
        .edge(Method::GET, "blog.localhost", "/")
        .header("range", "bytes=0-14")
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert!(!resp.headers().contains_key("content-encoding"));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &index[..15]);

    // HEAD: headers of GET, no body.
    let resp = s.edge(Method::HEAD, "blog.localhost", "/data.bin").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], "256");
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn large_files_stream_from_the_blob_store() {
    let s = TestServer::start().await;
    let big: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    s.deploy("big", &[("/big.bin", &big)], true).await;
    s.wait_for_site("big.localhost").await;
    let resp = s.get_edge("big.localhost", "/big.bin").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), big.as_slice());
    let resp =
        s.edge(Method::GET, "big.localhost", "/big.bin").header("range", "bytes=5000000-5000009").send().await.unwrap();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &big[5_000_000..5_000_010]);
}

#[tokio::test]
async fn promote_and_rollback_switch_production_only() {
    let s = TestServer::start().await;
    let v1 = site(&s, 1, true).await;
    let v2 = site(&s, 2, false).await;
    s.wait_for_host("blog.localhost", |b| b.contains("version 1")).await;
    s.wait_for_host(&format!("{v2}--blog.localhost"), |b| b.contains("version 2")).await;

    let (status, d) = s.call(Method::POST, &format!("/api/v1/deployments/{v2}/promote"), None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["production"], true);
    s.wait_for_host("blog.localhost", |b| b.contains("version 2")).await;
    let (_, list) = s.call(Method::GET, "/api/v1/projects/blog/deployments", None).await;
    let list = list.as_array().unwrap();
    assert_eq!(list[0]["id"], v2.as_str(), "newest first");
    assert_eq!((list[0]["production"].as_bool(), list[1]["production"].as_bool()), (Some(true), Some(false)));

    let (status, d) = s.call(Method::POST, "/api/v1/projects/blog/rollback", None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["id"], v1.as_str());
    s.wait_for_host("blog.localhost", |b| b.contains("version 1")).await;
    let (status, d) = s.call(Method::POST, "/api/v1/projects/blog/rollback", Some(serde_json::json!({"to": v2}))).await;
    assert_eq!((status, d["id"].as_str()), (StatusCode::OK, Some(v2.as_str())));
    s.wait_for_host("blog.localhost", |b| b.contains("version 2")).await;

    // Every deployment URL keeps serving its own files.
    for (id, n) in [(&v1, 1), (&v2, 2)] {
        let body = s.get_edge(&format!("{id}--blog.localhost"), "/").await.text().await.unwrap();
        assert!(body.contains(&format!("version {n}")), "{id}");
    }
    let (status, p) =
        s.call(Method::POST, "/api/v1/projects/blog/rollback", Some(serde_json::json!({"to": "bad"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
}

#[tokio::test]
async fn a_restarted_server_serves_what_it_served() {
    let s = TestServer::start().await;
    let token = s.token().to_owned();
    let v1 = site(&s, 1, true).await;
    let v2 = site(&s, 2, false).await;
    let s = s.restart().await;
    assert_eq!(s.token(), token, "the admin token survives a restart");
    s.wait_for_host("blog.localhost", |b| b.contains("version 1")).await;
    s.wait_for_host(&format!("{v2}--blog.localhost"), |b| b.contains("version 2")).await;
    let (status, _) = s.call(Method::POST, &format!("/api/v1/deployments/{v2}/promote"), None).await;
    assert_eq!(status, StatusCode::OK);
    let s = s.restart().await;
    s.wait_for_host("blog.localhost", |b| b.contains("version 2")).await;
    s.wait_for_host(&format!("{v1}--blog.localhost"), |b| b.contains("version 1")).await;
}

#[tokio::test]
async fn the_whole_spine_runs_on_postgres() {
    let Some(url) = helix_testkit::fresh_postgres("the_whole_spine_runs_on_postgres").await else { return };
    let s = TestServer::start_with(|c| c.database_url = Some(url)).await;
    let v1 = site(&s, 1, true).await;
    let v2 = site(&s, 2, true).await;
    s.wait_for_host("blog.localhost", |b| b.contains("version 2")).await;
    let (status, d) = s.call(Method::POST, "/api/v1/projects/blog/rollback", None).await;
    assert_eq!((status, d["id"].as_str()), (StatusCode::OK, Some(v1.as_str())));
    let s = s.restart().await;
    s.wait_for_host("blog.localhost", |b| b.contains("version 1")).await;
    s.wait_for_host(&format!("{v2}--blog.localhost"), |b| b.contains("version 2")).await;
}

#[tokio::test]
async fn the_edge_speaks_http2_too() {
    let s = TestServer::start().await;
    site(&s, 3, true).await;
    s.wait_for_host("blog.localhost", |b| b.contains("version 3")).await;
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let resp =
        h2.get(format!("http://{}/", s.running.edge_addr)).header("host", "blog.localhost").send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("version 3"));
}
