//! The two engines behind [`crate::Store`], picked by URL scheme, and the
//! migration set they share.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, Transaction};

use crate::StoreError;

pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub(crate) async fn connect(url: &str) -> Result<Pool, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL in WAL mode survives a killed process; only a power
                // loss can drop the last commits.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
            Ok(Pool::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
            Ok(Pool::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }
}

/// Opening a transaction that will write. SQLite must take the write lock
/// up front (`BEGIN IMMEDIATE`): a deferred transaction that later upgrades
/// fails with "database is locked" instead of waiting its turn.
pub(crate) trait WritePool {
    type Db: sqlx::Database;
    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl WritePool for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl WritePool for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, sqlx::Postgres>, sqlx::Error>> + Send {
        self.begin()
    }
}

/// Opening a transaction whose reads all see one snapshot (SQLite's
/// transactions always do; Postgres needs `REPEATABLE READ`).
pub(crate) trait SnapshotPool {
    type Db: sqlx::Database;
    fn begin_snapshot(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl SnapshotPool for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_snapshot(&self) -> impl Future<Output = Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send {
        self.begin()
    }
}

impl SnapshotPool for PgPool {
    type Db = sqlx::Postgres;
    fn begin_snapshot(&self) -> impl Future<Output = Result<Transaction<'static, sqlx::Postgres>, sqlx::Error>> + Send {
        self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }
}

/// The migration set, embedded in the binary; the same SQL runs on both
/// engines.
pub(crate) fn migrator() -> Migrator {
    const MIGRATIONS: &[(i64, &str, &str)] = &[
        (1, "spine", include_str!("../migrations/0001_spine.sql")),
        (2, "routes", include_str!("../migrations/0002_routes.sql")),
        (3, "splits", include_str!("../migrations/0003_splits.sql")),
        (4, "builds", include_str!("../migrations/0004_builds.sql")),
        (5, "event_sequence", include_str!("../migrations/0005_event_sequence.sql")),
        (6, "cron_runs", include_str!("../migrations/0006_cron_runs.sql")),
        (7, "function_logs", include_str!("../migrations/0007_function_logs.sql")),
        (8, "identity", include_str!("../migrations/0008_identity.sql")),
        (9, "audit", include_str!("../migrations/0009_audit.sql")),
        (10, "env", include_str!("../migrations/0010_env.sql")),
        (11, "policy", include_str!("../migrations/0011_policy.sql")),
        (12, "webhooks", include_str!("../migrations/0012_webhooks.sql")),
        (13, "listing", include_str!("../migrations/0013_listing.sql")),
        (14, "commit_status", include_str!("../migrations/0014_commit_status.sql")),
        (15, "domains", include_str!("../migrations/0015_domains.sql")),
    ];
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}
