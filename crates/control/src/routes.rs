//! The HTTP surface of the control plane: each handler parses, calls one
//! operation with the caller's [`Ctx`], and renders. What each route asks
//! of its caller is declared in [`ROUTES`]; the router refuses to start
//! with a route the table lacks (or an entry no route serves), and the
//! authorization matrix test checks every entry against the operations.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use helix_core::api::{AddDomain, Split};

use crate::ControlPlane;
use crate::access::{Ctx, Need};
use crate::openapi::{self, Doc};
use crate::problem::ApiError;

/// Largest JSON body: a 100,000-file table is about 15 MB.
const MAX_JSON_BODY: usize = 64 * 1024 * 1024;

pub(crate) type Cp = State<Arc<ControlPlane>>;
type Caller = Extension<Arc<Ctx>>;

/// What a route's path names, and so whose it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `{project}`: a project.
    Project,
    /// `{project}`: a project, made on first use. Project names are one
    /// namespace across organisations (each is a public hostname), so a
    /// name another organisation holds answers 409 "not available" here,
    /// where every other route answers 404.
    ProjectOrNew,
    /// `{id}`: a deployment, checked on its project.
    Deployment,
    /// `{id}`: a build, checked on its project.
    Build,
    /// `{id}`: a token of the caller's organisation.
    Token,
    /// The caller's organisation.
    Org,
    /// Every organisation: the server admin's token only.
    Server,
    /// The caller itself: any working token.
    Caller,
}

/// One route of `/api/v1` and what its operation asks of the caller.
#[derive(Clone, Copy, Debug)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub scope: Scope,
    pub need: Need,
}

const fn spec(method: &'static str, path: &'static str, scope: Scope, need: Need) -> RouteSpec {
    RouteSpec { method, path, scope, need }
}

