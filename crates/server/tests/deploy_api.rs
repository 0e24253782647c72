//! The deploy API against the real server: the happy path, every bad input
//! named in the spine issue, and that none of them changes anything.

use helix_core::Digest;
use helix_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn create(s: &TestServer, project: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::POST, &format!("/api/v1/projects/{project}/deployments"), Some(body)).await
}

fn hex(b: &[u8]) -> String {
    Digest::of(b).to_hex()
}

/// Nothing visible changed: no listed deployment, no served host.
async fn assert_nothing_visible(s: &TestServer, project: &str) {
    let (status, list) = s.call(Method::GET, &format!("/api/v1/projects/{project}/deployments"), None).await;
    assert!(status == StatusCode::NOT_FOUND || list.as_array().is_some_and(Vec::is_empty), "{status} {list}");
    assert!(
        s.running.edge.hosts().iter().all(|h| !h.ends_with(&format!("{project}.localhost"))),
        "{:?}",
        s.running.edge.hosts()
    );
}

#[tokio::test]
async fn deploy_protocol_uploads_only_what_is_missing() {
    let s = TestServer::start().await;
    let index = b"<h1>one</h1>".as_slice();
    let (status, created) =
        create(&s, "site", json!({"files": {"/index.html": hex(index), "/copy.html": hex(index)}})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["required"], json!([hex(index)]), "identical files are asked for once");
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["url"], format!("http://{id}--site.localhost:{}", s.running.edge_addr.port()));

    // Finalize before the upload: 409 naming the missing digest.
    let (status, problem) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["missing"], json!([hex(index)]));
    assert_nothing_visible(&s, "site").await;

    assert_eq!(s.put_blob(id, &hex(index), index).await.0, StatusCode::CREATED);
    assert_eq!(s.put_blob(id, &hex(index), index).await.0, StatusCode::OK, "second upload is a no-op");
    let (status, done) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "ready");
    assert_eq!(done["file_count"], 2);
    // Finalize is idempotent.
    let (status, again) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &done["id"]));

    // The same file in another project is already stored.
    let (_, other) = create(&s, "other", json!({"files": {"/x.html": hex(index)}})).await;
    assert_eq!(other["required"], json!([]));
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let s = TestServer::start().await;
    let d = hex(b"x");
    let cases = [
        ("site", json!({"files": {"/../etc/passwd": d}}), "`.` or `..`"),
        ("site", json!({"files": {"/a/./b": d}}), "`.` or `..`"),
        ("site", json!({"files": {"/a\\b": d}}), "backslash"),
        ("site", json!({"files": {"/a\u{0}b": d}}), "control character"),
        ("site", json!({"files": {"//host/share": d}}), "absolute"),
        ("site", json!({"files": {"C:/x": d}}), "absolute"),
        ("site", json!({"files": {"/a//b": d, "/a/b": d}}), "after normalization"),
        ("site", json!({"files": {"a": d, "/a": d}}), "after normalization"),
        ("site", json!({"files": {"/a": "abc"}}), "64 hex"),
        ("site", json!({"files": {"/a": "z".repeat(64)}}), "64 hex"),
        ("site", json!({"files": {}}), "at least one file"),
        ("site", json!({"files": {"/a": d}, "bogus": 1}), "unknown field"),
        ("site", json!({}), "missing field"),
        ("Bad_Name", json!({"files": {"/a": d}}), "invalid project name"),
        ("a--b", json!({"files": {"/a": d}}), "invalid project name"),
    ];
    for (project, body, expect) in cases {
        let (status, problem) = create(&s, project, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(expect), "{body}: {detail:?} should mention {expect:?}");
    }
    // Invalid UTF-8 and non-JSON bodies.
    for raw in [b"{\"files\": {\"/\xff\": \"x\"}}".as_slice(), b"not json", b"{\"files\": {\"/a\": \"\\ud800\"}}"] {
        let resp = s
            .http
            .post(s.api("/api/v1/projects/site/deployments"))
            .bearer_auth(s.token())
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    assert_nothing_visible(&s, "site").await;
}

