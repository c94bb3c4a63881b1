//! IP address ranges: `isIPAddressInRange`.
//!
//! Follows PostHog's `ip.ts` exactly, leniencies included: anything that does not parse is simply
//! not in the range (false, never an error); IPv4 parts must be plain decimals (`01` is refused);
//! IPv6 groups are read with JavaScript's `parseInt(group, 16)`, so a group only has to start
//! with hex digits; the prefix length is JavaScript's `Number(mask)` (whitespace and fractions
//! allowed); an address and a network of different families never match.

use super::{Ctx, NativeFunction, NativeResult};
use crate::value::is_js_space;
use crate::value::{js_string_to_number, Value};

/// The ip family.
pub const FUNCTIONS: &[NativeFunction] = &[NativeFunction {
    name: "isIPAddressInRange",
    signature: "isIPAddressInRange(address: string, cidr: string) -> boolean",
    description:
        "Whether the IPv4 or IPv6 address is in the CIDR range (network/prefix length); false for anything invalid",
    min_args: 2,
    max_args: Some(2),
    func: is_ip_address_in_range,
    examples: &[
        ("isIPAddressInRange('192.168.1.77', '192.168.1.0/24')", "true"),
        ("isIPAddressInRange('192.168.2.1', '192.168.1.0/24')", "false"),
        ("isIPAddressInRange('2001:db8::1', '2001:db8::/32')", "true"),
        ("isIPAddressInRange('10.0.0.1', '10.0.0.0')", "false"),
        ("isIPAddressInRange(null, '10.0.0.0/8')", "false"),
    ],
}];

fn is_ip_address_in_range(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(match (args.first(), args.get(1)) {
        (Some(Value::Str(address)), Some(Value::Str(prefix))) => in_range(address, prefix),
        _ => false,
    }))
}

/// Whether `address` is in `prefix` (`network/length`).
pub fn in_range(address: &str, prefix: &str) -> bool {
    if address.is_empty() || prefix.is_empty() {
        return false;
    }
    let mut parts = prefix.split('/');
    let (Some(net), Some(mask)) = (parts.next(), parts.next()) else { return false };
    if net.is_empty() || mask.is_empty() {
        return false;
    }
    let cidr = js_string_to_number(mask);
    if cidr.is_nan() || cidr < 0.0 {
        return false;
    }
    let v4 = address.contains('.') && net.contains('.');
    let v6 = !v4 && address.contains(':') && net.contains(':');
    if !v4 && !v6 || (v4 && cidr > 32.0) || (v6 && cidr > 128.0) {
        return false;
    }
    let (Some(a), Some(n)) = (to_bytes(address, v4), to_bytes(net, v4)) else { return false };
    // JavaScript's `cidr >> 3` and `cidr & 7` truncate a fractional length.
    let cidr = cidr as usize;
    let full = cidr >> 3;
    if a[..full] != n[..full] {
        return false;
    }
    let bits = cidr & 7;
    if bits != 0 && full < a.len() {
        let m = 0xffu8 << (8 - bits);
        if a[full] & m != n[full] & m {
            return false;
        }
    }
    true
}

/// The address's bytes (4 for IPv4, 16 for IPv6), or None when it does not parse.
fn to_bytes(ip: &str, v4: bool) -> Option<Vec<u8>> {
    if v4 {
        let parts: Vec<&str> = ip.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        return parts.iter().map(|p| ipv4_part(p)).collect();
    }
    let groups: Vec<&str> = match ip.split_once("::") {
        Some((pre, post)) => {
            if ip.matches("::").count() > 1 {
                return None;
            }
            let pre: Vec<&str> = if pre.is_empty() { Vec::new() } else { pre.split(':').collect() };
            let post: Vec<&str> = if post.is_empty() { Vec::new() } else { post.split(':').collect() };
            if pre.len() + post.len() > 7 {
                return None;
            }
            let zeros = 8 - pre.len() - post.len();
            pre.into_iter().chain(std::iter::repeat_n("0", zeros)).chain(post).collect()
        }
        None => ip.split(':').collect(),
    };
    if groups.len() != 8 {
        return None;
    }
    let mut bytes = Vec::with_capacity(16);
    for g in groups {
        if g.is_empty() {
            return None;
        }
        let v = parse_hex_group(g)?;
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    Some(bytes)
}

/// An IPv4 part: a plain decimal from 0 to 255 (what `+p` reads back as the same text).
fn ipv4_part(p: &str) -> Option<u8> {
    let canonical = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'));
    if !canonical || p.len() > 3 {
        return None;
    }
    p.parse().ok()
}

/// JavaScript's `parseInt(group, 16)`, kept when it is in 0..=0xffff.
fn parse_hex_group(g: &str) -> Option<u16> {
    let t = g.trim_start_matches(is_js_space);
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let t = match t.get(..2) {
        Some("0x" | "0X") => &t[2..],
        _ => t,
    };
    let mut value: u32 = 0;
    let mut any = false;
    for c in t.chars() {
        let Some(d) = c.to_digit(16) else { break };
        any = true;
        value = value.saturating_mul(16).saturating_add(d);
    }
    if !any || (negative && value != 0) {
        return None;
    }
    u16::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::in_range;

    #[test]
    fn ranges() {
        assert!(in_range("10.1.2.3", "10.0.0.0/8"));
        assert!(!in_range("11.1.2.3", "10.0.0.0/8"));
        assert!(in_range("1.2.3.4", "0.0.0.0/0"));
        assert!(in_range("192.168.1.128", "192.168.1.128/25"));
        assert!(!in_range("192.168.1.127", "192.168.1.128/25"));
        assert!(!in_range("01.2.3.4", "1.0.0.0/8"));
        assert!(in_range("::1", "::1/128"));
        assert!(in_range("fe80::1:2", "fe80::/10"));
        assert!(!in_range("fe80::1", "10.0.0.0/8"));
        assert!(!in_range("1::2::3", "::/0"));
        // PostHog reads the trailing dotted part as one hex group (parseInt("1.2.3.4", 16) = 1).
        assert!(!in_range("::ffff:1.2.3.4", "::ffff:0:0/96"));
        assert!(in_range("::ffff:1.2.3.4", "::ffff:0/112"));
    }
}
