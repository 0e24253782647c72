//! Custom domains: claims, their proof, and which project a verified name
//! belongs to (one at most: a unique index over verified names keeps a
//! second project from taking it, however the requests race).

use helix_core::ProjectName;
use helix_core::events::Event;

use crate::pool::WritePool;
use crate::{Domains, NewAudit, Pool, StoreError, parse_project};

/// A project's claim on a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRow {
    pub project: ProjectName,
    pub name: String,
    pub token: String,
    pub previews: bool,
    pub redirect_to: Option<String>,
    pub verified_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_checked_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// A claim being made.
pub struct NewDomain<'a> {
    pub project_id: &'a str,
    pub name: &'a str,
    pub token: &'a str,
    pub previews: bool,
    pub redirect_to: Option<&'a str>,
    /// Most domains the project may have.
    pub max: usize,
}

/// What came of a claim.
#[derive(Debug)]
pub enum Claim {
    /// Claimed now; `seq` is its event's number.
    Added(DomainRow, u64),
    /// The project had claimed it already; nothing changed.
    Exists(DomainRow),
    /// Another project has verified it.
    Taken,
    /// The project has as many domains as it may.
    TooMany,
}

/// What came of a proof.
#[derive(Debug)]
pub enum Verified {
    /// Verified now; `seq` is its event's number.
    Now(DomainRow, u64),
    /// It was verified already.
    Already(DomainRow),
    /// Another project verified it first.
    Taken,
    /// The project has no such claim.
    Unknown,
}

pub(crate) type DomainTuple =
    (String, String, String, bool, Option<String>, Option<i64>, Option<String>, Option<i64>, i64);

pub(crate) const COLUMNS: &str = "p.name, d.name, d.token, d.previews, d.redirect_to, d.verified_at_ms, d.last_error, \
                       d.last_checked_ms, d.created_at_ms FROM domains d JOIN projects p ON p.id = d.project_id";

pub(crate) fn row(t: DomainTuple) -> Result<DomainRow, StoreError> {
    let (project, name, token, previews, redirect_to, verified_at_ms, last_error, last_checked_ms, created_at_ms) = t;
    Ok(DomainRow {
        project: parse_project(&project)?,
        name,
        token,
        previews,
        redirect_to,
        verified_at_ms,
        last_error,
        last_checked_ms,
        created_at_ms,
    })
}

