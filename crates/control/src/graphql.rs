//! GraphQL at `POST /graphql` (async-graphql): the same operations as REST,
//! called with the same caller ([`Ctx`], from the same bearer-token layer),
//! so authorization, policy, audit and events are the operations' own.
//! Queries: `whoami`, `orgs`, `projects`, `project(name)` with its
//! deployments, builds and env (secrets masked), `deployment(id)`,
//! `build(id)`, `audit`. Mutations: `promote`, `rollback`, `setEnv`,
//! `removeEnv`. A query is bounded in depth and complexity; errors carry
//! the REST status and problem type in `extensions`.

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, ErrorExtensions, ID, Object, Schema, SimpleObject};
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};

use crate::ControlPlane;
use crate::access::{Ctx, Need};
use crate::problem::ApiError;

pub(crate) type HelixSchema = Schema<Query, Mutation, EmptySubscription>;

/// Largest request body.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// Deepest selection a query may make (the standard introspection query
/// takes 13), and its largest cost.
const MAX_DEPTH: usize = 16;
const MAX_COMPLEXITY: usize = 2_000;

pub(crate) fn schema() -> HelixSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(32)
        .finish()
}

/// What a resolver needs: the control plane and the caller.
fn parts<'a>(ctx: &Context<'a>) -> (&'a Arc<ControlPlane>, &'a Arc<Ctx>) {
    (ctx.data_unchecked::<Arc<ControlPlane>>(), ctx.data_unchecked::<Arc<Ctx>>())
}

/// An operation's error as GraphQL's, denials audited as REST's are.
async fn refused(cp: &ControlPlane, caller: &Ctx, field: &str, e: ApiError) -> async_graphql::Error {
    if let ApiError::Internal(why) = &e {
        tracing::error!(error = %why, field, "graphql request failed");
    }
    if let ApiError::Forbidden(why) = &e {
        cp.audit_denial(caller, "POST", &format!("/graphql {field}"), why).await;
    }
    let problem = e.problem();
    async_graphql::Error::new(problem.detail).extend_with(|_, ext| {
        ext.set("status", problem.status);
        ext.set("type", problem.kind.as_str());
    })
}

macro_rules! call {
    ($ctx:expr, $field:literal, |$cp:ident, $caller:ident| $op:expr) => {{
        let ($cp, $caller) = parts($ctx);
        match $op.await {
            Ok(value) => Ok(value),
            Err(e) => Err(refused($cp, $caller, $field, e).await),
        }
    }};
}

#[derive(SimpleObject)]
pub(crate) struct Me {
    user: String,
    org: String,
    role: String,
    token: String,
    read_only: bool,
    server_admin: bool,
    /// The one project the token is narrowed to.
    project: Option<String>,
}

#[derive(SimpleObject)]
pub(crate) struct Org {
    name: String,
    created_at_ms: i64,
}

#[derive(SimpleObject)]
pub(crate) struct Deployment {
    id: ID,
    project: String,
    state: String,
    url: String,
    production: bool,
    file_count: u64,
    total_bytes: u64,
    created_at_ms: i64,
    ready_at_ms: Option<i64>,
    /// On a mutation's answer: whether the edges serve the change yet.
    served: Option<bool>,
}

impl From<helix_core::api::Deployment> for Deployment {
    fn from(d: helix_core::api::Deployment) -> Self {
        Deployment {
            id: ID(d.id),
            project: d.project,
            state: d.state.as_str().to_owned(),
            url: d.url,
            production: d.production,
            file_count: d.file_count,
            total_bytes: d.total_bytes,
            created_at_ms: d.created_at_ms,
            ready_at_ms: d.ready_at_ms,
            served: d.propagation.map(|p| p.served),
        }
    }
}

#[derive(SimpleObject)]
pub(crate) struct Build {
    id: ID,
    project: String,
    state: String,
    trigger: String,
    branch: String,
    commit: Option<String>,
    url: String,
    deployment: Option<String>,
    error: Option<String>,
    failed_step: Option<String>,
    commit_status: Option<String>,
    created_at_ms: i64,
    finished_at_ms: Option<i64>,
}

impl From<helix_core::api::Build> for Build {
    fn from(b: helix_core::api::Build) -> Self {
        Build {
            id: ID(b.id),
            project: b.project,
            state: b.state.as_str().to_owned(),
            trigger: b.trigger,
            branch: b.branch,
            commit: b.commit,
            url: b.url,
            deployment: b.deployment,
            error: b.error,
            failed_step: b.failed_step,
            commit_status: b.commit_status,
            created_at_ms: b.created_at_ms,
            finished_at_ms: b.finished_at_ms,
        }
    }
}

