//! Identity operations: who the caller is, tokens, members and
//! organisations.
//!
//! A token never gets more than its maker has: its role is at most the
//! maker's on the scope it covers, and a token narrowed to a project makes
//! only tokens narrowed to that project.

use helix_core::identity::{
    AddMember, CreateOrg, CreateToken, CreatedToken, Membership, Org, Role, TokenInfo, WhoAmI, check_name,
};
use helix_store::{NewAudit, NewToken};

use crate::access::{Ctx, Need};
use crate::auth::{hash_token, new_secret};
use crate::policy::Decision;
use crate::problem::{ApiError, parse};
use crate::{ControlPlane, now_ms};

/// Longest token lifetime a caller may ask for: ten years.
const MAX_TOKEN_SECS: u64 = 10 * 365 * 24 * 3600;

/// How long a build worker's token lives at most (it is revoked when the
/// build ends).
const BUILD_TOKEN_MS: i64 = 6 * 3600 * 1000;

impl ControlPlane {
    pub(crate) async fn whoami(&self, ctx: &Ctx) -> Result<WhoAmI, ApiError> {
        let t = &ctx.actor.token;
        Ok(WhoAmI {
            user: t.user.clone(),
            org: t.org.clone(),
            role: t.role,
            token: t.id.clone(),
            token_name: t.name.clone(),
            project: t.project.clone(),
            read_only: t.read_only,
            server_admin: t.server_admin,
            memberships: self.store.identity().members(&t.org_id, Some(&t.user_id)).await?,
        })
    }

    /// The caller's tokens; an organisation admin's lists everyone's.
    pub(crate) async fn list_tokens(&self, ctx: &Ctx) -> Result<Vec<TokenInfo>, ApiError> {
        ctx.check_caller(Need::READ, "list tokens")?;
        let all = ctx.actor.org_role().is_some_and(|r| r >= Role::Admin);
        let user = (!all).then_some(ctx.actor.token.user_id.as_str());
        Ok(self.store.identity().tokens(ctx.actor.org_id(), user).await?.iter().map(|t| t.info()).collect())
    }

