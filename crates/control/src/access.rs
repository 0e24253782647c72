//! Who is calling and what they may touch: the context every operation is
//! called with, and the checks operations make before they change or show
//! anything.
//!
//! An object of another organisation, or outside a token's project scope,
//! answers 404 exactly as a missing one does: its existence does not leak.
//! A visible object the caller's role does not cover answers 403.

use helix_core::identity::Role;
use helix_store::{NewAudit, ProjectRef, TokenRow};

use crate::ControlPlane;
use crate::problem::ApiError;

/// What an operation is called with besides its input.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    pub actor: Actor,
    /// The request's id (`x-request-id`), for logs and the audit trail.
    pub request_id: String,
    pub now_ms: i64,
}

/// The caller: a token and what its user may do.
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    pub token: TokenRow,
    /// The user's memberships in the token's organisation: project id
    /// (`None`: the whole organisation) and role.
    pub roles: Vec<(Option<String>, Role)>,
}

/// What an operation needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub role: Role,
    /// It changes something: read-only tokens may not.
    pub write: bool,
    /// A build worker's token may do it (on the deployment it creates).
    pub build: bool,
}

impl Need {
    pub const READ: Need = Need { role: Role::Viewer, write: false, build: false };
    /// Deploys, builds, moves pointers.
    pub const DEPLOY: Need = Need { role: Role::Developer, write: true, build: false };
    /// What a build worker does: create one deployment and upload it.
    pub const BUILD_DEPLOY: Need = Need { role: Role::Developer, write: true, build: true };
    /// Repository links, members, others' tokens.
    pub const MANAGE: Need = Need { role: Role::Admin, write: true, build: false };
    /// A change to the caller's own things (their tokens).
    pub const SELF_WRITE: Need = Need { role: Role::Viewer, write: true, build: false };
}

impl Actor {
    pub fn org_id(&self) -> &str {
        &self.token.org_id
    }

    /// The role the caller has on `project`, or `None` when it may not
    /// see it at all.
    pub fn role_on(&self, project: &ProjectRef) -> Option<Role> {
        if self.token.server_admin {
            return Some(Role::Owner);
        }
        if project.org_id != self.token.org_id {
            return None;
        }
        if self.token.project_id.as_ref().is_some_and(|scope| *scope != project.id) {
            return None;
        }
        let user = self.roles.iter().filter(|(p, _)| p.as_ref().is_none_or(|p| *p == project.id)).map(|(_, r)| *r);
        user.max().map(|r| r.min(self.token.role))
    }

    /// The role the caller has across its organisation; `None` for a
    /// token narrowed to one project or a user with project roles only.
    pub fn org_role(&self) -> Option<Role> {
        if self.token.server_admin {
            return Some(Role::Owner);
        }
        if self.token.project_id.is_some() || self.token.build_id.is_some() {
            return None;
        }
        self.roles.iter().filter(|(p, _)| p.is_none()).map(|(_, r)| *r).max().map(|r| r.min(self.token.role))
    }

    /// Whether `role` and the token's kind allow `need`; the 403 why not.
    fn allows(&self, role: Role, need: Need, what: &str) -> Result<(), ApiError> {
        if self.token.build_id.is_some() && !need.build {
            return Err(ApiError::Forbidden(format!("a build's token may not {what}")));
        }
        if need.write && self.token.read_only {
            return Err(ApiError::Forbidden(format!("this token is read-only and may not {what}")));
        }
        if role < need.role {
            return Err(ApiError::Forbidden(format!("role {role} may not {what} (it takes {} or above)", need.role)));
        }
        Ok(())
    }
}

impl Ctx {
    /// Checks `need` on an existing project.
    pub(crate) fn check(&self, project: &ProjectRef, need: Need, what: &str) -> Result<(), ApiError> {
        let role = self.actor.role_on(project).ok_or_else(|| not_found(&project.name))?;
        self.actor.allows(role, need, what)
    }

