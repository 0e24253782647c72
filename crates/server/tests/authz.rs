//! Authorization, against the real server: the matrix of every route in the
//! API's route table × every role × the caller's own organisation or
//! another's; then token scopes, lifetimes and escalation, and the audit
//! trail of denials.

use std::collections::HashMap;

use helix_core::identity::Role;
use helix_server::control::{Scope, route_table};
use helix_testkit::TestServer;
use helix_testkit::dns::FakeDns;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One organisation's objects, for routes to point at.
struct Fixture {
    project: String,
    ready: String,
    uploading: String,
    /// A file of the uploading deployment: (digest, bytes).
    blob: (String, Vec<u8>),
    build: String,
}

struct World {
    s: TestServer,
    /// A token per role in the default organisation.
    tokens: HashMap<Role, String>,
    /// The owner of another organisation.
    rival: String,
    own: Fixture,
    foreign: Fixture,
    _dns: FakeDns,
}

async fn ok(s: &TestServer, token: &str, method: Method, path: &str, body: Value) -> Value {
    let (status, out) = s.call_as(token, method.clone(), path, Some(body)).await;
    assert!(status.is_success(), "{method} {path}: {status} {out}");
    out
}

async fn token_for(s: &TestServer, user: &str, role: Role, org: Option<&str>) -> String {
    let body = json!({ "name": format!("{user}-{role}"), "user": user, "role": role, "org": org });
    ok(s, s.token(), Method::POST, "/api/v1/tokens", body).await["token"].as_str().unwrap().to_owned()
}

async fn fixture(s: &TestServer, token: &str, project: &str) -> Fixture {
    let files = |bytes: &[u8], production: bool| json!({ "files": { "/index.html": helix_core::Digest::of(bytes).to_hex() }, "production": production });
    let path = format!("/api/v1/projects/{project}/deployments");
    let first = ok(s, token, Method::POST, &path, files(b"ready", true)).await;
    let ready = first["id"].as_str().unwrap().to_owned();
    let digest = helix_core::Digest::of(b"ready").to_hex();
    let (status, _) = s.put_blob_as(token, &ready, &digest, b"ready").await;
    assert!(status.is_success());
    ok(s, token, Method::POST, &format!("/api/v1/deployments/{ready}/finalize"), json!({})).await;
    let bytes = format!("uploading {project}").into_bytes();
    let second = ok(s, token, Method::POST, &path, files(&bytes, false)).await;
    let link = json!({ "repo": format!("https://git.example.com/me/{project}.git") });
    ok(s, token, Method::PUT, &format!("/api/v1/projects/{project}/link"), link).await;
    let build = ok(s, token, Method::POST, &format!("/api/v1/projects/{project}/builds"), json!({})).await;
    Fixture {
        project: project.to_owned(),
        ready,
        uploading: second["id"].as_str().unwrap().to_owned(),
        blob: (helix_core::Digest::of(&bytes).to_hex(), bytes),
        build: build["id"].as_str().unwrap().to_owned(),
    }
}

async fn world() -> World {
    // No build workers: queued builds stay queued, so they can be pointed at.
    // Domain claims are checked against a real DNS server, which answers
    // at once (and not at all for names of the world outside).
    let dns = FakeDns::start().await;
    let dns_addr = dns.addr;
    let s = TestServer::start_with(move |c| {
        c.build_workers = 0;
        c.api.dns_server = Some(dns_addr);
    })
    .await;
    ok(&s, s.token(), Method::POST, "/api/v1/orgs", json!({ "name": "rival", "owner": "eve" })).await;
    let rival = token_for(&s, "eve", Role::Owner, Some("rival")).await;
    let mut tokens = HashMap::new();
    for role in Role::ALL {
        let user = format!("{role}-user");
        ok(&s, s.token(), Method::POST, "/api/v1/members", json!({ "user": user, "role": role })).await;
        tokens.insert(role, token_for(&s, &user, role, None).await);
    }
    let own = fixture(&s, s.token(), "mine").await;
    let foreign = fixture(&s, &rival, "theirs").await;
    World { s, tokens, rival, own, foreign, _dns: dns }
}

