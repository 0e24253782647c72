//! Control-plane state: projects, deployments, the production pointer,
//! tokens and the event outbox, on SQLite (embedded) or Postgres (fleet).
//!
//! One [`Store`] type serves both engines: each query is written once and
//! compiled for each concrete pool (sqlx's `SqlitePool` and `PgPool`, never
//! the `Any` driver), and one migration set runs on both. Every state change
//! that others must learn about writes its events to the outbox in the same
//! transaction. Only the control plane uses this crate; the edge, build and
//! runtime planes never do.

mod pool;
mod rows;

use std::collections::BTreeMap;
use std::sync::Mutex;

use helix_core::api::DeploymentState;
use helix_core::events::{Envelope, Event};
use helix_core::{DeploymentId, Digest, ProjectName};

use pool::{Pool, SnapshotPool, WritePool};
pub use rows::DeploymentRow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is neither sqlite:// nor postgres://")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// What a deployment is once ready: its manifest, size, routes report
/// and the preview alias it is also served at.
pub struct Ready<'a> {
    pub manifest: Digest,
    pub total_bytes: u64,
    pub routes_json: &'a str,
    pub alias: Option<&'a str>,
}

/// What finalize found.
#[derive(Debug)]
pub enum Finalized {
    /// This call made the deployment ready (and production when asked);
    /// `seq` is the sequence number of its last event.
    Now(DeploymentRow, u64),
    /// It was ready already; nothing changed.
    Already(DeploymentRow),
    /// It is not uploading (it errored) or does not exist.
    NotUploading(Option<DeploymentRow>),
}