    /// Checks `need` across the organisation (members, tokens, new
    /// organisation-wide things).
    pub(crate) fn check_org(&self, need: Need, what: &str) -> Result<(), ApiError> {
        let role = self
            .actor
            .org_role()
            .ok_or_else(|| ApiError::Forbidden(format!("this token is narrowed to one project and may not {what}")))?;
        self.actor.allows(role, need, what)
    }

    /// Checks `need` with the best role the caller has anywhere, for what
    /// touches only the caller's own things.
    pub(crate) fn check_caller(&self, need: Need, what: &str) -> Result<(), ApiError> {
        let best = self.actor.org_role().or_else(|| self.actor.roles.iter().map(|(_, r)| *r).max());
        let role = best.map_or(Role::Viewer, |r| r.min(self.actor.token.role));
        self.actor.allows(role, need, what)
    }

    /// Only the bootstrap token: what spans every organisation.
    pub(crate) fn check_server_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.actor.token.server_admin && !self.actor.token.read_only {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("only the server's admin token may {what}")))
        }
    }
}

impl Ctx {
    /// An audit entry of this caller's, in its organisation (see
    /// [`Ctx::audit_on`] for a project's).
    pub(crate) fn audit<'a>(&'a self, action: &'a str, detail: serde_json::Value) -> NewAudit<'a> {
        let t = &self.actor.token;
        NewAudit {
            org: &t.org,
            // A build's token acts as that build (`build <id>`), not as
            // the user whose name it is made under.
            actor: if t.build_id.is_some() { &t.name } else { &t.user },
            token: Some(&t.id),
            action,
            project: None,
            target: None,
            outcome: "ok",
            detail,
            request_id: Some(&self.request_id),
            at_ms: self.now_ms,
        }
    }

    /// An audit entry about `project`, in the project's organisation.
    pub(crate) fn audit_on<'a>(
        &'a self,
        project: &'a ProjectRef,
        action: &'a str,
        detail: serde_json::Value,
    ) -> NewAudit<'a> {
        NewAudit { org: &project.org, project: Some(&project.name), ..self.audit(action, detail) }
    }
}

/// A project name another organisation holds.
pub(crate) fn name_taken(name: &impl std::fmt::Display) -> ApiError {
    ApiError::Conflict(format!("the project name {name} is not available; choose another (--project NAME)"))
}

pub(crate) fn not_found(project: &str) -> ApiError {
    ApiError::NotFound(format!("project {project} not found"))
}

impl ControlPlane {
    /// The project named `name` when the caller may do `need` on it.
    pub(crate) async fn project_for(
        &self,
        ctx: &Ctx,
        name: &str,
        need: Need,
        what: &str,
    ) -> Result<ProjectRef, ApiError> {
        let project = helix_core::ProjectName::parse(name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let found =
            self.store.identity().project_ref(project.as_str()).await?.ok_or_else(|| not_found(project.as_str()))?;
        ctx.check(&found, need, what)?;
        Ok(found)
    }

    /// For operations that make the project on first use: the project, or
    /// what it will be (its id empty until made) in the caller's
    /// organisation, once the caller may do `need` there. A name another
    /// organisation holds is not available.
    pub(crate) async fn project_or_new(
        &self,
        ctx: &Ctx,
        name: &helix_core::ProjectName,
        need: Need,
        what: &str,
    ) -> Result<ProjectRef, ApiError> {
        match self.store.identity().project_ref(name.as_str()).await? {
            Some(found) if ctx.actor.role_on(&found).is_some() => {
                ctx.check(&found, need, what)?;
                Ok(found)
            }
            Some(_) => Err(name_taken(&name)),
            None if ctx.actor.token.project_id.is_some() => Err(ApiError::Forbidden(format!(
                "this token is narrowed to one project and may not create project {name}"
            ))),
            None => {
                ctx.check_org(need, what)?;
                let t = &ctx.actor.token;
                Ok(ProjectRef {
                    id: String::new(),
                    name: name.to_string(),
                    org_id: t.org_id.clone(),
                    org: t.org.clone(),
                })
            }
        }
    }
}