/// Every route under `/api/v1`, with what its operation checks.
pub const ROUTES: &[RouteSpec] = &[
    spec("POST", "/projects/{project}/deployments", Scope::ProjectOrNew, Need::BUILD_DEPLOY),
    spec("GET", "/projects/{project}/deployments", Scope::Project, Need::READ),
    spec("POST", "/projects/{project}/rollback", Scope::Project, Need::DEPLOY),
    spec("GET", "/projects/{project}/split", Scope::Project, Need::READ),
    spec("PUT", "/projects/{project}/split", Scope::Project, Need::DEPLOY),
    spec("DELETE", "/projects/{project}/split", Scope::Project, Need::DEPLOY),
    spec("PUT", "/projects/{project}/link", Scope::ProjectOrNew, Need::MANAGE),
    spec("GET", "/projects/{project}/link", Scope::Project, Need::READ),
    spec("POST", "/projects/{project}/builds", Scope::Project, Need::DEPLOY),
    spec("GET", "/projects/{project}/builds", Scope::Project, Need::READ),
    spec("GET", "/projects/{project}/logs", Scope::Project, Need::READ),
    spec("GET", "/projects/{project}/functions", Scope::Project, Need::READ),
    spec("GET", "/projects/{project}/crons", Scope::Project, Need::READ),
    spec("GET", "/deployments/{id}", Scope::Deployment, Need::READ),
    spec("PUT", "/deployments/{id}/blobs/{digest}", Scope::Deployment, Need::BUILD_DEPLOY),
    spec("POST", "/deployments/{id}/finalize", Scope::Deployment, Need::BUILD_DEPLOY),
    spec("POST", "/deployments/{id}/promote", Scope::Deployment, Need::DEPLOY),
    spec("GET", "/builds/{id}", Scope::Build, Need::READ),
    spec("POST", "/builds/{id}/cancel", Scope::Build, Need::DEPLOY),
    spec("GET", "/builds/{id}/logs", Scope::Build, Need::READ),
    spec("POST", "/gc", Scope::Server, Need::MANAGE),
    spec("GET", "/whoami", Scope::Caller, Need::READ),
    spec("GET", "/tokens", Scope::Org, Need::READ),
    spec("POST", "/tokens", Scope::Org, Need::SELF_WRITE),
    spec("DELETE", "/tokens/{id}", Scope::Token, Need::SELF_WRITE),
    spec("GET", "/members", Scope::Org, Need::READ),
    spec("POST", "/members", Scope::Org, Need::MANAGE),
    spec("DELETE", "/members/{user}", Scope::Org, Need::MANAGE),
    spec("GET", "/orgs", Scope::Caller, Need::READ),
    spec("GET", "/projects", Scope::Caller, Need::READ),
    spec("POST", "/orgs", Scope::Server, Need::MANAGE),
    spec("POST", "/login", Scope::Caller, Need::READ),
    spec("GET", "/projects/{project}/env", Scope::Project, Need::READ),
    spec("PUT", "/projects/{project}/env/{name}", Scope::ProjectOrNew, Need::DEPLOY),
    spec("DELETE", "/projects/{project}/env/{name}", Scope::Project, Need::DEPLOY),
    spec("POST", "/projects/{project}/env/import", Scope::ProjectOrNew, Need::DEPLOY),
    spec("GET", "/projects/{project}/env/pull", Scope::Project, Need::READ),
    spec("POST", "/keys/rotate", Scope::Server, Need::MANAGE),
    spec("GET", "/policy", Scope::Org, crate::policy::READ_POLICY),
    spec("PUT", "/policy", Scope::Org, crate::policy::OWN),
    spec("DELETE", "/policy", Scope::Org, crate::policy::OWN),
    spec("POST", "/policy/test", Scope::Org, crate::policy::READ_POLICY),
    spec("GET", "/projects/{project}/webhooks", Scope::Project, Need { write: false, ..Need::MANAGE }),
    spec("POST", "/projects/{project}/webhooks", Scope::Project, Need::MANAGE),
    spec("DELETE", "/projects/{project}/webhooks/{id}", Scope::Project, Need::MANAGE),
    spec("GET", "/projects/{project}/webhooks/deliveries", Scope::Project, Need { write: false, ..Need::MANAGE }),
    spec("GET", "/domains", Scope::Caller, Need::READ),
    spec("GET", "/projects/{project}/domains", Scope::Project, Need::READ),
    spec("POST", "/projects/{project}/domains", Scope::Project, Need::MANAGE),
    spec("POST", "/projects/{project}/domains/{name}/verify", Scope::Project, Need::MANAGE),
    spec("DELETE", "/projects/{project}/domains/{name}", Scope::Project, Need::MANAGE),
    spec("GET", "/audit", Scope::Org, crate::audit::READ_AUDIT),
    spec("GET", "/audit/verify", Scope::Org, crate::audit::READ_AUDIT),
];

/// One route's handler and its documentation.
pub(crate) struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: MethodRouter<Arc<ControlPlane>>,
    pub doc: Doc,
}

fn at(method: &'static str, path: &'static str, handler: MethodRouter<Arc<ControlPlane>>, doc: Doc) -> Endpoint {
    Endpoint { method, path, handler, doc }
}

