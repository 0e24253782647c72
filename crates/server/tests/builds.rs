//! Git push → live: real repositories on disk, webhooks signed as GitHub,
//! GitLab and Bitbucket sign them, real builds in the bubblewrap sandbox.

use std::time::{Duration, Instant};

use helix_testkit::TestServer;
use helix_testkit::git::{GitRepo, hub_signature, webhook_fixture};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn link(server: &TestServer, project: &str, repo: &GitRepo) -> String {
    let (status, body) = server
        .call(Method::PUT, &format!("/api/v1/projects/{project}/link"), Some(json!({ "repo": repo.url() })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["webhook_secret"].as_str().expect("the secret is shown when linking").to_owned()
}

/// Sends a webhook with the given headers; returns status and body.
async fn hook(server: &TestServer, path: &str, headers: &[(&str, String)], body: &str) -> (StatusCode, Value) {
    let mut req = server.http.post(server.api(path)).header("content-type", "application/json").body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.expect("hook answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A provider's example payload for `repo`, `branch` and `sha`; `extra`
/// values (pull request number, action, fork) come first and win.
fn payload(name: &str, repo: &GitRepo, branch: &str, sha: &str, extra: &[(&'static str, String)]) -> String {
    let mut values = extra.to_vec();
    values.extend([
        ("CLONE_URL", repo.url()),
        ("SSH_URL", "git@git.example.com:me/other.git".into()),
        ("WEB_URL", repo.web_url()),
        ("FULL_NAME", "me/my-app".into()),
        ("FORK_FULL_NAME", "me/my-app".into()),
        ("FORK_CLONE_URL", repo.url()),
        ("BRANCH", branch.into()),
        ("SHA", sha.into()),
        ("SHORT_SHA", sha.chars().take(12).collect()),
        ("BEFORE", "1".repeat(40)),
    ]);
    webhook_fixture(name, &values)
}

fn github_push_body(repo: &GitRepo, branch: &str, sha: &str) -> String {
    payload("github-push.json", repo, branch, sha, &[])
}

async fn github_push(
    server: &TestServer,
    repo: &GitRepo,
    secret: &str,
    branch: &str,
    sha: &str,
    delivery: &str,
) -> (StatusCode, Value) {
    let body = github_push_body(repo, branch, sha);
    let headers = [
        ("x-github-event", "push".to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        ("x-hub-signature-256", hub_signature(secret, body.as_bytes())),
    ];
    hook(server, "/hooks/github", &headers, &body).await
}

/// Polls a build until it has finished.
async fn finished(server: &TestServer, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, b) = server.call(Method::GET, &format!("/api/v1/builds/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        if ["ready", "error", "canceled"].contains(&b["state"].as_str().unwrap()) {
            return b;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "build {id} never finished: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_text(server: &TestServer, id: &str) -> String {
    let (_, log) = server.call(Method::GET, &format!("/api/v1/builds/{id}/logs"), None).await;
    log["lines"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_owned() + "\n").collect()
}

async fn body_at(server: &TestServer, host: &str, path: &str) -> (StatusCode, String) {
    let resp = server.get_edge(host, path).await;
    (resp.status(), resp.text().await.unwrap())
}

fn build_id(response: &Value) -> String {
    response["builds"][0]["id"].as_str().unwrap_or_else(|| panic!("no build in {response}")).to_owned()
}

#[tokio::test]
async fn pushes_build_production_and_branch_previews_and_redelivery_is_idempotent() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    let secret = link(&server, "site", &repo).await;

    repo.write("index.html", "<h1>v1</h1>");
    let sha = repo.commit_and_push("main", "v1");
    let (status, queued) = github_push(&server, &repo, &secret, "main", &sha, "delivery-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["builds"][0]["url"], server.running.public_edge.url_for_host("site.localhost"));
    let id = build_id(&queued);
    let b = finished(&server, &id).await;
    assert_eq!(b["state"], "ready", "{b}\n{}", log_text(&server, &id).await);
    assert_eq!(b["commit"], sha.as_str());
    assert_eq!(b["trigger"], "github");
    assert!(b["detected"].as_str().unwrap().contains("static"), "{b}");
    server.wait_for_host("site.localhost", |body| body.contains("v1")).await;

    // The same delivery again: nothing new is queued.
    let (status, again) = github_push(&server, &repo, &secret, "main", &sha, "delivery-1").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(build_id(&again), id);
    let (_, list) = server.call(Method::GET, "/api/v1/projects/site/builds", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    let sha_v1 = sha.clone();
    // Another branch: its own preview; production unchanged.
    repo.write("index.html", "<h1>feature</h1>");
    let sha = repo.commit_and_push("feature/New-Look", "feature");
    let (status, queued) = github_push(&server, &repo, &secret, "feature/New-Look", &sha, "delivery-2").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let b = finished(&server, &build_id(&queued)).await;
    assert_eq!(b["state"], "ready", "{b}");
    assert_eq!(b["url"], server.running.public_edge.url_for_host("feature-new-look--site.localhost"));
    server.wait_for_host("feature-new-look--site.localhost", |body| body.contains("feature")).await;
    assert!(body_at(&server, "site.localhost", "/").await.1.contains("v1"), "production is untouched");

    // The branch is deleted: its preview goes; its deployment keeps its own URL.
    let feature_deployment = b["deployment_url"].as_str().unwrap().to_owned();
    let deleted =
        github_push_body(&repo, "feature/New-Look", &"0".repeat(40)).replace("\"deleted\": false", "\"deleted\": true");
    let headers = [
        ("x-github-event", "push".to_owned()),
        ("x-github-delivery", "delivery-delete".to_owned()),
        ("x-hub-signature-256", hub_signature(&secret, deleted.as_bytes())),
    ];
    let (status, gone) = hook(&server, "/hooks/github", &headers, &deleted).await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert!(gone["message"].as_str().unwrap().contains("removed feature-new-look--site.localhost"), "{gone}");
    for _ in 0..200 {
        if body_at(&server, "feature-new-look--site.localhost", "/").await.0 == StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(body_at(&server, "feature-new-look--site.localhost", "/").await.0, StatusCode::NOT_FOUND);
    let host = feature_deployment.split("://").nth(1).unwrap().split(':').next().unwrap().to_owned();
    assert!(body_at(&server, &host, "/").await.1.contains("feature"), "the deployment's own URL stays");

    // A webhook for a tag or a deleted branch builds nothing.
    let body = github_push_body(&repo, "main", &sha).replace("refs/heads/main", "refs/tags/v1");
    let headers = [
        ("x-github-event", "push".to_owned()),
        ("x-github-delivery", "delivery-3".to_owned()),
        ("x-hub-signature-256", hub_signature(&secret, body.as_bytes())),
    ];
    let (status, ignored) = hook(&server, "/hooks/github", &headers, &body).await;
    assert_eq!(status, StatusCode::OK, "{ignored}");
    assert!(ignored["message"].as_str().unwrap().starts_with("ignored"), "{ignored}");

    // A replayed old push (a new delivery id, the old body and signature
    // still valid) must not roll production back.
    repo.write("index.html", "<h1>v2</h1>");
    let v2 = repo.commit_and_push("main", "v2");
    let (_, queued) = github_push(&server, &repo, &secret, "main", &v2, "delivery-4").await;
    assert_eq!(finished(&server, &build_id(&queued)).await["state"], "ready");
    server.wait_for_host("site.localhost", |body| body.contains("v2")).await;
    let (status, replay) = github_push(&server, &repo, &secret, "main", &sha_v1, "delivery-replayed").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replay}");
    let b = finished(&server, &build_id(&replay)).await;
    assert_eq!((b["state"].as_str(), b["failed_step"].as_str()), (Some("error"), Some("fetch")), "{b}");
    assert!(b["error"].as_str().unwrap().contains("no longer the tip"), "{b}");
    assert!(body_at(&server, "site.localhost", "/").await.1.contains("v2"), "production stays on v2");
}

#[tokio::test]
async fn forged_unsigned_replayed_and_malformed_webhooks_queue_nothing() {
    let server = TestServer::start_with(|c| c.build_workers = 0).await;
    let repo = GitRepo::new();
    let secret = link(&server, "site", &repo).await;
    let sha = "a".repeat(40);
    let body = github_push_body(&repo, "main", &sha);
    let good_sig = hub_signature(&secret, body.as_bytes());
    let event = ("x-github-event", "push".to_owned());

    type Case<'a> = (&'a str, Vec<(&'a str, String)>, String, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        ("unsigned", vec![event.clone()], body.clone(), StatusCode::UNAUTHORIZED, "missing"),
        (
            "signed with another secret",
            vec![event.clone(), ("x-hub-signature-256", hub_signature("whsec_wrong", body.as_bytes()))],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "does not match",
        ),
        (
            "body changed after signing",
            vec![event.clone(), ("x-hub-signature-256", good_sig.clone())],
            body.replace("refs/heads/main", "refs/heads/evil"),
            StatusCode::UNAUTHORIZED,
            "does not match",
        ),
        (
            "not JSON",
            vec![event.clone(), ("x-hub-signature-256", good_sig.clone())],
            "{nope".into(),
            StatusCode::BAD_REQUEST,
            "not JSON",
        ),
        (
            "no event header",
            vec![("x-hub-signature-256", good_sig.clone())],
            body.clone(),
            StatusCode::BAD_REQUEST,
            "X-GitHub-Event",
        ),
        // An unknown repository answers as a forged signature does: a
        // stranger cannot tell which repositories are linked.
        (
            "unknown repository",
            vec![event.clone(), ("x-hub-signature-256", good_sig.clone())],
            body.replace(&repo.url(), "https://elsewhere.example/x/y.git")
                .replace(&repo.web_url(), "https://elsewhere.example/x/y"),
            StatusCode::UNAUTHORIZED,
            "does not match the webhook secret of any project linked at this URL",
        ),
    ];
    for (what, headers, body, want, says) in cases {
        let (status, problem) = hook(&server, "/hooks/github", &headers, &body).await;
        assert_eq!(status, want, "{what}: {problem}");
        assert!(problem["detail"].as_str().unwrap_or_default().contains(says), "{what}: {problem}");
    }

    // GitLab: the token must match; Bitbucket: the HMAC.
    let gl = payload("gitlab-push.json", &repo, "main", &sha, &[]);
    let (status, p) = hook(
        &server,
        "/hooks/gitlab",
        &[("x-gitlab-event", "Push Hook".into()), ("x-gitlab-token", "whsec_guess".into())],
        &gl,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");

    // The generic hook refuses a stale timestamp even with a good signature.
    let generic = json!({ "ref": "refs/heads/main", "commit": sha }).to_string();
    let stale =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 3600).to_string();
    let sig = hub_signature(&secret, format!("{stale}.{generic}").as_bytes());
    let (status, p) =
        hook(&server, "/hooks/git/site", &[("x-helix-timestamp", stale), ("x-helix-signature-256", sig)], &generic)
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");

    // A malformed commit id in a signed payload is a 400.
    let bad = github_push_body(&repo, "main", "not-a-sha");
    let headers = [event.clone(), ("x-hub-signature-256", hub_signature(&secret, bad.as_bytes()))];
    let (status, p) = hook(&server, "/hooks/github", &headers, &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");

    let (_, list) = server.call(Method::GET, "/api/v1/projects/site/builds", None).await;
    assert_eq!(list, json!([]), "nothing was queued");
}

#[tokio::test]
async fn pull_and_merge_requests_get_their_own_previews() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    let secret = link(&server, "site", &repo).await;
    repo.write("index.html", "main");
    repo.commit_and_push("main", "main");
    repo.write("index.html", "<p>pr work</p>");
    let sha = repo.commit_and_push("topic", "pr");

    // GitLab merge request, signed with the token.
    let mr = payload(
        "gitlab-merge_request.json",
        &repo,
        "topic",
        &sha,
        &[("NUMBER", "12".into()), ("ACTION", "open".into())],
    );
    let headers = [
        ("x-gitlab-event", "Merge Request Hook".to_owned()),
        ("x-gitlab-token", secret.clone()),
        ("idempotency-key", "gl-1".to_owned()),
    ];
    let (status, queued) = hook(&server, "/hooks/gitlab", &headers, &mr).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["builds"][0]["context"], json!({ "kind": "pull_request", "number": 12, "fork": false }));
    let b = finished(&server, &build_id(&queued)).await;
    assert_eq!(b["state"], "ready", "{b}");
    server.wait_for_host("deploy-preview-12--site.localhost", |body| body.contains("pr work")).await;
    // Merged: the preview goes.
    let merged = payload(
        "gitlab-merge_request.json",
        &repo,
        "topic",
        &sha,
        &[("NUMBER", "12".into()), ("ACTION", "merge".into())],
    );
    let headers = [("x-gitlab-event", "Merge Request Hook".to_owned()), ("x-gitlab-token", secret.clone())];
    let (status, gone) = hook(&server, "/hooks/gitlab", &headers, &merged).await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert!(gone["message"].as_str().unwrap().contains("removed deploy-preview-12--site"), "{gone}");

    // Bitbucket pull request: a 12-character commit hash, HMAC signed.
    let pr = payload("bitbucket-pullrequest.json", &repo, "topic", &sha, &[("NUMBER", "13".into())]);
    let headers = [
        ("x-event-key", "pullrequest:created".to_owned()),
        ("x-request-uuid", "bb-1".to_owned()),
        ("x-hub-signature", hub_signature(&secret, pr.as_bytes())),
    ];
    let (status, queued) = hook(&server, "/hooks/bitbucket", &headers, &pr).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let b = finished(&server, &build_id(&queued)).await;
    assert_eq!(b["state"], "ready", "{b}\n{}", log_text(&server, b["id"].as_str().unwrap()).await);
    assert_eq!(b["commit"], sha.as_str(), "the short hash was resolved to the full commit");
    server.wait_for_host("deploy-preview-13--site.localhost", |body| body.contains("pr work")).await;

    // A GitHub pull request from a fork builds as a preview, never production.
    let fork = [
        ("NUMBER", "14".into()),
        ("ACTION", "opened".into()),
        ("FORK_FULL_NAME", "stranger/x".into()),
        ("FORK_CLONE_URL", "https://git.example.com/stranger/x.git".into()),
    ];
    let gh = payload("github-pull_request.json", &repo, "topic", &sha, &fork);
    let headers = [
        ("x-github-event", "pull_request".to_owned()),
        ("x-github-delivery", "gh-pr-1".to_owned()),
        ("x-hub-signature-256", hub_signature(&secret, gh.as_bytes())),
    ];
    let (status, queued) = hook(&server, "/hooks/github", &headers, &gh).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["builds"][0]["context"]["fork"], true);
    let b = finished(&server, &build_id(&queued)).await;
    assert_eq!(b["state"], "ready", "{b}");
    let log = log_text(&server, b["id"].as_str().unwrap()).await;
    assert!(log.contains("from a fork: no secrets"), "{log}");
    let (status, _) = body_at(&server, "site.localhost", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "previews never become production");
}

#[tokio::test]
async fn a_failing_build_records_its_step_and_leaves_production_alone() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    link(&server, "site", &repo).await;
    repo.write("index.html", "good");
    repo.commit_and_push("main", "good");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", Some(json!({}))).await;
    assert_eq!(finished(&server, b["id"].as_str().unwrap()).await["state"], "ready");

    repo.write("helix.toml", "[build]\ncommand = \"echo about to fail; exit 3\"\npublish = \".\"\n");
    repo.commit_and_push("main", "bad");
    let (status, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{b}");
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "error", "{b}");
    assert_eq!(b["failed_step"], "build");
    assert_eq!(b["exit_status"], 3);
    // Its deployment is recorded in state `error`: never served, never
    // listed among the ready ones.
    assert_eq!(b["deployment_url"], Value::Null);
    let failed = b["deployment"].as_str().expect("the failed build's deployment").to_owned();
    let (status, d) = server.call(Method::GET, &format!("/api/v1/deployments/{failed}"), None).await;
    assert_eq!((status, d["state"].as_str()), (StatusCode::OK, Some("error")), "{d}");
    let (_, ready) = server.call(Method::GET, "/api/v1/projects/site/deployments", None).await;
    assert!(ready.as_array().unwrap().iter().all(|d| d["id"] != failed.as_str()), "{ready}");
    assert_eq!(b["attempts"], 1, "a failing build is not retried");
    let log = log_text(&server, b["id"].as_str().unwrap()).await;
    assert!(log.contains("about to fail") && log.contains("exited with status 3"), "{log}");
    assert_eq!(body_at(&server, "site.localhost", "/").await.1, "good");

    // Output problems are named.
    for (toml, says) in [
        ("[build]\ncommand = \"true\"\npublish = \"missing\"\n", "does not exist"),
        ("[build]\ncommand = \"mkdir -p out && ln -s /etc/passwd out/pw\"\npublish = \"out\"\n", "outside"),
        ("[build]\ncommand = \"ln -s /etc out\"\npublish = \"out\"\n", "outside the build"),
        ("[build]\npublish = \"../x\"\ncommand = \"true\"\n", "inside the repository"),
    ] {
        repo.write("helix.toml", toml);
        repo.commit_and_push("main", says);
        let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
        let b = finished(&server, b["id"].as_str().unwrap()).await;
        assert_eq!(b["state"], "error", "{toml}: {b}");
        assert!(b["error"].as_str().unwrap().contains(says), "{toml}: {b}");
    }
    assert_eq!(body_at(&server, "site.localhost", "/").await.1, "good");

    // A repository whose symlink leads out of it is refused before the
    // host reads anything through it.
    repo.write("helix.toml", "[build]\nbase = \"root\"\npublish = \"etc\"\n");
    std::os::unix::fs::symlink("/", repo.work.join("root")).unwrap();
    repo.commit_and_push("main", "escape");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!((b["state"].as_str(), b["failed_step"].as_str()), (Some("error"), Some("fetch")), "{b}");
    assert!(b["error"].as_str().unwrap().contains("points outside"), "{b}");
    assert_eq!(body_at(&server, "site.localhost", "/").await.1, "good");

    // Credentials do not go in the repository URL.
    let (status, p) = server
        .call(
            Method::PUT,
            "/api/v1/projects/site/link",
            Some(json!({ "repo": "https://me:ghp_x@git.example.com/a.git" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("git credential"), "{p}");
}

#[tokio::test]
async fn hostile_builds_are_stopped_and_leave_nothing_running() {
    let server = TestServer::start_with(|c| {
        c.build.timeout = Duration::from_secs(15);
        c.build.max_log_bytes = 64 * 1024;
        c.build.limits.max_file_bytes = 8 << 20;
        c.build.limits.max_tasks = 256;
        c.build.limits.max_workspace_bytes = 60 << 20;
        c.build.limits.memory_bytes = 256 << 20;
        c.api.max_files = 50;
    })
    .await;
    let repo = GitRepo::new();
    link(&server, "site", &repo).await;
    repo.write("index.html", "x");

    let run = |command: &str| {
        repo.write("helix.toml", &format!("[build]\ncommand = '''{command}'''\npublish = \".\"\n"));
        repo.commit_and_push("main", command)
    };

    // Gigabytes of output: the log is capped and marked truncated.
    run("yes helix-flood | head -c 300000000; echo done");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["log_truncated"], true, "{b}");
    let log = log_text(&server, b["id"].as_str().unwrap()).await;
    assert!(log.len() < 200 * 1024, "the stored log is capped: {} bytes", log.len());
    assert!(log.contains("[log truncated"), "{}", &log[log.len() - 300..]);

    // A file bigger than the limit: the write fails, the build fails.
    run("head -c 20000000 /dev/zero > big.bin");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "error", "{b}");

    // Memory past the limit: the step is killed and the log says why.
    run("node -e 'const a = []; for (;;) a.push(Buffer.alloc(1 << 24, 1))'");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "error", "{b}");
    assert!(b["error"].as_str().unwrap().contains("out of memory"), "{b}");

    // Many files under the size limit fill the workspace past its limit.
    run("for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14; do head -c 6000000 /dev/zero > fill$i.bin; done; sleep 30");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "error", "{b}");
    assert!(b["error"].as_str().unwrap().contains("workspace grew"), "{b}");

    // An output over the server's limits is refused by name.
    repo.write("helix.toml", "[build]\ncommand = 'mkdir -p out && for i in $(seq 1 80); do echo $i > out/f$i.html; done'\npublish = \"out\"\n");
    repo.commit_and_push("main", "many files");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!((b["state"].as_str(), b["failed_step"].as_str()), (Some("error"), Some("publish")), "{b}");
    assert!(b["error"].as_str().unwrap().contains("limit"), "{b}");

    // A fork bomb hits the process limit and then the time limit.
    let started = Instant::now();
    run("echo helix-bomb-marker; bomb() { bomb | bomb & }; bomb; sleep 100");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "error", "{b}");
    assert!(started.elapsed() < Duration::from_secs(60));

    // Past the time limit: killed and reported.
    run("echo sleeping; sleep 600");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "error", "{b}");
    assert!(b["error"].as_str().unwrap().contains("time limit"), "{b}");

    // Nothing of any of them is left running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    for marker in ["helix-flood", "sleep 600", "helix-bomb-marker"] {
        assert!(!ps.lines().any(|l| l.contains(marker) && !l.contains("ps -eo")), "{marker} still runs:\n{ps}");
    }
    // And the server still builds; a step sees neither the data directory
    // (state, keys, other projects) nor root-only files, and cannot write
    // the system.
    let data = server.data_dir.path().display().to_string();
    run(&format!(
        "test ! -e {data}/admin.token && test ! -e {data}/secret.key && test ! -e {data}/helix.db \
         && ! cat /etc/shadow 2>/dev/null && ! touch /usr/x 2>/dev/null && test \"$(id -u)\" != 0 \
         && test \"$(ls /proc | grep -c '^[0-9]')\" -lt 10 \
         && ! timeout 3 bash -c 'echo > /dev/tcp/127.0.0.1/5432' 2>/dev/null \
         && ! timeout 3 bash -c 'echo > /dev/tcp/10.0.2.2/5432' 2>/dev/null \
         && echo isolated-ok"
    ));
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    let log = log_text(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "ready", "{b}\n{log}");
    assert!(log.contains("isolated-ok"), "{log}");
}

/// A build's network reaches the outside, but none of this machine: not a
/// service on its own non-loopback address, not its loopback, not the
/// private ranges or the metadata address. Its `/tmp` is writable even as
/// `nobody`.
#[tokio::test]
async fn builds_cannot_reach_this_machine_and_have_a_writable_tmp() {
    let Some(own) = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
    else {
        eprintln!("SKIPPED: this machine has no non-loopback IPv4 address");
        return;
    };
    // A service on the machine's own address, counting who reaches it.
    let listener = tokio::net::TcpListener::bind((own, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = tokio::io::AsyncWriteExt::write_all(&mut conn, b"reachable\n").await;
        }
    });
    // The listener answers from here, so a refusal inside is the sandbox's.
    assert!(tokio::net::TcpStream::connect((own, port)).await.is_ok());
    tokio::time::sleep(Duration::from_millis(50)).await;
    reached.store(0, std::sync::atomic::Ordering::SeqCst);

    let server = TestServer::start().await;
    let repo = GitRepo::new();
    link(&server, "site", &repo).await;
    repo.write("index.html", "x");
    let refused = |addr: String| format!("! timeout 5 bash -c 'echo > /dev/tcp/{addr}' 2>/dev/null");
    let api = server.running.api_addr.port();
    let command = [
        refused(format!("{own}/{port}")),
        refused(format!("{own}/{api}")),
        refused(format!("127.0.0.1/{api}")),
        refused("169.254.169.254/80".into()),
        refused("10.255.255.53/53".into()),
        refused("192.168.1.1/80".into()),
        "t=$(mktemp) && echo tmp > \"$t\" && d=$(mktemp -d) && test -w /tmp && test -d \"$d\"".into(),
        "echo confined-ok".into(),
    ]
    .join(" && ");
    repo.write("helix.toml", &format!("[build]\ncommand = '''{command}'''\npublish = \".\"\n"));
    repo.commit_and_push("main", "probe");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    let log = log_text(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "ready", "{b}\n{log}");
    assert!(log.contains("confined-ok"), "{log}");
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0, "the build reached {own}:{port}");
}