#[tokio::test]
async fn blobs_are_verified_and_limited() {
    let s = TestServer::start_with(|c| {
        c.api.max_file_bytes = 1000;
        c.api.max_files = 3;
        c.api.max_total_bytes = 1500;
    })
    .await;
    let small = vec![b'a'; 800];
    let other = vec![b'b'; 800];
    let (_, created) = create(&s, "site", json!({"files": {"/a": hex(&small), "/b": hex(&other)}})).await;
    let id = created["id"].as_str().unwrap();

    // Bytes that do not match their digest: refused, nothing stored.
    let (status, problem) = s.put_blob(id, &hex(&small), b"evil").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("hash to"));
    // A digest that is not a file of this deployment.
    let (status, _) = s.put_blob(id, &hex(b"stranger"), b"stranger").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Malformed digest; unknown and malformed deployment ids.
    assert_eq!(s.put_blob(id, "xyz", b"x").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(s.put_blob("01jzzzzzzzzzzzzzzzzzzzzzzz", &hex(&small), &small).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.put_blob("nope", &hex(&small), &small).await.0, StatusCode::NOT_FOUND);
    // Over the per-file limit.
    let big = vec![b'c'; 1001];
    let (_, c2) = create(&s, "big", json!({"files": {"/big": hex(&big)}})).await;
    let (status, problem) = s.put_blob(c2["id"].as_str().unwrap(), &hex(&big), &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    // Over the file count.
    let (status, _) =
        create(&s, "many", json!({"files": {"/1": hex(b"1"), "/2": hex(b"2"), "/3": hex(b"3"), "/4": hex(b"4")}}))
            .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // No temp file or stray blob is left behind.
    let tmp = s.data_dir.path().join("blobs/tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

    // Over the total size: finalize refuses and the deployment is failed for good.
    assert_eq!(s.put_blob(id, &hex(&small), &small).await.0, StatusCode::CREATED);
    assert_eq!(s.put_blob(id, &hex(&other), &other).await.0, StatusCode::CREATED);
    let (status, problem) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    let (status, _) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, d) = s.call(Method::GET, &format!("/api/v1/deployments/{id}"), None).await;
    assert_eq!(d["state"], "error");
    assert_nothing_visible(&s, "site").await;
}

#[tokio::test]
async fn tokens_are_required() {
    let s = TestServer::start().await;
    for token in [None, Some("wrong"), Some("")] {
        let mut req = s.http.get(s.api("/api/v1/projects/site/deployments"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    let resp = s.http.get(s.api("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The token file is private.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(s.data_dir.path().join("admin.token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn unknown_things_are_404() {
    let s = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/api/v1/projects/nope/deployments"),
        (Method::GET, "/api/v1/deployments/01jzzzzzzzzzzzzzzzzzzzzzzz"),
        (Method::POST, "/api/v1/deployments/01jzzzzzzzzzzzzzzzzzzzzzzz/promote"),
        (Method::POST, "/api/v1/deployments/01jzzzzzzzzzzzzzzzzzzzzzzz/finalize"),
        (Method::POST, "/api/v1/projects/nope/rollback"),
        (Method::GET, "/api/v1/nothing-here"),
    ] {
        let (status, problem) = s.call(method.clone(), path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
        assert!(problem["detail"].is_string());
    }
}

#[tokio::test]
async fn gc_removes_only_unreferenced_blobs() {
    let s = TestServer::start_with(|c| {
        c.api.gc_grace_secs = 0;
        c.api.max_total_bytes = 2000;
    })
    .await;
    let keep = b"<p>kept</p>".repeat(50);
    s.deploy("site", &[("/index.html", &keep)], true).await;
    // An in-flight deployment: its uploaded blob must survive.
    let pending = b"in flight".to_vec();
    let (_, created) = create(&s, "site", json!({"files": {"/p.html": hex(&pending)}})).await;
    let id = created["id"].as_str().unwrap();
    s.put_blob(id, &hex(&pending), &pending).await;
    // An orphan: uploaded for a deployment that finalize then refused.
    let orphan = vec![b'o'; 2001];
    let (_, failed) = create(&s, "site", json!({"files": {"/o.html": hex(&orphan)}})).await;
    let failed = failed["id"].as_str().unwrap();
    s.put_blob(failed, &hex(&orphan), &orphan).await;
    let (status, _) = s.call(Method::POST, &format!("/api/v1/deployments/{failed}/finalize"), None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let blob_exists = |b: &[u8]| {
        let h = hex(b);
        s.data_dir.path().join("blobs/sha256").join(&h[..2]).join(&h).exists()
    };
    assert!(blob_exists(&orphan));
    let (status, report) = s.call(Method::POST, "/api/v1/gc", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    // The orphan and the br and gzip variants made when it was uploaded.
    assert_eq!(report["blobs_deleted"], 3, "{report}");
    let freed = report["bytes_freed"].as_u64().unwrap();
    assert!((2002..2001 + 200).contains(&freed), "{report}");
    assert!(!blob_exists(&orphan));
    assert!(blob_exists(&pending) && blob_exists(&keep));

    // The live site still serves every representation, variants included.
    for enc in ["br", "gzip", "identity"] {
        let resp =
            s.edge(Method::GET, "site.localhost", "/index.html").header("accept-encoding", enc).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{enc}");
    }
    // And the in-flight deployment can still finish.
    let (status, done) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (_, again) = s.call(Method::POST, "/api/v1/gc", None).await;
    assert_eq!(again["blobs_deleted"], 0, "{again}");
}