/// The handler of each route in [`ROUTES`], with what it takes and answers
/// (the OpenAPI document is made from these).
pub(crate) fn endpoints() -> Vec<Endpoint> {
    use helix_core::api::{
        AddDomain, Build, CreateDeployment, CreateWebhook, CreatedDeployment, Deployment, Domain, GcReport,
        LinkProject, Policy, PolicyVerdict, ProjectLink, ProjectSummary, RequestBuild, Rollback, SetPolicy, SetSplit,
        TestPolicy, Webhook,
    };
    use helix_core::audit::ChainReport;
    use helix_core::env::{EnvVar, ImportEnv, PulledEnv, Rotated, SetEnv};
    use helix_core::identity::{AddMember, CreateOrg, CreateToken, CreatedToken, Membership, Org, TokenInfo, WhoAmI};
    use openapi::{Kind, bytes, doc, json, list};
    let deployments = || {
        doc("A page of the project's ready deployments, newest first", list::<Deployment>())
            .query("limit", Kind::Integer, "at most this many (default 100, at most 1,000)")
            .query("before", Kind::Text, "the page after this deployment id")
    };
    let env = || doc("The project's variables (secrets masked)", list::<EnvVar>());
    vec![
        at(
            "POST",
            "/projects/{project}/deployments",
            post(create_deployment),
            doc("Create a deployment from a file table", json::<CreatedDeployment>())
                .body(json::<CreateDeployment>())
                .status(201),
        ),
        at("GET", "/projects/{project}/deployments", get(list_deployments), deployments()),
        at(
            "POST",
            "/projects/{project}/rollback",
            post(rollback),
            doc("Serve the previous (or a named) deployment in production", json::<Deployment>())
                .body(json::<Rollback>()),
        ),
        at("GET", "/projects/{project}/split", get(get_split), doc("The traffic split", json::<Split>())),
        at(
            "PUT",
            "/projects/{project}/split",
            put(set_split),
            doc("Split traffic between deployments", json::<Split>()).body(json::<SetSplit>()),
        ),
        at("DELETE", "/projects/{project}/split", delete(clear_split), doc("End the split", json::<Split>())),
        at(
            "PUT",
            "/projects/{project}/link",
            put(link_project),
            doc("Link the project to a git repository", json::<ProjectLink>()).body(json::<LinkProject>()),
        ),
        at("GET", "/projects/{project}/link", get(get_link), doc("The project's git link", json::<ProjectLink>())),
        at(
            "POST",
            "/projects/{project}/builds",
            post(request_build),
            doc("Build the tip of a branch", json::<Build>()).body(json::<RequestBuild>()).status(202),
        ),
        at(
            "GET",
            "/projects/{project}/builds",
            get(list_builds),
            doc("The project's builds, newest first", list::<Build>()),
        ),
        at(
            "GET",
            "/projects/{project}/logs",
            get(function_logs),
            doc("The project's function log lines", json::<FunctionLogs>())
                .query("function", Kind::Text, "only this function")
                .query("deployment", Kind::Text, "only this deployment")
                .query("after", Kind::Text, "lines after this one's id")
                .query("limit", Kind::Integer, "at most this many")
                .streams(),
        ),
        at(
            "GET",
            "/projects/{project}/functions",
            get(function_stats),
            doc("The project's functions' counters", json::<Functions>()),
        ),
        at(
            "GET",
            "/projects/{project}/crons",
            get(crons),
            doc("The production deployment's schedules", json::<Crons>()),
        ),
        at("GET", "/deployments/{id}", get(get_deployment), doc("A deployment", json::<Deployment>())),
        at(
            "PUT",
            "/deployments/{id}/blobs/{digest}",
            put(upload_blob),
            doc("Upload a file the deployment is missing", json::<Stored>()).body(bytes()),
        ),
        at(
            "POST",
            "/deployments/{id}/finalize",
            post(finalize),
            doc("Make an uploaded deployment ready", json::<Deployment>()),
        ),
        at(
            "POST",
            "/deployments/{id}/promote",
            post(promote),
            doc("Serve this deployment in production", json::<Deployment>()),
        ),
        at("GET", "/builds/{id}", get(get_build), doc("A build", json::<Build>())),
        at("POST", "/builds/{id}/cancel", post(cancel_build), doc("Cancel an unfinished build", json::<Build>())),
        at(
            "GET",
            "/builds/{id}/logs",
            get(build_logs),
            doc("A build's log", json::<BuildLog>())
                .query("after", Kind::Integer, "lines after this sequence number")
                .streams(),
        ),
        at("POST", "/gc", post(gc), doc("Collect garbage (server admin)", json::<GcReport>())),
        at("GET", "/whoami", get(whoami), doc("Who the token is", json::<WhoAmI>())),
        at("GET", "/tokens", get(list_tokens), doc("The organisation's tokens", list::<TokenInfo>())),
        at(
            "POST",
            "/tokens",
            post(create_token),
            doc("Create a token (shown once)", json::<CreatedToken>()).body(json::<CreateToken>()).status(201),
        ),
        at("DELETE", "/tokens/{id}", delete(revoke_token), doc("Revoke a token", json::<TokenInfo>())),
        at("GET", "/members", get(list_members), doc("The organisation's members", list::<Membership>())),
        at(
            "POST",
            "/members",
            post(add_member),
            doc("Add or change a member", list::<Membership>()).body(json::<AddMember>()),
        ),
        at(
            "DELETE",
            "/members/{user}",
            delete(remove_member),
            doc("Remove a member (or one project of theirs)", list::<Membership>()).query(
                "project",
                Kind::Text,
                "only their role on this project",
            ),
        ),
        at("GET", "/orgs", get(list_orgs), doc("The organisations the token sees", list::<Org>())),
        at("GET", "/projects", get(list_projects), doc("The projects the token sees", list::<ProjectSummary>())),
        at(
            "POST",
            "/orgs",
            post(create_org),
            doc("Create an organisation (server admin)", json::<Org>()).body(json::<CreateOrg>()).status(201),
        ),
        at("POST", "/login", post(login), doc("Record a login with this token", json::<WhoAmI>())),
        at(
            "GET",
            "/projects/{project}/env",
            get(env_list),
            env().query("environment", Kind::Text, "only this environment"),
        ),
        at(
            "PUT",
            "/projects/{project}/env/{name}",
            put(env_set),
            doc("Set a variable", list::<EnvVar>()).body(json::<SetEnv>()),
        ),
        at(
            "DELETE",
            "/projects/{project}/env/{name}",
            delete(env_remove),
            doc("Remove a variable", json::<RemovedEnv>())
                .query("environment", Kind::Text, "only in this environment")
                .query("branch", Kind::Text, "only for this branch"),
        ),
        at(
            "POST",
            "/projects/{project}/env/import",
            post(env_import),
            doc("Set variables from a .env file", json::<Imported>()).body(json::<ImportEnv>()),
        ),
        at(
            "GET",
            "/projects/{project}/env/pull",
            get(env_pull),
            doc("The variables an environment resolves to (secrets masked)", json::<PulledEnv>())
                .query("environment", Kind::Text, "default development")
                .query("branch", Kind::Text, "as for this branch"),
        ),
        at(
            "POST",
            "/keys/rotate",
            post(rotate_keys),
            doc("Re-wrap every data key under the new master key", json::<Rotated>()),
        ),
        at("GET", "/policy", get(show_policy), doc("The organisation's policy", json::<Policy>())),
        at(
            "PUT",
            "/policy",
            put(set_policy),
            doc("Set the organisation's Rego policy", json::<Policy>()).body(json::<SetPolicy>()),
        ),
        at("DELETE", "/policy", delete(remove_policy), doc("Remove the policy", json::<Removed>())),
        at(
            "POST",
            "/policy/test",
            post(test_policy),
            doc("Evaluate the policy (or a given one) on an input", json::<PolicyVerdict>()).body(json::<TestPolicy>()),
        ),
        at("GET", "/projects/{project}/webhooks", get(list_webhooks), doc("The project's webhooks", list::<Webhook>())),
        at(
            "POST",
            "/projects/{project}/webhooks",
            post(create_webhook),
            doc("Add a webhook (its secret is shown once)", json::<Webhook>())
                .body(json::<CreateWebhook>())
                .status(201),
        ),
        at(
            "DELETE",
            "/projects/{project}/webhooks/{id}",
            delete(delete_webhook),
            doc("Remove a webhook", json::<Removed>()),
        ),
        at(
            "GET",
            "/projects/{project}/webhooks/deliveries",
            get(webhook_deliveries),
            doc("The latest deliveries of the project's webhooks", json::<Deliveries>()),
        ),
        at(
            "GET",
            "/domains",
            get(all_domains),
            doc("Every domain of the projects the caller may read", list::<Domain>()),
        ),
        at(
            "GET",
            "/projects/{project}/domains",
            get(project_domains),
            doc("The project's custom domains", list::<Domain>()),
        ),
        at(
            "POST",
            "/projects/{project}/domains",
            post(add_domain),
            doc(
                "Claim a domain: the answer names the TXT record that proves it; verified at once when it exists",
                json::<Domain>(),
            )
            .body(json::<AddDomain>())
            .status(201),
        ),
        at(
            "POST",
            "/projects/{project}/domains/{name}/verify",
            post(verify_domain),
            doc("Check a domain's proof again (`verified` and `last_error` say what came of it)", json::<Domain>()),
        ),
        at(
            "DELETE",
            "/projects/{project}/domains/{name}",
            delete(remove_domain),
            doc("Remove a domain: the edge stops serving it", json::<Domain>()),
        ),
        at(
            "GET",
            "/audit",
            get(audit),
            doc("The audit log, oldest first", json::<AuditPage>())
                .query("project", Kind::Text, "only this project's entries")
                .query("after", Kind::Integer, "entries after this sequence number")
                .query("limit", Kind::Integer, "at most this many")
                .streams(),
        ),
        at("GET", "/audit/verify", get(verify_audit), doc("Verify the audit chain", json::<ChainReport>())),
    ]
}