#[tokio::test]
async fn a_newer_push_cancels_the_older_build_of_its_branch() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    let secret = link(&server, "site", &repo).await;
    repo.write("index.html", "slow");
    repo.write("helix.toml", "[build]\ncommand = \"echo slow-build-marker; sleep 120\"\npublish = \".\"\n");
    let slow = repo.commit_and_push("main", "slow");
    let (_, first) = github_push(&server, &repo, &secret, "main", &slow, "d-slow").await;
    let first = build_id(&first);
    // Wait until it runs.
    for _ in 0..300 {
        if log_text(&server, &first).await.contains("slow-build-marker") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    repo.remove("helix.toml");
    repo.write("index.html", "fast");
    let fast = repo.commit_and_push("main", "fast");
    let (_, second) = github_push(&server, &repo, &secret, "main", &fast, "d-fast").await;
    let b = finished(&server, &first).await;
    assert_eq!(b["state"], "canceled", "{b}");
    let b = finished(&server, &build_id(&second)).await;
    assert_eq!(b["state"], "ready", "{b}");
    server.wait_for_host("site.localhost", |body| body == "fast").await;
    // The canceled step is killed (its sandbox torn down a moment after
    // the cancel lands, so look for a while on a busy machine).
    let killed = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
        if !String::from_utf8_lossy(&ps.stdout).contains("sleep 120") {
            break;
        }
        assert!(Instant::now() < killed, "the canceled build's step was never killed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Canceling by hand.
    let (status, p) = server.call(Method::POST, &format!("/api/v1/builds/{first}/cancel"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
}

#[tokio::test]
async fn queued_builds_survive_a_restart() {
    let server = TestServer::start_with(|c| c.build_workers = 0).await;
    let repo = GitRepo::new();
    link(&server, "site", &repo).await;
    repo.write("index.html", "durable");
    repo.commit_and_push("main", "v1");
    let (status, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, b) = server.call(Method::GET, &format!("/api/v1/builds/{id}"), None).await;
    assert_eq!(b["state"], "queued", "no worker: still queued");

    let mut server = server;
    server.config.build_workers = 1;
    let server = server.restart().await;
    let b = finished(&server, &id).await;
    assert_eq!(b["state"], "ready", "{b}");
    server.wait_for_host("site.localhost", |body| body == "durable").await;

    // A branch preview is served again after a restart.
    repo.write("index.html", "preview survives");
    repo.commit_and_push("keep", "keep");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", Some(json!({ "ref": "keep" }))).await;
    assert_eq!(finished(&server, b["id"].as_str().unwrap()).await["state"], "ready");
    let server = server.restart().await;
    server.wait_for_host("keep--site.localhost", |body| body == "preview survives").await;
    repo.checkout_main();

    // A build cut off mid-step by a shutdown is taken up again after it.
    repo.write("helix.toml", "[build]\ncommand = \"sleep 2; echo resumed\"\npublish = \".\"\n");
    repo.write("index.html", "after restart");
    repo.commit_and_push("main", "v2");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        let (_, b) = server.call(Method::GET, &format!("/api/v1/builds/{id}"), None).await;
        if b["state"] == "building" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = server.restart().await;
    let b = finished(&server, &id).await;
    assert_eq!(b["state"], "ready", "{b}");
    assert_eq!(b["attempts"], 2, "{b}");
    let abandoned = server.data_dir.path().join("builds").join(format!("{id}-1"));
    assert!(!abandoned.exists(), "the cut-off attempt's workspace was cleared at start");
    server.wait_for_host("site.localhost", |body| body == "after restart").await;
}

#[tokio::test]
async fn logs_stream_as_the_build_prints_them() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    link(&server, "site", &repo).await;
    repo.write("index.html", "x");
    repo.write(
        "helix.toml",
        "[build]\ncommand = \"echo tick-1; sleep 1; echo tick-2; sleep 1; echo tick-3\"\npublish = \".\"\n\
         [build.environment]\nGREETING = \"hello from helix.toml\"\n",
    );
    repo.commit_and_push("main", "ticks");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/site/builds", None).await;
    let id = b["id"].as_str().unwrap().to_owned();

    let resp = server
        .http
        .get(server.api(&format!("/api/v1/builds/{id}/logs?follow=1")))
        .bearer_auth(server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut resp = resp;
    let mut text = String::new();
    let mut seen_tick1_at = None;
    let mut seen_end_at = None;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if seen_tick1_at.is_none() && text.contains("tick-1") {
            seen_tick1_at = Some(Instant::now());
        }
        if text.contains("event: end") {
            seen_end_at = Some(Instant::now());
            break;
        }
    }
    let (tick1, end) = (seen_tick1_at.expect("tick-1 arrived"), seen_end_at.expect("the stream ended"));
    assert!(end - tick1 >= Duration::from_millis(1500), "lines arrived as printed, not at the end:\n{text}");
    assert!(text.contains("tick-3") && text.contains("\"state\":\"ready\""), "{text}");
    let tick3 = text.find("tick-3").unwrap();
    assert!(text[..tick3].contains("tick-2"), "in order");
}

#[tokio::test]
async fn a_hugo_site_builds_and_its_routing_files_apply() {
    if std::process::Command::new("hugo").arg("version").output().is_err() {
        panic!("hugo is not installed: .ci/run installs it (apt-get install hugo)");
    }
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    link(&server, "blog", &repo).await;
    repo.write(
        "hugo.toml",
        "baseURL = '/'\ntitle = 'Helix Hugo'\ndisableKinds = ['taxonomy', 'term', 'RSS', 'sitemap']\n",
    );
    repo.write("layouts/index.html", "<h1>{{ .Site.Title }}</h1>{{ range .Site.RegularPages }}<a href=\"{{ .RelPermalink }}\">{{ .Title }}</a>{{ end }}");
    repo.write("layouts/_default/single.html", "<article>{{ .Content }}</article>");
    repo.write("content/posts/first.md", "---\ntitle: First\n---\nHello from **Hugo**.\n");
    repo.write("static/_redirects", "/old /posts/first/ 301\n");
    repo.commit_and_push("main", "hugo");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/blog/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "ready", "{b}\n{}", log_text(&server, b["id"].as_str().unwrap()).await);
    assert!(b["detected"].as_str().unwrap().starts_with("hugo"), "{b}");
    server.wait_for_host("blog.localhost", |body| body.contains("Helix Hugo")).await;
    let (_, post) = body_at(&server, "blog.localhost", "/posts/first/").await;
    assert!(post.contains("<strong>Hugo</strong>"), "{post}");
    let resp = server.get_edge("blog.localhost", "/old").await;
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
}

#[tokio::test]
async fn a_vite_app_builds_with_npm_and_the_second_build_reuses_the_cache() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    link(&server, "app", &repo).await;
    repo.copy_dir(&helix_testkit::git::fixture_dir("vite-app"));
    repo.commit_and_push("main", "vite");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/app/builds", None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let b = finished(&server, &id).await;
    let log = log_text(&server, &id).await;
    assert_eq!(b["state"], "ready", "{b}\n{log}");
    assert!(b["detected"].as_str().unwrap().starts_with("vite with npm"), "{b}");
    assert!(log.contains("$ npm ci"), "{log}");
    server.wait_for_host("app.localhost", |body| body.contains("HelixStack Vite fixture")).await;
    let (_, html) = body_at(&server, "app.localhost", "/").await;
    let js = html.split("src=\"").nth(1).and_then(|s| s.split('"').next()).expect("a script tag");
    let (status, script) = body_at(&server, "app.localhost", js).await;
    assert_eq!(status, StatusCode::OK);
    assert!(script.contains("built by vite"), "{script}");

    // Same lockfile: dependencies come from the cache, the install is skipped.
    repo.write("src/main.js", "document.body.textContent = 'second build';\n");
    repo.commit_and_push("main", "again");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/app/builds", None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let b = finished(&server, &id).await;
    let log = log_text(&server, &id).await;
    assert_eq!(b["state"], "ready", "{b}\n{log}");
    assert!(log.contains("restored from the cache") && !log.contains("$ npm ci"), "{log}");
}

