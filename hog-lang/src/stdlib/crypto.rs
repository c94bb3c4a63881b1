//! Hashes, HMAC chains and UUIDs: `md5`, `md5Hex`, `sha1`, `sha1Hex`, `sha256`, `sha256Hex`,
//! `sha1HmacChain`, `sha1HmacChainHex`, `sha256HmacChain`, `sha256HmacChainHex`, `generateUUIDv4`.
//!
//! As in PostHog (Node's `crypto`), strings are hashed as UTF-8 and the digest is encoded as
//! `hex` (the default, also for the functions without `Hex` in their name), `base64`,
//! `base64url` (unpadded) or `binary` (one character per byte, also called `latin1`).

use super::{arg, Ctx, NativeFunction, NativeResult, StdlibError};
use crate::value::Value;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The crypto family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "md5",
        signature: "md5(data: string, encoding?: 'hex' | 'base64' | 'base64url' | 'binary') -> string",
        description: "MD5 digest of the UTF-8 string, hex unless another encoding is named; null stays null",
        min_args: 1,
        max_args: Some(2),
        func: md5,
        examples: &[
            ("md5('abc')", "'900150983cd24fb0d6963f7d28e17f72'"),
            ("md5('abc', 'base64')", "'kAFQmDzST7DWlj99KOF/cg=='"),
            ("md5(null)", "null"),
            ("md5('abc', 'utf16')", "error: unsupported encoding 'utf16'"),
        ],
    },
    NativeFunction {
        name: "md5Hex",
        signature: "md5Hex(data: string) -> string",
        description: "MD5 digest of the UTF-8 string, in hex; null stays null",
        min_args: 1,
        max_args: Some(1),
        func: md5_hex,
        examples: &[("md5Hex('')", "'d41d8cd98f00b204e9800998ecf8427e'"), ("md5Hex(null)", "null"), ("md5Hex(1)", "error: argument 1 must be a string")],
    },
    NativeFunction {
        name: "sha1",
        signature: "sha1(data: string, encoding?: 'hex' | 'base64' | 'base64url' | 'binary') -> string",
        description: "SHA-1 digest of the UTF-8 string, hex unless another encoding is named (only for vendors that still sign with SHA-1)",
        min_args: 1,
        max_args: Some(2),
        func: sha1,
        examples: &[
            ("sha1('abc')", "'a9993e364706816aba3e25717850c26c9cd0d89d'"),
            ("sha1('abc', 'base64url')", "'qZk-NkcGgWq6PiVxeFDCbJzQ2J0'"),
            ("sha1(null)", "null"),
            ("sha1([])", "error: argument 1 must be a string"),
        ],
    },
    NativeFunction {
        name: "sha1Hex",
        signature: "sha1Hex(data: string) -> string",
        description: "SHA-1 digest of the UTF-8 string, in hex; null stays null",
        min_args: 1,
        max_args: Some(1),
        func: sha1_hex,
        examples: &[("sha1Hex('abc')", "'a9993e364706816aba3e25717850c26c9cd0d89d'"), ("sha1Hex(null)", "null"), ("sha1Hex({})", "error: argument 1 must be a string")],
    },
    NativeFunction {
        name: "sha256",
        signature: "sha256(data: string, encoding?: 'hex' | 'base64' | 'base64url' | 'binary') -> string",
        description: "SHA-256 digest of the UTF-8 string, hex unless another encoding is named; null stays null",
        min_args: 1,
        max_args: Some(2),
        func: sha256,
        examples: &[
            ("sha256('abc')", "'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'"),
            ("sha256('abc', 'base64')", "'ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0='"),
            ("sha256(null)", "null"),
            ("sha256('abc', 5)", "error: argument 2 must be an encoding name"),
        ],
    },
    NativeFunction {
        name: "sha256Hex",
        signature: "sha256Hex(data: string) -> string",
        description: "SHA-256 digest of the UTF-8 string, in hex; null stays null",
        min_args: 1,
        max_args: Some(1),
        func: sha256_hex,
        examples: &[
            ("sha256Hex('')", "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'"),
            ("sha256Hex(null)", "null"),
            ("sha256Hex(true)", "error: argument 1 must be a string"),
        ],
    },
    NativeFunction {
        name: "sha1HmacChain",
        signature: "sha1HmacChain(data: [key, message, ...], encoding?: string) -> string",
        description: "HMAC-SHA1 of data[2] keyed by data[1], then each further item keyed by the previous digest; hex unless another encoding is named",
        min_args: 1,
        max_args: Some(2),
        func: sha1_hmac_chain,
        examples: &[
            ("sha1HmacChain(['key', 'message'])", "'2088df74d5f2146b48146caf4965377e9d0be3a4'"),
            ("sha1HmacChain(['key', 'message'], 'base64')", "'IIjfdNXyFGtIFGyvSWU3fp0L46Q='"),
            ("sha1HmacChain(null)", "null"),
            ("sha1HmacChain(['key'])", "error: Data array must contain at least two elements."),
        ],
    },
    NativeFunction {
        name: "sha1HmacChainHex",
        signature: "sha1HmacChainHex(data: [key, message, ...]) -> string",
        description: "sha1HmacChain in hex",
        min_args: 1,
        max_args: Some(1),
        func: sha1_hmac_chain_hex,
        examples: &[
            ("sha1HmacChainHex(['key', 'message'])", "'2088df74d5f2146b48146caf4965377e9d0be3a4'"),
            ("sha1HmacChainHex(null)", "null"),
            ("sha1HmacChainHex(['key', 1])", "error: item 2 of the data array must be a string, got integer"),
        ],
    },
    NativeFunction {
        name: "sha256HmacChain",
        signature: "sha256HmacChain(data: [key, message, ...], encoding?: string) -> string",
        description: "HMAC-SHA256 of data[2] keyed by data[1], then each further item keyed by the previous digest (AWS SigV4 signing keys); hex unless another encoding is named",
        min_args: 1,
        max_args: Some(2),
        func: sha256_hmac_chain,
        examples: &[
            ("sha256HmacChain(['key', 'message'])", "'6e9ef29b75fffc5b7abae527d58fdadb2fe42e7219011976917343065f58ed4a'"),
            ("sha256HmacChain(['a', 'b', 'c'], 'base64url')", "'r7NmsefQ_9TnwnPs0x6xXOATAcLDkVXzqN3YGQ7ybtw'"),
            ("sha256HmacChain(null)", "null"),
            ("sha256HmacChain([])", "error: Data array must contain at least two elements."),
        ],
    },
    NativeFunction {
        name: "sha256HmacChainHex",
        signature: "sha256HmacChainHex(data: [key, message, ...]) -> string",
        description: "sha256HmacChain in hex",
        min_args: 1,
        max_args: Some(1),
        func: sha256_hmac_chain_hex,
        examples: &[
            ("sha256HmacChainHex(['key', 'message'])", "'6e9ef29b75fffc5b7abae527d58fdadb2fe42e7219011976917343065f58ed4a'"),
            ("sha256HmacChainHex(null)", "null"),
            ("sha256HmacChainHex({'a': 1})", "error: argument 1 must be an array of strings"),
        ],
    },
    NativeFunction {
        name: "generateUUIDv4",
        signature: "generateUUIDv4() -> string",
        description: "A random version-4 UUID, lowercase and hyphenated",
        min_args: 0,
        max_args: Some(0),
        func: generate_uuid_v4,
        examples: &[
            ("length(generateUUIDv4())", "36"),
            ("generateUUIDv4() =~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'", "true"),
        ],
    },
];

