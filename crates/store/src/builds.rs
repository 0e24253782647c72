//! Project links, builds (the embedded durable job queue), build logs,
//! webhook deliveries and preview aliases.

use helix_core::ProjectName;
use helix_core::build::{BuildContext, BuildId, BuildState};
use sqlx::{Decode, Row, Type};

use crate::Builds;
use crate::pool::{Pool, WritePool};
use crate::{NewAudit, StoreError};

/// A project's link to its repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRow {
    pub project: String,
    pub repo_url: String,
    pub repo_key: String,
    pub production_branch: String,
    pub webhook_secret: String,
    pub git_credential_sealed: Option<String>,
    /// The git host's API for commit statuses (`None`: the provider's own).
    pub status_api: Option<String>,
}

pub struct NewLink<'a> {
    pub project: &'a ProjectName,
    /// The organisation a new project is made in.
    pub org_id: &'a str,
    pub repo_url: &'a str,
    pub repo_key: &'a str,
    pub production_branch: &'a str,
    /// Used only when the project was not linked before: relinking keeps
    /// the secret the git host already has.
    pub webhook_secret: &'a str,
    /// `None` keeps the stored credential.
    pub git_credential_sealed: Option<&'a str>,
    /// Replaces the stored one.
    pub status_api: Option<&'a str>,
    pub audit: &'a NewAudit<'a>,
    pub now_ms: i64,
}

/// A build being queued.
pub struct NewBuild<'a> {
    pub id: &'a str,
    pub project: &'a ProjectName,
    pub trigger: &'a str,
    pub branch: &'a str,
    pub commit: Option<&'a str>,
    pub context: &'a BuildContext,
    pub job_json: &'a str,
    pub now_ms: i64,
}

impl NewBuild<'_> {
    /// Builds of the same project with the same key: a newer one cancels
    /// the older.
    fn supersede_key(&self) -> String {
        match self.context {
            BuildContext::PullRequest { number, .. } => format!("pr:{number}"),
            _ => format!("branch:{}", self.branch),
        }
    }
}

/// What queuing found.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// Queued now; these older builds were canceled by it.
    New { canceled: Vec<String> },
    /// This delivery was seen before; these are the builds it queued then.
    Duplicate { builds: Vec<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildRow {
    pub id: BuildId,
    pub project: ProjectName,
    pub state: BuildState,
    pub trigger: String,
    pub branch: String,
    pub commit: Option<String>,
    pub context: BuildContext,
    pub job_json: String,
    pub attempts: i64,
    pub deployment_id: Option<String>,
    pub detected: Option<String>,
    pub error: Option<String>,
    pub failed_step: Option<String>,
    pub exit_status: Option<i64>,
    pub log_lines: i64,
    pub log_bytes: i64,
    pub log_truncated: bool,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// What the git host answered the last commit status posted.
    pub commit_status: Option<String>,
}

/// How a build ended, as its worker reports it.
pub struct BuildEnd<'a> {
    pub state: BuildState,
    pub deployment_id: Option<&'a str>,
    pub error: Option<&'a str>,
    pub failed_step: Option<&'a str>,
    pub exit_status: Option<i64>,
    pub now_ms: i64,
}

const BUILD_COLUMNS: &str = "b.id, p.name AS project, b.state, b.trigger, b.branch, b.commit_sha, b.context_json, \
     b.job_json, b.attempts, b.deployment_id, b.detected, b.error, b.failed_step, b.exit_status, b.log_lines, \
     b.log_bytes, b.log_truncated, b.created_at_ms, b.started_at_ms, b.finished_at_ms, b.commit_status";

const LINK_COLUMNS: &str = "p.name AS project, l.repo_url, l.repo_key, l.production_branch, l.webhook_secret, \
     l.git_credential_sealed, l.status_api";

