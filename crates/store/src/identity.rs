//! Identity: organisations, users, memberships and API tokens (stored as
//! their SHA-256 only), and which organisation each project belongs to.

use helix_core::identity::{Membership, Role, TokenInfo};
use sqlx::{Decode, Row, Type};

use crate::Identity;
use crate::pool::WritePool;
use crate::{NewAudit, Pool, StoreError};

/// A token with everything a request needs to know about its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub user: String,
    pub org_id: String,
    pub org: String,
    pub role: Role,
    pub project_id: Option<String>,
    pub project: Option<String>,
    pub read_only: bool,
    pub server_admin: bool,
    pub build_id: Option<String>,
    pub deployment_id: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl TokenRow {
    pub fn info(&self) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            user: self.user.clone(),
            org: self.org.clone(),
            role: self.role,
            project: self.project.clone(),
            read_only: self.read_only,
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            last_used_at_ms: self.last_used_at_ms,
            revoked_at_ms: self.revoked_at_ms,
        }
    }
}

fn role_of(s: &str, column: &str) -> Result<Role, sqlx::Error> {
    Role::parse(s).map_err(|e| sqlx::Error::ColumnDecode { index: column.into(), source: e.into() })
}

impl<'r, R> sqlx::FromRow<'r, R> for TokenRow
where
    R: Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let role: String = row.try_get("role")?;
        Ok(TokenRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            user_id: row.try_get("user_id")?,
            user: row.try_get("user_name")?,
            org_id: row.try_get("org_id")?,
            org: row.try_get("org_name")?,
            role: role_of(&role, "role")?,
            project_id: row.try_get("project_id")?,
            project: row.try_get("project_name")?,
            read_only: row.try_get("read_only")?,
            server_admin: row.try_get("server_admin")?,
            build_id: row.try_get("build_id")?,
            deployment_id: row.try_get("deployment_id")?,
            created_at_ms: row.try_get("created_at_ms")?,
            expires_at_ms: row.try_get("expires_at_ms")?,
            last_used_at_ms: row.try_get("last_used_at_ms")?,
            revoked_at_ms: row.try_get("revoked_at_ms")?,
        })
    }
}

const TOKEN_COLUMNS: &str = "t.id, t.name, t.user_id, u.name AS user_name, t.org_id, o.name AS org_name, t.role, \
     t.project_id, p.name AS project_name, t.read_only, t.server_admin, t.build_id, t.deployment_id, \
     t.created_at_ms, t.expires_at_ms, t.last_used_at_ms, t.revoked_at_ms";

const TOKEN_FROM: &str = "api_tokens t JOIN users u ON u.id = t.user_id JOIN orgs o ON o.id = t.org_id \
     LEFT JOIN projects p ON p.id = t.project_id";

/// A token being stored.
pub struct NewToken<'a> {
    pub sha256_hex: &'a str,
    pub name: &'a str,
    pub user_id: &'a str,
    pub org_id: &'a str,
    pub role: Role,
    pub project_id: Option<&'a str>,
    pub read_only: bool,
    pub server_admin: bool,
    pub build_id: Option<&'a str>,
    pub expires_at_ms: Option<i64>,
    pub audit: &'a NewAudit<'a>,
    pub now_ms: i64,
}

/// A project as authorization sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectRef {
    pub id: String,
    pub name: String,
    pub org_id: String,
    /// The organisation's name.
    pub org: String,
}

/// Why a membership change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("{0} is not a member of this organisation")]
    NotMember(String),
    #[error("an organisation keeps at least one owner")]
    LastOwner,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for MemberError {
    fn from(e: sqlx::Error) -> Self {
        MemberError::Store(e.into())
    }
}

