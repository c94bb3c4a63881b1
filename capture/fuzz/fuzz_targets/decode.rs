//! Fuzz target for `hogpipe_capture::decode::decode`: the input becomes a request.
//!
//! Layout: byte 0 picks the method, content type and content encoding; byte 1 picks the
//! compression parameter and the limit; then the query string up to the first 0xFF byte
//! (lossily UTF-8), then the body. Any `Ok` must be non-empty UTF-8 within the limit.
#![no_main]

use hogpipe_capture::decode::{decode, DecodeLimits, Encoded};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some("application/json"),
    Some("text/plain"),
    Some("application/x-www-form-urlencoded"),
    Some("application/x-www-form-urlencoded; charset=UTF-8"),
    Some("application/json; charset=utf-8"),
    Some("multipart/form-data"),
    Some(""),
];
const ENCODINGS: [Option<&str>; 4] = [None, Some("gzip"), Some("identity"), Some("br")];
const COMPRESSIONS: [&str; 8] = [
    "",
    "compression=gzip-js&",
    "compression=gzip&",
    "compression=lz64&",
    "compression=base64&",
    "compression=&",
    "compression=None&",
    "compression=zstd&",
];
const LIMITS: [usize; 4] = [0, 64, 4096, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let [flags, pick, rest @ ..] = data else { return };
    let (query, body) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let query = format!("{}{}", COMPRESSIONS[usize::from(pick & 7)], String::from_utf8_lossy(query));
    let limit = LIMITS[usize::from(pick >> 3 & 3)];
    let req = Encoded {
        is_get: flags & 1 == 1,
        content_type: CONTENT_TYPES[usize::from(flags >> 1 & 7)],
        content_encoding: ENCODINGS[usize::from(flags >> 4 & 3)],
        query: (flags & 0x40 == 0).then_some(query.as_str()),
        body,
    };
    if let Ok(decoded) = decode(req, &DecodeLimits { max_decoded_bytes: limit }) {
        assert!(!decoded.json.is_empty());
        assert!(decoded.json.len() <= limit, "{} bytes for a limit of {limit}", decoded.json.len());
        assert!(std::str::from_utf8(&decoded.json).is_ok());
    }
});
