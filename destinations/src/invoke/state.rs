//! The opaque state of a suspended invocation: `HPI1`, the length of a JSON header (function id,
//! team, version, log lines so far, texts to redact) as 4 bytes little-endian, the header, then the
//! saved VM in hog-lang's compact binary form.

use hog_lang::vm::VmState;
use serde::{Deserialize, Serialize};

/// The first bytes of every state (the delivery queue relies on them to tell plaintext states of
/// earlier versions from sealed ones: see `engine::seal`).
pub(crate) const MAGIC: &[u8; 4] = b"HPI1";

/// What an invocation carries besides its VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Saved {
    /// The destination's id.
    pub function_id: String,
    /// Its project.
    pub team_id: u64,
    /// Its version when the invocation started.
    pub version: u64,
    /// Lines printed so far.
    pub logs: Vec<String>,
    /// Lines dropped so far (beyond the cap).
    pub dropped: usize,
    /// Texts redacted from logs and errors (the rendered secret inputs, which the VM's globals
    /// hold anyway).
    pub sensitive: Vec<String>,
}

/// Why a state could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    /// Not a state written by this module.
    #[error("the saved state is not a hogpipe invocation (bad header)")]
    Header,
    /// The header is not valid.
    #[error("the saved state's header is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// The VM part is not valid.
    #[error("the saved VM is invalid: {0}")]
    Vm(#[from] hog_lang::vm::StateError),
}

/// Encodes an invocation.
pub(crate) fn encode(saved: &Saved, vm: &VmState) -> Vec<u8> {
    let header = serde_json::to_vec(saved).unwrap_or_default();
    let vm = vm.to_bytes();
    let mut out = Vec::with_capacity(8 + header.len() + vm.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&vm);
    out
}

/// Decodes an invocation.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Saved, VmState), StateError> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(StateError::Header)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or(StateError::Header)?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(StateError::Header);
    }
    let (header, vm) = rest.split_at(len);
    Ok((serde_json::from_slice(header)?, VmState::from_bytes(vm)?))
}