/// How a digest is written out.
#[derive(Clone, Copy)]
enum Encoding {
    Hex,
    Base64,
    Base64Url,
    Binary,
}

/// The encoding argument at `i` (null or missing: hex). Node accepts the names in any case.
fn encoding(args: &[Value], i: usize) -> Result<Encoding, StdlibError> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(Encoding::Hex),
        Some(Value::Str(s)) => match s.to_ascii_lowercase().as_str() {
            "hex" => Ok(Encoding::Hex),
            "base64" => Ok(Encoding::Base64),
            "base64url" => Ok(Encoding::Base64Url),
            "binary" | "latin1" => Ok(Encoding::Binary),
            _ => Err(StdlibError::Invalid(format!(
                "unsupported encoding '{s}' (use 'hex', 'base64', 'base64url' or 'binary')"
            ))),
        },
        Some(other) => Err(StdlibError::wrong_type(i, "an encoding name", other)),
    }
}

fn encode(digest: &[u8], encoding: Encoding) -> Value {
    Value::from(match encoding {
        Encoding::Hex => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            // Digests are at most 64 bytes: the text is built on the stack, then allocated once.
            let mut buf = [0u8; 128];
            let mut long = Vec::new();
            let out: &mut [u8] = if digest.len() <= 64 {
                &mut buf[..digest.len() * 2]
            } else {
                long.resize(digest.len() * 2, 0);
                &mut long
            };
            for (pair, b) in out.chunks_exact_mut(2).zip(digest) {
                pair[0] = HEX[usize::from(b >> 4)];
                pair[1] = HEX[usize::from(b & 0xf)];
            }
            return Value::from(std::str::from_utf8(out).unwrap_or_default());
        }
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
        Encoding::Base64Url => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
        Encoding::Binary => digest.iter().map(|b| char::from(*b)).collect(),
    })
}