#[tokio::test]
async fn a_push_builds_with_postgres_as_the_store() {
    let Some(url) = helix_testkit::fresh_postgres("builds_push").await else { return };
    let server = TestServer::start_with(|c| c.database_url = Some(url)).await;
    let repo = GitRepo::new();
    let secret = link(&server, "pg-site", &repo).await;
    repo.write("index.html", "from postgres");
    let sha = repo.commit_and_push("main", "pg");
    let (status, queued) = github_push(&server, &repo, &secret, "main", &sha, "pg-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let b = finished(&server, &build_id(&queued)).await;
    assert_eq!(b["state"], "ready", "{b}");
    server.wait_for_host("pg-site.localhost", |body| body == "from postgres").await;
    let (status, again) = github_push(&server, &repo, &secret, "main", &sha, "pg-1").await;
    assert_eq!((status, &again["duplicate"]), (StatusCode::OK, &json!(true)));
}

#[tokio::test]
async fn function_sources_travel_with_the_deployment_but_are_not_served() {
    // No grace period: GC deletes every blob no manifest names.
    let server = TestServer::start_with(|c| c.api.gc_grace_secs = 0).await;
    let repo = GitRepo::new();
    link(&server, "fns", &repo).await;
    let source = "export default async () => new Response('hi from a function');\n";
    repo.write("netlify.toml", "[build]\npublish = \"public\"\n");
    repo.write("public/index.html", "site");
    repo.write("netlify/functions/hello.mjs", source);
    repo.commit_and_push("main", "fns");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/fns/builds", None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let b = finished(&server, &id).await;
    let log = log_text(&server, &id).await;
    assert_eq!(b["state"], "ready", "{b}\n{log}");
    assert!(log.contains("function sources: netlify/functions") && log.contains("kept 1 function source"), "{log}");
    server.wait_for_host("fns.localhost", |body| body == "site").await;
    let (status, _) = body_at(&server, "fns.localhost", "/netlify/functions/hello.mjs").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "function sources are not served");
    let hex = helix_core::Digest::of(source.as_bytes()).to_hex();
    let blob = server.data_dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex);
    assert_eq!(std::fs::read_to_string(blob).unwrap(), source, "the source is stored by digest");
    // GC keeps it: the manifest names it.
    let (status, gc) = server.call(Method::POST, "/api/v1/gc", None).await;
    assert_eq!(status, StatusCode::OK, "{gc}");
    let blob = server.data_dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex);
    assert!(blob.exists(), "GC kept the function source");
}

