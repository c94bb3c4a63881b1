//! The data dir's secret key: 32 bytes that seal secrets at rest, both the secret inputs in the
//! state store (`hogpipe-api`) and the delivery queue ([`crate::engine`]). It is the configured
//! `[state] secret_key` (base64), else `<data_dir>/secret.key`, generated on first use (mode 0600).
//! [`load`] is the one place that reads it, so `hogpipe serve`, the state store and the
//! `dead-letters` CLI all get the same bytes.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{KeyInit, OsRng};
use chacha20poly1305::ChaCha20Poly1305;

/// The file under the data dir holding the generated key (base64 of 32 bytes and a newline).
pub const KEY_FILE: &str = "secret.key";

/// 32 bytes of key, and where they came from (for error messages; never the bytes themselves).
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; 32],
    origin: String,
}

impl SecretKey {
    /// A key from its bytes; `origin` says where it came from in error messages.
    pub fn from_bytes(bytes: [u8; 32], origin: impl Into<String>) -> SecretKey {
        SecretKey { bytes, origin: origin.into() }
    }

    /// A fresh random key (from the OS), kept nowhere: for benchmarks and tests.
    pub fn generate() -> SecretKey {
        let key = ChaCha20Poly1305::generate_key(&mut OsRng);
        SecretKey { bytes: key.into(), origin: "a generated key".to_string() }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Where the key came from: `[state] secret_key`, the key file's path, or what the caller said.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// What [`load`] does when no key is configured and the data dir has no key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Generate one into the file (`hogpipe serve`, the state store).
    Create,
    /// Fail: a command reading existing data (the `dead-letters` CLI) must not invent a key that
    /// cannot open it and would then be left behind in the data dir.
    Fail,
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `[state] secret_key` is not the base64 of 32 bytes.
    #[error("[state] secret_key must be the base64 of exactly 32 bytes")]
    Configured,
    /// The key file does not hold a key.
    #[error("secret key {0}: not the base64 of exactly 32 bytes")]
    Malformed(PathBuf),
    /// No key is configured and the key file does not exist ([`IfMissing::Fail`]).
    #[error(
        "secret key {0}: the file does not exist and no [state] secret_key is configured (give the config file \
         that `hogpipe serve` uses, or the data dir it uses)"
    )]
    Missing(PathBuf),
    /// The key file could not be read or written.
    #[error("secret key {path}: {action}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What was being done (`reading`, `creating`, …).
        action: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// The configured key (base64 of 32 bytes), else the one in `<data_dir>/secret.key`; when that
/// file is missing, `missing` says whether to create it (32 random bytes from the OS, mode 0600).
pub fn load(configured: Option<&str>, data_dir: &Path, missing: IfMissing) -> Result<SecretKey, KeyError> {
    if let Some(text) = configured {
        let bytes = decode(text).ok_or(KeyError::Configured)?;
        return Ok(SecretKey::from_bytes(bytes, "[state] secret_key"));
    }
    let path = data_dir.join(KEY_FILE);
    let bytes = key_file(&path, missing)?;
    Ok(SecretKey::from_bytes(bytes, path.display().to_string()))
}

fn decode(text: &str) -> Option<[u8; 32]> {
    BASE64.decode(text.trim()).ok()?.try_into().ok()
}

/// Reads the key file, or creates it (mode 0600) with a fresh random key.
fn key_file(path: &Path, missing: IfMissing) -> Result<[u8; 32], KeyError> {
    let io = |action, source| KeyError::Io { path: path.to_path_buf(), action, source };
    match std::fs::read(path) {
        Ok(bytes) => return parse_key_file(path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading", e)),
    }
    if missing == IfMissing::Fail {
        return Err(KeyError::Missing(path.to_path_buf()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating its directory", e))?;
    }
    let key = SecretKey::generate().bytes;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{}\n", BASE64.encode(key)).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| io("writing", e))?;
            tracing::info!(path = %path.display(), "generated the key sealing secrets at rest");
            Ok(key)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(path).map_err(|e| io("reading", e))?;
            parse_key_file(path, &bytes)
        }
        Err(e) => Err(io("creating", e)),
    }
}

/// The key file holds the base64 of 32 bytes (or, written by hand, the 32 raw bytes).
fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<[u8; 32], KeyError> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Ok(raw);
    }
    std::str::from_utf8(bytes).ok().and_then(decode).ok_or_else(|| KeyError::Malformed(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_read_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(load(None, dir.path(), IfMissing::Fail), Err(KeyError::Missing(_))));
        assert!(!dir.path().join(KEY_FILE).exists(), "IfMissing::Fail writes nothing");
        let key = load(None, dir.path(), IfMissing::Create).expect("key");
        assert_eq!(key.origin(), dir.path().join(KEY_FILE).display().to_string());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("key file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for missing in [IfMissing::Create, IfMissing::Fail] {
            assert_eq!(load(None, dir.path(), missing).expect("again").as_bytes(), key.as_bytes());
        }
        assert!(!format!("{key:?}").contains(&format!("{:?}", key.as_bytes())), "Debug shows no key bytes");
    }

    #[test]
    fn configured_keys_win_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = load(Some(&BASE64.encode([9u8; 32])), dir.path(), IfMissing::Create).expect("configured");
        assert_eq!((key.as_bytes(), key.origin()), (&[9u8; 32], "[state] secret_key"));
        assert!(!dir.path().join(KEY_FILE).exists(), "a configured key is not written down");
        assert!(matches!(load(Some("c2hvcnQ="), dir.path(), IfMissing::Create), Err(KeyError::Configured)));
        std::fs::write(dir.path().join(KEY_FILE), "not a key\n").expect("write");
        let err = load(None, dir.path(), IfMissing::Create).expect_err("malformed");
        assert!(err.to_string().contains("secret.key: not the base64 of exactly 32 bytes"), "{err}");
        std::fs::write(dir.path().join(KEY_FILE), [3u8; 32]).expect("write");
        assert_eq!(load(None, dir.path(), IfMissing::Fail).expect("raw bytes").as_bytes(), &[3u8; 32]);
    }
}