    pub(crate) async fn create_token(&self, ctx: &Ctx, body: &[u8]) -> Result<CreatedToken, ApiError> {
        let req: CreateToken = parse(body, "token")?;
        let name = req.name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(ApiError::BadRequest("a token's name must be 1–100 printable characters".into()));
        }
        let caller = &ctx.actor.token;
        let org_id = match &req.org {
            Some(org) if *org != caller.org => {
                ctx.check_server_admin("make tokens in another organisation")?;
                self.store
                    .identity()
                    .org_id(org)
                    .await?
                    .ok_or_else(|| ApiError::NotFound(format!("organisation {org} not found")))?
            }
            _ => caller.org_id.clone(),
        };
        let foreign_org = org_id != caller.org_id;
        let project = match &req.project {
            Some(name) => {
                let project = self.project_for(ctx, name, Need::SELF_WRITE, "make tokens").await?;
                if project.org_id != org_id {
                    return Err(crate::access::not_found(name));
                }
                Some(project)
            }
            None => {
                if caller.project_id.is_some() {
                    return Err(ApiError::Forbidden(
                        "this token is narrowed to one project: the tokens it makes must name it (--project)".into(),
                    ));
                }
                ctx.check_org(Need::SELF_WRITE, "make tokens")?;
                None
            }
        };
        // The most the maker may hand on over that scope.
        let ceiling = match &project {
            _ if caller.server_admin => Role::Owner,
            Some(p) => ctx.actor.role_on(p).unwrap_or(Role::Viewer),
            None => ctx.actor.org_role().unwrap_or(Role::Viewer),
        };
        let role = req.role.unwrap_or(ceiling);
        if role > ceiling {
            return Err(ApiError::Forbidden(format!("a token cannot have more than its maker's role ({ceiling})")));
        }
        let (user_id, user) = match &req.user {
            Some(user) if *user != caller.user => {
                if !caller.server_admin {
                    ctx.check_org(Need::MANAGE, "make tokens for other users")?;
                }
                let id = self
                    .store
                    .identity()
                    .user_id(user)
                    .await?
                    .ok_or_else(|| ApiError::NotFound(format!("user {user} not found")))?;
                (id, user.clone())
            }
            _ if foreign_org => {
                return Err(ApiError::BadRequest("a token in another organisation must name its user (--user)".into()));
            }
            _ => (caller.user_id.clone(), caller.user.clone()),
        };
        if self.store.identity().roles_of(&org_id, &user_id).await?.is_empty() {
            return Err(ApiError::BadRequest(format!("user {user} is not a member of that organisation")));
        }
        let expires_at_ms = match req.expires_in_secs {
            Some(0) => return Err(ApiError::BadRequest("expires_in_secs must be at least 1".into())),
            Some(s) if s > MAX_TOKEN_SECS => {
                return Err(ApiError::BadRequest(format!(
                    "a token lives at most {MAX_TOKEN_SECS} seconds (ten years)"
                )));
            }
            Some(s) => Some(ctx.now_ms + (s as i64) * 1000),
            None => None,
        };
        let request = serde_json::json!({
            "name": name, "user": user, "role": role, "project": req.project, "read_only": req.read_only,
            "expires_at_ms": expires_at_ms,
        });
        self.decide_for(
            ctx,
            Decision { action: "token.create", project: project.as_ref(), request, ..Decision::default() },
        )
        .await?;
        let token = new_secret("hx_").map_err(ApiError::Internal)?;
        let detail = serde_json::json!({
            "name": name,
            "user": user,
            "role": role,
            "project": req.project,
            "read_only": req.read_only,
            "expires_at_ms": expires_at_ms,
        });
        let org_name = match &project {
            Some(p) => p.org.clone(),
            None if foreign_org => req.org.clone().unwrap_or_default(),
            None => caller.org.clone(),
        };
        let audit = NewAudit { org: &org_name, ..ctx.audit("token.create", detail) };
        let id = self
            .store
            .identity()
            .insert_token(NewToken {
                sha256_hex: &hash_token(&token),
                name,
                user_id: &user_id,
                org_id: &org_id,
                role,
                project_id: project.as_ref().map(|p| p.id.as_str()),
                read_only: req.read_only,
                server_admin: false,
                build_id: None,
                expires_at_ms,
                audit: &audit,
                now_ms: ctx.now_ms,
            })
            .await?;
        let row = self.store.identity().token(&id).await?.ok_or_else(|| ApiError::Internal("token vanished".into()))?;
        Ok(CreatedToken { token, info: row.info() })
    }

    /// Revokes a token: one's own, or (admins) anyone's in the organisation.
    pub(crate) async fn revoke_token(&self, ctx: &Ctx, id: &str) -> Result<TokenInfo, ApiError> {
        let missing = || ApiError::NotFound(format!("token {id} not found"));
        let row = self.store.identity().token(id).await?.ok_or_else(missing)?;
        let caller = &ctx.actor.token;
        if row.org_id != caller.org_id && !caller.server_admin {
            return Err(missing());
        }
        if row.user_id == caller.user_id && row.org_id == caller.org_id {
            ctx.check_caller(Need::SELF_WRITE, "revoke tokens")?;
        } else if !caller.server_admin {
            ctx.check_org(Need::MANAGE, "revoke other users' tokens")?;
        }
        let detail = serde_json::json!({ "name": row.name, "user": row.user });
        let audit = NewAudit { org: &row.org, target: Some(&row.id), ..ctx.audit("token.revoke", detail) };
        self.store.identity().revoke_token(&row.id, &audit, ctx.now_ms).await?;
        let row = self.store.identity().token(&row.id).await?.ok_or_else(missing)?;
        Ok(row.info())
    }

    pub(crate) async fn members(&self, ctx: &Ctx) -> Result<Vec<Membership>, ApiError> {
        ctx.check_org(Need::READ, "list members")?;
        Ok(self.store.identity().members(ctx.actor.org_id(), None).await?)
    }

    /// Gives a user (made on first use) a role in the caller's
    /// organisation or one of its projects. Owners alone make owners.
    pub(crate) async fn add_member(&self, ctx: &Ctx, body: &[u8]) -> Result<Vec<Membership>, ApiError> {
        ctx.check_org(Need::MANAGE, "add members")?;
        let req: AddMember = parse(body, "member")?;
        check_name("user", &req.user).map_err(ApiError::BadRequest)?;
        let org_id = ctx.actor.org_id().to_owned();
        let was_owner = self
            .store
            .identity()
            .members(&org_id, None)
            .await?
            .iter()
            .any(|m| m.user == req.user && m.role == Role::Owner && m.project.as_deref() == req.project.as_deref());
        if req.role == Role::Owner || was_owner {
            ctx.check_org(Need { role: Role::Owner, ..Need::MANAGE }, "make or change owners")?;
        }
        let project_id = match &req.project {
            Some(name) => Some(self.project_for(ctx, name, Need::MANAGE, "add members").await?.id),
            None => None,
        };
        let owners = self.store.identity().members(&org_id, None).await?;
        let other_owner = owners.iter().any(|m| m.role == Role::Owner && m.project.is_none() && m.user != req.user);
        if was_owner && req.project.is_none() && req.role != Role::Owner && !other_owner {
            return Err(ApiError::Conflict("an organisation keeps at least one owner".into()));
        }
        let detail = serde_json::json!({ "user": req.user, "role": req.role, "project": req.project });
        let decision = Decision { action: "member.change", request: detail.clone(), ..Decision::default() };
        self.decide_for(ctx, decision).await?;
        let audit = NewAudit { target: Some(&req.user), ..ctx.audit("member.change", detail) };
        self.store
            .identity()
            .set_member(&org_id, &req.user, req.role, project_id.as_deref(), &audit, ctx.now_ms)
            .await?;
        let user_id = self.store.identity().user_id(&req.user).await?;
        Ok(self.store.identity().members(&org_id, user_id.as_deref()).await?)
    }

    pub(crate) async fn remove_member(
        &self,
        ctx: &Ctx,
        user: &str,
        project: Option<&str>,
    ) -> Result<Vec<Membership>, ApiError> {
        ctx.check_org(Need::MANAGE, "remove members")?;
        let org_id = ctx.actor.org_id().to_owned();
        let members = self.store.identity().members(&org_id, None).await?;
        let Some(found) = members.iter().find(|m| m.user == user && m.project.as_deref() == project) else {
            return Err(ApiError::NotFound(format!("{user} is not a member here")));
        };
        if found.role == Role::Owner {
            ctx.check_org(Need { role: Role::Owner, ..Need::MANAGE }, "remove owners")?;
        }
        let project_id = match project {
            Some(name) => Some(self.project_for(ctx, name, Need::MANAGE, "remove members").await?.id),
            None => None,
        };
        let detail = serde_json::json!({ "user": user, "removed": true, "project": project });
        let decision = Decision { action: "member.change", request: detail.clone(), ..Decision::default() };
        self.decide_for(ctx, decision).await?;
        let audit = NewAudit { target: Some(user), ..ctx.audit("member.change", detail) };
        self.store.identity().remove_member(&org_id, user, project_id.as_deref(), &audit).await.map_err(
            |e| match e {
                helix_store::MemberError::NotMember(_) => ApiError::NotFound(e.to_string()),
                helix_store::MemberError::LastOwner => ApiError::Conflict(e.to_string()),
                helix_store::MemberError::Store(e) => e.into(),
            },
        )?;
        let user_id = self.store.identity().user_id(user).await?;
        Ok(self.store.identity().members(&org_id, user_id.as_deref()).await?)
    }

    /// The caller's organisation (every one, for the server admin).
    pub(crate) async fn orgs(&self, ctx: &Ctx) -> Result<Vec<Org>, ApiError> {
        let only = (!ctx.actor.token.server_admin).then_some(ctx.actor.org_id());
        let rows = self.store.identity().orgs(only).await?;
        Ok(rows.into_iter().map(|(_, name, created_at_ms)| Org { name, created_at_ms }).collect())
    }

    /// The projects the caller can see (a narrowed token: its one).
    pub(crate) async fn list_projects(&self, ctx: &Ctx) -> Result<Vec<helix_core::api::ProjectSummary>, ApiError> {
        let only = (!ctx.actor.token.server_admin).then_some(ctx.actor.org_id());
        let rows = self.store.identity().projects(only).await?;
        Ok(rows
            .into_iter()
            .filter(|(project, _)| ctx.actor.role_on(project).is_some())
            .map(|(project, production)| self.summary(project, production))
            .collect())
    }

    /// One project the caller can see.
    pub(crate) async fn project_summary(
        &self,
        ctx: &Ctx,
        name: &str,
    ) -> Result<helix_core::api::ProjectSummary, ApiError> {
        let project = self.project_for(ctx, name, crate::access::Need::READ, "read projects").await?;
        let production = self.store.deployments().production_deployment(&crate::pointers::name_of(&project)?).await?;
        Ok(self.summary(project, production.map(|d| d.id.to_string())))
    }

    fn summary(&self, project: helix_store::ProjectRef, production: Option<String>) -> helix_core::api::ProjectSummary {
        let url =
            helix_core::ProjectName::parse(&project.name).map(|p| self.edge.production_url(&p)).unwrap_or_default();
        helix_core::api::ProjectSummary { name: project.name, org: project.org, production, url }
    }

    /// A new organisation with its first owner (server admin only).
    pub(crate) async fn create_org(&self, ctx: &Ctx, body: &[u8]) -> Result<Org, ApiError> {
        ctx.check_server_admin("create organisations")?;
        let req: CreateOrg = parse(body, "organisation")?;
        check_name("organisation", &req.name).map_err(ApiError::BadRequest)?;
        check_name("user", &req.owner).map_err(ApiError::BadRequest)?;
        let detail = serde_json::json!({ "owner": req.owner });
        let audit = NewAudit { org: &req.name, target: Some(&req.name), ..ctx.audit("org.create", detail.clone()) };
        if !self.store.identity().create_org(&req.name, &audit, ctx.now_ms).await? {
            return Err(ApiError::Conflict(format!("organisation {} exists already", req.name)));
        }
        let org_id =
            self.store.identity().org_id(&req.name).await?.ok_or_else(|| ApiError::Internal("org vanished".into()))?;
        let detail = serde_json::json!({ "user": req.owner, "role": Role::Owner });
        let audit = NewAudit { org: &req.name, target: Some(&req.owner), ..ctx.audit("member.change", detail) };
        self.store.identity().set_member(&org_id, &req.owner, Role::Owner, None, &audit, ctx.now_ms).await?;
        Ok(Org { name: req.name, created_at_ms: ctx.now_ms })
    }

    /// A token for one build: it may create one deployment of the build's
    /// project and upload and finalize that one, until the build ends.
    pub async fn build_token(&self, build: &str, project: &str) -> Result<String, String> {
        let found = self.store.identity().project_ref(project).await.map_err(|e| e.to_string())?;
        let found = found.ok_or_else(|| format!("project {project} not found"))?;
        let token = new_secret("hxb_")?;
        let now = now_ms();
        let audit =
            system_audit(&found.org, Some(&found.name), "token.create", serde_json::json!({ "build": build }), now);
        self.store
            .identity()
            .insert_token(NewToken {
                sha256_hex: &hash_token(&token),
                name: &format!("build {build}"),
                user_id: "admin",
                org_id: &found.org_id,
                role: Role::Developer,
                project_id: Some(&found.id),
                read_only: false,
                server_admin: false,
                build_id: Some(build),
                expires_at_ms: Some(now + BUILD_TOKEN_MS),
                audit: &audit,
                now_ms: now,
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(token)
    }
}

/// An audit entry of the server's own doing.
pub(crate) fn system_audit<'a>(
    org: &'a str,
    project: Option<&'a str>,
    action: &'a str,
    detail: serde_json::Value,
    at_ms: i64,
) -> NewAudit<'a> {
    NewAudit {
        org,
        actor: "system",
        token: None,
        action,
        project,
        target: None,
        outcome: "ok",
        detail,
        request_id: None,
        at_ms,
    }
}
