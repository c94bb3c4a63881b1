//! Request body decoding: from what an SDK sent to the JSON text of its payload.
//!
//! Owns everything between the raw request (method, two headers, query string, body) and UTF-8
//! JSON text: form and query parsing (`form.rs`), bounded gzip (`gzip.rs`), lz-string's
//! `decompressFromBase64` (`lz.rs`) and lenient base64 (`b64.rs`). It does not parse the JSON:
//! the event module does.
//!
//! What is accepted, the way PostHog's capture accepts it:
//! - The payload is the body; or the `data` field of a form body
//!   (`application/x-www-form-urlencoded`, or any body starting with `data=` or `compression=`);
//!   or, for GET requests and for POSTs with an empty body, the `data` query parameter. A form
//!   body that starts with `{` or `[` is taken as plain JSON (some clients mislabel JSON).
//! - A body starting with the gzip magic bytes (1f 8b) is inflated first, whatever the headers
//!   and parameters say (and may then be a form).
//! - The `compression` query parameter, else the form's `compression` field, else (for a body
//!   that was not gzip already) the `Content-Encoding` header, says how the payload is encoded:
//!   `gzip`/`gzip-js`/`x-gzip`, `lz64`/`lz-string`, `base64`, or nothing (empty, `none`,
//!   `identity`, and the `undefined` or `null` a JavaScript client may template in). Other
//!   values are refused, when they matter (see the next point).
//! - A payload that starts with the gzip magic bytes is inflated; one that already looks like
//!   JSON (`{` or `[` after an optional BOM and whitespace) is taken as is: whatever the
//!   compression says, since no gzip, lz64 or base64 text can start so, and proxies sometimes
//!   undo a compression without removing its parameter. gzip is undone at most once.
//! - Without a compression, a `data` field or parameter that is not JSON is base64 of JSON; a
//!   body that is not JSON is tried as base64 and kept as is if that fails (the JSON parser then
//!   says what is wrong).
//! - The result must be UTF-8; a leading BOM is dropped. Every step stops as soon as its output
//!   passes [`DecodeLimits::max_decoded_bytes`]. Error positions are byte offsets in the text
//!   being decoded at that step (after form decoding for a `data` field).

mod b64;
mod form;
mod gzip;
mod lz;

use std::borrow::Cow;

use form::{percent_decode, Fields};

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

/// How the `compression` parameter, form field or `Content-Encoding` header asks to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    None,
    Gzip,
    Lz64,
    Base64,
}

/// Reads a `compression` value or `Content-Encoding` header.
fn parse_hint(raw: &[u8]) -> Result<Hint, DecodeError> {
    let value = raw.trim_ascii();
    let is = |name: &str| value.eq_ignore_ascii_case(name.as_bytes());
    if value.is_empty() || is("none") || is("identity") || is("undefined") || is("null") {
        Ok(Hint::None)
    } else if is("gzip") || is("gzip-js") || is("x-gzip") {
        Ok(Hint::Gzip)
    } else if is("lz64") || is("lz-string") {
        Ok(Hint::Lz64)
    } else if is("base64") {
        Ok(Hint::Base64)
    } else {
        Err(DecodeError::UnknownCompression(String::from_utf8_lossy(value).into_owned()))
    }
}