/// What a route is called with: the concrete path and a body. A route
/// this does not know fails the test: every new route gets a case.
async fn request(w: &World, role: Role, method: &str, path: &str, f: &Fixture) -> (String, Value) {
    let s = &w.s;
    let p = &f.project;
    let id = match path {
        "/deployments/{id}" | "/deployments/{id}/promote" => f.ready.clone(),
        "/deployments/{id}/finalize" => f.uploading.clone(),
        "/builds/{id}" | "/builds/{id}/cancel" | "/builds/{id}/logs" => f.build.clone(),
        // A fresh token of the caller's own user (or, abroad, of eve's).
        "/tokens/{id}" if f.project == "mine" => {
            let made = token_for(s, &format!("{role}-user"), Role::Viewer, None).await;
            let (_, who) = s.call_as(&made, Method::GET, "/api/v1/whoami", None).await;
            who["token"].as_str().unwrap().to_owned()
        }
        "/tokens/{id}" => {
            let made = ok(s, &w.rival, Method::POST, "/api/v1/tokens", json!({ "name": "spare" })).await;
            made["id"].as_str().unwrap().to_owned()
        }
        _ => String::new(),
    };
    let body = match (method, path) {
        ("POST", "/projects/{project}/deployments") => json!({ "files": {} }),
        ("PUT", "/projects/{project}/split") => json!({ "weights": { "production": 100 } }),
        ("PUT", "/projects/{project}/link") => json!({ "repo": format!("https://git.example.com/me/{p}.git") }),
        ("POST", "/tokens") => json!({ "name": "matrix" }),
        ("PUT", "/projects/{project}/env/{name}") => json!({ "value": "v" }),
        ("POST", "/projects/{project}/env/import") => json!({ "dotenv": "MATRIX=1\n" }),
        ("PUT", "/policy") => json!({ "source": "package helix\n" }),
        ("POST", "/policy/test") => json!({ "input": {}, "source": "package helix\n" }),
        ("POST", "/members") => json!({ "user": "matrix-member", "role": "viewer" }),
        ("POST", "/projects/{project}/domains") => {
            json!({ "name": format!("{}.matrix.test", ulid::Ulid::new().to_string().to_lowercase()) })
        }
        ("POST", "/orgs") => {
            json!({ "name": format!("org-{}", ulid::Ulid::new().to_string().to_lowercase()), "owner": "o" })
        }
        _ => json!({}),
    };
    let concrete = match path {
        "/projects/{project}/webhooks/{id}" => {
            let hook = json!({ "url": "https://example.com/hook" });
            let made = ok(s, s.token(), Method::POST, &format!("/api/v1/projects/{p}/webhooks"), hook).await;
            format!("/projects/{p}/webhooks/{}", made["id"].as_str().unwrap())
        }
        "/policy" => {
            // One to read and remove, set by the server admin each time.
            ok(s, s.token(), Method::PUT, "/api/v1/policy", json!({ "source": "package helix\n" })).await;
            path.to_owned()
        }
        "/projects/{project}/env/{name}" => {
            // Something to remove, set by the server admin each time.
            let set = json!({ "value": "x" });
            ok(s, s.token(), Method::PUT, &format!("/api/v1/projects/{p}/env/MATRIX"), set).await;
            format!("/projects/{p}/env/MATRIX")
        }
        "/projects/{project}/domains/{name}" | "/projects/{project}/domains/{name}/verify" => {
            // A claim to check or remove, made by the server admin each time.
            let name = format!("{}.matrix.test", ulid::Ulid::new().to_string().to_lowercase());
            ok(s, s.token(), Method::POST, &format!("/api/v1/projects/{p}/domains"), json!({ "name": name })).await;
            path.replace("{project}", p).replace("{name}", &name)
        }
        "/members/{user}" => {
            ok(s, s.token(), Method::POST, "/api/v1/members", json!({ "user": "leaver", "role": "viewer" })).await;
            "/members/leaver".to_owned()
        }
        "/deployments/{id}/blobs/{digest}" => format!("/deployments/{}/blobs/{}", f.uploading, f.blob.0),
        other if other.contains("{project}") => other.replace("{project}", p),
        other if other.contains("{id}") => other.replace("{id}", &id),
        "/gc" | "/whoami" | "/tokens" | "/members" | "/orgs" | "/projects" | "/login" | "/audit" | "/audit/verify"
        | "/domains" | "/keys/rotate" | "/policy/test" => path.to_owned(),
        unknown => panic!("the matrix has no case for {method} {unknown}: add one"),
    };
    (format!("/api/v1{concrete}"), body)
}

