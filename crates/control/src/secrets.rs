//! Sealing secrets at rest (git tokens and deploy keys, for now): XChaCha20-
//! Poly1305 under the server's 32-byte key, kept in `secret.key` (0600) in
//! the data directory. A sealed value is `v1.<base64 nonce‖ciphertext>`; the
//! project name is the associated data, so a value copied to another
//! project does not open. Sealed values are never returned over the API.
//!
//! The control plane's secret store (a later issue) takes this over with
//! envelope encryption and a KMS plug-in.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

pub struct SecretKey(XChaCha20Poly1305);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key file {path}: {error}")]
    KeyFile { path: String, error: String },
    #[error("no randomness: {0}")]
    Random(String),
    #[error("a sealed secret does not open with this server's key (was secret.key replaced?)")]
    Open,
}

impl SecretKey {
    /// Reads `secret.key` from `data_dir`, making it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<SecretKey, SecretError> {
        let path = data_dir.join("secret.key");
        let err = |error: String| SecretError::KeyFile { path: path.display().to_string(), error };
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => hex::decode(text.trim()).map_err(|e| err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
                crate::auth::write_private(&path, &hex::encode(&key)).map_err(|e| err(e.to_string()))?;
                key
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| err("must hold 32 bytes in hex".into()))?;
        Ok(SecretKey(cipher))
    }

    pub fn seal(&self, context: &str, plain: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
        let sealed = self
            .0
            .encrypt(&XNonce::from(nonce), Payload { msg: plain.as_bytes(), aad: context.as_bytes() })
            .map_err(|_| SecretError::Open)?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(format!("v1.{}", STANDARD_NO_PAD.encode(out)))
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<String, SecretError> {
        let raw = sealed.strip_prefix("v1.").and_then(|b| STANDARD_NO_PAD.decode(b).ok()).ok_or(SecretError::Open)?;
        if raw.len() < 24 {
            return Err(SecretError::Open);
        }
        let (nonce, body) = raw.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| SecretError::Open)?;
        let plain = self
            .0
            .decrypt(&XNonce::from(nonce), Payload { msg: body, aad: context.as_bytes() })
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain).map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_project_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load_or_create(dir.path()).unwrap();
        let sealed = key.seal("site", "ghp_token").unwrap();
        assert!(!sealed.contains("ghp_token"));
        assert_eq!(key.open("site", &sealed).unwrap(), "ghp_token");
        assert!(key.open("other", &sealed).is_err());
        let again = SecretKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open("site", &sealed).unwrap(), "ghp_token");
        std::fs::remove_file(dir.path().join("secret.key")).unwrap();
        let fresh = SecretKey::load_or_create(dir.path()).unwrap();
        assert!(fresh.open("site", &sealed).is_err());
    }
}