/// Why a pointer move was refused.
#[derive(Debug, thiserror::Error)]
pub enum PointerError {
    #[error("deployment {0} not found")]
    UnknownDeployment(String),
    #[error("project {0} not found")]
    UnknownProject(String),
    #[error("deployment {0} is not ready and cannot serve production")]
    NotReady(String),
    #[error("deployment {deployment} belongs to project {actual}, not {expected}")]
    WrongProject { deployment: String, expected: String, actual: String },
    #[error("project {0} has no earlier production deployment to roll back to")]
    NothingToRollBackTo(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PointerError {
    fn from(e: sqlx::Error) -> Self {
        PointerError::Store(e.into())
    }
}

/// What the edge must know to serve: every ready deployment and every
/// production pointer, as of event sequence number `seq`.
#[derive(Debug, Default)]
pub struct ServingState {
    pub seq: u64,
    pub deployments: Vec<(ProjectName, DeploymentId, Digest)>,
    pub production: Vec<(ProjectName, DeploymentId)>,
    /// Project → (deployment, weight) of every active split.
    pub splits: Vec<(ProjectName, DeploymentId, u32)>,
    /// Project, alias → deployment of every preview alias.
    pub aliases: Vec<(ProjectName, String, DeploymentId)>,
    /// Every custom domain: verified ones serve, pending ones answer their
    /// HTTP proof.
    pub domains: Vec<DomainRow>,
}

/// A deployment being created.
pub struct NewDeployment<'a> {
    pub id: &'a DeploymentId,
    pub options: &'a helix_core::api::DeployOptions,
    pub project: &'a ProjectName,
    /// The organisation a new project is made in.
    pub org_id: &'a str,
    pub files: &'a BTreeMap<String, Digest>,
    pub production: bool,
    /// What it came from, for policies: branch, commit, `api` or `git`.
    pub branch: Option<&'a str>,
    pub commit: Option<&'a str>,
    pub source: &'a str,
    pub audit: &'a NewAudit<'a>,
    pub now_ms: i64,
}

pub struct Store {
    pool: Pool,
    ids: Mutex<ulid::Generator>,
}

/// Writes an event to the outbox inside the caller's transaction, with
/// the next number of the event sequence, and evaluates to that number.
/// Taking the number locks the sequence's row until commit, so numbers
/// follow commit order. Call it after the transaction's other writes: the
/// sequence row must be the last lock every writer takes (no deadlocks).
macro_rules! insert_outbox {
    ($tx:expr, $id:expr, $event:expr, $now_ms:expr) => {
        insert_outbox!($tx, $id, $event, $now_ms, None::<&str>)
    };
    ($tx:expr, $id:expr, $event:expr, $now_ms:expr, $actor:expr) => {{
        let seq: i64 = sqlx::query_scalar("UPDATE event_sequence SET last = last + 1 WHERE id = 1 RETURNING last")
            .fetch_one(&mut *$tx)
            .await?;
        sqlx::query(
            "INSERT INTO outbox (id, topic, payload, created_at_ms, seq, actor) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($id)
        .bind($event.topic())
        .bind($event.to_json())
        .bind($now_ms)
        .bind(seq)
        .bind($actor)
        .execute(&mut *$tx)
        .await?;
        seq as u64
    }};
}

/// Appends an audit entry inside the caller's transaction, numbered and
/// linked to the one before, and evaluates to its number. Taking the
/// number locks the head row until commit: call it after the change's
/// other writes and before [`insert_outbox!`] (always in that order, so
/// writers cannot deadlock).
macro_rules! insert_audit {
    ($tx:expr, $new:expr) => {{
        let (seq, prev): (i64, String) =
            sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
                .fetch_one(&mut *$tx)
                .await?;
        let entry = $new.entry(seq, prev);
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&entry.hash).execute(&mut *$tx).await?;
        sqlx::query(
            "INSERT INTO audit_log (seq, at_ms, org, actor, token_id, action, project, target, outcome, detail, \
             request_id, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(seq)
        .bind(entry.at_ms)
        .bind(&entry.org)
        .bind(&entry.actor)
        .bind(&entry.token)
        .bind(&entry.action)
        .bind(&entry.project)
        .bind(&entry.target)
        .bind(&entry.outcome)
        .bind(entry.detail.to_string())
        .bind(&entry.request_id)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(&mut *$tx)
        .await?;
        seq as u64
    }};
}

macro_rules! on_pool {
    ($self:expr, $p:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

mod audit;
mod builds;
mod crons;
mod domains;
mod env;
mod function_logs;
mod identity;
mod policy;
mod webhooks;
pub use audit::NewAudit;
pub use builds::{BuildEnd, BuildRow, LinkRow, NewBuild, NewLink, Queued};
pub use crons::CronRun;
pub use domains::{Claim, DomainRow, NewDomain, Verified};
pub use env::{EnvRow, NewEnv};
pub use function_logs::{FunctionLog, NewFunctionLog};
pub use identity::{MemberError, NewToken, ProjectRef, TokenRow};
pub use policy::PolicyRow;
pub use webhooks::{Attempt, DeliveryRow, DueDelivery, WebhookRow};

const DEPLOYMENT_COLUMNS: &str = "d.id, p.name AS project, d.state, d.production_requested, d.manifest_digest, \
     d.file_count, d.total_bytes, d.created_at_ms, d.ready_at_ms, \
     d.routes_json, (p.production_deployment_id IS NOT NULL AND p.production_deployment_id = d.id) AS is_production, \
     d.branch, d.commit_sha, d.source, d.context";

/// The store's aggregates: each handle holds the queries of one, over the
/// one pool (`store.builds().claim_build(…)`, `store.identity().token(…)`).
macro_rules! aggregates {
    ($($(#[$doc:meta])* $accessor:ident => $handle:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Copy)]
            pub struct $handle<'a>(&'a Store);

            impl std::ops::Deref for $handle<'_> {
                type Target = Store;
                fn deref(&self) -> &Store {
                    self.0
                }
            }
        )*

        impl Store {
            $(
                $(#[$doc])*
                pub fn $accessor(&self) -> $handle<'_> {
                    $handle(self)
                }
            )*
        }
    };
}

aggregates! {
    /// Deployments, the production pointer and traffic splits.
    deployments => Deployments,
    /// Git links, the build queue and build logs.
    builds => Builds,
    /// Schedules and their runs.
    crons => Crons,
    /// Custom domains and their proof.
    domains => Domains,
    /// Environment variables and projects' data keys.
    env => Env,
    /// Function log lines.
    function_logs => FunctionLogs,
    /// Organisations, users, memberships, tokens and projects.
    identity => Identity,
    /// Organisations' policy modules.
    policies => Policies,
    /// Outgoing webhooks and their deliveries.
    webhooks => Webhooks,
    /// The audit log.
    audit => Audit,
}

impl Store {
    /// Connects by URL scheme (`sqlite://…`, `postgres://…`) and migrates.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let pool = Pool::connect(url).await?;
        let store = Store { pool, ids: Mutex::new(ulid::Generator::new()) };
        on_pool!(store, p => pool::migrator().run(p).await?);
        Ok(store)
    }

    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// A new time-ordered row id, monotonic within this process.
    pub(crate) fn new_row_id(&self) -> String {
        let mut g = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let id = g.generate().unwrap_or_else(|_| ulid::Ulid::new());
        id.to_string().to_ascii_lowercase()
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

/// Deployments, production pointers and traffic splits.
impl Deployments<'_> {
    // ---- deployments -----------------------------------------------------

    /// Records an uploading deployment, creating its project on first use;
    /// false (nothing written) when the project is another organisation's.
    pub async fn create_deployment(&self, new: NewDeployment<'_>) -> Result<bool, StoreError> {
        let files_json: BTreeMap<&str, String> = new.files.iter().map(|(k, v)| (k.as_str(), v.to_hex())).collect();
        let files_json = serde_json::to_string(&files_json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let options_json = serde_json::to_string(new.options).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let project_id = self.new_row_id();
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO projects (id, name, org_id, created_at_ms) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (name) DO NOTHING")
                .bind(&project_id).bind(new.project.as_str()).bind(new.org_id).bind(new.now_ms)
                .execute(&mut *tx).await?;
            let n = sqlx::query(
                "INSERT INTO deployments (id, project_id, state, production_requested, files_json, options_json, file_count, \
                 created_at_ms, branch, commit_sha, source, context) \
                 SELECT $1, id, 'uploading', $2, $3, $4, $5, $6, $9, $10, $11, $12 FROM projects WHERE name = $7 AND org_id = $8")
                .bind(new.id.as_str()).bind(new.production).bind(&files_json).bind(&options_json)
                .bind(new.files.len() as i64).bind(new.now_ms).bind(new.project.as_str()).bind(new.org_id)
                .bind(new.branch).bind(new.commit).bind(new.source).bind(new.options.context.as_deref())
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Ok(false);
            }
            insert_audit!(tx, new.audit);
            tx.commit().await?;
        });
        Ok(true)
    }

    pub async fn deployment(&self, id: &str) -> Result<Option<DeploymentRow>, StoreError> {
        let row = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN projects p ON p.id = d.project_id WHERE d.id = $1")))
            .bind(id).fetch_optional(p).await?);
        Ok(row)
    }

