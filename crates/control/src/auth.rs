//! Bearer tokens. Only their SHA-256 is stored; the admin token made on
//! first start is written to a 0600 file in the data directory.

use std::path::Path;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use helix_core::identity::Role;
use helix_store::{NewToken, Store};

use crate::ControlPlane;
use crate::access::{Actor, Ctx};
use crate::problem::{ApiError, Denied};

pub fn hash_token(token: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()))
}

/// Makes sure an admin token exists: reuses `admin.token` in `data_dir`
/// when the store knows it (and it still works), otherwise creates one and
/// writes the file. It is the server admin's: it acts in every
/// organisation, and is how the first users and tokens are made.
pub async fn ensure_admin_token(store: &Store, data_dir: &Path) -> Result<String, TokenError> {
    let file = data_dir.join("admin.token");
    if let Ok(existing) = std::fs::read_to_string(&file) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty()
            && let Some(row) = store.identity().token_by_hash(&hash_token(&existing)).await?
            && row.server_admin
            && row.revoked_at_ms.is_none()
        {
            return Ok(existing);
        }
    }
    let token = new_secret("hx_").map_err(TokenError::Random)?;
    let now = crate::now_ms();
    store
        .identity()
        .insert_token(NewToken {
            sha256_hex: &hash_token(&token),
            name: "admin",
            user_id: "admin",
            org_id: "default",
            role: Role::Owner,
            project_id: None,
            read_only: false,
            server_admin: true,
            build_id: None,
            expires_at_ms: None,
            audit: &crate::identity::system_audit(
                "default",
                None,
                "token.create",
                serde_json::json!({ "name": "admin" }),
                now,
            ),
            now_ms: now,
        })
        .await?;
    write_private(&file, &token)?;
    Ok(token)
}

/// A new random token: `prefix` and 64 hex digits.
pub(crate) fn new_secret(prefix: &str) -> Result<String, String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| e.to_string())?;
    Ok(format!("{prefix}{}", hex::encode(raw)))
}

pub(crate) fn write_private(file: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = file.with_extension("token.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(tmp, file)
}

/// Why the admin token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] helix_store::StoreError),
    #[error("writing the admin token: {0}")]
    Io(#[from] std::io::Error),
    #[error("no randomness for the admin token: {0}")]
    Random(String),
}

/// The token of an `Authorization: Bearer <token>` header; the scheme's
/// name is case-insensitive (RFC 7235).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Refuses requests without a working bearer token; for the rest, puts the
/// caller's [`Ctx`] in the request for the operations.
pub(crate) async fn require_token(State(cp): State<Arc<ControlPlane>>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(bearer) else {
        return ApiError::Unauthorized("missing bearer token: send `Authorization: Bearer <token>`".into())
            .into_response();
    };
    let now_ms = crate::now_ms();
    let actor = match actor_of(&cp, token, now_ms).await {
        Ok(actor) => actor,
        Err(e) => return e.into_response(),
    };
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| ulid::Ulid::new().to_string().to_ascii_lowercase(), str::to_owned);
    if !req.uri().path().contains("/blobs/")
        && let Err(wait) = cp.rate.take(&actor.token.id)
    {
        let detail = format!(
            "too many requests for this token (at most {} a second): retry in {:.1} s",
            cp.rate.rate(),
            wait.as_secs_f64()
        );
        return ApiError::TooMany(detail, wait).into_response();
    }
    let ctx = Arc::new(Ctx { actor, request_id, now_ms });
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    req.extensions_mut().insert(ctx.clone());
    let response = next.run(req).await;
    if let Some(Denied(why)) = response.extensions().get::<Denied>() {
        cp.audit_denial(&ctx, &method, &path, why).await;
    }
    response
}

/// The caller a token stands for, or why it does not work.
async fn actor_of(cp: &ControlPlane, token: &str, now_ms: i64) -> Result<Actor, ApiError> {
    let store = &cp.store;
    let invalid = || ApiError::Unauthorized("invalid token".into());
    let row = store.identity().token_by_hash(&hash_token(token)).await?.ok_or_else(invalid)?;
    if row.revoked_at_ms.is_some() {
        return Err(ApiError::Unauthorized(format!("token {} was revoked", row.id)));
    }
    if row.expires_at_ms.is_some_and(|at| at <= now_ms) {
        return Err(ApiError::Unauthorized(format!("token {} has expired", row.id)));
    }
    let roles = match &row.build_id {
        // A build's token: its build's project, nothing else.
        Some(_) => vec![(row.project_id.clone(), Role::Developer)],
        None => store.identity().roles_of(&row.org_id, &row.user_id).await?,
    };
    if roles.is_empty() && !row.server_admin {
        return Err(ApiError::Unauthorized(format!(
            "token {}: user {} is no longer a member of {}",
            row.id, row.user, row.org
        )));
    }
    if cp.touched.due(&row.id, now_ms) {
        store.identity().touch_token(&row.id, now_ms).await?;
    }
    Ok(Actor { token: row, roles })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for h in ["Bearer abc", "bearer abc", "BEARER  abc ", "  BeArEr abc"] {
            assert_eq!(super::bearer(h), Some("abc"), "{h}");
        }
        for h in ["Basic abc", "Bearer", "Bearer  ", "Bearerabc"] {
            assert_eq!(super::bearer(h), None, "{h}");
        }
    }
}

/// When each token's last use was last written: a request writes it at
/// most once a minute per token (the store keeps the same bound across
/// servers), so reads never take SQLite's write lock for it.
#[derive(Default)]
pub(crate) struct Touched(std::sync::Mutex<std::collections::HashMap<String, i64>>);

impl Touched {
    const EVERY_MS: i64 = 60_000;

    /// Whether `token`'s use should be written now (and notes that it is).
    pub(crate) fn due(&self, token: &str, now_ms: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 10_000 {
            seen.retain(|_, at| now_ms - *at < Self::EVERY_MS);
        }
        match seen.get(token) {
            Some(at) if now_ms - at < Self::EVERY_MS => false,
            _ => {
                seen.insert(token.to_owned(), now_ms);
                true
            }
        }
    }
}