/// `PUT /deployments/{id}/blobs/{digest}`: whether the blob was new.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Stored {
    digest: String,
    stored: bool,
}

/// `GET /builds/{id}/logs`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct BuildLog {
    build: helix_core::api::Build,
    lines: Vec<helix_core::api::LogLine>,
}

/// `GET /projects/{p}/logs`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct FunctionLogs {
    records: Vec<helix_store::FunctionLog>,
}

/// `GET /projects/{p}/functions`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Functions {
    functions: Vec<helix_runtime::FunctionStats>,
}

/// `GET /projects/{p}/crons`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Crons {
    crons: Vec<crate::functions::CronView>,
}

/// `GET /audit`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct AuditPage {
    entries: Vec<helix_core::audit::AuditEntry>,
}

/// `GET /projects/{p}/webhooks/deliveries`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Deliveries {
    deliveries: Vec<helix_store::DeliveryRow>,
}

/// `POST /projects/{p}/env/import`: the names set.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Imported {
    imported: Vec<String>,
}

/// The answer to a removal: what was named (if anything).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Removed {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    removed: bool,
}

/// `DELETE /projects/{p}/env/{name}`: how many values (environments and
/// branches) were removed.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct RemovedEnv {
    name: String,
    removed: u64,
}

/// The route table, for tests and documentation.
pub fn route_table() -> &'static [RouteSpec] {
    ROUTES
}