/// Hashes argument 0 (a string, or null for null) and encodes it as argument `enc` says.
fn hash<D: Digest>(args: &[Value], enc: Option<usize>) -> NativeResult {
    let data = match args.first() {
        None | Some(Value::Null) => return Ok(Value::Null),
        Some(Value::Str(s)) => s,
        Some(other) => return Err(StdlibError::wrong_type(0, "a string", other)),
    };
    let encoding = match enc {
        Some(i) => encoding(args, i)?,
        None => Encoding::Hex,
    };
    Ok(encode(&D::digest(data.as_bytes()), encoding))
}

fn md5(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hash::<Md5>(args, Some(1))
}

fn md5_hex(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hash::<Md5>(args, None)
}

fn sha1(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hash::<Sha1>(args, Some(1))
}

fn sha1_hex(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hash::<Sha1>(args, None)
}

fn sha256(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hash::<Sha256>(args, Some(1))
}

fn sha256_hex(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hash::<Sha256>(args, None)
}

/// PostHog's HMAC chain: `HMAC(key = data[1], data[2])`, then for each further item
/// `HMAC(key = previous digest, item)`. A string is taken as the array of its characters (as
/// PostHog indexes it: by UTF-16 unit, a lone surrogate encoding as U+FFFD, as Node does).
fn hmac_chain<M: Mac + hmac::digest::KeyInit>(args: &[Value], enc: Option<usize>) -> NativeResult {
    let data = arg(args, 0);
    let digest = match &data {
        Value::Null => return Ok(Value::Null),
        Value::Array(a) | Value::Tuple(a) => {
            let a = a.borrow();
            let mut items = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                match v {
                    Value::Str(s) => items.push(s.as_bytes()),
                    other => {
                        return Err(StdlibError::Invalid(format!(
                            "item {} of the data array must be a string, got {}",
                            i + 1,
                            other.type_name()
                        )))
                    }
                }
            }
            chain::<M, _>(items.into_iter())?
        }
        Value::Str(s) => chain::<M, _>(s.encode_utf16().map(Utf16Unit::new))?,
        other => return Err(StdlibError::wrong_type(0, "an array of strings", other)),
    };
    let encoding = match enc {
        Some(i) => encoding(args, i)?,
        None => Encoding::Hex,
    };
    Ok(encode(&digest, encoding))
}

fn chain<M: Mac + hmac::digest::KeyInit, B: AsRef<[u8]>>(
    mut items: impl Iterator<Item = B>,
) -> Result<Vec<u8>, StdlibError> {
    let (Some(key), Some(message)) = (items.next(), items.next()) else {
        return Err(StdlibError::Invalid("Data array must contain at least two elements.".into()));
    };
    let mut digest = mac::<M>(key.as_ref(), message.as_ref());
    for item in items {
        digest = mac::<M>(&digest, item.as_ref());
    }
    Ok(digest)
}

/// One UTF-16 unit of a string, as the UTF-8 bytes Node hashes for it.
struct Utf16Unit([u8; 4], usize);

impl Utf16Unit {
    fn new(unit: u16) -> Self {
        let mut buf = [0; 4];
        let len = char::from_u32(u32::from(unit)).unwrap_or('\u{fffd}').encode_utf8(&mut buf).len();
        Utf16Unit(buf, len)
    }
}

impl AsRef<[u8]> for Utf16Unit {
    fn as_ref(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this never fails.
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn sha1_hmac_chain(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hmac_chain::<Hmac<Sha1>>(args, Some(1))
}

fn sha1_hmac_chain_hex(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hmac_chain::<Hmac<Sha1>>(args, None)
}

fn sha256_hmac_chain(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hmac_chain::<Hmac<Sha256>>(args, Some(1))
}

fn sha256_hmac_chain_hex(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    hmac_chain::<Hmac<Sha256>>(args, None)
}

fn generate_uuid_v4(_: &mut Ctx<'_>, _: &[Value]) -> NativeResult {
    Ok(Value::from(uuid::Uuid::new_v4().hyphenated().to_string()))
}
