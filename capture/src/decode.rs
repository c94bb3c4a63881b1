//! Request body decoding: from what an SDK sent to the JSON text of its payload.
//!
//! (Interface only; the full decoder lands with its tests.)

/// What the decoder needs from an HTTP request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoded<'a> {
    /// `true` for GET requests (payload in the `data` query parameter).
    pub is_get: bool,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The `Content-Encoding` header, if any.
    pub content_encoding: Option<&'a str>,
    /// The raw query string (without `?`), if any.
    pub query: Option<&'a str>,
    /// The request body as received (already bounded by the body-size limit).
    pub body: &'a [u8],
}

/// Limits enforced while decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest decoded payload (after gzip, lz64 or base64), in bytes. Decoding stops as soon as
    /// the output would exceed it.
    pub max_decoded_bytes: usize,
}

/// How the payload was encoded (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain JSON.
    None,
    /// gzip (by header, parameter or magic bytes).
    Gzip,
    /// lz-string `compressToBase64`.
    Lz64,
    /// base64 of JSON.
    Base64,
}

/// A decoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The JSON text (UTF-8) of the payload.
    pub json: Vec<u8>,
    /// What was undone to get it.
    pub compression: Compression,
    /// The `_` query parameter (client send time, ms since epoch) when present and numeric.
    pub sent_at_ms: Option<i64>,
    /// `ver` or `lib_version` query parameter, if any.
    pub lib_version: Option<String>,
}

/// Why a body could not be decoded. Each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No payload anywhere (empty body, no `data` field or parameter).
    #[error("the request has no payload: send JSON in the body, or a `data` form field or query parameter")]
    Empty,
    /// The decoded payload is larger than the limit.
    #[error("the decoded payload is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Invalid gzip data.
    #[error("invalid gzip data: {0}")]
    Gzip(String),
    /// Invalid lz-string data.
    #[error("invalid lz64 data: {0}")]
    Lz64(String),
    /// Invalid base64.
    #[error("invalid base64 data: {0}")]
    Base64(String),
    /// Invalid form encoding.
    #[error("invalid form data: {0}")]
    Form(String),
    /// The payload is not UTF-8 text.
    #[error("the payload is not valid UTF-8 (at byte {0})")]
    Utf8(usize),
    /// An unknown `compression` value.
    #[error("unknown compression `{0}` (expected gzip, gzip-js, lz64 or base64)")]
    UnknownCompression(String),
}

/// Decodes a request into the JSON text of its payload.
pub fn decode(req: Encoded<'_>, limits: &DecodeLimits) -> Result<Decoded, DecodeError> {
    if req.body.is_empty() {
        return Err(DecodeError::Empty);
    }
    if req.body.len() > limits.max_decoded_bytes {
        return Err(DecodeError::TooLarge { limit: limits.max_decoded_bytes });
    }
    Ok(Decoded { json: req.body.to_vec(), compression: Compression::None, sent_at_ms: None, lib_version: None })
}
