//! Sealing secrets at rest: XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`) with envelope encryption.
//!
//! A project's secret variables are sealed under its own data key; the data
//! key is stored wrapped by the server's master key, and the row names the
//! master key's id. Git credentials are sealed under the master key
//! directly. A sealed value is `v1.<base64 nonce‖ciphertext>`; the
//! associated data names what it belongs to (project and variable), so a
//! value copied to another row does not open.
//!
//! Master keys: `HELIX_MASTER_KEY` (64 hex digits) when set, else the key
//! files in the data directory — `secret.key` (made on first start) and
//! `keys/<id>.key` (made by rotations), with `keys/current` naming the one
//! new values are sealed under. Every key present is tried when opening,
//! so a rotation interrupted at any step leaves everything readable.
//! Sealed values are never returned over the API.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// One 32-byte key.
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    id: String,
    raw: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key {path}: {error}")]
    KeyFile { path: String, error: String },
    #[error("no randomness: {0}")]
    Random(String),
    #[error("a sealed secret does not open with this server's keys (was secret.key replaced?)")]
    Open,
}

impl SecretKey {
    pub fn from_bytes(raw: [u8; 32]) -> SecretKey {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(raw);
        let id = hex::encode(&digest[..8]);
        SecretKey { cipher: XChaCha20Poly1305::new(&raw.into()), id, raw }
    }

    pub fn generate() -> Result<SecretKey, SecretError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(SecretKey::from_bytes(raw))
    }

    fn from_hex(text: &str, path: &str) -> Result<SecretKey, SecretError> {
        let err = |error: String| SecretError::KeyFile { path: path.to_owned(), error };
        let bytes = hex::decode(text.trim()).map_err(|e| err(e.to_string()))?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| err("must hold 32 bytes in hex".into()))?;
        Ok(SecretKey::from_bytes(raw))
    }

    /// Reads `secret.key` from `data_dir`, making it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<SecretKey, SecretError> {
        let path = data_dir.join("secret.key");
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => SecretKey::from_hex(&text, &shown),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SecretKey::generate()?;
                crate::auth::write_private(&path, &hex::encode(key.raw))
                    .map_err(|e| SecretError::KeyFile { path: shown, error: e.to_string() })?;
                Ok(key)
            }
            Err(e) => Err(SecretError::KeyFile { path: shown, error: e.to_string() }),
        }
    }

    /// A short name for the key: the start of its SHA-256.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, SecretError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad: context.as_bytes() })
            .map_err(|_| SecretError::Open)?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(format!("v1.{}", STANDARD_NO_PAD.encode(out)))
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let raw = sealed.strip_prefix("v1.").and_then(|b| STANDARD_NO_PAD.decode(b).ok()).ok_or(SecretError::Open)?;
        if raw.len() < 24 {
            return Err(SecretError::Open);
        }
        let (nonce, body) = raw.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| SecretError::Open)?;
        self.cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: body, aad: context.as_bytes() })
            .map_err(|_| SecretError::Open)
    }
}

/// The server's master keys: the one new values are sealed under, and
/// every other one still present (opening tries each).
pub struct Keyring {
    keys: RwLock<(Arc<SecretKey>, Vec<Arc<SecretKey>>)>,
    /// Where rotations write keys; `None` when the key is from the
    /// environment.
    dir: Option<PathBuf>,
}