/// The API router: `/healthz` is open, everything under `/api/v1` needs a
/// bearer token.
///
/// # Panics
///
/// When a handler's route is missing from [`ROUTES`] or an entry of it
/// has no handler: a programming error every test start would catch.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    let endpoints = endpoints();
    for Endpoint { method, path, .. } in &endpoints {
        assert!(
            ROUTES.iter().any(|r| r.method == *method && r.path == *path),
            "{method} {path} has no entry in ROUTES: say what it asks of its caller"
        );
    }
    for r in ROUTES {
        assert!(
            endpoints.iter().any(|e| e.method == r.method && e.path == r.path),
            "ROUTES names {} {} but no handler serves it",
            r.method,
            r.path
        );
    }
    let mut by_path: BTreeMap<&str, MethodRouter<Arc<ControlPlane>>> = BTreeMap::new();
    for Endpoint { path, handler, .. } in endpoints {
        let merged = match by_path.remove(path) {
            Some(other) => other.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    let api = by_path
        .into_iter()
        .fold(Router::new(), |api, (path, handler)| api.route(path, handler))
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .layer(axum::middleware::from_fn_with_state(cp.clone(), crate::auth::require_token))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY));
    let hooks = Router::new()
        .route("/github", post(crate::hooks::github))
        .route("/github/{project}", post(crate::hooks::github_project))
        .route("/gitlab", post(crate::hooks::gitlab))
        .route("/gitlab/{project}", post(crate::hooks::gitlab_project))
        .route("/bitbucket", post(crate::hooks::bitbucket))
        .route("/bitbucket/{project}", post(crate::hooks::bitbucket_project))
        .route("/git/{project}", post(crate::hooks::generic))
        .layer(DefaultBodyLimit::max(crate::hooks::MAX_HOOK_BODY as usize));
    // The same caller, limits and operations as the REST routes.
    let graphql = Router::new()
        .route("/graphql", post(crate::graphql::serve))
        .layer(axum::middleware::from_fn_with_state(cp.clone(), crate::auth::require_token))
        .layer(DefaultBodyLimit::max(crate::graphql::MAX_BODY));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(graphql)
        .route("/api/v1/openapi.json", get(openapi::serve))
        .nest("/api/v1", api)
        .nest("/hooks", hooks)
        .layer(axum::middleware::from_fn(crate::problem::framework_errors_as_problems))
        .with_state(cp)
}