impl Identity<'_> {
    pub async fn insert_token(&self, new: NewToken<'_>) -> Result<String, StoreError> {
        let id = self.new_row_id();
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query(
                "INSERT INTO api_tokens (id, token_sha256, name, user_id, org_id, role, project_id, read_only, \
                 server_admin, build_id, expires_at_ms, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
                .bind(&id).bind(new.sha256_hex).bind(new.name).bind(new.user_id).bind(new.org_id)
                .bind(new.role.as_str()).bind(new.project_id).bind(new.read_only).bind(new.server_admin)
                .bind(new.build_id).bind(new.expires_at_ms).bind(new.now_ms)
                .execute(&mut *tx).await?;
            let audit = NewAudit { target: Some(&id), ..new.audit.clone() };
            insert_audit!(tx, audit);
            tx.commit().await?;
        });
        Ok(id)
    }

    /// The token with this hash, revoked and expired ones included (the
    /// caller says why they do not work).
    pub async fn token_by_hash(&self, sha256_hex: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.token_sha256 = $1")))
            .bind(sha256_hex).fetch_optional(p).await?);
        Ok(row)
    }

    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.id = $1")))
            .bind(id).fetch_optional(p).await?);
        Ok(row)
    }

    /// The organisation's tokens (only `user_id`'s when given), build
    /// workers' excluded, newest first.
    pub async fn tokens(&self, org_id: &str, user_id: Option<&str>) -> Result<Vec<TokenRow>, StoreError> {
        let rows = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.org_id = $1 AND ($2 IS NULL OR t.user_id = $2) \
             AND t.build_id IS NULL ORDER BY t.created_at_ms DESC, t.id DESC")))
            .bind(org_id).bind(user_id).fetch_all(p).await?);
        Ok(rows)
    }

    /// Records a use, at most once a minute per token (a write per request
    /// would serialize every request on SQLite's write lock).
    pub async fn touch_token(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE api_tokens SET last_used_at_ms = $1 WHERE id = $2 \
             AND (last_used_at_ms IS NULL OR last_used_at_ms < $3)")
            .bind(now_ms).bind(id).bind(now_ms - 60_000).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Revokes a token; false when it was revoked already.
    pub async fn revoke_token(&self, id: &str, audit: &NewAudit<'_>, now_ms: i64) -> Result<bool, StoreError> {
        let n = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE api_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL")
                .bind(now_ms).bind(id).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                insert_audit!(tx, audit);
            }
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Ends a build's tokens (it finished or was given up).
    pub async fn revoke_build_tokens(&self, build_id: &str, now_ms: i64) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = $1 WHERE build_id = $2 AND revoked_at_ms IS NULL")
            .bind(now_ms).bind(build_id).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Binds a build token to the deployment it creates; false when it
    /// created one already.
    pub async fn bind_token_deployment(&self, token_id: &str, deployment_id: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, p => sqlx::query(
            "UPDATE api_tokens SET deployment_id = $1 WHERE id = $2 AND deployment_id IS NULL")
            .bind(deployment_id).bind(token_id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    // ---- organisations, users, memberships ---------------------------------

    /// Creates an organisation; false when the name is taken.
    pub async fn create_org(&self, name: &str, audit: &NewAudit<'_>, now_ms: i64) -> Result<bool, StoreError> {
        let id = self.new_row_id();
        let n = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query(
                "INSERT INTO orgs (id, name, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(&id).bind(name).bind(now_ms).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                insert_audit!(tx, audit);
            }
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Id, name and creation time of every organisation (`only`: of that
    /// one).
    pub async fn orgs(&self, only: Option<&str>) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = on_pool!(self, p => sqlx::query_as(
            "SELECT id, name, created_at_ms FROM orgs WHERE $1 IS NULL OR id = $1 ORDER BY name")
            .bind(only).fetch_all(p).await?);
        Ok(rows)
    }

    async fn org_name(&self, org_id: &str) -> Result<String, StoreError> {
        let name = on_pool!(self, p => sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1")
            .bind(org_id).fetch_one(p).await?);
        Ok(name)
    }

    /// A project's name, from its id.
    async fn project_name_of(&self, project_id: Option<&str>) -> Result<Option<String>, StoreError> {
        let Some(id) = project_id else { return Ok(None) };
        let name = on_pool!(self, p => sqlx::query_scalar("SELECT name FROM projects WHERE id = $1")
            .bind(id).fetch_optional(p).await?);
        Ok(name)
    }

    pub async fn org_id(&self, name: &str) -> Result<Option<String>, StoreError> {
        let id = on_pool!(self, p => sqlx::query_scalar("SELECT id FROM orgs WHERE name = $1")
            .bind(name).fetch_optional(p).await?);
        Ok(id)
    }

    pub async fn user_id(&self, name: &str) -> Result<Option<String>, StoreError> {
        let id = on_pool!(self, p => sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(name).fetch_optional(p).await?);
        Ok(id)
    }

    /// The user's roles in the organisation: (project id or `None` for
    /// the whole organisation, role).
    pub async fn roles_of(&self, org_id: &str, user_id: &str) -> Result<Vec<(Option<String>, Role)>, StoreError> {
        let rows: Vec<(Option<String>, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT project_id, role FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id).bind(user_id).fetch_all(p).await?);
        rows.into_iter()
            .map(|(project, role)| Ok((project, Role::parse(&role).map_err(StoreError::Corrupt)?)))
            .collect()
    }

    /// The organisation's memberships (only `user_id`'s when given).
    pub async fn members(&self, org_id: &str, user_id: Option<&str>) -> Result<Vec<Membership>, StoreError> {
        let rows: Vec<(String, String, String, Option<String>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT u.name, o.name, m.role, p.name FROM memberships m JOIN users u ON u.id = m.user_id \
             JOIN orgs o ON o.id = m.org_id LEFT JOIN projects p ON p.id = m.project_id \
             WHERE m.org_id = $1 AND ($2 IS NULL OR m.user_id = $2) ORDER BY u.name, p.name")
            .bind(org_id).bind(user_id).fetch_all(p).await?);
        rows.into_iter()
            .map(|(user, org, role, project)| {
                Ok(Membership { user, org, role: Role::parse(&role).map_err(StoreError::Corrupt)?, project })
            })
            .collect()
    }

    /// Gives `user` (created on first use) `role` in the organisation, or
    /// on one project of it; replaces the role it had there.
    pub async fn set_member(
        &self,
        org_id: &str,
        user: &str,
        role: Role,
        project_id: Option<&str>,
        audit: &NewAudit<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (user_id, membership_id, outbox_id) = (self.new_row_id(), self.new_row_id(), self.new_row_id());
        let event = helix_core::events::Event::MemberChanged {
            org: self.org_name(org_id).await?,
            user: user.to_owned(),
            role: Some(role.as_str().to_owned()),
            project: self.project_name_of(project_id).await?,
        };
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO users (id, name, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(&user_id).bind(user).bind(now_ms).execute(&mut *tx).await?;
            sqlx::query(
                "DELETE FROM memberships WHERE org_id = $1 AND COALESCE(project_id, '') = COALESCE($2, '') \
                 AND user_id = (SELECT id FROM users WHERE name = $3)")
                .bind(org_id).bind(project_id).bind(user).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO memberships (id, org_id, user_id, role, project_id, created_at_ms) \
                 SELECT $1, $2, id, $3, $4, $5 FROM users WHERE name = $6")
                .bind(&membership_id).bind(org_id).bind(role.as_str()).bind(project_id).bind(now_ms).bind(user)
                .execute(&mut *tx).await?;
            insert_audit!(tx, audit);
            insert_outbox!(tx, &outbox_id, &event, now_ms, Some(audit.actor));
            tx.commit().await?;
        });
        Ok(())
    }

    /// Ends `user`'s membership (the whole organisation's or one
    /// project's); the organisation keeps at least one owner.
    pub async fn remove_member(
        &self,
        org_id: &str,
        user: &str,
        project_id: Option<&str>,
        audit: &NewAudit<'_>,
    ) -> Result<(), MemberError> {
        let outbox_id = self.new_row_id();
        let event = helix_core::events::Event::MemberChanged {
            org: self.org_name(org_id).await?,
            user: user.to_owned(),
            role: None,
            project: self.project_name_of(project_id).await?,
        };
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query(
                "DELETE FROM memberships WHERE org_id = $1 AND COALESCE(project_id, '') = COALESCE($2, '') \
                 AND user_id = (SELECT id FROM users WHERE name = $3)")
                .bind(org_id).bind(project_id).bind(user).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(MemberError::NotMember(user.to_owned()));
            }
            let owners: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'owner' AND project_id IS NULL")
                .bind(org_id).fetch_one(&mut *tx).await?;
            if owners == 0 {
                return Err(MemberError::LastOwner);
            }
            insert_audit!(tx, audit);
            insert_outbox!(tx, &outbox_id, &event, audit.at_ms, Some(audit.actor));
            tx.commit().await?;
        });
        Ok(())
    }

    /// Makes an empty project in the organisation (unless it exists);
    /// `None` when another organisation holds the name.
    pub async fn ensure_project(
        &self,
        name: &str,
        org_id: &str,
        now_ms: i64,
    ) -> Result<Option<ProjectRef>, StoreError> {
        let id = self.new_row_id();
        on_pool!(self, p => sqlx::query(
            "INSERT INTO projects (id, name, org_id, created_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING")
            .bind(&id).bind(name).bind(org_id).bind(now_ms).execute(p).await.map(drop)?);
        Ok(self.project_ref(name).await?.filter(|p| p.org_id == org_id))
    }

    /// The projects of an organisation (`None`: of every one), by name,
    /// each with its production deployment.
    pub async fn projects(&self, org_id: Option<&str>) -> Result<Vec<(ProjectRef, Option<String>)>, StoreError> {
        const SELECT: &str = "SELECT p.id, p.name, p.org_id, o.name, p.production_deployment_id \
             FROM projects p JOIN orgs o ON o.id = p.org_id";
        type Tuple = (String, String, String, String, Option<String>);
        let rows: Vec<Tuple> = match org_id {
            Some(org) => on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE p.org_id = $1 ORDER BY p.name"))).bind(org).fetch_all(p).await?),
            None => on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY p.name")))
                .fetch_all(p).await?),
        };
        Ok(rows
            .into_iter()
            .map(|(id, name, org_id, org, production)| (ProjectRef { id, name, org_id, org }, production))
            .collect())
    }

    /// A project's id and organisation.
    pub async fn project_ref(&self, name: &str) -> Result<Option<ProjectRef>, StoreError> {
        let row: Option<(String, String, String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT p.id, p.name, p.org_id, o.name FROM projects p JOIN orgs o ON o.id = p.org_id WHERE p.name = $1")
            .bind(name).fetch_optional(p).await?);
        Ok(row.map(|(id, name, org_id, org)| ProjectRef { id, name, org_id, org }))
    }
}