    /// The project's ready deployments, newest first; `None` when the
    /// project does not exist.
    pub async fn ready_deployments(&self, project: &ProjectName) -> Result<Option<Vec<DeploymentRow>>, StoreError> {
        if !self.project_exists(project).await? {
            return Ok(None);
        }
        let rows = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN projects p ON p.id = d.project_id \
             WHERE p.name = $1 AND d.state = 'ready' ORDER BY d.created_at_ms DESC, d.id DESC")))
            .bind(project.as_str()).fetch_all(p).await?);
        Ok(Some(rows))
    }

    /// One page of the project's ready deployments, newest first: at most
    /// `limit`, older than deployment `before` when given.
    pub async fn ready_deployments_page(
        &self,
        project_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeploymentRow>, StoreError> {
        // Two plain queries, each one an index range (a `$2 IS NULL OR …`
        // would make Postgres plan for both and sort every row).
        let cursor: Option<(i64, String)> = match before {
            Some(id) => {
                let at: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
                    "SELECT created_at_ms FROM deployments WHERE id = $1 AND project_id = $2")
                    .bind(id).bind(project_id).fetch_optional(p).await?);
                match at {
                    Some(at) => Some((at, id.to_owned())),
                    None => return Ok(Vec::new()),
                }
            }
            None => None,
        };
        let rows = match cursor {
            None => on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN projects p ON p.id = d.project_id \
                 WHERE d.project_id = $1 AND d.state = 'ready' ORDER BY d.created_at_ms DESC, d.id DESC LIMIT $2")))
                .bind(project_id).bind(limit).fetch_all(p).await?),
            Some((at, id)) => on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN projects p ON p.id = d.project_id \
                 WHERE d.project_id = $1 AND d.state = 'ready' AND (d.created_at_ms < $2 OR (d.created_at_ms = $2 AND d.id < $3)) \
                 ORDER BY d.created_at_ms DESC, d.id DESC LIMIT $4")))
                .bind(project_id).bind(at).bind(id).bind(limit).fetch_all(p).await?),
        };
        Ok(rows)
    }

    pub async fn project_exists(&self, project: &ProjectName) -> Result<bool, StoreError> {
        let n: i64 = on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM projects WHERE name = $1")
            .bind(project.as_str()).fetch_one(p).await?);
        Ok(n > 0)
    }

    /// The requested file table of an uploading deployment.
    pub async fn uploading_files(&self, id: &DeploymentId) -> Result<Option<BTreeMap<String, Digest>>, StoreError> {
        let json: Option<String> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT files_json FROM deployments WHERE id = $1 AND state = 'uploading'")
            .bind(id.as_str()).fetch_optional(p).await?);
        json.map(|j| parse_files_json(&j)).transpose()
    }

    /// What an uploading deployment asked for besides its files.
    pub async fn uploading_options(
        &self,
        id: &DeploymentId,
    ) -> Result<Option<helix_core::api::DeployOptions>, StoreError> {
        let json: Option<String> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT options_json FROM deployments WHERE id = $1 AND state = 'uploading'")
            .bind(id.as_str()).fetch_optional(p).await?);
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("options_json: {e}"))))
            .transpose()
    }

    /// Makes an uploading deployment ready with its manifest, and moves the
    /// production pointer to it when that was asked at creation, and points
    /// `alias` at it; the events go to the outbox in the same transaction.
    pub async fn finalize(
        &self,
        id: &DeploymentId,
        ready: Ready<'_>,
        audit: &NewAudit<'_>,
        now_ms: i64,
    ) -> Result<Finalized, StoreError> {
        let Some(before) = self.deployment(id.as_str()).await? else {
            return Ok(Finalized::NotUploading(None));
        };
        match before.state {
            DeploymentState::Ready => return Ok(Finalized::Already(before)),
            DeploymentState::Error => return Ok(Finalized::NotUploading(Some(before))),
            DeploymentState::Uploading => {}
        }
        let Ready { manifest, total_bytes, routes_json, alias } = ready;
        let project = before.project.clone();
        let ready = Event::DeployReady { project: project.clone(), deployment: id.clone(), manifest };
        let promoted = Event::DeployPromoted { project: project.clone(), deployment: id.clone(), manifest };
        let alias = alias.map(|alias| Event::AliasSet {
            project: project.clone(),
            alias: alias.to_owned(),
            deployment: id.clone(),
            manifest,
        });
        let (ready_id, history_id, promoted_id, alias_id) =
            (self.new_row_id(), self.new_row_id(), self.new_row_id(), self.new_row_id());
        let won: Option<u64> = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let done = sqlx::query(
                "UPDATE deployments SET state = 'ready', manifest_digest = $1, total_bytes = $2, ready_at_ms = $3, \
                 routes_json = $4, files_json = '', options_json = '{}' WHERE id = $5 AND state = 'uploading'")
                .bind(manifest.to_hex()).bind(total_bytes as i64).bind(now_ms).bind(routes_json).bind(id.as_str())
                .execute(&mut *tx).await?;
            if done.rows_affected() == 1 {
                if before.production_requested {
                    sqlx::query("UPDATE projects SET production_deployment_id = $1 WHERE name = $2")
                        .bind(id.as_str()).bind(project.as_str()).execute(&mut *tx).await?;
                    sqlx::query("INSERT INTO production_history (id, project_id, deployment_id, kind, at_ms) \
                                 SELECT $1, id, $2, 'promoted', $3 FROM projects WHERE name = $4")
                        .bind(&history_id).bind(id.as_str()).bind(now_ms).bind(project.as_str())
                        .execute(&mut *tx).await?;
                }
                if let Some(Event::AliasSet { alias, .. }) = &alias {
                    sqlx::query("INSERT INTO aliases (project_id, alias, deployment_id) SELECT id, $1, $2 FROM projects \
                                 WHERE name = $3 ON CONFLICT (project_id, alias) DO UPDATE SET deployment_id = $2")
                        .bind(alias).bind(id.as_str()).bind(project.as_str()).execute(&mut *tx).await?;
                }
                // The audit entry, then the events: the sequence row is
                // always the last lock a transaction takes, so writers
                // cannot deadlock on it.
                insert_audit!(tx, audit);
                let mut seq = insert_outbox!(tx, &ready_id, &ready, now_ms, audit.actor);
                if before.production_requested {
                    seq = insert_outbox!(tx, &promoted_id, &promoted, now_ms, audit.actor);
                }
                if let Some(event) = &alias {
                    seq = insert_outbox!(tx, &alias_id, event, now_ms, audit.actor);
                }
                tx.commit().await?;
                Some(seq)
            } else {
                None
            }
        });
        let after = self.deployment(id.as_str()).await?;
        Ok(match (after, won) {
            (Some(row), Some(seq)) => Finalized::Now(row, seq),
            (Some(row), None) if row.state == DeploymentState::Ready => Finalized::Already(row),
            (other, _) => Finalized::NotUploading(other),
        })
    }

    /// Marks an uploading deployment as failed; it is never served.
    pub async fn fail_deployment(&self, id: &DeploymentId, reason: &str) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("UPDATE deployments SET state = 'error', error = $1, files_json = '' WHERE id = $2 AND state = 'uploading'")
            .bind(reason).bind(id.as_str()).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Points production at a ready deployment. Returns the deployment and,
    /// when the pointer moved, its event's sequence number (promoting the
    /// current production is a no-op).
    pub async fn promote(
        &self,
        id: &str,
        audit: &NewAudit<'_>,
        now_ms: i64,
    ) -> Result<(DeploymentRow, Option<u64>), PointerError> {
        let row = self.deployment(id).await?.ok_or_else(|| PointerError::UnknownDeployment(id.to_owned()))?;
        self.move_pointer(row, PointerMove::Promote, audit, now_ms).await
    }

    /// Points production back at `to`, or by default at the newest earlier
    /// deployment that has served production before.
    pub async fn rollback(
        &self,
        project: &ProjectName,
        to: Option<&str>,
        audit: &NewAudit<'_>,
        now_ms: i64,
    ) -> Result<(DeploymentRow, Option<u64>), PointerError> {
        let target = self.rollback_target(project, to).await?;
        self.move_pointer(target, PointerMove::RollBack, audit, now_ms).await
    }

    /// What a rollback would serve: `to`, or the production deployment
    /// before the current one.
    pub async fn rollback_target(
        &self,
        project: &ProjectName,
        to: Option<&str>,
    ) -> Result<DeploymentRow, PointerError> {
        if !self.project_exists(project).await? {
            return Err(PointerError::UnknownProject(project.to_string()));
        }
        let target = match to {
            Some(id) => self.deployment_of(project, id).await?,
            None => {
                let id: Option<String> = on_pool!(self, p => sqlx::query_scalar(
                    "SELECT d.id FROM production_history h \
                     JOIN deployments d ON d.id = h.deployment_id \
                     JOIN projects p ON p.id = h.project_id \
                     JOIN deployments cur ON cur.id = p.production_deployment_id \
                     WHERE p.name = $1 AND d.state = 'ready' AND d.id <> cur.id \
                       AND (d.created_at_ms < cur.created_at_ms OR (d.created_at_ms = cur.created_at_ms AND d.id < cur.id)) \
                     ORDER BY d.created_at_ms DESC, d.id DESC LIMIT 1")
                    .bind(project.as_str()).fetch_optional(p).await?);
                let id = id.ok_or_else(|| PointerError::NothingToRollBackTo(project.to_string()))?;
                self.deployment(&id).await?.ok_or_else(|| PointerError::UnknownDeployment(id.clone()))?
            }
        };
        Ok(target)
    }

    /// The deployment a project serves in production, if any.
    pub async fn production_deployment(&self, project: &ProjectName) -> Result<Option<DeploymentRow>, StoreError> {
        let id: Option<Option<String>> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT production_deployment_id FROM projects WHERE name = $1")
            .bind(project.as_str()).fetch_optional(p).await?);
        match id.flatten() {
            Some(id) => self.deployment(&id).await,
            None => Ok(None),
        }
    }

    /// Deployment `id`, which must belong to `project`.
    async fn deployment_of(&self, project: &ProjectName, id: &str) -> Result<DeploymentRow, PointerError> {
        let row = self.deployment(id).await?.ok_or_else(|| PointerError::UnknownDeployment(id.to_owned()))?;
        if row.project != *project {
            return Err(PointerError::WrongProject {
                deployment: id.to_owned(),
                expected: project.to_string(),
                actual: row.project.to_string(),
            });
        }
        Ok(row)
    }

    async fn move_pointer(
        &self,
        row: DeploymentRow,
        how: PointerMove,
        audit: &NewAudit<'_>,
        now_ms: i64,
    ) -> Result<(DeploymentRow, Option<u64>), PointerError> {
        if row.state != DeploymentState::Ready {
            return Err(PointerError::NotReady(row.id.to_string()));
        }
        if row.is_production {
            return Ok((row, None));
        }
        let (project, deployment, manifest) = row.identity()?;
        let (kind, event) = match how {
            PointerMove::Promote => ("promoted", Event::DeployPromoted { project, deployment, manifest }),
            PointerMove::RollBack => ("rolled_back", Event::DeployRolledBack { project, deployment, manifest }),
        };
        let (history_id, outbox_id) = (self.new_row_id(), self.new_row_id());
        let seq = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("UPDATE projects SET production_deployment_id = $1 WHERE name = $2")
                .bind(row.id.as_str()).bind(row.project.as_str()).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO production_history (id, project_id, deployment_id, kind, at_ms) \
                         SELECT $1, id, $2, $3, $4 FROM projects WHERE name = $5")
                .bind(&history_id).bind(row.id.as_str()).bind(kind).bind(now_ms).bind(row.project.as_str())
                .execute(&mut *tx).await?;
            let audit = NewAudit { target: Some(row.id.as_str()), ..audit.clone() };
            insert_audit!(tx, audit);
            let seq = insert_outbox!(tx, &outbox_id, &event, now_ms, audit.actor);
            tx.commit().await?;
            seq
        });
        let row = self
            .deployment(row.id.as_str())
            .await?
            .ok_or_else(|| PointerError::UnknownDeployment(row.id.to_string()))?;
        Ok((row, Some(seq)))
    }

    // ---- traffic splits --------------------------------------------------

    /// Replaces the project's split (empty `weights` removes it) and
    /// publishes `split.changed`, in one transaction. Every deployment must
    /// be a ready deployment of the project. Returns the event's sequence
    /// number.
    pub async fn set_split(
        &self,
        project: &ProjectName,
        weights: &[(String, u32)],
        audit: &NewAudit<'_>,
        now_ms: i64,
    ) -> Result<u64, PointerError> {
        if !self.project_exists(project).await? {
            return Err(PointerError::UnknownProject(project.to_string()));
        }
        let mut variants = Vec::new();
        for (id, weight) in weights {
            let row = self.deployment_of(project, id).await?;
            if row.state != DeploymentState::Ready {
                return Err(PointerError::NotReady(id.clone()));
            }
            let (_, deployment, manifest) = row.identity()?;
            variants.push(helix_core::events::SplitVariant { deployment, manifest, weight: *weight });
        }
        let event = Event::SplitChanged { project: project.clone(), variants: variants.clone() };
        let outbox_id = self.new_row_id();
        let seq = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM splits WHERE project_id = (SELECT id FROM projects WHERE name = $1)")
                .bind(project.as_str()).execute(&mut *tx).await?;
            for v in &variants {
                sqlx::query("INSERT INTO splits (project_id, deployment_id, weight) SELECT id, $1, $2 FROM projects WHERE name = $3")
                    .bind(v.deployment.as_str()).bind(v.weight as i64).bind(project.as_str())
                    .execute(&mut *tx).await?;
            }
            insert_audit!(tx, audit);
            let seq = insert_outbox!(tx, &outbox_id, &event, now_ms, audit.actor);
            tx.commit().await?;
            seq
        });
        Ok(seq)
    }

    /// The project's split: deployment id → weight (empty: none).
    pub async fn split(&self, project: &ProjectName) -> Result<Vec<(String, u32)>, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT s.deployment_id, s.weight FROM splits s JOIN projects p ON p.id = s.project_id WHERE p.name = $1 ORDER BY s.deployment_id")
            .bind(project.as_str()).fetch_all(p).await?);
        Ok(rows.into_iter().map(|(id, w)| (id, w as u32)).collect())
    }
}

