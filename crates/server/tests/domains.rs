//! Custom domains end to end: claimed through the API, proven against a
//! real DNS server (pebble-challtestsrv) by TXT record or by the edge's
//! HTTP answer, served by the real edge, and never taken by a second
//! project.

use helix_testkit::TestServer;
use helix_testkit::dns::FakeDns;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn server_with(dns: &FakeDns) -> TestServer {
    let addr = dns.addr;
    TestServer::start_with(move |c| c.api.dns_server = Some(addr)).await
}

async fn add(s: &TestServer, project: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::POST, &format!("/api/v1/projects/{project}/domains"), Some(body)).await
}

async fn verify(s: &TestServer, project: &str, name: &str) -> (StatusCode, Value) {
    s.call(Method::POST, &format!("/api/v1/projects/{project}/domains/{name}/verify"), None).await
}

async fn body_at(s: &TestServer, host: &str, path: &str) -> (StatusCode, String) {
    let resp = s.get_edge(host, path).await;
    (resp.status(), resp.text().await.unwrap())
}

/// A deployment served at `<alias>--<project>` (not production).
async fn deploy_alias(s: &TestServer, project: &str, alias: &str, index: &[u8]) -> String {
    let digest = helix_core::Digest::of(index).to_hex();
    let body = json!({ "files": { "index.html": digest }, "production": false, "alias": alias });
    let (status, created) = s.call(Method::POST, &format!("/api/v1/projects/{project}/deployments"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    if !created["required"].as_array().unwrap().is_empty() {
        let (status, body) = s.put_blob(&id, &digest, index).await;
        assert!(status.is_success(), "{body}");
    }
    let (status, done) = s.call(Method::POST, &format!("/api/v1/deployments/{id}/finalize"), None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    id
}

#[tokio::test]
async fn a_domain_proven_by_its_txt_record_serves_production_and_stays_its_projects() {
    let dns = FakeDns::start().await;
    let s = server_with(&dns).await;
    s.deploy("shop", &[("index.html", b"shop v1")], true).await;
    s.deploy("evil", &[("index.html", b"evil")], true).await;

    // Claimed, not yet proven: the answer says which record proves it.
    let (status, d) = add(&s, "shop", json!({ "name": "Shop.Example.test" })).await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    assert_eq!(d["name"], "shop.example.test");
    assert_eq!(d["verified"], false);
    assert_eq!(d["txt_name"], "_helix-challenge.shop.example.test");
    let txt_value = d["txt_value"].as_str().unwrap().to_owned();
    assert!(txt_value.starts_with("helix-verify="), "{d}");
    let why = d["last_error"].as_str().unwrap();
    assert!(why.contains("no TXT record _helix-challenge.shop.example.test"), "{why}");
    assert!(why.contains("/.well-known/helix-challenge/"), "the HTTP proof was tried too: {why}");
    let (status, _) = body_at(&s, "shop.example.test", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unproven domain serves nothing");

    // A wrong record is named as such.
    dns.set_txt("_helix-challenge.shop.example.test", "helix-verify=not-the-token").await;
    let (status, d) = verify(&s, "shop", "shop.example.test").await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["verified"], false);
    assert!(d["last_error"].as_str().unwrap().contains(&format!("none of them {txt_value}")), "{d}");

    // The right one: verified, and served once the answer comes.
    dns.clear_txt("_helix-challenge.shop.example.test").await;
    dns.set_txt("_helix-challenge.shop.example.test", &txt_value).await;
    let (status, d) = verify(&s, "shop", "shop.example.test").await;
    assert_eq!((status, &d["verified"]), (StatusCode::OK, &json!(true)), "{d}");
    assert_eq!(d["propagation"]["served"], true, "{d}");
    assert_eq!(body_at(&s, "shop.example.test", "/").await, (StatusCode::OK, "shop v1".into()));

    // Production moves; the domain follows.
    s.deploy("shop", &[("index.html", b"shop v2")], true).await;
    assert_eq!(body_at(&s, "shop.example.test", "/").await, (StatusCode::OK, "shop v2".into()));

    // A second project cannot claim the verified name, however it asks.
    for name in ["shop.example.test", "SHOP.example.test.", "shop.example.test"] {
        let (status, body) = add(&s, "evil", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body["detail"].as_str().unwrap().contains("verified by another project"), "{body}");
    }
    let (_, evil_domains) = s.call(Method::GET, "/api/v1/projects/evil/domains", None).await;
    assert_eq!(evil_domains, json!([]), "nothing stored for the refused claim");
    assert_eq!(body_at(&s, "shop.example.test", "/").await, (StatusCode::OK, "shop v2".into()));

    // Every change is in the audit log.
    let (_, audit) = s.call(Method::GET, "/api/v1/audit?project=shop", None).await;
    let actions: Vec<&str> = audit["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"domain.add") && actions.contains(&"domain.verify"), "{actions:?}");

    // After a restart the edge serves it from the stored state.
    let s = s.restart().await;
    assert_eq!(body_at(&s, "shop.example.test", "/").await, (StatusCode::OK, "shop v2".into()));

    // Removed: no longer served, and free for another project to claim.
    let (status, d) = s.call(Method::DELETE, "/api/v1/projects/shop/domains/shop.example.test", None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(body_at(&s, "shop.example.test", "/").await.0, StatusCode::NOT_FOUND);
    let (status, d) = add(&s, "evil", json!({ "name": "shop.example.test" })).await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    assert_eq!(d["verified"], false, "the old record holds shop's token, not evil's: {d}");
}

#[tokio::test]
async fn a_name_pointed_at_the_edge_is_proven_over_http_and_www_redirects_to_the_apex() {
    let dns = FakeDns::start().await;
    let s = server_with(&dns).await;
    s.deploy("shop", &[("index.html", b"apex")], true).await;
    dns.set_a("example.test", &["127.0.0.1"]).await;
    dns.set_a("www.example.test", &["127.0.0.1"]).await;

    // No TXT record, but the name reaches this edge: it answers the token.
    let (status, d) = add(&s, "shop", json!({ "name": "example.test" })).await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    assert_eq!(d["verified"], true, "{d}");
    let (status, d) = add(&s, "shop", json!({ "name": "www.example.test", "redirect_to": "example.test" })).await;
    assert_eq!((status, &d["verified"]), (StatusCode::CREATED, &json!(true)), "{d}");

    let resp = s.get_edge("www.example.test", "/shop/item?id=7").await;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    let port = s.running.edge_addr.port();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "http://example.test/shop/item?id=7", "no port in the Host header, none in the Location");
    let resp = s.edge(Method::GET, &format!("www.example.test:{port}"), "/a").send().await.unwrap();
    assert_eq!(resp.headers()["location"], format!("http://example.test:{port}/a").as_str());
    assert_eq!(body_at(&s, "example.test", "/").await, (StatusCode::OK, "apex".into()));

    // A redirect goes to a domain that serves, never down a chain.
    let (status, body) = add(&s, "shop", json!({ "name": "w2.example.test", "redirect_to": "www.example.test" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("redirects to example.test itself"), "{body}");

    // A name pointing at another host is never contacted for the proof,
    // and nothing about that host comes back.
    dns.set_a("elsewhere.test", &["192.0.2.1"]).await;
    let (_, d) = add(&s, "shop", json!({ "name": "elsewhere.test" })).await;
    let why = d["last_error"].as_str().unwrap();
    assert!(why.contains("elsewhere.test does not point at this server"), "{why}");
    assert!(!why.contains("192.0.2.1"), "{why}");

    // The apex cannot go while www redirects to it.
    let (status, body) = s.call(Method::DELETE, "/api/v1/projects/shop/domains/example.test", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("www.example.test redirects to example.test"), "{body}");
}

#[tokio::test]
async fn a_name_two_projects_claim_is_proven_by_txt_only() {
    let dns = FakeDns::start().await;
    let s = server_with(&dns).await;
    s.deploy("shop", &[("index.html", b"shop")], true).await;
    s.deploy("evil", &[("index.html", b"evil")], true).await;
    // evil claims first; the name's DNS points at the shared edge, which
    // says nothing about which project the name's owner meant.
    let (status, first) = add(&s, "evil", json!({ "name": "contested.test" })).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["verified"], false, "no A record yet: {first}");
    dns.set_a("contested.test", &["127.0.0.1"]).await;
    let (status, d) = verify(&s, "evil", "contested.test").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["verified"], true, "uncontested: the HTTP proof holds: {d}");

    // Now shop claims a name evil holds pending, in the other order.
    let (status, _) = add(&s, "shop", json!({ "name": "both.test" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = add(&s, "evil", json!({ "name": "both.test" })).await;
    assert_eq!(status, StatusCode::CREATED, "pending claims may coexist");
    dns.set_a("both.test", &["127.0.0.1"]).await;
    let (_, d) = verify(&s, "evil", "both.test").await;
    assert_eq!(d["verified"], false, "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("another project claims this name too"), "{d}");
    // The owner's TXT record settles it, and then it is shop's alone.
    let (_, shops) = s.call(Method::GET, "/api/v1/projects/shop/domains", None).await;
    dns.set_txt("_helix-challenge.both.test", shops[0]["txt_value"].as_str().unwrap()).await;
    let (_, d) = verify(&s, "shop", "both.test").await;
    assert_eq!(d["verified"], true, "{d}");
    let (status, body) = verify(&s, "evil", "both.test").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body_at(&s, "both.test", "/").await, (StatusCode::OK, "shop".into()));
}

#[tokio::test]
async fn a_wildcard_serves_branch_and_deployment_previews_of_its_project_only() {
    let dns = FakeDns::start().await;
    let s = server_with(&dns).await;
    s.deploy("shop", &[("index.html", b"production")], true).await;
    let feat = deploy_alias(&s, "shop", "feat", b"feature branch").await;
    deploy_alias(&s, "other", "feat", b"other project").await;

    let (status, d) = add(&s, "shop", json!({ "name": "*.preview.example.test", "previews": true })).await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    assert_eq!(d["verified"], false);
    assert_eq!(d["txt_name"], "_helix-challenge.preview.example.test");
    assert_eq!(d["http_path"], Value::Null, "a wildcard has no HTTP proof");
    assert!(d["last_error"].as_str().unwrap().contains("TXT record only"), "{d}");
    dns.set_txt("_helix-challenge.preview.example.test", d["txt_value"].as_str().unwrap()).await;
    let (_, d) = verify(&s, "shop", "*.preview.example.test").await;
    assert_eq!(d["verified"], true, "{d}");

    assert_eq!(body_at(&s, "feat.preview.example.test", "/").await, (StatusCode::OK, "feature branch".into()));
    let by_id = format!("{}.preview.example.test", feat.to_lowercase());
    assert_eq!(body_at(&s, &by_id, "/").await, (StatusCode::OK, "feature branch".into()));
    // A name under the verified wildcard is the wildcard owner's: another
    // project cannot claim it, even though its DNS reaches the edge.
    s.deploy("evil", &[("index.html", b"evil")], true).await;
    dns.set_a("feat.preview.example.test", &["127.0.0.1"]).await;
    let (status, body) = add(&s, "evil", json!({ "name": "feat.preview.example.test" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body_at(&s, "feat.preview.example.test", "/").await, (StatusCode::OK, "feature branch".into()));
    for host in [
        "nope.preview.example.test",
        "a.b.preview.example.test",
        "preview.example.test",
        "feat--other.preview.example.test",
    ] {
        assert_eq!(body_at(&s, host, "/").await.0, StatusCode::NOT_FOUND, "{host}");
    }
}

#[tokio::test]
async fn bad_domains_are_refused_with_the_reason_and_store_nothing() {
    let dns = FakeDns::start().await;
    let s = server_with(&dns).await;
    s.deploy("shop", &[("index.html", b"shop")], true).await;
    for (body, says) in [
        (json!({ "name": "localhost" }), "two labels"),
        (json!({ "name": "shop.localhost" }), "own domain"),
        (json!({ "name": "10.0.0.1" }), "address"),
        (json!({ "name": "https://shop.example.test/" }), "hostname"),
        (json!({ "name": "a..example.test" }), "valid"),
        (json!({ "name": "exa mple.test" }), "valid"),
        (json!({ "name": "x".repeat(300) + ".test" }), "valid"),
        (json!({ "name": "shop.example.test", "previews": true }), "wildcard"),
        (json!({ "name": "www.example.test", "redirect_to": "elsewhere.test" }), "add elsewhere.test first"),
        (json!({ "name": "*.example.test", "redirect_to": "example.test" }), "not a wildcard"),
        (json!({ "name": "a.test", "redirect_to": "a.test" }), "itself"),
        (json!({ "name": "a.test", "extra": 1 }), "extra"),
        (json!({ "nom": "a.test" }), "name"),
    ] {
        let (status, answer) = add(&s, "shop", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{body}: {detail}");
    }
    let (_, listed) = s.call(Method::GET, "/api/v1/projects/shop/domains", None).await;
    assert_eq!(listed, json!([]));
    // An IDN is stored as punycode.
    let (status, d) = add(&s, "shop", json!({ "name": "bücher.test" })).await;
    assert_eq!((status, d["name"].as_str()), (StatusCode::CREATED, Some("xn--bcher-kva.test")), "{d}");
    // Someone else's project is not found, whatever its domains.
    let (status, _) = verify(&s, "shop", "never-claimed.test").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = add(&s, "no-such-project", json!({ "name": "a.test" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_policy_can_refuse_domain_changes() {
    let dns = FakeDns::start().await;
    let s = server_with(&dns).await;
    s.deploy("shop", &[("index.html", b"shop")], true).await;
    let policy = "package helix\n\ndeny contains msg if {\n  input.action == \"domain.change\"\n  \
                  endswith(input.request.domain, \".forbidden.test\")\n  msg := \"no domains under forbidden.test\"\n}\n";
    let (status, body) = s.call(Method::PUT, "/api/v1/policy", Some(json!({ "source": policy }))).await;
    assert!(status.is_success(), "{body}");
    let (status, body) = add(&s, "shop", json!({ "name": "a.forbidden.test" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("no domains under forbidden.test"), "{body}");
    let (_, listed) = s.call(Method::GET, "/api/v1/projects/shop/domains", None).await;
    assert_eq!(listed, json!([]));
    let (status, _) = add(&s, "shop", json!({ "name": "allowed.test" })).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_record_created_after_the_claim_verifies_it_in_the_background() {
    let dns = FakeDns::start().await;
    let addr = dns.addr;
    let s = TestServer::start_with(move |c| {
        c.api.dns_server = Some(addr);
        c.api.domain_recheck_secs = 1;
    })
    .await;
    s.deploy("shop", &[("index.html", b"shop")], true).await;
    let (_, d) = add(&s, "shop", json!({ "name": "later.example.test" })).await;
    assert_eq!(d["verified"], false, "{d}");
    dns.set_txt("_helix-challenge.later.example.test", d["txt_value"].as_str().unwrap()).await;
    let mut served = false;
    for _ in 0..100 {
        if body_at(&s, "later.example.test", "/").await == (StatusCode::OK, "shop".into()) {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(served, "the background check verified the domain without another command");
    let (_, audit) = s.call(Method::GET, "/api/v1/audit?project=shop", None).await;
    let by_system = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "domain.verify" && e["actor"] == "system" && e["target"] == "later.example.test");
    assert!(by_system, "{audit}");
}
