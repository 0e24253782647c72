//! Netlify `Role=` rules: the visitor's `nf_jwt` (HS256, verified with the
//! operator's secret) decides whether a rule applies.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use helix_testkit::TestServer;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SECRET: &str = "identity-secret";

fn jwt(claims: serde_json::Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn role_rules_follow_the_verified_token() {
    let s = TestServer::start_with(|c| c.edge.role_jwt_secret = Some(SECRET.into())).await;
    let redirects = b"/admin/*  /admin/:splat  200!  Role=admin,owner\n/admin/*  /login.html  401!\n";
    let d = s
        .deploy(
            "members",
            &[("/_redirects", redirects), ("/admin/index.html", b"admin area"), ("/login.html", b"please log in")],
            true,
        )
        .await;
    assert_eq!(d["routes"]["diagnostics"], json!([]), "{d}");
    s.wait_for_site("members.localhost").await;
    let visit = |token: Option<String>| {
        let mut req = s.edge(Method::GET, "members.localhost", "/admin/");
        if let Some(t) = token {
            req = req.header("cookie", format!("nf_jwt={t}"));
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    let admin = jwt(json!({"app_metadata": {"roles": ["owner"]}}), SECRET);
    assert_eq!(visit(Some(admin)).await, (StatusCode::OK, "admin area".to_owned()));
    let member = jwt(json!({"app_metadata": {"roles": ["member"]}}), SECRET);
    assert_eq!(visit(Some(member)).await, (StatusCode::UNAUTHORIZED, "please log in".to_owned()));
    let forged = jwt(json!({"app_metadata": {"roles": ["admin"]}}), "not-the-secret");
    assert_eq!(visit(Some(forged)).await.0, StatusCode::UNAUTHORIZED);
    let expired = jwt(json!({"app_metadata": {"roles": ["admin"]}, "exp": 1}), SECRET);
    assert_eq!(visit(Some(expired)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(visit(None).await.0, StatusCode::UNAUTHORIZED);
}