/// A variable in one environment; a secret's value is never shown.
#[derive(SimpleObject)]
pub(crate) struct EnvVar {
    name: String,
    environment: String,
    branch: Option<String>,
    secret: bool,
    value: Option<String>,
    updated_at_ms: i64,
}

impl From<helix_core::env::EnvVar> for EnvVar {
    fn from(v: helix_core::env::EnvVar) -> Self {
        EnvVar {
            name: v.name,
            environment: v.environment,
            branch: v.branch,
            secret: v.secret,
            value: v.value,
            updated_at_ms: v.updated_at_ms,
        }
    }
}

#[derive(SimpleObject)]
pub(crate) struct AuditEntry {
    seq: u64,
    at_ms: i64,
    org: String,
    actor: String,
    action: String,
    project: Option<String>,
    target: Option<String>,
    outcome: String,
    detail: async_graphql::Json<serde_json::Value>,
    hash: String,
}

impl From<helix_core::audit::AuditEntry> for AuditEntry {
    fn from(e: helix_core::audit::AuditEntry) -> Self {
        AuditEntry {
            seq: e.seq,
            at_ms: e.at_ms,
            org: e.org,
            actor: e.actor,
            action: e.action,
            project: e.project,
            target: e.target,
            outcome: e.outcome,
            detail: async_graphql::Json(e.detail),
            hash: e.hash,
        }
    }
}

/// A project the caller can see; its lists are fetched when selected.
pub(crate) struct Project {
    summary: helix_core::api::ProjectSummary,
}

#[Object]
impl Project {
    async fn name(&self) -> &str {
        &self.summary.name
    }

    async fn org(&self) -> &str {
        &self.summary.org
    }

    /// The production deployment's id, if one is live.
    async fn production(&self) -> Option<&str> {
        self.summary.production.as_deref()
    }

    async fn url(&self) -> &str {
        &self.summary.url
    }

    /// Ready deployments, newest first (at most `limit`, default 100).
    #[graphql(complexity = "limit.map_or(100, |l| l.clamp(1, 1000)) as usize * child_complexity")]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        limit: Option<i64>,
        before: Option<String>,
    ) -> async_graphql::Result<Vec<Deployment>> {
        let page: Vec<_> = call!(ctx, "deployments", |cp, caller| cp.list_deployments(
            caller,
            &self.summary.name,
            before.as_deref(),
            limit
        ))?;
        Ok(page.into_iter().map(Deployment::from).collect())
    }

    /// Builds, newest first.
    async fn builds(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Build>> {
        let builds: Vec<_> = call!(ctx, "builds", |cp, caller| cp.list_builds(caller, &self.summary.name))?;
        Ok(builds.into_iter().map(Build::from).collect())
    }

    /// Variables (secrets masked), optionally of one environment.
    async fn env(&self, ctx: &Context<'_>, environment: Option<String>) -> async_graphql::Result<Vec<EnvVar>> {
        let vars: Vec<_> =
            call!(ctx, "env", |cp, caller| cp.env_list(caller, &self.summary.name, environment.as_deref()))?;
        Ok(vars.into_iter().map(EnvVar::from).collect())
    }
}

pub(crate) struct Query;

#[Object]
impl Query {
    async fn whoami(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let me = call!(ctx, "whoami", |cp, caller| cp.whoami(caller))?;
        Ok(Me {
            user: me.user,
            org: me.org,
            role: me.role.as_str().to_owned(),
            token: me.token,
            read_only: me.read_only,
            server_admin: me.server_admin,
            project: me.project,
        })
    }