#[tokio::test]
async fn per_project_and_generic_hooks_build() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    let secret = link(&server, "hooked", &repo).await;
    repo.write("index.html", "via the generic hook");
    let sha = repo.commit_and_push("main", "generic");

    // Any host: HMAC over "<timestamp>.<body>".
    let body = json!({ "ref": "refs/heads/main", "commit": sha }).to_string();
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let sig = hub_signature(&secret, format!("{ts}.{body}").as_bytes());
    let headers = [("x-helix-timestamp", ts), ("x-helix-signature-256", sig)];
    let (status, queued) = hook(&server, "/hooks/git/hooked", &headers, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["builds"][0]["trigger"], "git");
    assert_eq!(finished(&server, &build_id(&queued)).await["state"], "ready");
    server.wait_for_host("hooked.localhost", |b| b == "via the generic hook").await;
    // The same signed delivery again, within its five minutes: refused,
    // and nothing more is queued.
    let (status, replay) = hook(&server, "/hooks/git/hooked", &headers, &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{replay}");
    assert!(replay["detail"].as_str().unwrap().contains("replay is refused"), "{replay}");
    let (_, builds) = server.call(Method::GET, "/api/v1/projects/hooked/builds", None).await;
    assert_eq!(builds.as_array().map(Vec::len), Some(1), "{builds}");

    // GitHub to the project's own path: the payload's repository URL may
    // be anything (a mirror), the path names the project.
    repo.write("index.html", "via the project path");
    let sha = repo.commit_and_push("main", "path");
    let gh = github_push_body(&repo, "main", &sha)
        .replace(&repo.url(), "https://mirror.example/me/x.git")
        .replace(&repo.web_url(), "https://mirror.example/me/x");
    let headers = [
        ("x-github-event", "push".to_owned()),
        ("x-github-delivery", "p-1".to_owned()),
        ("x-hub-signature-256", hub_signature(&secret, gh.as_bytes())),
    ];
    let (status, queued) = hook(&server, "/hooks/github/hooked", &headers, &gh).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(finished(&server, &build_id(&queued)).await["state"], "ready");
    server.wait_for_host("hooked.localhost", |b| b == "via the project path").await;
    // A project that does not exist (or is not linked) answers as a bad
    // signature does.
    let (status, unknown) = hook(&server, "/hooks/github/not-linked", &headers, &gh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{unknown}");
    let forged =
        [headers[0].clone(), headers[1].clone(), ("x-hub-signature-256", hub_signature("wrong", gh.as_bytes()))];
    let (status, bad_sig) = hook(&server, "/hooks/github/hooked", &forged, &gh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad_sig}");
    assert_eq!(unknown["detail"], bad_sig["detail"], "the same answer: no project enumeration");
}

#[tokio::test]
async fn private_repositories_clone_with_the_stored_token_which_is_never_shown() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    repo.write("index.html", "private content");
    repo.commit_and_push("main", "private");
    let token = "ghp_TopSecretToken123";
    let host = helix_testkit::git::PrivateGitHost::start(repo.bare.parent().unwrap(), token).await;
    let url = host.url("origin.git");

    // Without the token: the fetch is refused, the build fails in `fetch`.
    let (status, _) = server.call(Method::PUT, "/api/v1/projects/closed/link", Some(json!({ "repo": url }))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, b) = server.call(Method::POST, "/api/v1/projects/closed/builds", None).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!((b["state"].as_str(), b["failed_step"].as_str()), (Some("error"), Some("fetch")), "{b}");

    // With it: cloned, built, served; the token appears nowhere.
    let (status, link) = server
        .call(Method::PUT, "/api/v1/projects/private/link", Some(json!({ "repo": url, "git_credential": token })))
        .await;
    assert_eq!(status, StatusCode::OK, "{link}");
    assert_eq!(link["has_git_credential"], true);
    assert!(!link.to_string().contains(token));
    let (_, b) = server.call(Method::POST, "/api/v1/projects/private/builds", None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let b = finished(&server, &id).await;
    let log = log_text(&server, &id).await;
    assert_eq!(b["state"], "ready", "{b}\n{log}");
    server.wait_for_host("private.localhost", |body| body == "private content").await;
    assert!(host.seen.lock().unwrap().iter().any(|h| h.starts_with("Basic ")), "the token was sent");
    let (_, shown) = server.call(Method::GET, "/api/v1/projects/private/link", None).await;
    for text in [log, b.to_string(), shown.to_string()] {
        assert!(!text.contains(token), "{text}");
    }
    for file in ["helix.db", "helix.db-wal"] {
        let bytes = std::fs::read(server.data_dir.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "{file}: stored sealed, not in the clear");
    }
}

#[tokio::test]
async fn gitlab_and_bitbucket_pushes_build_their_branches() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    let secret = link(&server, "multi", &repo).await;
    repo.write("index.html", "gitlab main");
    let sha = repo.commit_and_push("main", "gl");
    let body = payload("gitlab-push.json", &repo, "main", &sha, &[]);
    let headers = [
        ("x-gitlab-event", "Push Hook".to_owned()),
        ("x-gitlab-token", secret.clone()),
        ("x-gitlab-event-uuid", "gl-push-1".to_owned()),
    ];
    let (status, queued) = hook(&server, "/hooks/gitlab", &headers, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["builds"][0]["context"]["kind"], "production");
    assert_eq!(finished(&server, &build_id(&queued)).await["state"], "ready");
    server.wait_for_host("multi.localhost", |b| b == "gitlab main").await;

    repo.write("index.html", "bitbucket branch");
    let sha = repo.commit_and_push("bb-work", "bb");
    let body = payload("bitbucket-push.json", &repo, "bb-work", &sha, &[]);
    let headers = [
        ("x-event-key", "repo:push".to_owned()),
        ("x-request-uuid", "bb-push-1".to_owned()),
        ("x-hub-signature", hub_signature(&secret, body.as_bytes())),
    ];
    let (status, queued) = hook(&server, "/hooks/bitbucket", &headers, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(finished(&server, &build_id(&queued)).await["state"], "ready");
    server.wait_for_host("bb-work--multi.localhost", |b| b == "bitbucket branch").await;
    assert!(body_at(&server, "multi.localhost", "/").await.1 == "gitlab main");
}

#[tokio::test]
async fn one_worker_runs_one_build_at_a_time() {
    let server = TestServer::start_with(|c| c.build_workers = 1).await;
    let repo = GitRepo::new();
    link(&server, "serial", &repo).await;
    repo.write("index.html", "x");
    repo.write("helix.toml", "[build]\ncommand = \"sleep 1\"\npublish = \".\"\n");
    repo.commit_and_push("main", "a");
    repo.commit_and_push("other", "b");
    let (_, a) = server.call(Method::POST, "/api/v1/projects/serial/builds", None).await;
    let (_, b) = server.call(Method::POST, "/api/v1/projects/serial/builds", Some(json!({ "ref": "other" }))).await;
    let a = finished(&server, a["id"].as_str().unwrap()).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!((a["state"].as_str(), b["state"].as_str()), (Some("ready"), Some("ready")), "{a}\n{b}");
    assert!(b["started_at_ms"].as_i64() >= a["finished_at_ms"].as_i64(), "the second waited: {a}\n{b}");
}

#[tokio::test]
async fn infrastructure_failures_are_retried_then_reported() {
    let server = TestServer::start().await;
    // The git host cannot be reached: not the build's fault, so retried.
    let (status, p) = server
        .call(
            Method::PUT,
            "/api/v1/projects/away/link",
            Some(json!({ "repo": "https://nonexistent.invalid/me/x.git" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/away/builds", None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let b = finished(&server, &id).await;
    assert_eq!(b["state"], "error", "{b}");
    assert_eq!(b["attempts"], 3, "retried up to the limit: {b}");
    assert!(b["error"].as_str().unwrap().contains("Could not resolve host"), "{b}");
    let log = log_text(&server, &id).await;
    assert_eq!(log.matches("infrastructure failure").count(), 3, "every attempt's log is kept:\n{log}");
}

#[tokio::test]
async fn private_repositories_clone_over_ssh_with_a_deploy_key() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    repo.write("index.html", "over ssh");
    repo.commit_and_push("main", "ssh");
    let host = helix_testkit::git::SshGitHost::start();
    let body = json!({ "repo": host.url(&repo.bare), "git_credential": host.private_key });
    let (status, link) = server.call(Method::PUT, "/api/v1/projects/viassh/link", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/viassh/builds", None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let b = finished(&server, &id).await;
    let log = log_text(&server, &id).await;
    assert_eq!(b["state"], "ready", "{b}\n{log}");
    server.wait_for_host("viassh.localhost", |body| body == "over ssh").await;
    let key_body = host.private_key.lines().nth(1).unwrap();
    assert!(!log.contains(key_body), "the key never reaches the log");
}

/// A git build of a project with functions: its TypeScript function and
/// its Netlify function answer through the edge, its sources are no files.
#[tokio::test]
async fn a_built_projects_functions_answer_through_the_edge() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    link(&server, "fnsite", &repo).await;
    repo.write("helix.toml", "[build]\ncommand = \"mkdir -p out && echo built > out/index.html\"\npublish = \"out\"\n");
    repo.write(
        "api/who.ts",
        "export default function (req: any, res: any) { res.send('built ' + (req.query.n ?? '')) }",
    );
    repo.write("netlify/functions/ping.mjs", "export default async () => new Response('pong')");
    repo.commit_and_push("main", "functions");
    let (_, b) = server.call(Method::POST, "/api/v1/projects/fnsite/builds", Some(json!({}))).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "ready", "{b}");
    let log = log_text(&server, b["id"].as_str().unwrap()).await;
    assert!(log.contains("function source files"), "{log}");
    assert_eq!(body_at(&server, "fnsite.localhost", "/").await, (StatusCode::OK, "built\n".into()));
    assert_eq!(body_at(&server, "fnsite.localhost", "/api/who?n=1").await, (StatusCode::OK, "built 1".into()));
    assert_eq!(body_at(&server, "fnsite.localhost", "/.netlify/functions/ping").await, (StatusCode::OK, "pong".into()));
}

#[tokio::test]
async fn builds_get_the_project_variables_with_secrets_masked_and_forks_get_none() {
    let server = TestServer::start().await;
    let repo = GitRepo::new();
    let secret = link(&server, "envsite", &repo).await;
    let vars = [
        ("PLAIN", json!({ "value": "plain-value" })),
        ("TOKEN", json!({ "value": "tok-s3cret-123", "secret": true })),
        ("ONLY_PROD", json!({ "value": "p", "environments": ["production"] })),
    ];
    for (name, body) in vars {
        let (status, b) = server.call(Method::PUT, &format!("/api/v1/projects/envsite/env/{name}"), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{b}");
    }
    let command = r#"echo "plain=$PLAIN token=$TOKEN prod=$ONLY_PROD" > index.html; echo "printed $TOKEN""#;
    repo.write("helix.toml", &format!("[build]\ncommand = '{command}'\npublish = \".\"\n"));
    let sha = repo.commit_and_push("main", "env");
    let (status, queued) = github_push(&server, &repo, &secret, "main", &sha, "env-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let b = finished(&server, &build_id(&queued)).await;
    let log = log_text(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(b["state"], "ready", "{b}\n{log}");
    server.wait_for_host("envsite.localhost", |body| body.contains("plain=plain-value")).await;
    let (_, page) = body_at(&server, "envsite.localhost", "/").await;
    assert_eq!(page.trim(), "plain=plain-value token=tok-s3cret-123 prod=p", "the build saw them all");
    assert!(log.contains("printed ********") && !log.contains("tok-s3cret-123"), "the secret is masked: {log}");

    // A fork's pull request: no variables at all.
    let fork = [
        ("NUMBER", "21".into()),
        ("ACTION", "opened".into()),
        ("FORK_FULL_NAME", "stranger/x".into()),
        ("FORK_CLONE_URL", "https://git.example.com/stranger/x.git".into()),
    ];
    let gh = payload("github-pull_request.json", &repo, "main", &sha, &fork);
    let headers = [
        ("x-github-event", "pull_request".to_owned()),
        ("x-github-delivery", "env-pr".to_owned()),
        ("x-hub-signature-256", hub_signature(&secret, gh.as_bytes())),
    ];
    let (status, queued) = hook(&server, "/hooks/github", &headers, &gh).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let b = finished(&server, &build_id(&queued)).await;
    assert_eq!(b["state"], "ready", "{b}");
    server.wait_for_host("deploy-preview-21--envsite.localhost", |body| body.contains("plain=")).await;
    let (_, page) = body_at(&server, "deploy-preview-21--envsite.localhost", "/").await;
    assert_eq!(page.trim(), "plain= token= prod=", "a fork's build sees none");
}

/// A git host's status API as each documents it, on loopback: records
/// every request; answers 201 to a well-formed status, 403 to the token
/// `ghp_readonly`, 404 to any other path.
#[derive(Clone, Default)]
struct StatusHost {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, reqwest::header::HeaderMap, Value)>>>,
}

impl StatusHost {
    async fn start() -> (String, StatusHost) {
        async fn record(
            axum::extract::State(host): axum::extract::State<StatusHost>,
            uri: axum::http::Uri,
            headers: reqwest::header::HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let path = uri.path().to_owned();
            let segments: Vec<&str> = path.split('/').collect();
            let shaped = matches!(segments.as_slice(), ["", "gh", "repos", _, _, "statuses", _])
                || matches!(segments.as_slice(), ["", "api", "v4", "projects", _, "statuses", _])
                || matches!(segments.as_slice(), ["", "2.0", "repositories", _, _, "commit", _, "statuses", "build"]);
            let readonly = headers.get("authorization").is_some_and(|v| v == "Bearer ghp_readonly");
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            host.seen.lock().unwrap().push((path, headers, json));
            match (shaped, readonly) {
                (true, false) => StatusCode::CREATED,
                (true, true) => StatusCode::FORBIDDEN,
                _ => StatusCode::NOT_FOUND,
            }
        }
        let host = StatusHost::default();
        let app = axum::Router::new().fallback(record).with_state(host.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, host)
    }

    /// The states posted for `sha`, in order.
    fn states(&self, sha: &str) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(path, ..)| path.contains(sha))
            .map(|(_, _, body)| body["state"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

/// Links `project` to `repo` with a token and the status API at `api`.
async fn link_with_status(server: &TestServer, project: &str, repo: &GitRepo, token: &str, api: &str) -> String {
    let body = json!({ "repo": repo.url(), "git_credential": token, "status_api": api });
    let (status, link) = server.call(Method::PUT, &format!("/api/v1/projects/{project}/link"), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    assert_eq!(link["status_api"], api);
    link["webhook_secret"].as_str().unwrap().to_owned()
}

/// Polls the build until its commit status says `want`.
async fn commit_status(server: &TestServer, id: &str, want: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, b) = server.call(Method::GET, &format!("/api/v1/builds/{id}"), None).await;
        if b["commit_status"].as_str().is_some_and(|s| s.contains(want)) {
            return b;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "commit status never said {want:?}: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the host was last told `last`; before it, at most one
/// `pending` (a fast build may skip it: each post tells the state it
/// finds), and nothing twice.
async fn wait_states(host: &StatusHost, sha: &str, pending: &str, last: &str) {
    let started = Instant::now();
    loop {
        let states = host.states(sha);
        if states.last().map(String::as_str) == Some(last) {
            assert!(states == [last] || states == [pending, last], "{sha}: {states:?}");
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{sha}: saw {states:?}, want {pending}, {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn git_hosts_hear_how_each_build_went_in_their_own_api_shape() {
    let (api, host) = StatusHost::start().await;
    let server = TestServer::start_with(|c| c.api.webhook_allow = vec!["127.0.0.0/8".into()]).await;

    // GitHub: a branch preview, pending then success with the preview URL.
    let repo = GitRepo::new();
    let secret = link_with_status(&server, "ghs", &repo, "ghp_statusToken1", &format!("{api}/gh")).await;
    repo.write("index.html", "preview");
    let sha = repo.commit_and_push("feat", "feat");
    let (_, queued) = github_push(&server, &repo, &secret, "feat", &sha, "st-1").await;
    let b = finished(&server, &build_id(&queued)).await;
    assert_eq!(b["state"], "ready", "{b}");
    wait_states(&host, &sha, "pending", "success").await;
    let b = commit_status(&server, b["id"].as_str().unwrap(), "github success: posted (201)").await;
    // The deploy is in the audit log as the build's doing, not a user's.
    let (_, audit) = server.call(Method::GET, "/api/v1/audit?project=ghs", None).await;
    let deploy = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "deploy").cloned();
    assert_eq!(deploy.map(|e| e["actor"].clone()), Some(json!(format!("build {}", b["id"].as_str().unwrap()))));
    {
        let seen = host.seen.lock().unwrap();
        let (path, headers, body) = seen.iter().rfind(|(p, ..)| p.contains(&sha)).unwrap();
        assert!(path.starts_with("/gh/repos/") && path.ends_with(&format!("/statuses/{sha}")), "{path}");
        assert_eq!(headers["authorization"], "Bearer ghp_statusToken1");
        assert_eq!(body["target_url"], b["url"], "the preview URL: {body}");
        assert_eq!(body["context"], "helixstack/deploy");
    }

    // GitLab: a failing build, running then failed, with the error.
    let repo = GitRepo::new();
    let secret = link_with_status(&server, "gls", &repo, "glpat-statusToken", &format!("{api}/api/v4")).await;
    repo.write("helix.toml", "[build]\ncommand = \"exit 3\"\npublish = \".\"\n");
    let sha = repo.commit_and_push("main", "bad");
    let body = payload("gitlab-push.json", &repo, "main", &sha, &[]);
    let headers = [
        ("x-gitlab-event", "Push Hook".to_owned()),
        ("x-gitlab-token", secret),
        ("x-gitlab-event-uuid", "gl-st-1".to_owned()),
    ];
    let (status, queued) = hook(&server, "/hooks/gitlab", &headers, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(finished(&server, &build_id(&queued)).await["state"], "error");
    wait_states(&host, &sha, "running", "failed").await;
    {
        let seen = host.seen.lock().unwrap();
        let (path, headers, body) = seen.iter().rfind(|(p, ..)| p.contains(&sha)).unwrap();
        assert!(path.starts_with("/api/v4/projects/") && path.contains("%2F"), "the whole path, encoded: {path}");
        assert_eq!(headers["private-token"], "glpat-statusToken");
        assert!(body["description"].as_str().unwrap().contains("failed"), "{body}");
    }

    // Bitbucket: an app password goes as basic auth; the URL is always given.
    let repo = GitRepo::new();
    let secret = link_with_status(&server, "bbs", &repo, "me:app-password", &format!("{api}/2.0")).await;
    repo.write("index.html", "bb");
    let sha = repo.commit_and_push("main", "bb");
    let body = payload("bitbucket-push.json", &repo, "main", &sha, &[]);
    let headers = [
        ("x-event-key", "repo:push".to_owned()),
        ("x-request-uuid", "bb-st-1".to_owned()),
        ("x-hub-signature", hub_signature(&secret, body.as_bytes())),
    ];
    let (_, queued) = hook(&server, "/hooks/bitbucket", &headers, &body).await;
    assert_eq!(finished(&server, &build_id(&queued)).await["state"], "ready");
    wait_states(&host, &sha, "INPROGRESS", "SUCCESSFUL").await;
    {
        let seen = host.seen.lock().unwrap();
        let (_, headers, body) = seen.iter().rfind(|(p, ..)| p.contains(&sha)).unwrap();
        assert!(headers["authorization"].to_str().unwrap().starts_with("Basic "));
        assert_eq!(body["key"], "helixstack/deploy");
        assert!(body["url"].as_str().unwrap().contains("bbs.localhost"), "{body}");
    }

    // A token the host refuses is said so on the build; no token: none sent.
    let repo = GitRepo::new();
    let secret = link_with_status(&server, "ros", &repo, "ghp_readonly", &format!("{api}/gh")).await;
    repo.write("index.html", "ro");
    let sha = repo.commit_and_push("main", "ro");
    let (_, queued) = github_push(&server, &repo, &secret, "main", &sha, "st-ro").await;
    let id = build_id(&queued);
    finished(&server, &id).await;
    commit_status(&server, &id, "refused (403): the linked token may not post commit statuses").await;
    let repo = GitRepo::new();
    let secret = link(&server, "nots", &repo).await;
    repo.write("index.html", "no token");
    let sha = repo.commit_and_push("main", "nt");
    let (_, queued) = github_push(&server, &repo, &secret, "main", &sha, "st-nt").await;
    commit_status(&server, &build_id(&queued), "not posted: no git token is linked").await;
    assert!(host.states(&sha).is_empty());

    // A bad status API is refused when linking, and changes nothing.
    let bad = json!({ "repo": repo.url(), "status_api": "http://user:pw@127.0.0.1/x" });
    let (status, problem) = server.call(Method::PUT, "/api/v1/projects/nots/link", Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("no credentials"), "{problem}");
}

#[tokio::test]
async fn commit_statuses_never_reach_this_machine_unless_allowed() {
    let (api, host) = StatusHost::start().await;
    let server = TestServer::start_with(|c| c.build_workers = 0).await;
    let repo = GitRepo::new();
    let secret = link_with_status(&server, "ssrf", &repo, "ghp_statusToken1", &format!("{api}/gh")).await;
    let sha = "b".repeat(40);
    let (status, queued) = github_push(&server, &repo, &secret, "main", &sha, "ssrf-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let b = commit_status(&server, &build_id(&queued), "not posted").await;
    assert!(b["commit_status"].as_str().unwrap().contains("--webhook-allow"), "{b}");
    assert!(host.seen.lock().unwrap().is_empty(), "nothing reached the loopback host");
}