impl Keyring {
    /// Loads the master keys for `data_dir` (see the module's docs).
    pub fn load(data_dir: &Path) -> Result<Keyring, SecretError> {
        if let Ok(text) = std::env::var("HELIX_MASTER_KEY") {
            let mut others = Vec::new();
            if let Ok(previous) = std::env::var("HELIX_MASTER_KEY_PREVIOUS") {
                others.push(Arc::new(SecretKey::from_hex(&previous, "HELIX_MASTER_KEY_PREVIOUS")?));
            }
            let current = Arc::new(SecretKey::from_hex(&text, "HELIX_MASTER_KEY")?);
            return Ok(Keyring { keys: RwLock::new((current, others)), dir: None });
        }
        let dir = data_dir.join("keys");
        let current_id = std::fs::read_to_string(dir.join("current")).ok().map(|s| s.trim().to_owned());
        let legacy_path = data_dir.join("secret.key");
        let mut all = Vec::new();
        if current_id.is_none() || legacy_path.exists() {
            // Before the first rotation, `secret.key` is the key (made now
            // on a first start).
            all.push(Arc::new(SecretKey::load_or_create(data_dir)?));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "key") {
                    let shown = path.display().to_string();
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| SecretError::KeyFile { path: shown.clone(), error: e.to_string() })?;
                    all.push(Arc::new(SecretKey::from_hex(&text, &shown)?));
                }
            }
        }
        let at = current_id.and_then(|id| all.iter().position(|k| k.id == id)).unwrap_or(0);
        let Some(current) = all.get(at).cloned() else {
            return Err(SecretError::KeyFile {
                path: dir.join("current").display().to_string(),
                error: "names a key that is not in keys/".into(),
            });
        };
        let others = all.into_iter().filter(|k| k.id != current.id).collect();
        Ok(Keyring { keys: RwLock::new((current, others)), dir: Some(dir) })
    }

    pub fn current(&self) -> Arc<SecretKey> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// The key with this id, if present.
    pub fn by_id(&self, id: &str) -> Option<Arc<SecretKey>> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        std::iter::once(&keys.0).chain(&keys.1).find(|k| k.id == id).cloned()
    }

    pub fn seal(&self, context: &str, plain: &str) -> Result<String, SecretError> {
        self.current().seal(context, plain.as_bytes())
    }

    /// Opens with whichever present key sealed it.
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, SecretError> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let plain = std::iter::once(&keys.0)
            .chain(&keys.1)
            .find_map(|k| k.open(context, sealed).ok())
            .ok_or(SecretError::Open)?;
        String::from_utf8(plain).map_err(|_| SecretError::Open)
    }

    /// Step one of a rotation: a new key, written to `keys/<id>.key`
    /// before anything is sealed under it (not yet current). With keys
    /// from the environment, the rotation re-seals under
    /// `HELIX_MASTER_KEY` (the operator set a new one, and the old as
    /// `HELIX_MASTER_KEY_PREVIOUS`).
    pub fn prepare_rotation(&self) -> Result<Arc<SecretKey>, SecretError> {
        let Some(dir) = self.dir.as_ref() else { return Ok(self.current()) };
        let key = SecretKey::generate()?;
        let path = dir.join(format!("{}.key", key.id));
        let err = |e: std::io::Error| SecretError::KeyFile { path: path.display().to_string(), error: e.to_string() };
        std::fs::create_dir_all(dir).map_err(err)?;
        crate::auth::write_private(&path, &hex::encode(key.raw)).map_err(err)?;
        Ok(Arc::new(key))
    }

    /// The last step, once everything is re-sealed under `key`: it becomes
    /// current, and the keys it replaced are deleted.
    pub fn finish_rotation(&self, key: Arc<SecretKey>) -> Result<(), SecretError> {
        let Some(dir) = self.dir.as_ref() else { return Ok(()) };
        let current = dir.join("current");
        let err =
            |e: std::io::Error| SecretError::KeyFile { path: current.display().to_string(), error: e.to_string() };
        crate::auth::write_private(&current, &key.id).map_err(err)?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let old: Vec<Arc<SecretKey>> = std::iter::once(keys.0.clone()).chain(keys.1.drain(..)).collect();
        for k in &old {
            let file = dir.join(format!("{}.key", k.id));
            let _ = std::fs::remove_file(file);
        }
        if let Some(data_dir) = dir.parent() {
            // The first key lives beside the data; it goes too.
            let _ = std::fs::remove_file(data_dir.join("secret.key"));
        }
        keys.0 = key;
        Ok(())
    }
}

/// What a project's data key is wrapped with: its project.
fn wrap_context(project_id: &str) -> String {
    format!("project-key:{project_id}")
}

impl Keyring {
    /// A new data key for a project: the key, and its wrapped form and
    /// the id of the master key that wraps it, to store.
    pub fn new_data_key(&self, project_id: &str) -> Result<(SecretKey, String, String), SecretError> {
        let key = SecretKey::generate()?;
        let master = self.current();
        let wrapped = master.seal(&wrap_context(project_id), hex::encode(key.raw).as_bytes())?;
        Ok((key, wrapped, master.id.clone()))
    }

    /// A stored data key, unwrapped by the master key it names (or any
    /// present one).
    pub fn unwrap_data_key(&self, project_id: &str, wrapped: &str, master_id: &str) -> Result<SecretKey, SecretError> {
        let context = wrap_context(project_id);
        let raw = match self.by_id(master_id) {
            Some(master) => master.open(&context, wrapped)?,
            None => self.open(&context, wrapped)?.into_bytes(),
        };
        let raw: [u8; 32] = hex::decode(raw).ok().and_then(|b| b.try_into().ok()).ok_or(SecretError::Open)?;
        Ok(SecretKey::from_bytes(raw))
    }

    /// A stored data key wrapped again under `master`.
    pub fn rewrap_data_key(
        &self,
        project_id: &str,
        wrapped: &str,
        master_id: &str,
        master: &SecretKey,
    ) -> Result<String, SecretError> {
        let key = self.unwrap_data_key(project_id, wrapped, master_id)?;
        master.seal(&wrap_context(project_id), hex::encode(key.raw).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_context_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load_or_create(dir.path()).unwrap();
        let sealed = key.seal("site", b"ghp_token").unwrap();
        assert!(!sealed.contains("ghp_token"));
        assert_eq!(key.open("site", &sealed).unwrap(), b"ghp_token");
        assert!(key.open("other", &sealed).is_err());
        let again = SecretKey::load_or_create(dir.path()).unwrap();
        assert_eq!((again.open("site", &sealed).unwrap(), again.id()), (b"ghp_token".to_vec(), key.id()));
        std::fs::remove_file(dir.path().join("secret.key")).unwrap();
        let fresh = SecretKey::load_or_create(dir.path()).unwrap();
        assert!(fresh.open("site", &sealed).is_err());
    }

    #[test]
    fn a_rotation_keeps_every_step_readable_and_ends_with_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::load(dir.path()).unwrap();
        let before = ring.seal("p", "old").unwrap();
        let next = ring.prepare_rotation().unwrap();
        // Interrupted here: a restart loads both, the old still current.
        let reloaded = Keyring::load(dir.path()).unwrap();
        assert_ne!(reloaded.current().id(), next.id());
        assert_eq!(reloaded.open("p", &before).unwrap(), "old");
        assert!(reloaded.by_id(next.id()).is_some());
        let after = next.seal("p", b"new").unwrap();
        ring.finish_rotation(next.clone()).unwrap();
        let reloaded = Keyring::load(dir.path()).unwrap();
        assert_eq!(reloaded.current().id(), next.id());
        assert_eq!(reloaded.open("p", &after).unwrap(), "new");
        assert!(reloaded.open("p", &before).is_err(), "the old key is gone");
    }
}