async fn create_deployment(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let created = cp.create_deployment(&ctx, &project, &body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn upload_blob(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path((id, digest)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let length = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let stored = cp.upload_blob(&ctx, &id, &digest, length, body).await?;
    let status = if stored { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Stored { digest: digest.to_ascii_lowercase(), stored })))
}

async fn finalize(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (row, seq) = cp.finalize(&ctx, &id).await?;
    changed(&cp, &row, seq).await
}

/// The answer to a change of what is served: the deployment, once the
/// edges serve it (`200`), or when they have not confirmed it in time
/// (`202`, `served: false`).
async fn changed(
    cp: &Arc<ControlPlane>,
    row: &helix_store::DeploymentRow,
    seq: Option<u64>,
) -> Result<(StatusCode, Json<helix_core::api::Deployment>), ApiError> {
    let propagation = cp.committed(seq).await?;
    let status = if propagation.served { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(helix_core::api::Deployment { propagation: Some(propagation), ..cp.view(row) })))
}

async fn get_deployment(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (row, _) = cp.deployment_for(&ctx, &id, Need::READ, "read deployments").await?;
    Ok(Json(cp.view(&row)))
}

#[derive(serde::Deserialize)]
struct PageQuery {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

/// A page of deployments; a full page links to the next
/// (`Link: <…?before=ID&limit=N>; rel="next"`).
async fn list_deployments(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::response::Response, ApiError> {
    let page = cp.list_deployments(&ctx, &project, q.before.as_deref(), q.limit).await?;
    let limit = q.limit.unwrap_or(100);
    let next = (page.len() as i64 == limit).then(|| page.last().map(|d| d.id.clone())).flatten();
    let mut response = Json(page).into_response();
    if let Some(last) = next
        && let Ok(link) =
            format!("</api/v1/projects/{project}/deployments?before={last}&limit={limit}>; rel=\"next\"").parse()
    {
        response.headers_mut().insert(http::header::LINK, link);
    }
    Ok(response)
}

async fn promote(State(cp): Cp, Extension(ctx): Caller, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let (row, seq) = cp.promote(&ctx, &id).await?;
    changed(&cp, &row, seq).await
}

async fn rollback(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        helix_core::api::Rollback::default()
    } else {
        crate::problem::parse(&body, "rollback")?
    };
    let (row, seq) = cp.rollback(&ctx, &project, &req).await?;
    changed(&cp, &row, seq).await
}

async fn get_split(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.split(&ctx, &project).await?))
}

async fn set_split(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let (split, seq) = cp.set_split(&ctx, &project, &body).await?;
    split_changed(&cp, split, seq).await
}

async fn clear_split(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (split, seq) = cp.clear_split(&ctx, &project).await?;
    split_changed(&cp, split, seq).await
}