#[tokio::test]
async fn every_route_checks_every_role_and_hides_other_organisations() {
    let w = world().await;
    let mut failures = Vec::new();
    for route in route_table() {
        let foreign_too = matches!(
            route.scope,
            Scope::Project | Scope::ProjectOrNew | Scope::Deployment | Scope::Build | Scope::Token
        );
        for role in Role::ALL {
            for abroad in [false, true] {
                if abroad && !foreign_too {
                    continue;
                }
                let f = if abroad { &w.foreign } else { &w.own };
                let (path, body) = request(&w, role, route.method, route.path, f).await;
                let method = Method::from_bytes(route.method.as_bytes()).unwrap();
                let (status, out) = if route.path.contains("/blobs/") {
                    w.s.put_blob_as(&w.tokens[&role], &f.uploading, &f.blob.0, &f.blob.1).await
                } else {
                    w.s.call_as(&w.tokens[&role], method, &path, Some(body)).await
                };
                let expected = match route.scope {
                    Scope::ProjectOrNew if abroad => "taken",
                    _ if abroad => "hidden",
                    Scope::Caller => "allowed",
                    Scope::Server => "denied",
                    _ if role >= route.need.role => "allowed",
                    _ => "denied",
                };
                let got = match status {
                    StatusCode::FORBIDDEN => "denied",
                    StatusCode::NOT_FOUND => "hidden",
                    StatusCode::UNAUTHORIZED => "unauthorized",
                    StatusCode::CONFLICT if out["detail"].as_str().is_some_and(|d| d.contains("not available")) => {
                        "taken"
                    }
                    _ => "allowed",
                };
                if got != expected {
                    failures.push(format!(
                        "{} {} as {role}{}: expected {expected}, got {status} {out}",
                        route.method,
                        route.path,
                        if abroad { " abroad" } else { "" }
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} cells of the matrix are wrong:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn narrowed_read_only_expired_revoked_and_forged_tokens() {
    let s = TestServer::start_with(|c| c.build_workers = 0).await;
    let admin = s.token().to_owned();
    s.deploy("alpha", &[("/index.html", b"a")], true).await;
    s.deploy("beta", &[("/index.html", b"b")], true).await;
    let list = |p: &str| format!("/api/v1/projects/{p}/deployments");

    // A developer on alpha only: beta does not exist for them.
    ok(&s, &admin, Method::POST, "/api/v1/members", json!({ "user": "nara", "role": "developer", "project": "alpha" }))
        .await;
    let nara =
        ok(&s, &admin, Method::POST, "/api/v1/tokens", json!({ "name": "n", "user": "nara", "project": "alpha" }))
            .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(s.call_as(&nara, Method::GET, &list("alpha"), None).await.0, StatusCode::OK);
    assert_eq!(s.call_as(&nara, Method::GET, &list("beta"), None).await.0, StatusCode::NOT_FOUND);
    let (status, body) =
        s.call_as(&nara, Method::POST, "/api/v1/members", Some(json!({"user": "x", "role": "viewer"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Nor can it deploy a new project, or mint a token wider than itself.
    let (status, _) = s.call_as(&nara, Method::POST, &list("gamma"), Some(json!({ "files": {} }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = s.call_as(&nara, Method::POST, "/api/v1/tokens", Some(json!({ "name": "wide" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = s
        .call_as(
            &nara,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "up", "project": "alpha", "role": "admin" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("more than its maker"), "{body}");

    // Read-only: reads work, writes are refused and say why.
    let ro = ok(&s, &admin, Method::POST, "/api/v1/tokens", json!({ "name": "ro", "read_only": true })).await;
    let ro = ro["token"].as_str().unwrap();
    assert_eq!(s.call_as(ro, Method::GET, &list("alpha"), None).await.0, StatusCode::OK);
    let (status, body) = s.call_as(ro, Method::POST, "/api/v1/projects/alpha/rollback", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["detail"].as_str().unwrap().contains("read-only"), "{body}");
    assert_eq!(body["type"], "https://helixstack.dev/problems/forbidden");

    // Expired, revoked, forged: 401 with the reason.
    let short = ok(&s, &admin, Method::POST, "/api/v1/tokens", json!({ "name": "short", "expires_in_secs": 1 })).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = s.call_as(short["token"].as_str().unwrap(), Method::GET, "/api/v1/whoami", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
    let gone = ok(&s, &admin, Method::POST, "/api/v1/tokens", json!({ "name": "gone" })).await;
    let id = gone["id"].as_str().unwrap();
    ok(&s, &admin, Method::DELETE, &format!("/api/v1/tokens/{id}"), json!({})).await;
    let (status, body) = s.call_as(gone["token"].as_str().unwrap(), Method::GET, "/api/v1/whoami", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("revoked"), "{body}");
    let forged = format!("hx_{}", "0".repeat(64));
    assert_eq!(s.call_as(&forged, Method::GET, "/api/v1/whoami", None).await.0, StatusCode::UNAUTHORIZED);
    // A removed member's tokens stop working.
    ok(&s, &admin, Method::DELETE, "/api/v1/members/nara?project=alpha", json!({})).await;
    assert_eq!(s.call_as(&nara, Method::GET, &list("alpha"), None).await.0, StatusCode::UNAUTHORIZED);

    // Bad bodies name the problem and change nothing.
    for bad in [json!({ "name": "" }), json!({ "name": "x", "role": "root" }), json!({ "name": "x", "extra": 1 })] {
        let (status, body) = s.call(Method::POST, "/api/v1/tokens", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) =
        s.call(Method::POST, "/api/v1/members", Some(json!({ "user": "Bad Name", "role": "viewer" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = s.call(Method::DELETE, "/api/v1/members/admin", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "the last owner stays: {body}");
}

#[tokio::test]
async fn denials_and_changes_are_audited_and_the_chain_verifies() {
    let s = TestServer::start().await;
    s.deploy("site", &[("/index.html", b"v1")], true).await;
    ok(&s, s.token(), Method::POST, "/api/v1/members", json!({ "user": "vic", "role": "viewer" })).await;
    let vic = token_for(&s, "vic", Role::Viewer, None).await;
    let (status, _) = s.call_as(&vic, Method::POST, "/api/v1/projects/site/rollback", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Viewers may not read the audit log either.
    assert_eq!(s.call_as(&vic, Method::GET, "/api/v1/audit", None).await.0, StatusCode::FORBIDDEN);

    let (_, log) = s.call(Method::GET, "/api/v1/audit", None).await;
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for wanted in ["token.create", "deploy.create", "deploy", "member.change", "denied"] {
        assert!(actions.contains(&wanted), "{wanted} missing from {actions:?}");
    }
    let denied = entries.iter().find(|e| e["action"] == "denied").unwrap();
    assert_eq!((denied["actor"].as_str(), denied["outcome"].as_str()), (Some("vic"), Some("denied")));
    assert!(denied["detail"]["path"].as_str().unwrap().ends_with("/projects/site/rollback"), "{denied}");
    let (_, project_only) = s.call(Method::GET, "/api/v1/audit?project=site", None).await;
    assert!(project_only["entries"].as_array().unwrap().iter().all(|e| e["project"] == "site"));
    let (status, report) = s.call(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["entries"].as_u64().unwrap() as usize, entries.len());
}

#[tokio::test]
async fn each_token_has_its_own_rate_limit_and_is_told_when_to_retry() {
    let s = TestServer::start_with(|c| {
        c.api.rate_per_token = 2;
        c.api.burst_per_token = 3;
    })
    .await;
    let other = ok(&s, s.token(), Method::POST, "/api/v1/tokens", json!({ "name": "other" })).await;
    let other = other["token"].as_str().unwrap().to_owned();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let resp = s.http.get(s.api("/api/v1/whoami")).bearer_auth(s.token()).send().await.unwrap();
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let p: Value = resp.json().await.unwrap();
            assert!(p["detail"].as_str().unwrap().contains("too many requests"), "{p}");
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        2,
        "the burst (one went on making a token): {statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(s.call_as(&other, Method::GET, "/api/v1/whoami", None).await.0, StatusCode::OK, "its own bucket");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(s.call(Method::GET, "/api/v1/whoami", None).await.0, StatusCode::OK, "refilled");
}

#[tokio::test]
async fn the_openapi_document_is_open_and_names_every_route_with_problem_errors() {
    let s = TestServer::start().await;
    let resp = s.http.get(s.api("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "served without a token");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    let mut operations = 0;
    for route in route_table() {
        let op = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
        assert!(op.is_object(), "{} {} is not in the document", route.method, route.path);
        assert!(op["responses"]["403"]["content"]["application/problem+json"].is_object(), "{op}");
        assert_eq!(op["security"][0]["token"], json!([]));
        operations += 1;
    }
    let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, operations, "the document has operations the route table lacks");
    // Every schema a response refers to is in the document.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name} is referred to but missing");
    }

    // The framework's own rejections are problem details too.
    let (status, body) = s.call(Method::GET, "/api/v1/audit?after=not-a-number", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "https://helixstack.dev/problems/bad-request", "{body}");
    let resp = s.http.patch(s.api("/api/v1/audit")).bearer_auth(s.token()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert!(resp.headers().contains_key("allow"));
}
