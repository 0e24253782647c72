//! Bearer tokens. Only their SHA-256 is stored; the admin token made on
//! first start is written to a 0600 file in the data directory.

use std::path::Path;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use helix_store::Store;

use crate::ControlPlane;
use crate::problem::ApiError;

pub fn hash_token(token: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()))
}

/// Makes sure an admin token exists: reuses `admin.token` in `data_dir`
/// when the store knows it, otherwise creates one and writes the file.
pub async fn ensure_admin_token(store: &Store, data_dir: &Path) -> Result<String, TokenError> {
    let file = data_dir.join("admin.token");
    if let Ok(existing) = std::fs::read_to_string(&file) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() && store.token_exists(&hash_token(&existing)).await? {
            return Ok(existing);
        }
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = format!("hx_{}", hex::encode(raw));
    store.insert_token(&hash_token(&token), "admin", crate::now_ms()).await?;
    write_private(&file, &token)?;
    Ok(token)
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

/// Refuses requests without a known bearer token.
pub(crate) async fn require_token(State(cp): State<Arc<ControlPlane>>, req: Request, next: Next) -> Response {
    let header = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(bearer) else {
        return ApiError::Unauthorized("missing bearer token: send `Authorization: Bearer <token>`".into())
            .into_response();
    };
    match cp.store.token_exists(&hash_token(token)).await {
        Ok(true) => next.run(req).await,
        Ok(false) => ApiError::Unauthorized("invalid token".into()).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
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