impl Store {
    // ---- outbox ----------------------------------------------------------

    /// Unpublished events, in sequence order.
    pub async fn outbox_pending(&self, limit: i64) -> Result<Vec<(String, Envelope)>, StoreError> {
        let rows: Vec<(String, String, i64, i64, Option<String>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, payload, seq, created_at_ms, actor FROM outbox ORDER BY seq, id LIMIT $1")
            .bind(limit).fetch_all(p).await?);
        rows.into_iter()
            .map(|(id, payload, seq, at_ms, actor)| {
                let event = Event::from_json(&payload).map_err(|e| StoreError::Corrupt(format!("outbox {id}: {e}")))?;
                Ok((id, Envelope { at_ms, actor, ..Envelope::new(seq as u64, event) }))
            })
            .collect()
    }

    /// The sequence number of the last event committed.
    pub async fn event_seq(&self) -> Result<u64, StoreError> {
        let last: i64 = on_pool!(self, p => sqlx::query_scalar("SELECT last FROM event_sequence WHERE id = 1")
            .fetch_one(p).await?);
        Ok(last as u64)
    }

    pub async fn outbox_delete(&self, id: &str) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(p).await.map(drop)?);
        Ok(())
    }

    // ---- what the edge serves, what GC keeps ----------------------------

    pub async fn serving_state(&self) -> Result<ServingState, StoreError> {
        // One snapshot: the sequence number and the state it describes.
        let (seq, deployments, production, splits, aliases, domains) = on_pool!(self, p => {
            let mut tx = p.begin_snapshot().await?;
            let seq: i64 = sqlx::query_scalar("SELECT last FROM event_sequence WHERE id = 1").fetch_one(&mut *tx).await?;
            let deployments: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT p.name, d.id, d.manifest_digest FROM deployments d JOIN projects p ON p.id = d.project_id \
                 WHERE d.state = 'ready' ORDER BY d.id").fetch_all(&mut *tx).await?;
            let production: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, production_deployment_id FROM projects WHERE production_deployment_id IS NOT NULL")
                .fetch_all(&mut *tx).await?;
            let splits: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT p.name, s.deployment_id, s.weight FROM splits s JOIN projects p ON p.id = s.project_id ORDER BY p.name, s.deployment_id")
                .fetch_all(&mut *tx).await?;
            let aliases: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT p.name, a.alias, a.deployment_id FROM aliases a JOIN projects p ON p.id = a.project_id ORDER BY p.name, a.alias")
                .fetch_all(&mut *tx).await?;
            let domains: Vec<domains::DomainTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} ORDER BY d.name, p.name", domains::COLUMNS))).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            (seq, deployments, production, splits, aliases, domains)
        });
        let domains = domains.into_iter().map(domains::row).collect::<Result<_, _>>()?;
        let mut state = ServingState { seq: seq as u64, domains, ..ServingState::default() };
        for (project, alias, id) in aliases {
            state.aliases.push((parse_project(&project)?, alias, parse_id(&id)?));
        }
        for (project, id, weight) in splits {
            state.splits.push((parse_project(&project)?, parse_id(&id)?, weight as u32));
        }
        for (project, id, manifest) in deployments {
            state.deployments.push((parse_project(&project)?, parse_id(&id)?, parse_digest(&manifest)?));
        }
        for (project, id) in production {
            state.production.push((parse_project(&project)?, parse_id(&id)?));
        }
        Ok(state)
    }

    /// Manifests of every ready deployment, and the requested files of every
    /// uploading one: together, every blob that must survive GC.
    pub async fn live_references(&self) -> Result<(Vec<Digest>, Vec<Digest>), StoreError> {
        let manifests: Vec<String> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT manifest_digest FROM deployments WHERE state = 'ready'").fetch_all(p).await?);
        let uploading: Vec<(String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT files_json, options_json FROM deployments WHERE state = 'uploading'").fetch_all(p).await?);
        let manifests = manifests.iter().map(|m| parse_digest(m)).collect::<Result<_, _>>()?;
        let mut files = Vec::new();
        for (json, options) in uploading {
            files.extend(parse_files_json(&json)?.into_values());
            let options: helix_core::api::DeployOptions =
                serde_json::from_str(&options).map_err(|e| StoreError::Corrupt(format!("options_json: {e}")))?;
            files.extend(options.unserved_blobs());
        }
        Ok((manifests, files))
    }

    /// Marks uploads started before `cutoff_ms` and never finalized as
    /// failed, so their blobs stop being protected from GC.
    pub async fn abandon_uploads_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let done = on_pool!(self, p => sqlx::query(
            "UPDATE deployments SET state = 'error', error = 'abandoned: never finalized', files_json = '' \
             WHERE state = 'uploading' AND created_at_ms < $1").bind(cutoff_ms).execute(p).await?.rows_affected());
        Ok(done)
    }

    // ---- compressed variants --------------------------------------------

    pub async fn variants(&self, digest: Digest) -> Result<Vec<(String, Digest, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT encoding, variant_digest, variant_size FROM blob_variants WHERE digest = $1")
            .bind(digest.to_hex()).fetch_all(p).await?);
        rows.into_iter().map(|(enc, d, size)| Ok((enc, parse_digest(&d)?, size as u64))).collect()
    }

    /// Records every variant one compression of `digest` made, in one
    /// transaction, so a reader never sees half of them.
    pub async fn put_variants(&self, digest: Digest, variants: &[(&str, Digest, u64)]) -> Result<(), StoreError> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for (encoding, variant, size) in variants {
                sqlx::query(
                    "INSERT INTO blob_variants (digest, encoding, variant_digest, variant_size) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (digest, encoding) DO UPDATE SET variant_digest = $3, variant_size = $4")
                    .bind(digest.to_hex()).bind(*encoding).bind(variant.to_hex()).bind(*size as i64)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Forgets the variants whose bytes GC deleted.
    pub async fn forget_variant(&self, variant: Digest) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("DELETE FROM blob_variants WHERE variant_digest = $1 OR digest = $1")
            .bind(variant.to_hex()).execute(p).await.map(drop)?);
        Ok(())
    }
}

enum PointerMove {
    Promote,
    RollBack,
}

fn parse_files_json(json: &str) -> Result<BTreeMap<String, Digest>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("files_json: {e}")))
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest, StoreError> {
    s.parse().map_err(|e: helix_core::digest::DigestError| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn parse_id(s: &str) -> Result<DeploymentId, StoreError> {
    DeploymentId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn parse_project(s: &str) -> Result<ProjectName, StoreError> {
    ProjectName::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}
