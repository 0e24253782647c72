//! GraphQL over the same operations as REST, against the real server:
//! queries and mutations, the same roles and organisation walls, the same
//! policy and audit, secrets masked, and bad requests refused.

use helix_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn gql(s: &TestServer, token: &str, query: &str, variables: Value) -> (StatusCode, Value) {
    let resp = s
        .http
        .post(s.api("/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The data of an answer that must have no errors.
async fn data(s: &TestServer, token: &str, query: &str, variables: Value) -> Value {
    let (status, out) = gql(s, token, query, variables).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(out["errors"].is_null(), "{query}: {out}");
    out["data"].clone()
}

/// The first error of an answer that must fail: (status, type, message).
async fn error(s: &TestServer, token: &str, query: &str, variables: Value) -> (u64, String, String) {
    let (status, out) = gql(s, token, query, variables).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let e = &out["errors"][0];
    assert!(e.is_object(), "{query} should fail: {out}");
    let ext = &e["extensions"];
    (
        ext["status"].as_u64().unwrap_or(0),
        ext["type"].as_str().unwrap_or("").to_owned(),
        e["message"].as_str().unwrap().to_owned(),
    )
}

async fn token(s: &TestServer, user: &str, role: &str, org: Option<&str>) -> String {
    if org.is_none() {
        let (status, b) = s.call(Method::POST, "/api/v1/members", Some(json!({ "user": user, "role": role }))).await;
        assert!(status.is_success(), "{b}");
    }
    let body = json!({ "name": user, "user": user, "role": role, "org": org });
    let (status, b) = s.call(Method::POST, "/api/v1/tokens", Some(body)).await;
    assert!(status.is_success(), "{b}");
    b["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn queries_and_mutations_are_the_rest_operations_with_the_same_walls() {
    let s = TestServer::start_with(|c| c.build_workers = 0).await;
    let v1 = s.deploy("shop", &[("/index.html", b"v1")], true).await["id"].as_str().unwrap().to_owned();
    let v2 = s.deploy("shop", &[("/index.html", b"v2")], false).await["id"].as_str().unwrap().to_owned();
    for (name, body) in [
        ("PLAIN", json!({ "value": "plain-value" })),
        ("API_KEY", json!({ "value": "gql-s3cret-42", "secret": true, "environments": ["production"] })),
    ] {
        let (status, b) = s.call(Method::PUT, &format!("/api/v1/projects/shop/env/{name}"), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{b}");
    }
    let viewer = token(&s, "vera", "viewer", None).await;
    let developer = token(&s, "dev", "developer", None).await;
    let owner = token(&s, "olga", "owner", None).await;
    let (status, b) = s.call(Method::POST, "/api/v1/orgs", Some(json!({ "name": "rival", "owner": "eve" }))).await;
    assert!(status.is_success(), "{b}");
    let rival = token(&s, "eve", "owner", Some("rival")).await;

    // No token: refused before any resolver runs.
    let resp = s.http.post(s.api("/graphql")).json(&json!({ "query": "{ whoami { user } }" })).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A viewer reads projects, deployments and env; secrets are masked.
    let q = "{ whoami { user role } projects { name production deployments { id state } env { name secret value } } }";
    let d = data(&s, &viewer, q, json!({})).await;
    assert_eq!(d["whoami"]["role"], "viewer");
    let shop = &d["projects"][0];
    assert_eq!((shop["name"].as_str(), shop["production"].as_str()), (Some("shop"), Some(v1.as_str())));
    assert_eq!(shop["deployments"].as_array().unwrap().len(), 2);
    let env = shop["env"].as_array().unwrap();
    let secret = env.iter().find(|v| v["name"] == "API_KEY").unwrap();
    assert_eq!((secret["secret"].as_bool(), &secret["value"]), (Some(true), &Value::Null));
    assert!(env.iter().any(|v| v["name"] == "PLAIN" && v["value"] == "plain-value"));
    assert!(!d.to_string().contains("gql-s3cret-42"));

    // But may not promote: 403, and the denial is in the audit log.
    let promote = "mutation($id: ID!) { promote(id: $id) { id production served } }";
    let (status, kind, message) = error(&s, &viewer, promote, json!({ "id": v2 })).await;
    assert_eq!((status, kind.as_str()), (403, "https://helixstack.dev/problems/forbidden"), "{message}");
    let audit = data(&s, s.token(), "{ audit { action outcome detail } }", json!({})).await;
    assert!(
        audit["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "denied" && e["detail"]["path"] == "/graphql promote"),
        "{audit}"
    );

    // A developer promotes: answered once the edge serves it.
    let d = data(&s, &developer, promote, json!({ "id": v2 })).await;
    assert_eq!((d["promote"]["production"].as_bool(), d["promote"]["served"].as_bool()), (Some(true), Some(true)));
    assert_eq!(s.get_edge("shop.localhost", "/").await.text().await.unwrap(), "v2");
    let d = data(&s, &developer, "mutation { rollback(project: \"shop\") { id served } }", json!({})).await;
    assert_eq!(d["rollback"]["id"], v1.as_str());
    assert_eq!(s.get_edge("shop.localhost", "/").await.text().await.unwrap(), "v1");

    // Env mutations: a secret set through GraphQL is masked in the answer.
    let set = "mutation { setEnv(project: \"shop\", name: \"TOKEN\", input: { value: \"t0k3n-value\", secret: true }) { environment value } }";
    let d = data(&s, &developer, set, json!({})).await;
    assert_eq!(d["setEnv"].as_array().unwrap().len(), 3, "the three standard environments: {d}");
    assert!(d["setEnv"].as_array().unwrap().iter().all(|v| v["value"].is_null()));
    let d = data(&s, &developer, "mutation { removeEnv(project: \"shop\", name: \"TOKEN\") }", json!({})).await;
    assert_eq!(d["removeEnv"], 3);
    let (status, _, message) = error(
        &s,
        &developer,
        "mutation { setEnv(project: \"shop\", name: \"bad name\", input: { value: \"x\" }) { name } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 400, "{message}");

    // Another organisation's project does not exist for its owner.
    let d = data(&s, &rival, "{ projects { name } }", json!({})).await;
    assert_eq!(d["projects"], json!([]));
    let (status, _, _) = error(&s, &rival, "{ project(name: \"shop\") { name } }", json!({})).await;
    assert_eq!(status, 404);
    let (status, _, _) = error(&s, &rival, promote, json!({ "id": v2 })).await;
    assert_eq!(status, 404);

    // A policy denial answers as REST's does.
    let policy = "package helix\n\ndeny contains \"no promotes today\" if input.action == \"promote\"\n";
    let (status, b) = s.call_as(&owner, Method::PUT, "/api/v1/policy", Some(json!({ "source": policy }))).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let (status, kind, message) = error(&s, &owner, promote, json!({ "id": v2 })).await;
    assert_eq!((status, kind.as_str()), (403, "https://helixstack.dev/problems/policy-denied"));
    assert!(message.contains("no promotes today"), "{message}");
}

#[tokio::test]
async fn bad_graphql_requests_are_refused_and_change_nothing() {
    let s = TestServer::start_with(|c| c.build_workers = 0).await;
    let t = s.token().to_owned();
    // Not a GraphQL request at all: a problem, 400.
    let resp = s.http.post(s.api("/graphql")).bearer_auth(&t).body("{nope").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    // A syntax error, an unknown field, a wrong argument type: GraphQL errors.
    for q in ["{ whoami { user ", "{ nothing }", "{ project(name: 7) { name } }"] {
        let (status, out) = gql(&s, &t, q, json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert!(out["errors"][0]["message"].is_string(), "{q}: {out}");
    }
    // A query past the depth limit is refused before it runs.
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {}name{} }} }} }} }} }}",
        "ofType { ".repeat(16),
        " }".repeat(16)
    );
    let (_, out) = gql(&s, &t, &deep, json!({})).await;
    assert!(out["errors"][0]["message"].as_str().unwrap().contains("nested too deep"), "{out}");
    // Introspection works for tools.
    let d = data(&s, &t, "{ __schema { queryType { name } mutationType { name } } }", json!({})).await;
    assert_eq!(d["__schema"]["mutationType"]["name"], "Mutation");
    // An oversize body is refused.
    let huge = json!({ "query": format!("{{ whoami {{ user }} }} #{}", "x".repeat(2 * 1024 * 1024)) });
    let resp = s.http.post(s.api("/graphql")).bearer_auth(&t).json(&huge).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (_, list) = s.call(Method::GET, "/api/v1/projects", None).await;
    assert_eq!(list, json!([]), "nothing was made");
}
