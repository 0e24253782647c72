//! The HTTP surface of the control plane.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use helix_core::ProjectName;
use helix_core::api::{Rollback, SetSplit, Split};

use crate::ControlPlane;
use crate::deploy::view;
use crate::problem::ApiError;

/// Largest JSON body: a 100,000-file table is about 15 MB.
const MAX_JSON_BODY: usize = 64 * 1024 * 1024;

pub(crate) type Cp = State<Arc<ControlPlane>>;

/// The API router: `/healthz` is open, everything under `/api/v1` needs a
/// bearer token.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    let api = Router::new()
        .route("/projects/{project}/deployments", post(create_deployment).get(list_deployments))
        .route("/projects/{project}/rollback", post(rollback))
        .route("/projects/{project}/split", get(get_split).put(set_split).delete(clear_split))
        .route("/deployments/{id}", get(get_deployment))
        .route("/deployments/{id}/blobs/{digest}", put(upload_blob))
        .route("/deployments/{id}/finalize", post(finalize))
        .route("/deployments/{id}/promote", post(promote))
        .route("/gc", post(gc))
        .route("/projects/{project}/link", put(link_project).get(get_link))
        .route("/projects/{project}/builds", post(request_build).get(list_builds))
        .route("/builds/{id}", get(get_build))
        .route("/builds/{id}/cancel", post(cancel_build))
        .route("/builds/{id}/logs", get(build_logs))
        .route("/projects/{project}/logs", get(function_logs))
        .route("/projects/{project}/functions", get(function_stats))
        .route("/projects/{project}/crons", get(crons))
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
    Router::new().route("/healthz", get(|| async { "ok\n" })).nest("/api/v1", api).nest("/hooks", hooks).with_state(cp)
}

async fn create_deployment(
    State(cp): Cp,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let created = cp.create_deployment(&project, &body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn upload_blob(
    State(cp): Cp,
    Path((id, digest)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let length = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let stored = cp.upload_blob(&id, &digest, length, body).await?;
    let status = if stored { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::json!({ "digest": digest.to_ascii_lowercase(), "stored": stored }))))
}

async fn finalize(State(cp): Cp, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let (row, seq) = cp.finalize(&id).await?;
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
    Ok((status, Json(helix_core::api::Deployment { propagation: Some(propagation), ..view(cp, row) })))
}

async fn get_deployment(State(cp): Cp, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let id = cp.parse_known_id(&id).await?;
    let row = cp
        .store
        .deployment(id.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("deployment {id} not found")))?;
    Ok(Json(view(&cp, &row)))
}

async fn list_deployments(State(cp): Cp, Path(project): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let project = ProjectName::parse(&project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let rows = cp
        .store
        .ready_deployments(&project)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("project {project} not found")))?;
    Ok(Json(rows.iter().map(|r| view(&cp, r)).collect::<Vec<_>>()))
}

async fn promote(State(cp): Cp, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let (row, seq) = cp.store.promote(&id, crate::now_ms()).await?;
    changed(&cp, &row, seq).await
}