    async fn orgs(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Org>> {
        let orgs: Vec<_> = call!(ctx, "orgs", |cp, caller| cp.orgs(caller))?;
        Ok(orgs.into_iter().map(|o| Org { name: o.name, created_at_ms: o.created_at_ms }).collect())
    }

    async fn projects(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Project>> {
        let projects: Vec<_> = call!(ctx, "projects", |cp, caller| cp.list_projects(caller))?;
        Ok(projects.into_iter().map(|summary| Project { summary }).collect())
    }

    /// One project (another organisation's: not found).
    async fn project(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Project> {
        let found = call!(ctx, "project", |cp, caller| cp.project_summary(caller, &name))?;
        Ok(Project { summary: found })
    }

    async fn deployment(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Deployment> {
        let (row, _) =
            call!(ctx, "deployment", |cp, caller| cp.deployment_for(caller, &id, Need::READ, "read deployments"))?;
        Ok(parts(ctx).0.view(&row).into())
    }

    async fn build(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Build> {
        let row = call!(ctx, "build", |cp, caller| cp.build_for(caller, &id, Need::READ, "read builds"))?;
        Ok(parts(ctx).0.build_view(&row).into())
    }

    /// The audit log, oldest first (of one project, or the organisation's).
    async fn audit(
        &self,
        ctx: &Context<'_>,
        project: Option<String>,
        after: Option<u64>,
        limit: Option<i64>,
    ) -> async_graphql::Result<Vec<AuditEntry>> {
        let entries: Vec<_> = call!(ctx, "audit", |cp, caller| cp.audit_entries(
            caller,
            project.as_deref(),
            after.unwrap_or(0),
            limit.unwrap_or(1000)
        ))?;
        Ok(entries.into_iter().map(AuditEntry::from).collect())
    }
}

/// A variable's value and where it applies.
#[derive(async_graphql::InputObject)]
pub(crate) struct EnvInput {
    value: String,
    /// Default: production, preview and development.
    environments: Option<Vec<String>>,
    /// Only builds and functions of this branch.
    branch: Option<String>,
    /// Write-only: never shown again.
    secret: Option<bool>,
}

pub(crate) struct Mutation;

impl Mutation {
    /// A pointer change's answer, once the edges serve it (or said not to
    /// yet: `served: false`).
    async fn served(
        ctx: &Context<'_>,
        field: &str,
        changed: Result<(helix_store::DeploymentRow, Option<u64>), ApiError>,
    ) -> async_graphql::Result<Deployment> {
        let (cp, caller) = parts(ctx);
        let answer = async {
            let (row, seq) = changed?;
            let propagation = cp.committed(seq).await?;
            Ok(helix_core::api::Deployment { propagation: Some(propagation), ..cp.view(&row) })
        };
        match answer.await {
            Ok(d) => Ok(d.into()),
            Err(e) => Err(refused(cp, caller, field, e).await),
        }
    }
}

#[Object]
impl Mutation {
    /// Serve this deployment in production.
    async fn promote(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Deployment> {
        let (cp, caller) = parts(ctx);
        Mutation::served(ctx, "promote", cp.promote(caller, &id).await).await
    }

    /// Serve the previous (or the named) deployment in production.
    async fn rollback(&self, ctx: &Context<'_>, project: String, to: Option<ID>) -> async_graphql::Result<Deployment> {
        let (cp, caller) = parts(ctx);
        let req = helix_core::api::Rollback { to: to.map(|id| id.0) };
        Mutation::served(ctx, "rollback", cp.rollback(caller, &project, &req).await).await
    }

    /// Set a variable (default: the three standard environments); answers
    /// its values, secrets masked.
    async fn set_env(
        &self,
        ctx: &Context<'_>,
        project: String,
        name: String,
        input: EnvInput,
    ) -> async_graphql::Result<Vec<EnvVar>> {
        let req = helix_core::env::SetEnv {
            value: input.value,
            environments: input.environments.unwrap_or_default(),
            branch: input.branch,
            secret: input.secret.unwrap_or(false),
        };
        let vars: Vec<_> = call!(ctx, "setEnv", |cp, caller| cp.env_set(caller, &project, &name, &req))?;
        Ok(vars.into_iter().map(EnvVar::from).collect())
    }

    /// Remove a variable (of one environment and branch, or all); answers
    /// how many values went.
    async fn remove_env(
        &self,
        ctx: &Context<'_>,
        project: String,
        name: String,
        environment: Option<String>,
        branch: Option<String>,
    ) -> async_graphql::Result<u64> {
        call!(ctx, "removeEnv", |cp, caller| cp.env_remove(
            caller,
            &project,
            &name,
            environment.as_deref(),
            branch.as_deref()
        ))
    }
}

/// `POST /graphql`: a GraphQL request as JSON (`query`, `variables`,
/// `operationName`); the answer is GraphQL's (`data`, `errors`).
pub(crate) async fn serve(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Arc<Ctx>>,
    body: Bytes,
) -> Response {
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::BadRequest(format!("the body is not a GraphQL request ({{\"query\": …}}): {e}"))
                .into_response();
        }
    };
    let response = cp.graphql.execute(request.data(cp.clone()).data(caller)).await;
    axum::Json(response).into_response()
}