async fn split_changed(cp: &Arc<ControlPlane>, split: Split, seq: u64) -> Result<(StatusCode, Json<Split>), ApiError> {
    let propagation = cp.committed(Some(seq)).await?;
    let status = if propagation.served { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(Split { propagation: Some(propagation), ..split })))
}

async fn gc(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    ctx.check_server_admin("collect garbage (it spans every organisation)")?;
    Ok(Json(cp.collect_garbage().await?))
}

async fn link_project(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.link_project(&ctx, &project, &body).await?))
}

async fn get_link(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.project_link(&ctx, &project).await?))
}

async fn request_build(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::ACCEPTED, Json(cp.request_build(&ctx, &project, &body).await?)))
}

async fn list_builds(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.list_builds(&ctx, &project).await?))
}

async fn get_build(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let row = cp.build_for(&ctx, &id, Need::READ, "read builds").await?;
    Ok(Json(cp.build_view(&row)))
}

async fn cancel_build(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.cancel_build(&ctx, &id).await?))
}

#[derive(serde::Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: Option<String>,
    #[serde(default)]
    after: Option<i64>,
}

fn wants_follow(follow: Option<&str>) -> bool {
    follow.is_some_and(|f| !matches!(f, "0" | "false" | ""))
}

/// `?follow=1`: server-sent events until the build ends; otherwise the
/// lines so far as JSON.
async fn build_logs(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<axum::response::Response, ApiError> {
    let row = cp.build_for(&ctx, &id, Need::READ, "read build logs").await?;
    let after = q.after.unwrap_or(0);
    if wants_follow(q.follow.as_deref()) {
        return Ok(cp.clone().follow_log(row, after).into_response());
    }
    let (build, lines) = cp.build_log(&row, after).await?;
    Ok(Json(BuildLog { build, lines }).into_response())
}

#[derive(serde::Deserialize)]
struct FunctionLogQuery {
    #[serde(default)]
    function: Option<String>,
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    follow: Option<String>,
}

/// A project's function log lines (this server's); `?follow=1` streams
/// them as server-sent events.
async fn function_logs(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    Query(q): Query<FunctionLogQuery>,
) -> Result<axum::response::Response, ApiError> {
    let project = cp.project_for(&ctx, &project, Need::READ, "read function logs").await?;
    if wants_follow(q.follow.as_deref()) {
        return Ok(cp.clone().follow_function_logs(project.name, q.function, q.deployment, q.after).into_response());
    }
    let records = cp
        .function_logs(
            &project.name,
            q.function.as_deref(),
            q.deployment.as_deref(),
            q.after.as_deref(),
            q.limit.unwrap_or(1000),
        )
        .await?;
    Ok(Json(FunctionLogs { records }).into_response())
}

/// A project's functions: instances, invocations, cold starts, queueing.
async fn function_stats(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let project = cp.project_for(&ctx, &project, Need::READ, "read function counters").await?;
    Ok(Json(Functions { functions: cp.function_stats(&project.name) }))
}

/// The production deployment's schedules with their next and last runs.
async fn crons(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let project = cp.project_for(&ctx, &project, Need::READ, "read schedules").await?;
    Ok(Json(Crons { crons: cp.crons(&project.name).await? }))
}

async fn whoami(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.whoami(&ctx).await?))
}

async fn list_tokens(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.list_tokens(&ctx).await?))
}

async fn create_token(State(cp): Cp, Extension(ctx): Caller, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(cp.create_token(&ctx, &body).await?)))
}

async fn revoke_token(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.revoke_token(&ctx, &id).await?))
}

async fn list_members(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.members(&ctx).await?))
}

async fn add_member(State(cp): Cp, Extension(ctx): Caller, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.add_member(&ctx, &body).await?))
}

#[derive(serde::Deserialize)]
struct MemberQuery {
    #[serde(default)]
    project: Option<String>,
}