async fn rollback(State(cp): Cp, Path(project): Path<String>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let project = ProjectName::parse(&project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let req: Rollback = if body.iter().all(u8::is_ascii_whitespace) {
        Rollback::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not a valid rollback: {e}")))?
    };
    let (row, seq) = cp.store.rollback(&project, req.to.as_deref(), crate::now_ms()).await?;
    changed(&cp, &row, seq).await
}

async fn get_split(State(cp): Cp, Path(project): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let project = ProjectName::parse(&project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !cp.store.project_exists(&project).await? {
        return Err(ApiError::NotFound(format!("project {project} not found")));
    }
    let weights = cp.store.split(&project).await?.into_iter().collect();
    Ok(Json(Split { project: project.to_string(), weights, propagation: None }))
}

/// Validates and stores a split: every key a ready deployment of the
/// project (or `production`), weights whole percents adding up to 100.
async fn set_split(State(cp): Cp, Path(project): Path<String>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let project = ProjectName::parse(&project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let req: SetSplit = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("request body is not a valid split: {e}")))?;
    if req.weights.is_empty() {
        return Err(ApiError::BadRequest("a split needs at least one deployment; DELETE the split to end it".into()));
    }
    let total: u32 = req.weights.values().sum();
    if req.weights.values().any(|w| *w > 100) || total != 100 {
        return Err(ApiError::BadRequest(format!(
            "split weights are percents and must add up to 100 (they add up to {total})"
        )));
    }
    let mut weights: Vec<(String, u32)> = Vec::new();
    for (key, weight) in &req.weights {
        let id = if key == "production" {
            cp.store
                .ready_deployments(&project)
                .await?
                .and_then(|rows| rows.into_iter().find(|r| r.is_production))
                .map(|r| r.id)
                .ok_or_else(|| ApiError::Conflict(format!("project {project} has no production deployment")))?
        } else {
            key.to_ascii_lowercase()
        };
        if weights.iter().any(|(other, _)| *other == id) {
            return Err(ApiError::BadRequest(format!("deployment {id} is named twice")));
        }
        weights.push((id, *weight));
    }
    let seq = cp.store.set_split(&project, &weights, crate::now_ms()).await?;
    split_changed(&cp, &project, weights, seq).await
}

async fn split_changed(
    cp: &Arc<ControlPlane>,
    project: &ProjectName,
    weights: Vec<(String, u32)>,
    seq: u64,
) -> Result<(StatusCode, Json<Split>), ApiError> {
    let propagation = cp.committed(Some(seq)).await?;
    let status = if propagation.served { StatusCode::OK } else { StatusCode::ACCEPTED };
    let split =
        Split { project: project.to_string(), weights: weights.into_iter().collect(), propagation: Some(propagation) };
    Ok((status, Json(split)))
}

async fn clear_split(State(cp): Cp, Path(project): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let project = ProjectName::parse(&project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let seq = cp.store.set_split(&project, &[], crate::now_ms()).await?;
    split_changed(&cp, &project, Vec::new(), seq).await
}

async fn gc(State(cp): Cp) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.collect_garbage().await?))
}

async fn link_project(State(cp): Cp, Path(project): Path<String>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.link_project(&project, &body).await?))
}

async fn get_link(State(cp): Cp, Path(project): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.project_link(&project).await?))
}

async fn request_build(State(cp): Cp, Path(project): Path<String>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::ACCEPTED, Json(cp.request_build(&project, &body).await?)))
}

async fn list_builds(State(cp): Cp, Path(project): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.list_builds(&project).await?))
}

async fn get_build(State(cp): Cp, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let row = cp.build_row(&id).await?;
    Ok(Json(cp.build_view(&row)))
}

async fn cancel_build(State(cp): Cp, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(cp.cancel_build(&id).await?))
}

#[derive(serde::Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: Option<String>,
    #[serde(default)]
    after: Option<i64>,
}

/// `?follow=1`: server-sent events until the build ends; otherwise the
/// lines so far as JSON.
async fn build_logs(
    State(cp): Cp,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LogQuery>,
) -> Result<axum::response::Response, ApiError> {
    let after = q.after.unwrap_or(0);
    if q.follow.as_deref().is_some_and(|f| !matches!(f, "0" | "false" | "")) {
        return Ok(cp.clone().follow_log(id, after).await?.into_response());
    }
    let (build, lines) = cp.build_log(&id, after).await?;
    Ok(Json(serde_json::json!({ "build": build, "lines": lines })).into_response())
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
    Path(project): Path<String>,
    axum::extract::Query(q): axum::extract::Query<FunctionLogQuery>,
) -> Result<axum::response::Response, ApiError> {
    if q.follow.as_deref().is_some_and(|f| !matches!(f, "0" | "false" | "")) {
        return Ok(cp.clone().follow_function_logs(&project, q.function, q.deployment, q.after)?.into_response());
    }
    let records = cp
        .function_logs(
            &project,
            q.function.as_deref(),
            q.deployment.as_deref(),
            q.after.as_deref(),
            q.limit.unwrap_or(1000),
        )
        .await?;
    Ok(Json(serde_json::json!({ "records": records })).into_response())
}

/// A project's functions: instances, invocations, cold starts, queueing.
async fn function_stats(State(cp): Cp, Path(project): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(serde_json::json!({ "functions": cp.function_stats(&project)? })))
}

/// The production deployment's schedules with their next and last runs.
async fn crons(State(cp): Cp, Path(project): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(serde_json::json!({ "crons": cp.crons(&project).await? })))
}
