//! Text encodings of binary digests (hexadecimal and unpadded base64url, RFC 4648), written into
//! caller-provided buffers so that hot loops allocate nothing per value.

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The two hex digits of every byte value, so that encoding is one lookup per byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX_DIGITS[i >> 4], HEX_DIGITS[i & 0x0f]];
        i += 1;
    }
    table
};
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Writes the lowercase hex of `bytes` into `out`, which must be `2 * bytes.len()` long.
#[inline]
pub fn encode_into(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), bytes.len() * 2);
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[b as usize]);
    }
}

pub fn encode(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    encode_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Decodes hexadecimal text (either case).
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    let value = |c: u8, at: usize| -> Result<u8, String> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!("character {} is not a hex digit", at + 1)),
        }
    };
    digits
        .chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| Ok(value(pair[0], 2 * i)? << 4 | value(pair[1], 2 * i + 1)?))
        .collect()
}

/// The value of each lowercase hex digit, and `INVALID` for every other byte.
const LOWER_DIGIT_VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 16 {
        table[HEX_DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const INVALID: u8 = 0x10;

/// Decodes lowercase hexadecimal (as [`encode_into`] writes it) into `out`, which must be half as
/// long as `text`; `None` if any character is not a lowercase hex digit. One lookup per digit and
/// no branch per byte: pseudonyms are decoded by the million.
pub fn decode_lower_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    debug_assert_eq!(text.len(), out.len() * 2);
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (
            LOWER_DIGIT_VALUES[pair[0] as usize],
            LOWER_DIGIT_VALUES[pair[1] as usize],
        );
        bad |= high | low;
        *o = high << 4 | low;
    }
    (bad & INVALID == 0).then_some(())
}

/// Length of the unpadded base64url text of `n` bytes.
pub const fn base64url_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Writes the unpadded base64url of `bytes` into `out`, which must be `base64url_len(bytes.len())` long.
#[inline]
pub fn base64url_into(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), base64url_len(bytes.len()));
    let mut o = 0;
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let n = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
        out[o] = BASE64URL[(n >> 18) as usize & 63];
        out[o + 1] = BASE64URL[(n >> 12) as usize & 63];
        out[o + 2] = BASE64URL[(n >> 6) as usize & 63];
        out[o + 3] = BASE64URL[n as usize & 63];
        o += 4;
    }
    match *chunks.remainder() {
        [a] => {
            out[o] = BASE64URL[(a >> 2) as usize];
            out[o + 1] = BASE64URL[((a & 3) << 4) as usize];
        }
        [a, b] => {
            let n = (a as u32) << 8 | b as u32;
            out[o] = BASE64URL[(n >> 10) as usize & 63];
            out[o + 1] = BASE64URL[(n >> 4) as usize & 63];
            out[o + 2] = BASE64URL[((n & 15) << 2) as usize];
        }
        _ => {}
    }
}

/// The unpadded base64url text of `bytes`.
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = vec![0u8; base64url_len(bytes.len())];
    base64url_into(bytes, &mut out);
    String::from_utf8(out).expect("base64url is ASCII")
}

/// Decodes unpadded base64url text; `None` for any other character or an impossible length.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| BASE64URL.iter().position(|&b| b == c).map(|v| v as u32);
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + produced]);
    }
    // Reject non-canonical text, whose unused low bits are not zero.
    let mut again = vec![0u8; base64url_len(out.len())];
    base64url_into(&out, &mut again);
    (again == bytes).then_some(out)
}

/// The padded base64 text of `bytes` (RFC 4648 section 4, `+` and `/`), as Python's
/// `base64.b64encode` writes it.
pub fn base64(bytes: &[u8]) -> String {
    let mut text: String = base64url(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !text.len().is_multiple_of(4) {
        text.push('=');
    }
    text
}

/// Decodes padded base64 text (RFC 4648 section 4); `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) || text.contains(['-', '_']) {
        return None;
    }
    let unpadded = text
        .strip_suffix("==")
        .or(text.strip_suffix('='))
        .unwrap_or(text);
    let url: String = unpadded
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    base64url_decode(&url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        let mut out = vec![0u8; base64url_len(bytes.len())];
        base64url_into(bytes, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Every byte value decodes back from its hex; every byte that is not a lowercase hex digit
    /// (upper case included: pseudonyms have one spelling) is refused, in either place of a pair.
    #[test]
    fn lowercase_hex_decodes_exactly_what_encode_writes() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode(&bytes);
        let mut out = vec![0u8; 256];
        assert_eq!(decode_lower_into(text.as_bytes(), &mut out), Some(()));
        assert_eq!(out, bytes);
        for c in 0..=255u8 {
            let valid = c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
            for at in 0..2 {
                let mut pair = *b"7e";
                pair[at] = c;
                let mut one = [0u8];
                let decoded = decode_lower_into(&pair, &mut one);
                assert_eq!(decoded.is_some(), valid, "{c:#x} at {at}");
                if valid {
                    assert_eq!(
                        one[0],
                        u8::from_str_radix(std::str::from_utf8(&pair).unwrap(), 16).unwrap()
                    );
                }
            }
        }
    }

    /// RFC 4648 section 10 test vectors (padding removed), plus the two url-safe characters.
    #[test]
    fn base64url_matches_rfc4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64(input.as_bytes()), expected);
        }
        assert_eq!(b64(&[0xfb, 0xff, 0xfe]), "-__-");
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(97) ^ 0xa5).collect();
            assert_eq!(base64url_decode(&b64(&bytes)), Some(bytes));
        }
        assert_eq!(base64url_decode("Zh"), None, "non-canonical low bits");
        assert_eq!(base64url_decode("Z"), None);
        assert_eq!(base64url_decode("Zm9v+A"), None);
    }

    /// RFC 4648 section 10 base16 vectors.
    #[test]
    fn hex_round_trips_and_matches_rfc4648() {
        assert_eq!(encode(b"foobar"), "666f6f626172");
        assert_eq!(decode("666F6f626172").unwrap(), b"foobar");
        assert!(decode("abc").is_err());
        assert!(decode("zz").is_err());
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
    }

    /// RFC 4648 section 10 test vectors, padded, and the two characters that differ from base64url.
    #[test]
    fn base64_matches_rfc4648_with_padding() {
        for (plain, text) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), text);
            assert_eq!(base64_decode(text).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
        assert_eq!(base64_decode("+/8=").unwrap(), [0xfb, 0xff]);
        for bad in ["-_8=", "Zg", "Zg=", "Zh==", "Z==="] {
            assert!(base64_decode(bad).is_none(), "{bad}");
        }
    }
}
