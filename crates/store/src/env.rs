//! Environment variables and the wrapped data keys that seal secret ones.
//! The store never sees a secret's plaintext: values arrive sealed.

use helix_core::ProjectName;
use helix_core::events::Event;

use crate::Env;
use crate::pool::WritePool;
use crate::{NewAudit, Pool, StoreError};

/// One variable as stored (a secret's `value` is sealed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvRow {
    pub name: String,
    pub environment: String,
    /// Empty: every branch.
    pub branch: String,
    pub secret: bool,
    pub value: String,
    pub updated_at_ms: i64,
}

/// A variable being set in some environments.
pub struct NewEnv<'a> {
    pub project_id: &'a str,
    pub name: &'a str,
    pub environments: &'a [String],
    pub branch: &'a str,
    pub secret: bool,
    /// Sealed when `secret`.
    pub value: &'a str,
    pub now_ms: i64,
}

type EnvTuple = (String, String, String, bool, String, i64);

impl Env<'_> {
    async fn project_name_by_id(&self, project_id: &str) -> Result<ProjectName, StoreError> {
        let name: String = on_pool!(self, p => sqlx::query_scalar("SELECT name FROM projects WHERE id = $1")
            .bind(project_id).fetch_one(p).await?);
        crate::parse_project(&name)
    }

    /// The project's wrapped data key and the id of the master key that
    /// wraps it.
    pub async fn project_key(&self, project_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = on_pool!(self, p => sqlx::query_as(
            "SELECT wrapped, master_key_id FROM project_keys WHERE project_id = $1")
            .bind(project_id).fetch_optional(p).await?);
        Ok(row)
    }

    /// Stores a project's first data key; when another writer stored one
    /// first, theirs stays and is returned.
    pub async fn insert_project_key(
        &self,
        project_id: &str,
        wrapped: &str,
        master_key_id: &str,
        now_ms: i64,
    ) -> Result<(String, String), StoreError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO project_keys (project_id, wrapped, master_key_id, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id) DO NOTHING")
            .bind(project_id).bind(wrapped).bind(master_key_id).bind(now_ms).execute(p).await.map(drop)?);
        self.project_key(project_id).await?.ok_or_else(|| StoreError::Corrupt("project key vanished".into()))
    }

    /// Every project's wrapped key: (project id, wrapped, master key id).
    pub async fn project_keys(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = on_pool!(self, p => sqlx::query_as(
            "SELECT project_id, wrapped, master_key_id FROM project_keys ORDER BY project_id").fetch_all(p).await?);
        Ok(rows)
    }

    /// Every sealed git credential: (project name, sealed).
    pub async fn sealed_credentials(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = on_pool!(self, p => sqlx::query_as(
            "SELECT p.name, l.git_credential_sealed FROM project_links l JOIN projects p ON p.id = l.project_id \
             WHERE l.git_credential_sealed IS NOT NULL ORDER BY p.name").fetch_all(p).await?);
        Ok(rows)
    }

    /// Replaces every wrapped data key and sealed git credential with
    /// their re-wrapped forms, in one transaction.
    pub async fn rewrap(
        &self,
        keys: &[(String, String)],
        master_key_id: &str,
        credentials: &[(String, String)],
        audit: &NewAudit<'_>,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for (project_id, wrapped) in keys {
                sqlx::query("UPDATE project_keys SET wrapped = $1, master_key_id = $2 WHERE project_id = $3")
                    .bind(wrapped).bind(master_key_id).bind(project_id).execute(&mut *tx).await?;
            }
            for (project, sealed) in credentials {
                sqlx::query("UPDATE project_links SET git_credential_sealed = $1 \
                             WHERE project_id = (SELECT id FROM projects WHERE name = $2)")
                    .bind(sealed).bind(project).execute(&mut *tx).await?;
            }
            insert_audit!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Sets a variable in each of its environments (replacing what was
    /// there), with its audit entry.
    pub async fn set_env(&self, new: NewEnv<'_>, audit: &NewAudit<'_>) -> Result<(), StoreError> {
        let ids: Vec<String> = new.environments.iter().map(|_| self.new_row_id()).collect();
        let outbox_id = self.new_row_id();
        let event = Event::EnvChanged {
            project: self.project_name_by_id(new.project_id).await?,
            name: new.name.to_owned(),
            environments: new.environments.to_vec(),
            removed: false,
        };
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for (environment, id) in new.environments.iter().zip(&ids) {
                sqlx::query(
                    "INSERT INTO env_vars (id, project_id, name, environment, branch, secret, value, updated_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (project_id, name, environment, branch) \
                     DO UPDATE SET secret = $6, value = $7, updated_at_ms = $8")
                    .bind(id).bind(new.project_id).bind(new.name).bind(environment).bind(new.branch)
                    .bind(new.secret).bind(new.value).bind(new.now_ms)
                    .execute(&mut *tx).await?;
            }
            insert_audit!(tx, audit);
            insert_outbox!(tx, &outbox_id, &event, new.now_ms, Some(audit.actor));
            tx.commit().await?;
        });
        Ok(())
    }

    /// The project's variables (of one environment when given), by name.
    pub async fn env_vars(&self, project_id: &str, environment: Option<&str>) -> Result<Vec<EnvRow>, StoreError> {
        let rows: Vec<EnvTuple> = on_pool!(self, p => sqlx::query_as(
            "SELECT name, environment, branch, secret, value, updated_at_ms FROM env_vars \
             WHERE project_id = $1 AND ($2 IS NULL OR environment = $2) ORDER BY name, environment, branch")
            .bind(project_id).bind(environment).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|(name, environment, branch, secret, value, updated_at_ms)| EnvRow {
                name,
                environment,
                branch,
                secret,
                value,
                updated_at_ms,
            })
            .collect())
    }

    /// Removes a variable (from one environment, or one branch's, when
    /// given); how many rows went.
    pub async fn remove_env(
        &self,
        project_id: &str,
        name: &str,
        environment: Option<&str>,
        branch: Option<&str>,
        audit: &NewAudit<'_>,
    ) -> Result<u64, StoreError> {
        let outbox_id = self.new_row_id();
        let event = Event::EnvChanged {
            project: self.project_name_by_id(project_id).await?,
            name: name.to_owned(),
            environments: environment.map(|e| vec![e.to_owned()]).unwrap_or_default(),
            removed: true,
        };
        let n = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query(
                "DELETE FROM env_vars WHERE project_id = $1 AND name = $2 AND ($3 IS NULL OR environment = $3) \
                 AND ($4 IS NULL OR branch = $4)")
                .bind(project_id).bind(name).bind(environment).bind(branch).execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                insert_audit!(tx, audit);
                insert_outbox!(tx, &outbox_id, &event, audit.at_ms, Some(audit.actor));
            }
            tx.commit().await?;
            n
        });
        Ok(n)
    }
}