/// `*.rest` for `label.rest`: the wildcard whose owner a name under it
/// belongs to. (A wildcard itself: one no name spells.)
pub fn covering_wildcard(name: &str) -> String {
    match name.split_once('.') {
        Some((label, rest)) if label != "*" => format!("*.{rest}"),
        _ => String::new(),
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

impl Domains<'_> {
    /// Claims `name` for the project, unless another project verified it.
    pub async fn add_domain(&self, new: NewDomain<'_>, audit: &NewAudit<'_>) -> Result<Claim, StoreError> {
        let id = self.new_row_id();
        let outbox_id = self.new_row_id();
        let (project, created) = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let project: String = sqlx::query_scalar("SELECT name FROM projects WHERE id = $1")
                .bind(new.project_id).fetch_one(&mut *tx).await?;
            let taken: Option<String> = sqlx::query_scalar(
                "SELECT project_id FROM domains WHERE name IN ($1, $3) AND verified_at_ms IS NOT NULL \
                 AND project_id <> $2 LIMIT 1")
                .bind(new.name).bind(new.project_id).bind(covering_wildcard(new.name))
                .fetch_optional(&mut *tx).await?;
            if taken.is_some() {
                return Ok(Claim::Taken);
            }
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM domains WHERE project_id = $1 AND name = $2")
                .bind(new.project_id).bind(new.name).fetch_optional(&mut *tx).await?;
            if exists.is_none() {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM domains WHERE project_id = $1")
                    .bind(new.project_id).fetch_one(&mut *tx).await?;
                if count as usize >= new.max {
                    return Ok(Claim::TooMany);
                }
                let inserted = sqlx::query(
                    "INSERT INTO domains (id, project_id, name, token, previews, redirect_to, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(&id).bind(new.project_id).bind(new.name).bind(new.token).bind(new.previews)
                    .bind(new.redirect_to).bind(audit.at_ms).execute(&mut *tx).await;
                match inserted {
                    // The same claim made at the same moment: that one stands.
                    Err(e) if unique_violation(&e) => {
                        drop(tx);
                        let found = self.domain(new.project_id, new.name).await?;
                        return found.map(Claim::Exists).ok_or_else(|| StoreError::Corrupt("a claim vanished".into()));
                    }
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
                insert_audit!(tx, audit);
                let event = Event::DomainPending {
                    project: parse_project(&project)?,
                    domain: new.name.to_owned(),
                    token: new.token.to_owned(),
                };
                let seq = insert_outbox!(tx, &outbox_id, &event, audit.at_ms, Some(audit.actor));
                tx.commit().await?;
                (project, Some(seq))
            } else {
                (project, None)
            }
        });
        let found = self.domain(new.project_id, new.name).await?;
        let found = found.ok_or_else(|| StoreError::Corrupt(format!("domain {} of {project} vanished", new.name)))?;
        Ok(match created {
            Some(seq) => Claim::Added(found, seq),
            None => Claim::Exists(found),
        })
    }

    pub async fn domain(&self, project_id: &str, name: &str) -> Result<Option<DomainRow>, StoreError> {
        let found: Option<DomainTuple> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} WHERE d.project_id = $1 AND d.name = $2")))
            .bind(project_id).bind(name).fetch_optional(p).await?);
        found.map(row).transpose()
    }

    /// The project's domains, by name.
    pub async fn domains_of(&self, project_id: &str) -> Result<Vec<DomainRow>, StoreError> {
        let rows: Vec<DomainTuple> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} WHERE d.project_id = $1 ORDER BY d.name")))
            .bind(project_id).fetch_all(p).await?);
        rows.into_iter().map(row).collect()
    }

    /// The domains of the organisation's projects (every organisation's:
    /// `None`), by name.
    pub async fn domains_in(&self, org_id: Option<&str>) -> Result<Vec<DomainRow>, StoreError> {
        let rows: Vec<DomainTuple> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} WHERE ($1 IS NULL OR p.org_id = $1) ORDER BY d.name, p.name")))
            .bind(org_id).fetch_all(p).await?);
        rows.into_iter().map(row).collect()
    }

    /// The projects that claim `name` (or the wildcard covering it),
    /// each with whether it verified it.
    pub async fn claimants(&self, name: &str) -> Result<Vec<(ProjectName, bool)>, StoreError> {
        let rows: Vec<(String, Option<i64>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT p.name, d.verified_at_ms FROM domains d JOIN projects p ON p.id = d.project_id \
             WHERE d.name IN ($1, $2) ORDER BY p.name")
            .bind(name).bind(covering_wildcard(name)).fetch_all(p).await?);
        rows.iter().map(|(n, verified)| Ok((parse_project(n)?, verified.is_some()))).collect()
    }

    /// Pending claims younger than `for_ms` whose last check is older than
    /// `every_ms` (ten times that once they are an hour old), least
    /// recently checked first.
    pub async fn pending_due(
        &self,
        now_ms: i64,
        every_ms: i64,
        for_ms: i64,
        limit: i64,
    ) -> Result<Vec<DomainRow>, StoreError> {
        let rows: Vec<DomainTuple> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} WHERE d.verified_at_ms IS NULL AND d.created_at_ms > $1 - $3 \
             AND (d.last_checked_ms IS NULL OR d.last_checked_ms <= $1 - CASE WHEN d.created_at_ms > $1 - 3600000 \
             THEN $2 ELSE $2 * 10 END) ORDER BY COALESCE(d.last_checked_ms, 0), d.name LIMIT $4")))
            .bind(now_ms).bind(every_ms).bind(for_ms).bind(limit).fetch_all(p).await?);
        rows.into_iter().map(row).collect()
    }

    /// Remembers why a proof failed (no event: nothing served changes).
    pub async fn record_check(&self, project_id: &str, name: &str, error: &str, now_ms: i64) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE domains SET last_error = $1, last_checked_ms = $2 WHERE project_id = $3 AND name = $4")
            .bind(error).bind(now_ms).bind(project_id).bind(name).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Marks the claim proven: the name is the project's from now on
    /// (unless another project holds it, or the wildcard covering it).
    pub async fn verify_domain(
        &self,
        project_id: &str,
        name: &str,
        audit: &NewAudit<'_>,
    ) -> Result<Verified, StoreError> {
        let Some(found) = self.domain(project_id, name).await? else { return Ok(Verified::Unknown) };
        if found.verified_at_ms.is_some() {
            return Ok(Verified::Already(found));
        }
        let outbox_id = self.new_row_id();
        let event = Event::DomainSet {
            project: found.project.clone(),
            domain: name.to_owned(),
            previews: found.previews,
            redirect_to: found.redirect_to.clone(),
        };
        let now_ms = audit.at_ms;
        let seq = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let covered: Option<String> = sqlx::query_scalar(
                "SELECT project_id FROM domains WHERE name = $1 AND verified_at_ms IS NOT NULL AND project_id <> $2")
                .bind(covering_wildcard(name)).bind(project_id).fetch_optional(&mut *tx).await?;
            if covered.is_some() {
                return Ok(Verified::Taken);
            }
            let updated = sqlx::query(
                "UPDATE domains SET verified_at_ms = $1, last_error = NULL, last_checked_ms = $1 \
                 WHERE project_id = $2 AND name = $3 AND verified_at_ms IS NULL")
                .bind(now_ms).bind(project_id).bind(name).execute(&mut *tx).await;
            match updated {
                Err(e) if unique_violation(&e) => return Ok(Verified::Taken),
                Err(e) => return Err(e.into()),
                Ok(done) if done.rows_affected() == 0 => return Ok(Verified::Unknown),
                Ok(_) => {}
            }
            insert_audit!(tx, audit);
            let seq = insert_outbox!(tx, &outbox_id, &event, now_ms, Some(audit.actor));
            tx.commit().await?;
            seq
        });
        let verified =
            DomainRow { verified_at_ms: Some(now_ms), last_error: None, last_checked_ms: Some(now_ms), ..found };
        Ok(Verified::Now(verified, seq))
    }

    /// Drops the project's claim; what it was and its event's number.
    pub async fn remove_domain(
        &self,
        project_id: &str,
        name: &str,
        audit: &NewAudit<'_>,
    ) -> Result<Option<(DomainRow, u64)>, StoreError> {
        let Some(found) = self.domain(project_id, name).await? else { return Ok(None) };
        let outbox_id = self.new_row_id();
        let event = Event::DomainRemoved {
            project: found.project.clone(),
            domain: name.to_owned(),
            token: found.token.clone(),
        };
        let seq = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("DELETE FROM domains WHERE project_id = $1 AND name = $2")
                .bind(project_id).bind(name).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Ok(None);
            }
            insert_audit!(tx, audit);
            let seq = insert_outbox!(tx, &outbox_id, &event, audit.at_ms, Some(audit.actor));
            tx.commit().await?;
            seq
        });
        Ok(Some((found, seq)))
    }
}