async fn remove_member(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(user): Path<String>,
    Query(q): Query<MemberQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.remove_member(&ctx, &user, q.project.as_deref()).await?))
}

async fn list_orgs(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.orgs(&ctx).await?))
}

async fn list_projects(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.list_projects(&ctx).await?))
}

async fn create_org(State(cp): Cp, Extension(ctx): Caller, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(cp.create_org(&ctx, &body).await?)))
}

async fn login(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.login(&ctx).await?))
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    follow: Option<String>,
}

/// The audit log, oldest first; `?follow=1` streams new entries as
/// server-sent events.
async fn audit(
    State(cp): Cp,
    Extension(ctx): Caller,
    Query(q): Query<AuditQuery>,
) -> Result<axum::response::Response, ApiError> {
    let after = q.after.unwrap_or(0);
    // Checked before streaming, so a refusal is an answer, not a silent stream.
    let first = cp.audit_entries(&ctx, q.project.as_deref(), after, q.limit.unwrap_or(1000)).await?;
    if wants_follow(q.follow.as_deref()) {
        return Ok(cp.clone().follow_audit(ctx, q.project, after).into_response());
    }
    Ok(Json(AuditPage { entries: first }).into_response())
}

async fn verify_audit(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.verify_audit(&ctx).await?))
}

#[derive(serde::Deserialize)]
struct EnvQuery {
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    branch: Option<String>,
}

async fn env_list(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.env_list(&ctx, &project, q.environment.as_deref()).await?))
}

async fn env_set(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path((project, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: helix_core::env::SetEnv = crate::problem::parse(&body, "variable")?;
    Ok(Json(cp.env_set(&ctx, &project, &name, &req).await?))
}

async fn env_remove(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path((project, name)): Path<(String, String)>,
    Query(q): Query<EnvQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let removed = cp.env_remove(&ctx, &project, &name, q.environment.as_deref(), q.branch.as_deref()).await?;
    Ok(Json(RemovedEnv { name, removed }))
}

async fn env_import(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Imported { imported: cp.env_import(&ctx, &project, &body).await? }))
}

async fn env_pull(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let environment = q.environment.as_deref().unwrap_or("development");
    Ok(Json(cp.env_pull(&ctx, &project, environment, q.branch.as_deref()).await?))
}

async fn rotate_keys(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.rotate_keys(&ctx).await?))
}

async fn show_policy(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.show_policy(&ctx).await?))
}

async fn set_policy(State(cp): Cp, Extension(ctx): Caller, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    cp.set_policy(&ctx, &body).await?;
    Ok(Json(cp.show_policy(&ctx).await?))
}

async fn remove_policy(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    cp.remove_policy(&ctx).await?;
    Ok(Json(Removed { id: None, removed: true }))
}

async fn test_policy(State(cp): Cp, Extension(ctx): Caller, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.test_policy(&ctx, &body).await?))
}

async fn all_domains(State(cp): Cp, Extension(ctx): Caller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.all_domains(&ctx).await?))
}

async fn project_domains(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.project_domains(&ctx, &project).await?))
}

async fn add_domain(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: AddDomain = crate::problem::parse(&body, "domain")?;
    Ok((StatusCode::CREATED, Json(cp.add_domain(&ctx, &project, &req).await?)))
}

async fn verify_domain(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.verify_domain(&ctx, &project, &name).await?))
}

async fn remove_domain(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.remove_domain(&ctx, &project, &name).await?))
}

async fn list_webhooks(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.list_webhooks(&ctx, &project).await?))
}

async fn create_webhook(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(cp.create_webhook(&ctx, &project, &body).await?)))
}

async fn delete_webhook(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path((project, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    cp.delete_webhook(&ctx, &project, &id).await?;
    Ok(Json(Removed { id: Some(id), removed: true }))
}

async fn webhook_deliveries(
    State(cp): Cp,
    Extension(ctx): Caller,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Deliveries { deliveries: cp.webhook_deliveries(&ctx, &project).await? }))
}
