//! Secret function inputs at rest: sealing/opening one input with ChaCha20-Poly1305 under the data
//! dir's key (configured, or generated once into `<data_dir>/secret.key`), which
//! [`hogpipe_destinations::secret_key`] loads, as it does for the delivery queue.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hogpipe_destinations::secret_key::{self, IfMissing};
use serde_json::{json, Map, Value};

use super::StoreError;

const NONCE_LEN: usize = 12;

/// Seals and opens secret inputs.
pub(super) struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    /// The configured key (base64 of 32 bytes), else the one in `<data_dir>/secret.key`, created
    /// (32 random bytes from the OS, mode 0600) when missing.
    pub(super) fn load(configured: Option<&str>, data_dir: &Path) -> Result<Sealer, StoreError> {
        let key = secret_key::load(configured, data_dir, IfMissing::Create)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Sealer { cipher: ChaCha20Poly1305::new(Key::from_slice(key.as_bytes())) })
    }

    /// `value` sealed for input `key` of function `function_id`: base64 of nonce || ciphertext.
    fn seal(&self, function_id: &str, key: &str, value: &Value) -> Result<String, StoreError> {
        let plaintext =
            serde_json::to_vec(value).map_err(|e| StoreError::Query(format!("encoding input {key}: {e}")))?;
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = aad(function_id, key);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: &plaintext, aad: &aad })
            .map_err(|_| StoreError::Query(format!("sealing secret input {key} failed")))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(BASE64.encode(out))
    }

    fn open(&self, function_id: &str, key: &str, sealed: &str) -> Result<Value, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("function {function_id}, secret input {key}: {why}"));
        let bytes = BASE64.decode(sealed).map_err(|_| corrupt("the sealed value is not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(corrupt("the sealed value is too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let aad = aad(function_id, key);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| corrupt("secret inputs cannot be opened: wrong secret key?"))?;
        serde_json::from_slice(&plaintext).map_err(|_| corrupt("the opened value is not JSON"))
    }

    /// `inputs` with every secret one (per `schema`) replaced by `{"secret": "<sealed>"}`. The
    /// whole input object is sealed (its `value` and anything derived from it, like `bytecode`).
    pub(super) fn seal_inputs(
        &self,
        function_id: &str,
        schema: &Value,
        inputs: &Map<String, Value>,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut out = inputs.clone();
        for key in secret_keys(schema) {
            if let Some(input) = out.get_mut(key) {
                if !input.is_null() {
                    *input = json!({ "secret": self.seal(function_id, key, input)? });
                }
            }
        }
        Ok(out)
    }

    /// `inputs` as stored, with the secret ones opened again.
    pub(super) fn open_inputs(
        &self,
        function_id: &str,
        schema: &Value,
        mut inputs: Map<String, Value>,
    ) -> Result<Map<String, Value>, StoreError> {
        for key in secret_keys(schema) {
            if let Some(input) = inputs.get_mut(key) {
                if let Some(sealed) = input.get("secret").and_then(Value::as_str) {
                    *input = self.open(function_id, key, sealed)?;
                }
            }
        }
        Ok(inputs)
    }
}

/// The keys of the schema's entries marked `secret: true`.
fn secret_keys(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry.get("secret").and_then(Value::as_bool) == Some(true))
        .filter_map(|entry| entry.get("key").and_then(Value::as_str))
}

/// Binds a sealed value to its function and input: a NUL cannot occur in either, so
/// ("ab", "c") and ("a", "bc") differ.
fn aad(function_id: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(function_id.len() + key.len() + 1);
    aad.extend_from_slice(function_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_do_not_move_between_functions_or_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sealer = Sealer::load(None, dir.path()).expect("key");
        let sealed = sealer.seal("f1", "token", &json!({"value": "s3cret"})).expect("seal");
        assert_eq!(sealer.open("f1", "token", &sealed).expect("open"), json!({"value": "s3cret"}));
        assert!(sealer.open("f2", "token", &sealed).is_err());
        assert!(sealer.open("f1", "other", &sealed).is_err());
        // The generated key file is private and read back the same.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(secret_key::KEY_FILE)).expect("key file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Sealer::load(None, dir.path()).expect("key again");
        assert_eq!(again.open("f1", "token", &sealed).expect("open"), json!({"value": "s3cret"}));
    }
}