/// Whether `data` starts like a JSON document: `{` or `[` after an optional BOM and whitespace.
fn looks_like_json(data: &[u8]) -> bool {
    let data = data.strip_prefix(BOM).unwrap_or(data);
    matches!(data.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['))
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether a content type is a form (its essence, case-insensitively).
fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// `_` as milliseconds: an integer, or a decimal number truncated; anything else is ignored.
fn parse_sent_at(raw: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let ms = text.parse::<f64>().ok()?;
    // `as` saturates, so check the range to ignore values that do not fit rather than clamp them.
    (ms.is_finite() && ms > i64::MIN as f64 && ms < i64::MAX as f64).then_some(ms.trunc() as i64)
}

/// Where the payload came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The body itself.
    Body,
    /// A `data` form field or query parameter.
    Field,
}

/// Decodes a request into the JSON text of its payload.
///
/// See the module documentation for what is accepted. Never panics; every error says what was
/// wrong and, for byte-level errors, at which byte of the payload being decoded.
pub fn decode(req: Encoded<'_>, limits: &DecodeLimits) -> Result<Decoded, DecodeError> {
    let limit = limits.max_decoded_bytes;
    let query = Fields::parse(req.query.unwrap_or("").as_bytes());
    let sent_at_ms = query.sent_at.and_then(|raw| parse_sent_at(&percent_decode(raw)));
    let lib_version = query
        .lib_version
        .or(query.ver)
        .map(|raw| String::from_utf8_lossy(&percent_decode(raw)).into_owned())
        .filter(|v| !v.is_empty());
    if query.data_count > 1 {
        return Err(DecodeError::Form(format!(
            "the query string has {} `data` parameters; send the payload once",
            query.data_count
        )));
    }

    // 1. Find the payload: the body (inflated if it is gzip), a form field, or the query's `data`.
    let mut gunzipped = false;
    let mut form_compression: Option<Vec<u8>> = None;
    let use_query_data = query.data.is_some() && (req.is_get || req.body.is_empty());
    let (payload, source): (Cow<'_, [u8]>, Source) = if use_query_data {
        (percent_decode(query.data.unwrap_or_default()), Source::Field)
    } else if req.body.is_empty() {
        return Err(DecodeError::Empty);
    } else {
        let mut body = Cow::Borrowed(req.body);
        if body.starts_with(&gzip::MAGIC) {
            body = Cow::Owned(gzip::decode(&body, limit)?);
            gunzipped = true;
        }
        let sniffed_form = body.starts_with(b"data=") || body.starts_with(b"compression=");
        if (is_form(req.content_type) && !looks_like_json(&body)) || sniffed_form {
            let (data, compression, count) = {
                let fields = Fields::parse(&body);
                (
                    fields.data.map(|d| percent_decode(d).into_owned()),
                    fields.compression.map(|c| percent_decode(c).into_owned()),
                    fields.data_count,
                )
            };
            if count > 1 {
                return Err(DecodeError::Form(format!(
                    "the form body has {count} `data` fields; send the payload once"
                )));
            }
            form_compression = compression;
            match data {
                Some(data) => (Cow::Owned(data), Source::Field),
                None if query.data.is_some() => (percent_decode(query.data.unwrap_or_default()), Source::Field),
                None => {
                    return Err(DecodeError::Form(
                        "the form body has no `data` field: send the payload as `data=<urlencoded payload>`".to_owned(),
                    ))
                }
            }
        } else {
            (body, Source::Body)
        }
    };
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }

    // 2. Which compression, read only when it matters: the query parameter, else the form field,
    // else `Content-Encoding` (for a body that was not gzip). A `Content-Encoding: gzip` body
    // without the magic bytes thus arrives here as a gzip hint: JSON already, or refused.
    let hint = || -> Result<Hint, DecodeError> {
        match (query.compression, &form_compression, req.content_encoding) {
            (Some(q), _, _) => parse_hint(&percent_decode(q)),
            (None, Some(f), _) => parse_hint(f),
            (None, None, Some(ce)) if !use_query_data && !gunzipped => parse_hint(ce.as_bytes()),
            _ => Ok(Hint::None),
        }
    };

    // 3. Undo it.
    let done = if gunzipped { Compression::Gzip } else { Compression::None };
    let (json, compression): (Cow<'_, [u8]>, Compression) = if !gunzipped && payload.starts_with(&gzip::MAGIC) {
        (Cow::Owned(gzip::decode(&payload, limit)?), Compression::Gzip)
    } else if looks_like_json(&payload) {
        (payload, done)
    } else {
        match hint()? {
            Hint::Gzip if gunzipped => (payload, done),
            // Not gzip (no magic bytes): let the inflater say so.
            Hint::Gzip => (Cow::Owned(gzip::decode(&payload, limit)?), Compression::Gzip),
            Hint::Lz64 => (Cow::Owned(lz::decompress_from_base64(&payload, limit)?), Compression::Lz64),
            Hint::Base64 => (Cow::Owned(b64::decode(&payload, limit)?), Compression::Base64),
            Hint::None if source == Source::Field => (Cow::Owned(b64::decode(&payload, limit)?), Compression::Base64),
            Hint::None => match b64::decode(&payload, limit) {
                Ok(decoded) if looks_like_json(&decoded) => (Cow::Owned(decoded), Compression::Base64),
                _ => (payload, done),
            },
        }
    };
    let compression = if gunzipped { Compression::Gzip } else { compression };

    // 4. UTF-8, without a BOM, within the limit.
    let (json, bom) = match json {
        Cow::Borrowed(b) if b.starts_with(BOM) => (Cow::Borrowed(&b[BOM.len()..]), BOM.len()),
        Cow::Owned(mut v) if v.starts_with(BOM) => {
            v.drain(..BOM.len());
            (Cow::Owned(v), BOM.len())
        }
        json => (json, 0),
    };
    if json.is_empty() {
        return Err(DecodeError::Empty);
    }
    if json.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    if let Err(e) = std::str::from_utf8(&json) {
        return Err(DecodeError::Utf8(bom + e.valid_up_to()));
    }
    Ok(Decoded { json: json.into_owned(), compression, sent_at_ms, lib_version })
}
