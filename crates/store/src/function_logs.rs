//! Function log lines, stored in batches and read by project.

use crate::FunctionLogs;
use crate::pool::WritePool;
use crate::{Pool, StoreError};

/// A line to store.
pub struct NewFunctionLog<'a> {
    pub project: &'a str,
    pub deployment: &'a str,
    pub function: &'a str,
    pub request_id: &'a str,
    pub stream: &'a str,
    pub line: &'a str,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FunctionLog {
    /// Time-ordered; read on after it.
    pub id: String,
    pub deployment: String,
    pub function: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    pub stream: String,
    pub line: String,
    pub at_ms: i64,
}

impl FunctionLogs<'_> {
    /// Stores lines in one transaction.
    pub async fn append_function_logs(&self, lines: &[NewFunctionLog<'_>]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = lines.iter().map(|_| self.new_row_id()).collect();
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for (l, id) in lines.iter().zip(&ids) {
                sqlx::query(
                    "INSERT INTO function_logs (id, project, deployment_id, function, request_id, stream, line, at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(id).bind(l.project).bind(l.deployment).bind(l.function).bind(l.request_id)
                    .bind(l.stream).bind(l.line).bind(l.at_ms)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A project's lines after `after` (an id; "" for the start), oldest
    /// first; without `after`, the newest `limit`.
    pub async fn function_logs(
        &self,
        project: &str,
        function: Option<&str>,
        deployment: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<FunctionLog>, StoreError> {
        type Row = (String, String, String, String, String, String, i64);
        // Filters are optional: '' matches everything.
        let (f, d) = (function.unwrap_or(""), deployment.unwrap_or(""));
        let rows: Vec<Row> = match after {
            Some(after) => on_pool!(self, p => sqlx::query_as(
                "SELECT id, deployment_id, function, request_id, stream, line, at_ms FROM function_logs \
                 WHERE project = $1 AND id > $2 AND ($3 = '' OR function = $3) AND ($4 = '' OR deployment_id = $4) \
                 ORDER BY id LIMIT $5")
                .bind(project).bind(after).bind(f).bind(d).bind(limit).fetch_all(p).await?),
            None => {
                let mut rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
                    "SELECT id, deployment_id, function, request_id, stream, line, at_ms FROM function_logs \
                     WHERE project = $1 AND ($2 = '' OR function = $2) AND ($3 = '' OR deployment_id = $3) \
                     ORDER BY id DESC LIMIT $4")
                    .bind(project).bind(f).bind(d).bind(limit).fetch_all(p).await?);
                rows.reverse();
                rows
            }
        };
        Ok(rows
            .into_iter()
            .map(|(id, deployment, function, request_id, stream, line, at_ms)| FunctionLog {
                id,
                deployment,
                function,
                request_id,
                stream,
                line,
                at_ms,
            })
            .collect())
    }

    /// Forgets lines older than `before_ms`.
    pub async fn prune_function_logs(&self, before_ms: i64) -> Result<u64, StoreError> {
        let n = on_pool!(self, p => sqlx::query("DELETE FROM function_logs WHERE at_ms < $1")
            .bind(before_ms).execute(p).await?.rows_affected());
        Ok(n)
    }
}
