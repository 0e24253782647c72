//! Environment variables and secrets per project: set, list (secrets
//! masked), remove, import a `.env`, pull one environment's plain values;
//! resolved and decrypted only for builds and function instances, each
//! decryption audited; master-key rotation.

use std::collections::BTreeMap;

use helix_core::env::{EnvVar, ImportEnv, PulledEnv, Rotated, STANDARD_ENVIRONMENTS, SetEnv};
use helix_store::{EnvRow, NewAudit, NewEnv, ProjectRef};

use crate::access::{Ctx, Need};
use crate::policy::Decision;
use crate::problem::ApiError;
use crate::secrets::SecretKey;
use crate::{ControlPlane, now_ms};

/// Who reads a project's variables: a build or a function instance, and
/// the deployment it is of (the policy input's `deployment`).
pub struct Reader {
    /// `build` or `function`.
    pub kind: &'static str,
    /// `build 01j…`, `function api/hello of deployment 01j…`.
    pub name: String,
    pub deployment: serde_json::Value,
}

/// What a secret's value is sealed with: its project and name.
fn value_context(project_id: &str, name: &str) -> String {
    format!("env:{project_id}:{name}")
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// The environments a write names (default: the standard three), checked.
fn environments(given: &[String]) -> Result<Vec<String>, ApiError> {
    if given.is_empty() {
        return Ok(STANDARD_ENVIRONMENTS.iter().map(|e| (*e).to_owned()).collect());
    }
    let mut out: Vec<String> = Vec::new();
    for e in given {
        helix_core::env::check_environment(e).map_err(ApiError::BadRequest)?;
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

fn branch(given: Option<&str>) -> Result<&str, ApiError> {
    match given {
        Some(b) if !helix_core::build::is_branch_name(b) => {
            Err(ApiError::BadRequest(format!("branch {b:?} is not a valid branch name")))
        }
        Some(b) => Ok(b),
        None => Ok(""),
    }
}

fn view(row: &EnvRow) -> EnvVar {
    EnvVar {
        name: row.name.clone(),
        environment: row.environment.clone(),
        branch: (!row.branch.is_empty()).then(|| row.branch.clone()),
        secret: row.secret,
        value: (!row.secret).then(|| row.value.clone()),
        updated_at_ms: row.updated_at_ms,
    }
}

/// The rows that apply in `environment` on `branch`: a branch's own over
/// the environment-wide one.
fn applying<'a>(rows: &'a [EnvRow], environment: &str, branch: &str) -> BTreeMap<&'a str, &'a EnvRow> {
    let mut out: BTreeMap<&str, &EnvRow> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.environment == environment) {
        if row.branch.is_empty() {
            out.entry(&row.name).or_insert(row);
        } else if row.branch == branch {
            out.insert(&row.name, row);
        }
    }
    out
}

impl ControlPlane {
    /// The project's data key, made (and stored wrapped) on first use.
    async fn data_key(&self, project: &ProjectRef) -> Result<SecretKey, ApiError> {
        let (wrapped, master_id) = match self.store.env().project_key(&project.id).await? {
            Some(stored) => stored,
            None => {
                let _not_rotating = self.rotation.read().await;
                let (_, wrapped, master_id) = self.secrets.new_data_key(&project.id).map_err(internal)?;
                // A racing writer's key may have landed first: use whichever stays.
                self.store.env().insert_project_key(&project.id, &wrapped, &master_id, now_ms()).await?
            }
        };
        self.secrets.unwrap_data_key(&project.id, &wrapped, &master_id).map_err(internal)
    }

    /// The project variables are written to, made on first use (so they
    /// can be set before the first deploy).
    async fn env_project(&self, ctx: &Ctx, project: &str) -> Result<ProjectRef, ApiError> {
        let name = helix_core::ProjectName::parse(project).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let found = self.project_or_new(ctx, &name, Need::DEPLOY, "write environment variables").await?;
        if !found.id.is_empty() {
            return Ok(found);
        }
        self.store
            .identity()
            .ensure_project(name.as_str(), &found.org_id, now_ms())
            .await?
            .ok_or_else(|| crate::access::name_taken(&name))
    }

    pub(crate) async fn env_list(
        &self,
        ctx: &Ctx,
        project: &str,
        environment: Option<&str>,
    ) -> Result<Vec<EnvVar>, ApiError> {
        let project = self.project_for(ctx, project, Need::READ, "read environment variables").await?;
        let decision = Decision { action: "env.read", project: Some(&project), environment, ..Decision::default() };
        self.decide_for(ctx, decision).await?;
        Ok(self.store.env().env_vars(&project.id, environment).await?.iter().map(view).collect())
    }

    pub(crate) async fn env_set(
        &self,
        ctx: &Ctx,
        project: &str,
        name: &str,
        req: &SetEnv,
    ) -> Result<Vec<EnvVar>, ApiError> {
        let project = self.env_project(ctx, project).await?;
        self.write_env(ctx, &project, name, req).await?;
        Ok(self.store.env().env_vars(&project.id, None).await?.iter().filter(|r| r.name == name).map(view).collect())
    }

    /// Checks and stores one variable in each of its environments.
    async fn write_env(&self, ctx: &Ctx, project: &ProjectRef, name: &str, req: &SetEnv) -> Result<(), ApiError> {
        let SetEnv { value, environments: given, branch: branch_name, secret } = req;
        let (environments, branch_name, secret) = (environments(given)?, branch_name.as_deref(), *secret);
        helix_core::env::check_name(name).map_err(ApiError::BadRequest)?;
        let branch = branch(branch_name)?;
        if value.len() > helix_core::env::MAX_VALUE_BYTES || value.contains('\0') {
            return Err(ApiError::BadRequest(format!(
                "the value of {name} must be at most {} bytes, without NUL",
                helix_core::env::MAX_VALUE_BYTES
            )));
        }
        let request = serde_json::json!({
            "name": name, "environments": environments, "branch": branch_name, "secret": secret, "removed": false,
        });
        let single = (environments.len() == 1).then(|| environments[0].as_str());
        let decision = Decision {
            action: "env.write",
            project: Some(project),
            environment: single,
            request,
            ..Decision::default()
        };
        self.decide_for(ctx, decision).await?;
        let stored = if secret {
            self.data_key(project).await?.seal(&value_context(&project.id, name), value.as_bytes()).map_err(internal)?
        } else {
            value.to_owned()
        };
        let detail = serde_json::json!({
            "name": name, "environments": environments, "branch": branch_name, "secret": secret,
        });
        let audit = NewAudit { target: Some(name), ..ctx.audit_on(project, "env.write", detail) };
        let new = NewEnv {
            project_id: &project.id,
            name,
            environments: &environments,
            branch,
            secret,
            value: &stored,
            now_ms: ctx.now_ms,
        };
        Ok(self.store.env().set_env(new, &audit).await?)
    }

    pub(crate) async fn env_remove(
        &self,
        ctx: &Ctx,
        project: &str,
        name: &str,
        environment: Option<&str>,
        branch_name: Option<&str>,
    ) -> Result<u64, ApiError> {
        let project = self.project_for(ctx, project, Need::DEPLOY, "write environment variables").await?;
        let detail = serde_json::json!({
            "name": name, "removed": true, "environment": environment, "branch": branch_name,
        });
        let decision = Decision {
            action: "env.write",
            project: Some(&project),
            environment,
            request: detail.clone(),
            ..Decision::default()
        };
        self.decide_for(ctx, decision).await?;
        let audit = NewAudit { target: Some(name), ..ctx.audit_on(&project, "env.write", detail) };
        let n = self.store.env().remove_env(&project.id, name, environment, branch_name, &audit).await?;
        if n == 0 {
            return Err(ApiError::NotFound(format!("{name} is not set in project {}", project.name)));
        }
        Ok(n)
    }

    /// Every `KEY=value` of a `.env` file, or none when a line is bad.
    pub(crate) async fn env_import(&self, ctx: &Ctx, project: &str, body: &[u8]) -> Result<Vec<String>, ApiError> {
        let project = self.env_project(ctx, project).await?;
        let req: ImportEnv = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not a valid import: {e}")))?;
        let pairs =
            helix_core::env::parse_dotenv(&req.dotenv).map_err(|e| ApiError::BadRequest(format!(".env {e}")))?;
        // Everything checked before anything is written (parse_dotenv
        // checked each name, size and NUL, as write_env does).
        environments(&req.environments)?;
        branch(req.branch.as_deref())?;
        for (name, value) in &pairs {
            let one = SetEnv {
                value: value.clone(),
                environments: req.environments.clone(),
                branch: req.branch.clone(),
                secret: req.secret,
            };
            self.write_env(ctx, &project, name, &one).await?;
        }
        Ok(pairs.into_iter().map(|(k, _)| k).collect())
    }

    /// One environment's plain values (secrets only named), for a local
    /// `.env`.
    pub(crate) async fn env_pull(
        &self,
        ctx: &Ctx,
        project: &str,
        environment: &str,
        branch_name: Option<&str>,
    ) -> Result<PulledEnv, ApiError> {
        let project = self.project_for(ctx, project, Need::READ, "read environment variables").await?;
        helix_core::env::check_environment(environment).map_err(ApiError::BadRequest)?;
        let decision = Decision {
            action: "env.read",
            project: Some(&project),
            environment: Some(environment),
            ..Decision::default()
        };
        self.decide_for(ctx, decision).await?;
        let rows = self.store.env().env_vars(&project.id, Some(environment)).await?;
        let mut pulled = PulledEnv { environment: environment.to_owned(), ..PulledEnv::default() };
        for (name, row) in applying(&rows, environment, branch(branch_name)?) {
            if row.secret {
                pulled.secrets.push(name.to_owned());
            } else {
                pulled.values.insert(name.to_owned(), row.value.clone());
            }
        }
        Ok(pulled)
    }

    /// What a build or a function instance of `project` in `environment`
    /// on `branch` gets, secrets decrypted once the policy allows
    /// `secret.read`; the decryption is audited as `reader`'s.
    pub async fn resolve_env(
        &self,
        project: &str,
        environment: &str,
        branch: &str,
        reader: &Reader,
    ) -> Result<Vec<(String, String, bool)>, String> {
        let Some(project) = self.store.identity().project_ref(project).await.map_err(|e| e.to_string())? else {
            return Ok(Vec::new());
        };
        let rows = self.store.env().env_vars(&project.id, Some(environment)).await.map_err(|e| e.to_string())?;
        let chosen = applying(&rows, environment, branch);
        let mut key = None;
        let mut out = Vec::new();
        let mut secrets = Vec::new();
        let secret_names: Vec<&str> = chosen.values().filter(|r| r.secret).map(|r| r.name.as_str()).collect();
        if !secret_names.is_empty() {
            let decision = Decision {
                action: "secret.read",
                project: Some(&project),
                environment: Some(environment),
                deployment: Some(reader.deployment.clone()),
                request: serde_json::json!({ "names": secret_names }),
            };
            let actor = serde_json::json!({ "kind": reader.kind, "name": reader.name });
            let input = crate::policy::document(&decision, actor, now_ms());
            let audit = NewAudit {
                project: Some(&project.name),
                ..crate::identity::system_audit(&project.org, None, "secret.read", serde_json::Value::Null, now_ms())
            };
            self.decide(&project.org_id, audit, &input).await.map_err(|e| e.to_string())?;
        }
        for (name, row) in chosen {
            let value = if row.secret {
                if key.is_none() {
                    key = Some(self.data_key(&project).await.map_err(|e| e.to_string())?);
                }
                let key = key.as_ref().expect("just set");
                let plain = key
                    .open(&value_context(&project.id, name), &row.value)
                    .map_err(|e| format!("secret {name} of project {}: {e}", project.name))?;
                secrets.push(name.to_owned());
                String::from_utf8(plain).map_err(|_| format!("secret {name} is not UTF-8"))?
            } else {
                row.value.clone()
            };
            out.push((name.to_owned(), value, row.secret));
        }
        if !secrets.is_empty() {
            let detail = serde_json::json!({ "for": reader.name, "environment": environment, "names": secrets });
            let audit = NewAudit {
                project: Some(&project.name),
                ..crate::identity::system_audit(&project.org, None, "secret.read", detail, now_ms())
            };
            self.store.audit().append_audit(&audit).await.map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// Re-wraps every project's data key and re-seals every git credential
    /// under a new master key (under `HELIX_MASTER_KEY`, when the keys come
    /// from the environment), then retires the old keys.
    pub(crate) async fn rotate_keys(&self, ctx: &Ctx) -> Result<Rotated, ApiError> {
        ctx.check_server_admin("rotate the master key")?;
        // Nothing is sealed under a master key while they change.
        let _alone = self.rotation.write().await;
        let next = self.secrets.prepare_rotation().map_err(internal)?;
        let mut keys = Vec::new();
        for (project_id, wrapped, master_id) in self.store.env().project_keys().await? {
            let again = self.secrets.rewrap_data_key(&project_id, &wrapped, &master_id, &next).map_err(internal)?;
            keys.push((project_id, again));
        }
        let mut credentials = Vec::new();
        for (project, sealed) in self.store.env().sealed_credentials().await? {
            let context = credentials_context(&project);
            let plain = self.secrets.open(&context, &sealed).map_err(internal)?;
            credentials.push((project, next.seal(&context, plain.as_bytes()).map_err(internal)?));
        }
        let detail =
            serde_json::json!({ "key": next.id(), "project_keys": keys.len(), "git_credentials": credentials.len() });
        let audit = NewAudit { org: "*", target: Some(next.id()), ..ctx.audit("keys.rotate", detail) };
        self.store.env().rewrap(&keys, next.id(), &credentials, &audit).await?;
        self.secrets.finish_rotation(next.clone()).map_err(internal)?;
        Ok(Rotated {
            key: next.id().to_owned(),
            project_keys: keys.len() as u64,
            git_credentials: credentials.len() as u64,
        })
    }
}

/// What a git credential is sealed with: its project's name.
pub(crate) fn credentials_context(project: &str) -> String {
    project.to_owned()
}