impl Builds<'_> {
    // ---- links -----------------------------------------------------------

    /// Links a project (created on first use) to its repository.
    pub async fn link_project(&self, new: NewLink<'_>) -> Result<LinkRow, StoreError> {
        let project_id = self.new_row_id();
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO projects (id, name, org_id, created_at_ms) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (name) DO NOTHING")
                .bind(&project_id).bind(new.project.as_str()).bind(new.org_id).bind(new.now_ms)
                .execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO project_links (project_id, repo_url, repo_key, production_branch, webhook_secret, \
                 git_credential_sealed, created_at_ms, status_api) SELECT id, $1, $2, $3, $4, $5, $6, $9 FROM projects \
                 WHERE name = $7 AND org_id = $8 \
                 ON CONFLICT (project_id) DO UPDATE SET repo_url = $1, repo_key = $2, production_branch = $3, \
                 git_credential_sealed = COALESCE($5, project_links.git_credential_sealed), status_api = $9")
                .bind(new.repo_url).bind(new.repo_key).bind(new.production_branch).bind(new.webhook_secret)
                .bind(new.git_credential_sealed).bind(new.now_ms).bind(new.project.as_str()).bind(new.org_id)
                .bind(new.status_api)
                .execute(&mut *tx).await?;
            insert_audit!(tx, new.audit);
            tx.commit().await?;
        });
        self.project_link(new.project).await?.ok_or_else(|| StoreError::Corrupt("link vanished".into()))
    }

    pub async fn project_link(&self, project: &ProjectName) -> Result<Option<LinkRow>, StoreError> {
        let row = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {LINK_COLUMNS} FROM project_links l JOIN projects p ON p.id = l.project_id WHERE p.name = $1")))
            .bind(project.as_str()).fetch_optional(p).await?);
        Ok(row)
    }

    /// Every project linked to the repository with this key.
    pub async fn links_by_repo(&self, repo_key: &str) -> Result<Vec<LinkRow>, StoreError> {
        let rows = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {LINK_COLUMNS} FROM project_links l JOIN projects p ON p.id = l.project_id \
             WHERE l.repo_key = $1 ORDER BY p.name")))
            .bind(repo_key).fetch_all(p).await?);
        Ok(rows)
    }

    // ---- the queue -------------------------------------------------------

    /// Queues builds in one transaction: each cancels the older unfinished
    /// builds of the same branch or pull request. With a delivery id, a
    /// delivery seen before queues nothing and names what it queued then.
    pub async fn queue_builds(
        &self,
        delivery: Option<(&str, &str)>,
        builds: &[NewBuild<'_>],
        now_ms: i64,
    ) -> Result<Queued, StoreError> {
        let ids: Vec<&str> = builds.iter().map(|b| b.id).collect();
        let outbox_ids: Vec<String> = builds.iter().map(|_| self.new_row_id()).collect();
        let ids_json = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            if let Some((provider, delivery_id)) = delivery {
                let fresh = sqlx::query(
                    "INSERT INTO webhook_deliveries (provider, delivery_id, builds_json, at_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (provider, delivery_id) DO NOTHING")
                    .bind(provider).bind(delivery_id).bind(&ids_json).bind(now_ms)
                    .execute(&mut *tx).await?.rows_affected() == 1;
                if !fresh {
                    let seen: String = sqlx::query_scalar(
                        "SELECT builds_json FROM webhook_deliveries WHERE provider = $1 AND delivery_id = $2")
                        .bind(provider).bind(delivery_id).fetch_one(&mut *tx).await?;
                    tx.rollback().await?;
                    let builds = serde_json::from_str(&seen).map_err(|e| StoreError::Corrupt(format!("builds_json: {e}")))?;
                    return Ok(Queued::Duplicate { builds });
                }
            }
            let mut canceled = Vec::new();
            for b in builds {
                let key = b.supersede_key();
                let older: Vec<String> = sqlx::query_scalar(
                    "SELECT b.id FROM builds b JOIN projects p ON p.id = b.project_id \
                     WHERE p.name = $1 AND b.supersede_key = $2 AND b.state IN ('queued', 'building')")
                    .bind(b.project.as_str()).bind(&key).fetch_all(&mut *tx).await?;
                for id in &older {
                    sqlx::query("UPDATE builds SET state = 'canceled', error = $1, finished_at_ms = $2, lease_until_ms = NULL \
                                 WHERE id = $3 AND state IN ('queued', 'building')")
                        .bind(format!("superseded by build {}", b.id)).bind(now_ms).bind(id)
                        .execute(&mut *tx).await?;
                }
                canceled.extend(older);
                let context = serde_json::to_string(b.context).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO builds (id, project_id, state, trigger, branch, commit_sha, supersede_key, context_json, \
                     job_json, created_at_ms) SELECT $1, id, 'queued', $2, $3, $4, $5, $6, $7, $8 FROM projects WHERE name = $9")
                    .bind(b.id).bind(b.trigger).bind(b.branch).bind(b.commit).bind(&key).bind(&context)
                    .bind(b.job_json).bind(b.now_ms).bind(b.project.as_str())
                    .execute(&mut *tx).await?;
            }
            // The events last: the sequence row is the last lock taken.
            for (b, outbox_id) in builds.iter().zip(&outbox_ids) {
                let event = helix_core::events::Event::BuildRequested {
                    project: b.project.clone(),
                    build: b.id.to_owned(),
                    branch: b.branch.to_owned(),
                    trigger: b.trigger.to_owned(),
                };
                insert_outbox!(tx, outbox_id, &event, now_ms, Some(b.trigger));
            }
            tx.commit().await?;
            Ok(Queued::New { canceled })
        })
    }

    /// Takes the oldest build that is queued, or whose worker's lease ran
    /// out, for `lease_ms`. Returns its id, job and attempt number (which
    /// fences every later call: a worker whose attempt was taken over can
    /// no longer extend, finish or requeue the build). A build whose
    /// workers vanished `max_attempts` times fails instead.
    pub async fn claim_build(
        &self,
        lease_ms: i64,
        max_attempts: i64,
        now_ms: i64,
    ) -> Result<Option<(String, String, i64)>, StoreError> {
        loop {
            let next: Option<(String, String, i64)> = on_pool!(self, p => sqlx::query_as(
                "SELECT id, job_json, attempts FROM builds WHERE state = 'queued' \
                 OR (state = 'building' AND lease_until_ms < $1) ORDER BY created_at_ms, id LIMIT 1")
                .bind(now_ms).fetch_optional(p).await?);
            let Some((id, job, attempts)) = next else { return Ok(None) };
            if attempts >= max_attempts {
                on_pool!(self, p => sqlx::query(
                    "UPDATE builds SET state = 'error', error = $1, finished_at_ms = $2, lease_until_ms = NULL \
                     WHERE id = $3 AND attempts = $4 AND state IN ('queued', 'building')")
                    .bind(format!("gave up after {attempts} attempts: the build's worker stopped each time"))
                    .bind(now_ms).bind(&id).bind(attempts).execute(p).await.map(drop)?);
                continue;
            }
            let won = on_pool!(self, p => sqlx::query(
                "UPDATE builds SET state = 'building', attempts = attempts + 1, lease_until_ms = $1, \
                 started_at_ms = COALESCE(started_at_ms, $2) \
                 WHERE id = $3 AND attempts = $4 AND (state = 'queued' OR (state = 'building' AND lease_until_ms < $2))")
                .bind(now_ms + lease_ms).bind(now_ms).bind(&id).bind(attempts)
                .execute(p).await?.rows_affected() == 1);
            if won {
                return Ok(Some((id, job, attempts + 1)));
            }
        }
    }

    /// Lets every running build's lease run out now: on a store only this
    /// process uses (SQLite), a build marked running at start belonged to a
    /// process that died.
    pub async fn expire_build_leases(&self) -> Result<u64, StoreError> {
        let n = on_pool!(self, p => sqlx::query("UPDATE builds SET lease_until_ms = 0 WHERE state = 'building'")
            .execute(p).await?.rows_affected());
        Ok(n)
    }

    /// Extends the lease of attempt `attempt`; false when the build is no
    /// longer that attempt's to run (canceled, superseded, taken over).
    pub async fn extend_build_lease(&self, id: &str, attempt: i64, until_ms: i64) -> Result<bool, StoreError> {
        let n = on_pool!(self, p => sqlx::query(
            "UPDATE builds SET lease_until_ms = $1 WHERE id = $2 AND attempts = $3 AND state = 'building'")
            .bind(until_ms).bind(id).bind(attempt).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Puts attempt `attempt` of a build back on the queue after an
    /// infrastructure failure, unless it has had `max_attempts`; then it
    /// fails.
    pub async fn requeue_build(
        &self,
        id: &str,
        attempt: i64,
        error: &str,
        max_attempts: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let requeued = on_pool!(self, p => sqlx::query(
            "UPDATE builds SET state = 'queued', lease_until_ms = NULL, error = $1 \
             WHERE id = $2 AND attempts = $3 AND state = 'building' AND attempts < $4")
            .bind(error).bind(id).bind(attempt).bind(max_attempts).execute(p).await?.rows_affected() == 1);
        if !requeued {
            let end = BuildEnd {
                state: BuildState::Error,
                deployment_id: None,
                error: Some(error),
                failed_step: None,
                exit_status: None,
                now_ms,
            };
            self.finish_build(id, attempt, end).await?;
        }
        Ok(requeued)
    }

    /// Records how attempt `attempt` of a build ended, unless the build was
    /// canceled or taken over meanwhile. A failed build's deployment is
    /// recorded too, in state `error` (never served, never listed as
    /// ready), in the same transaction.
    pub async fn finish_build(&self, id: &str, attempt: i64, end: BuildEnd<'_>) -> Result<(), StoreError> {
        let failed_deployment =
            (end.state == BuildState::Error && end.deployment_id.is_none()).then(|| self.new_row_id());
        let deployment_id = end.deployment_id.map(str::to_owned).or_else(|| failed_deployment.clone());
        let outbox_id = self.new_row_id();
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query(
                "UPDATE builds SET state = $1, deployment_id = $2, error = $3, failed_step = $4, exit_status = $5, \
                 finished_at_ms = $6, lease_until_ms = NULL WHERE id = $7 AND attempts = $8 AND state = 'building'")
                .bind(end.state.as_str()).bind(&deployment_id).bind(end.error).bind(end.failed_step)
                .bind(end.exit_status).bind(end.now_ms).bind(id).bind(attempt).execute(&mut *tx).await?.rows_affected();
            if n == 1 && let Some(dep) = &failed_deployment {
                sqlx::query(
                    "INSERT INTO deployments (id, project_id, state, files_json, file_count, created_at_ms, error) \
                     SELECT $1, project_id, 'error', '', 0, $2, $3 FROM builds WHERE id = $4")
                    .bind(dep).bind(end.now_ms).bind(end.error.unwrap_or("the build failed")).bind(id)
                    .execute(&mut *tx).await?;
            }
            if n == 1 {
                let project: String = sqlx::query_scalar(
                    "SELECT p.name FROM builds b JOIN projects p ON p.id = b.project_id WHERE b.id = $1")
                    .bind(id).fetch_one(&mut *tx).await?;
                let event = helix_core::events::Event::BuildFinished {
                    project: crate::parse_project(&project)?,
                    build: id.to_owned(),
                    state: end.state.as_str().to_owned(),
                    deployment: end.deployment_id.map(str::to_owned),
                };
                insert_outbox!(tx, &outbox_id, &event, end.now_ms, Some("build"));
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Cancels the unfinished builds of a branch (`pull_request: None`) or
    /// of a pull request; returns how many.
    pub async fn cancel_builds_of(
        &self,
        project: &ProjectName,
        branch: &str,
        pull_request: Option<u64>,
        reason: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let key = match pull_request {
            Some(n) => format!("pr:{n}"),
            None => format!("branch:{branch}"),
        };
        let n = on_pool!(self, p => sqlx::query(
            "UPDATE builds SET state = 'canceled', error = $1, finished_at_ms = $2, lease_until_ms = NULL \
             WHERE supersede_key = $3 AND state IN ('queued', 'building') \
             AND project_id = (SELECT id FROM projects WHERE name = $4)")
            .bind(reason).bind(now_ms).bind(&key).bind(project.as_str()).execute(p).await?.rows_affected());
        Ok(n)
    }

    /// Cancels an unfinished build; returns whether it was unfinished.
    pub async fn cancel_build(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n = on_pool!(self, p => sqlx::query(
            "UPDATE builds SET state = 'canceled', error = 'canceled', finished_at_ms = $1, lease_until_ms = NULL \
             WHERE id = $2 AND state IN ('queued', 'building')")
            .bind(now_ms).bind(id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// What the git host answered the build's last commit status.
    pub async fn note_commit_status(&self, id: &str, status: &str) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("UPDATE builds SET commit_status = $1 WHERE id = $2")
            .bind(status).bind(id).execute(p).await.map(drop)?);
        Ok(())
    }

    /// What the worker learned along the way: the exact commit, the plan.
    pub async fn note_build(&self, id: &str, commit: Option<&str>, detected: Option<&str>) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE builds SET commit_sha = COALESCE($1, commit_sha), detected = COALESCE($2, detected) WHERE id = $3")
            .bind(commit).bind(detected).bind(id).execute(p).await.map(drop)?);
        Ok(())
    }

    pub async fn build(&self, id: &str) -> Result<Option<BuildRow>, StoreError> {
        let row = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {BUILD_COLUMNS} FROM builds b JOIN projects p ON p.id = b.project_id WHERE b.id = $1")))
            .bind(id).fetch_optional(p).await?);
        Ok(row)
    }

    /// The project's builds, newest first.
    pub async fn builds(&self, project: &ProjectName, limit: i64) -> Result<Vec<BuildRow>, StoreError> {
        let rows = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {BUILD_COLUMNS} FROM builds b JOIN projects p ON p.id = b.project_id \
             WHERE p.name = $1 ORDER BY b.created_at_ms DESC, b.id DESC LIMIT $2")))
            .bind(project.as_str()).bind(limit).fetch_all(p).await?);
        Ok(rows)
    }

    // ---- aliases ---------------------------------------------------------

    /// Removes a preview alias and publishes `alias.removed`, in one
    /// transaction: the event's sequence number, or `None` when there was
    /// no such alias.
    pub async fn remove_alias(
        &self,
        project: &ProjectName,
        alias: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        let event = helix_core::events::Event::AliasRemoved { project: project.clone(), alias: alias.to_owned() };
        let outbox_id = self.new_row_id();
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("DELETE FROM aliases WHERE alias = $1 AND project_id = (SELECT id FROM projects WHERE name = $2)")
                .bind(alias).bind(project.as_str()).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            let seq = insert_outbox!(tx, &outbox_id, &event, now_ms);
            tx.commit().await?;
            Ok(Some(seq))
        })
    }

    // ---- logs ------------------------------------------------------------

    /// Appends log lines (with their sequence numbers) and the running
    /// totals, in one transaction.
    pub async fn append_build_log(
        &self,
        id: &str,
        lines: &[(i64, i64, String)],
        total_bytes: i64,
        truncated: bool,
    ) -> Result<(), StoreError> {
        let last = lines.last().map_or(0, |l| l.0);
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for (seq, at_ms, line) in lines {
                sqlx::query("INSERT INTO build_logs (build_id, seq, at_ms, line) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (build_id, seq) DO NOTHING")
                    .bind(id).bind(seq).bind(at_ms).bind(line).execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE builds SET log_lines = CASE WHEN log_lines > $1 THEN log_lines ELSE $1 END, \
                         log_bytes = $2, log_truncated = $3 WHERE id = $4")
                .bind(last).bind(total_bytes).bind(truncated).bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Log lines after `after_seq`, oldest first.
    pub async fn build_log(&self, id: &str, after_seq: i64, limit: i64) -> Result<Vec<(i64, i64, String)>, StoreError> {
        let rows = on_pool!(self, p => sqlx::query_as(
            "SELECT seq, at_ms, line FROM build_logs WHERE build_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(id).bind(after_seq).bind(limit).fetch_all(p).await?);
        Ok(rows)
    }

    /// The sequence number of the build's last log line (0: none yet): a
    /// new attempt's lines follow the earlier attempts'.
    pub async fn build_log_end(&self, id: &str) -> Result<i64, StoreError> {
        let n: Option<i64> = on_pool!(self, p => sqlx::query_scalar("SELECT MAX(seq) FROM build_logs WHERE build_id = $1")
            .bind(id).fetch_one(p).await?);
        Ok(n.unwrap_or(0))
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for LinkRow
where
    R: Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(LinkRow {
            project: row.try_get("project")?,
            repo_url: row.try_get("repo_url")?,
            repo_key: row.try_get("repo_key")?,
            production_branch: row.try_get("production_branch")?,
            webhook_secret: row.try_get("webhook_secret")?,
            git_credential_sealed: row.try_get("git_credential_sealed")?,
            status_api: row.try_get("status_api")?,
        })
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for BuildRow
where
    R: Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let corrupt =
            |index: &str, source: String| sqlx::Error::ColumnDecode { index: index.into(), source: source.into() };
        let state: String = row.try_get("state")?;
        let context: String = row.try_get("context_json")?;
        let id: String = row.try_get("id")?;
        let project: String = row.try_get("project")?;
        Ok(BuildRow {
            id: BuildId::parse(&id).map_err(|e| corrupt("id", e.to_string()))?,
            project: ProjectName::parse(&project).map_err(|e| corrupt("project", e.to_string()))?,
            state: BuildState::parse(&state)
                .ok_or_else(|| corrupt("state", format!("unknown build state {state:?}")))?,
            trigger: row.try_get("trigger")?,
            branch: row.try_get("branch")?,
            commit: row.try_get("commit_sha")?,
            context: serde_json::from_str(&context).map_err(|e| corrupt("context_json", e.to_string()))?,
            job_json: row.try_get("job_json")?,
            attempts: row.try_get("attempts")?,
            deployment_id: row.try_get("deployment_id")?,
            detected: row.try_get("detected")?,
            error: row.try_get("error")?,
            failed_step: row.try_get("failed_step")?,
            exit_status: row.try_get("exit_status")?,
            log_lines: row.try_get("log_lines")?,
            log_bytes: row.try_get("log_bytes")?,
            log_truncated: row.try_get("log_truncated")?,
            created_at_ms: row.try_get("created_at_ms")?,
            started_at_ms: row.try_get("started_at_ms")?,
            finished_at_ms: row.try_get("finished_at_ms")?,
            commit_status: row.try_get("commit_status")?,
        })
    }
}
