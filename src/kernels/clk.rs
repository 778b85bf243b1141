//! Cryptographic long-term keys (CLKs): a person's identifying fields (names, birth date, sex,
//! postcode) encoded as one Bloom filter, so that an access body can link records that agree
//! approximately without seeing them. The encoding is Data61's clkhash 0.18 — the reference of
//! the field and of the anonlink matcher — bit for bit: the same linkage schema (clkhash's v3
//! JSON), secret and records give the same CLK.
//!
//! The steps, as clkhash takes them: two keys per feature from the secret (HKDF, ignored features
//! included); each value validated and normalised by its format (an integer to its canonical
//! text, a date to `YYYYMMDD`), or replaced when it is the feature's missing-value sentinel; cut
//! into tokens by its comparison (n-grams, the whole value, or a numeric neighbourhood); each
//! token set in `k` bits chosen by keyed BLAKE2b (or double hashing with HMAC-SHA1 and
//! HMAC-MD5); the filter XOR-folded. Bits are numbered from the most significant bit of the first
//! byte, as Python's `bitarray`. Errors name the feature and the rule, never the value.

use blake2::Blake2bMac512;
use chrono::Datelike;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::kernels::hex;

/// A linkage schema (clkhash's v3 format), ready to encode records.
#[derive(Debug, Clone)]
pub struct LinkageSchema {
    /// Length of a CLK in bits, after folding.
    pub l: usize,
    pub xor_folds: u32,
    kdf: Kdf,
    pub features: Vec<Feature>,
}

#[derive(Debug, Clone)]
struct Kdf {
    sha512: bool,
    salt: Option<Vec<u8>>,
    info: Option<Vec<u8>>,
    key_size: usize,
}

/// One column of the records; `hashing` is `None` for an ignored one.
#[derive(Debug, Clone)]
pub struct Feature {
    pub identifier: String,
    hashing: Option<Hashing>,
}

#[derive(Debug, Clone)]
struct Hashing {
    format: Format,
    comparison: Comparison,
    strategy: Strategy,
    hash: HashKind,
    /// The sentinel that means "missing", and what it is replaced by before tokenising.
    missing: Option<(String, String)>,
}

#[derive(Debug, Clone)]
enum Format {
    String {
        pattern: Option<regex::Regex>,
        case: Case,
        min_length: usize,
        max_length: Option<usize>,
        ascii: bool,
    },
    Integer {
        minimum: Option<i128>,
        maximum: Option<i128>,
    },
    /// A `strptime` format.
    Date(String),
    Enum(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    Lower,
    Upper,
    Mixed,
}

#[derive(Debug, Clone)]
enum Comparison {
    Ngram {
        n: usize,
        positional: bool,
    },
    Exact,
    /// `interval` is the threshold distance scaled by 10^precision.
    Numeric {
        interval: i128,
        resolution: i128,
        precision: u32,
    },
}

#[derive(Debug, Clone, Copy)]
enum Strategy {
    BitsPerToken(usize),
    BitsPerFeature(usize),
}

#[derive(Debug, Clone, Copy)]
enum HashKind {
    Blake,
    Double { non_singular: bool },
}

/// What is wrong, where: a feature (by position and name) and a rule, never a value.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub feature: usize,
    pub identifier: String,
    pub rule: String,
}

/// The two derived keys of each feature, wiped when dropped.
pub struct FeatureKeys(Vec<[Zeroizing<Vec<u8>>; 2]>);

type SchemaResult<T> = std::result::Result<T, String>;

fn field<'a>(v: &'a Value, key: &str, at: &str) -> SchemaResult<&'a Value> {
    v.get(key)
        .ok_or_else(|| format!("{at}: `{key}` is missing"))
}

fn count(v: &Value, at: &str) -> SchemaResult<usize> {
    v.as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| format!("{at}: expected a non-negative integer"))
}

fn text<'a>(v: &'a Value, at: &str) -> SchemaResult<&'a str> {
    v.as_str().ok_or_else(|| format!("{at}: expected text"))
}

impl LinkageSchema {
    /// Reads a clkhash v3 linkage schema (JSON), as clkhash 0.18 reads it.
    pub fn from_json(json: &str) -> SchemaResult<LinkageSchema> {
        let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        if v.get("version").and_then(Value::as_u64) != Some(3) {
            return Err(
                "only version 3 linkage schemas are read (clkhash's current format)".into(),
            );
        }
        let config = field(&v, "clkConfig", "schema")?;
        let l = count(field(config, "l", "clkConfig")?, "clkConfig.l")?;
        if l == 0 {
            return Err("clkConfig.l: a CLK has at least one bit".into());
        }
        // clkhash 0.18 folds by `xor_folds` and ignores the `xorFolds` its own v3 format
        // documents: a schema that says `xorFolds` would be encoded unfolded there.
        if config
            .get("xorFolds")
            .is_some_and(|f| f.as_u64() != Some(0))
        {
            return Err(
                "clkConfig.xorFolds: clkhash 0.18 ignores this key and does not fold; \
                        write `xor_folds` (which it applies) or remove it"
                    .into(),
            );
        }
        let xor_folds = match config.get("xor_folds") {
            Some(f) => count(f, "clkConfig.xor_folds")? as u32,
            None => 0,
        };
        if xor_folds > 16 {
            return Err("clkConfig.xor_folds: at most 16 folds".into());
        }
        let kdf = field(config, "kdf", "clkConfig")?;
        if text(field(kdf, "type", "clkConfig.kdf")?, "clkConfig.kdf.type")? != "HKDF" {
            return Err("clkConfig.kdf.type: only HKDF is supported".into());
        }
        let sha512 = match kdf.get("hash").map(|h| text(h, "clkConfig.kdf.hash")) {
            None => false,
            Some(Ok("SHA256")) => false,
            Some(Ok("SHA512")) => true,
            Some(_) => return Err("clkConfig.kdf.hash: SHA256 or SHA512".into()),
        };
        let bytes = |key: &str| -> SchemaResult<Option<Vec<u8>>> {
            kdf.get(key)
                .map(|b| {
                    hex::base64_decode(text(b, key)?)
                        .ok_or_else(|| format!("clkConfig.kdf.{key}: not base64"))
                })
                .transpose()
        };
        let key_size = match kdf.get("keySize") {
            Some(k) => count(k, "clkConfig.kdf.keySize")?,
            None => 64,
        };
        if key_size == 0 || key_size > 64 {
            return Err("clkConfig.kdf.keySize: 1 to 64 bytes (BLAKE2b's longest key)".into());
        }
        let kdf = Kdf {
            sha512,
            salt: bytes("salt")?,
            info: bytes("info")?,
            key_size,
        };
        let features = field(&v, "features", "schema")?
            .as_array()
            .ok_or("features: expected a list")?
            .iter()
            .enumerate()
            .map(|(i, f)| Feature::from_json(f).map_err(|e| format!("features[{i}]: {e}")))
            .collect::<SchemaResult<Vec<_>>>()?;
        let hash_l = l << xor_folds;
        if features.iter().any(|f| {
            matches!(
                f.hashing,
                Some(Hashing {
                    hash: HashKind::Blake,
                    ..
                })
            )
        }) && !hash_l.is_power_of_two()
        {
            return Err("clkConfig.l: blakeHash needs l × 2^xor_folds to be a power of 2".into());
        }
        let schema = LinkageSchema {
            l,
            xor_folds,
            kdf,
            features,
        };
        let max_keys = 255 * if sha512 { 64 } else { 32 };
        if schema.features.len() * 2 * key_size > max_keys {
            return Err("too many features for HKDF to derive two keys each".into());
        }
        Ok(schema)
    }

    /// Two keys per feature (ignored ones included), derived from the secret by HKDF.
    pub fn keys(&self, secret: &[u8]) -> FeatureKeys {
        let n = self.features.len() * 2 * self.kdf.key_size;
        let mut okm = Zeroizing::new(vec![0u8; n]);
        let info = self.kdf.info.as_deref().unwrap_or_default();
        let salt = self.kdf.salt.as_deref();
        let expanded = if self.kdf.sha512 {
            hkdf::Hkdf::<sha2::Sha512>::new(salt, secret).expand(info, &mut okm)
        } else {
            hkdf::Hkdf::<sha2::Sha256>::new(salt, secret).expand(info, &mut okm)
        };
        expanded.expect("checked when the schema was read: the keys fit HKDF's output");
        let size = self.kdf.key_size;
        FeatureKeys(
            okm.chunks_exact(2 * size)
                .map(|pair| {
                    [
                        Zeroizing::new(pair[..size].to_vec()),
                        Zeroizing::new(pair[size..].to_vec()),
                    ]
                })
                .collect(),
        )
    }

    /// The CLK of one record (one value per feature, in the schema's order), `l` bits packed from
    /// the most significant bit of the first byte, the last byte padded with zeros.
    pub fn encode(
        &self,
        keys: &FeatureKeys,
        record: &[&str],
    ) -> std::result::Result<Vec<u8>, FieldError> {
        self.encode_with(keys, record, &mut Scratch::default())
    }

    /// [`Self::encode`], reusing one thread's `scratch` from record to record.
    pub fn encode_with(
        &self,
        keys: &FeatureKeys,
        record: &[&str],
        scratch: &mut Scratch,
    ) -> std::result::Result<Vec<u8>, FieldError> {
        let hash_l = self.l << self.xor_folds;
        let mut bits = Bits::new(hash_l);
        scratch
            .known
            .resize_with(self.features.len(), Default::default);
        for (i, (feature, value)) in self.features.iter().zip(record).enumerate() {
            let Some(h) = &feature.hashing else {
                continue;
            };
            let fail = |rule: String| FieldError {
                feature: i,
                identifier: feature.identifier.clone(),
                rule,
            };
            let normal = match &h.missing {
                Some((sentinel, replacement)) if sentinel == value => replacement.clone(),
                _ => h.format.normalise(value).map_err(fail)?,
            };
            scratch.tokens.clear();
            h.comparison
                .tokenise(&normal, &mut scratch.tokens)
                .map_err(fail)?;
            if scratch.tokens.is_empty() {
                continue;
            }
            let tokens = scratch.tokens.len();
            let [first, second] = &keys.0[i];
            let known = &mut scratch.known[i];
            for (t, token) in scratch.tokens.iter().enumerate() {
                let k = h.strategy.bits_for(t, tokens);
                let by_token = known.entry(k).or_default();
                if let Some(positions) = by_token.get(token) {
                    positions.iter().for_each(|&p| bits.set(p as usize));
                    continue;
                }
                let mut positions = Vec::with_capacity(k);
                match h.hash {
                    HashKind::Blake => {
                        blake_bits(token.as_bytes(), k, first, hash_l, &mut positions)
                    }
                    HashKind::Double { non_singular } => double_hash_bits(
                        token.as_bytes(),
                        k,
                        (first, second),
                        non_singular,
                        hash_l,
                        &mut positions,
                    ),
                }
                positions.iter().for_each(|&p| bits.set(p as usize));
                if by_token.len() >= KNOWN_TOKENS {
                    by_token.clear();
                }
                by_token.insert(token.to_string(), positions);
            }
        }
        for _ in 0..self.xor_folds {
            bits.fold();
        }
        Ok(bits.into_bytes())
    }
}

/// How many tokens of one feature (and one number of bits) a [`Scratch`] remembers before it
/// starts again: bounded memory whatever the data.
const KNOWN_TOKENS: usize = 1 << 16;

/// One thread's reusable state for encoding: the token buffer, and per feature the bit positions
/// of the tokens already hashed. Names, dates and postcodes repeat, so most tokens are hashed once
/// (clkhash does the same with its `lru_cache`); the positions are the same as hashing again.
#[derive(Default)]
pub struct Scratch {
    tokens: Tokens,
    known: Vec<foldhash::HashMap<usize, foldhash::HashMap<String, Vec<u32>>>>,
}

/// A value's tokens, written one after the other in one buffer (no allocation per token once the
/// buffers have grown).
#[derive(Default)]
struct Tokens {
    text: String,
    ends: Vec<usize>,
    /// The padded characters of the value being cut into n-grams.
    chars: Vec<char>,
}

impl Tokens {
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// Ends the token written into `text` since the last one.
    fn end(&mut self) {
        self.ends.push(self.text.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.text[a..b])
    }
}

impl Feature {
    fn from_json(v: &Value) -> SchemaResult<Feature> {
        let identifier = text(field(v, "identifier", "feature")?, "identifier")?.to_string();
        if v.get("ignored").and_then(Value::as_bool) == Some(true) {
            return Ok(Feature {
                identifier,
                hashing: None,
            });
        }
        let format = field(v, "format", "feature")?;
        let hashing = field(v, "hashing", "feature")?;
        let comparison = field(hashing, "comparison", "hashing")?;
        let comparison = match text(field(comparison, "type", "comparison")?, "comparison.type")? {
            "ngram" => Comparison::Ngram {
                n: count(field(comparison, "n", "comparison")?, "comparison.n")?,
                positional: comparison
                    .get("positional")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            },
            "exact" => Comparison::Exact,
            "numeric" => {
                let threshold = field(comparison, "thresholdDistance", "comparison")?
                    .as_f64()
                    .filter(|t| *t > 0.0)
                    .ok_or("comparison.thresholdDistance: a positive number")?;
                let resolution =
                    count(field(comparison, "resolution", "comparison")?, "resolution")?;
                if resolution == 0 {
                    return Err("comparison.resolution: at least 1".into());
                }
                let precision = match comparison.get("fractional_precision") {
                    Some(p) => count(p, "comparison.fractional_precision")? as u32,
                    None => 0,
                };
                let interval = (threshold * 10f64.powi(precision as i32)).round_ties_even();
                if !(1.0..=1e30).contains(&interval) {
                    return Err("comparison: not enough fractional precision to encode \
                                thresholdDistance"
                        .into());
                }
                Comparison::Numeric {
                    interval: interval as i128,
                    resolution: resolution as i128,
                    precision,
                }
            }
            other => return Err(format!("comparison.type: unsupported `{other}`")),
        };
        let strategy = field(hashing, "strategy", "hashing")?;
        let strategy = if let Some(k) = strategy.get("bitsPerToken") {
            Strategy::BitsPerToken(count(k, "strategy.bitsPerToken")?)
        } else if let Some(k) = strategy.get("bitsPerFeature") {
            Strategy::BitsPerFeature(count(k, "strategy.bitsPerFeature")?)
        } else {
            return Err("strategy: bitsPerToken or bitsPerFeature".into());
        };
        let hash = match hashing.get("hash") {
            None => HashKind::Blake,
            Some(h) => match text(field(h, "type", "hash")?, "hash.type")? {
                "blakeHash" => HashKind::Blake,
                "doubleHash" => HashKind::Double {
                    non_singular: h
                        .get("prevent_singularity")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                },
                other => return Err(format!("hash.type: unsupported `{other}`")),
            },
        };
        let missing = hashing
            .get("missingValue")
            .map(|m| -> SchemaResult<(String, String)> {
                let sentinel = text(field(m, "sentinel", "missingValue")?, "sentinel")?;
                let replacement = match m.get("replaceWith") {
                    Some(r) => text(r, "missingValue.replaceWith")?,
                    None => sentinel,
                };
                Ok((sentinel.to_string(), replacement.to_string()))
            })
            .transpose()?;
        let encoding = format
            .get("encoding")
            .and_then(Value::as_str)
            .unwrap_or("utf-8");
        let ascii = match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => false,
            "ascii" | "us-ascii" => true,
            _ => {
                return Err(format!(
                    "format.encoding: `{encoding}` (utf-8 or ascii are read)"
                ));
            }
        };
        let format = match text(field(format, "type", "format")?, "format.type")? {
            "string" => {
                let pattern = format
                    .get("pattern")
                    .map(|p| {
                        let p = text(p, "format.pattern")?;
                        regex::Regex::new(&format!("^(?:{p})$"))
                            .map_err(|_| "format.pattern: not a regular expression".to_string())
                    })
                    .transpose()?;
                let case = match format.get("case").and_then(Value::as_str) {
                    None | Some("mixed") => Case::Mixed,
                    Some("lower") => Case::Lower,
                    Some("upper") => Case::Upper,
                    Some(_) => return Err("format.case: lower, upper or mixed".into()),
                };
                Format::String {
                    pattern,
                    case,
                    min_length: match format.get("minLength") {
                        Some(n) => count(n, "format.minLength")?,
                        None => 0,
                    },
                    max_length: format
                        .get("maxLength")
                        .map(|n| count(n, "format.maxLength"))
                        .transpose()?,
                    ascii,
                }
            }
            "integer" => {
                let bound = |key: &str| -> SchemaResult<Option<i128>> {
                    format
                        .get(key)
                        .map(|b| {
                            b.as_i64()
                                .map(i128::from)
                                .ok_or_else(|| format!("format.{key}: an integer"))
                        })
                        .transpose()
                };
                Format::Integer {
                    minimum: bound("minimum")?,
                    maximum: bound("maximum")?,
                }
            }
            "date" => {
                Format::Date(text(field(format, "format", "format")?, "format.format")?.into())
            }
            "enum" => Format::Enum(
                field(format, "values", "format")?
                    .as_array()
                    .ok_or("format.values: a list")?
                    .iter()
                    .map(|v| text(v, "format.values").map(String::from))
                    .collect::<SchemaResult<_>>()?,
            ),
            other => return Err(format!("format.type: unsupported `{other}`")),
        };
        Ok(Feature {
            identifier,
            hashing: Some(Hashing {
                format,
                comparison,
                strategy,
                hash,
                missing,
            }),
        })
    }
}

impl Format {
    /// The value as clkhash tokenises it, after its validation: an integer in canonical form, a
    /// date as `YYYYMMDD`, others as they are.
    fn normalise(&self, value: &str) -> std::result::Result<String, String> {
        match self {
            Format::String {
                pattern,
                case,
                min_length,
                max_length,
                ascii,
            } => {
                if *ascii && !value.is_ascii() {
                    return Err("a character the feature's encoding (ascii) cannot hold".into());
                }
                if let Some(p) = pattern {
                    if !p.is_match(value) {
                        return Err("does not match the feature's pattern".into());
                    }
                } else {
                    let length = value.chars().count();
                    if length < *min_length || max_length.is_some_and(|m| length > m) {
                        return Err("length outside the feature's minLength and maxLength".into());
                    }
                    let cased = match case {
                        Case::Lower => value.to_lowercase() == value,
                        Case::Upper => value.to_uppercase() == value,
                        Case::Mixed => true,
                    };
                    if !cased {
                        return Err("not in the feature's case".into());
                    }
                }
                Ok(value.to_string())
            }
            Format::Integer { minimum, maximum } => {
                let v = python_int(value).ok_or("not a base-10 integer")?;
                if minimum.is_some_and(|m| v < m) || maximum.is_some_and(|m| v > m) {
                    return Err("outside the feature's minimum and maximum".into());
                }
                Ok(v.to_string())
            }
            // `YYYYMMDD` as Python's strftime writes it on glibc: a year before 1000 is not
            // padded (0123-01-12 gives 1230112).
            Format::Date(format) => chrono::NaiveDate::parse_from_str(value, format)
                .ok()
                .filter(|d| (1..=9999).contains(&d.year()))
                .map(|d| format!("{}{:02}{:02}", d.year(), d.month(), d.day()))
                .ok_or_else(|| "not a date in the feature's format".to_string()),
            Format::Enum(values) => {
                if values.iter().any(|v| v == value) {
                    Ok(value.to_string())
                } else {
                    Err("not one of the feature's values".into())
                }
            }
        }
    }
}

/// Python's `int(text, 10)` on ASCII text: surrounding whitespace, a sign, and single
/// underscores between digits allowed.
fn python_int(text: &str) -> Option<i128> {
    let t = text.trim_matches(|c: char| c.is_whitespace());
    let (negative, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let b = digits.as_bytes();
    if b.is_empty()
        || !b[0].is_ascii_digit()
        || !b[b.len() - 1].is_ascii_digit()
        || b.windows(2).any(|w| w == b"__")
        || b.iter().any(|c| !c.is_ascii_digit() && *c != b'_')
    {
        return None;
    }
    let mut v: i128 = 0;
    for c in b.iter().filter(|c| c.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
    }
    Some(if negative { -v } else { v })
}

impl Comparison {
    fn tokenise(&self, word: &str, out: &mut Tokens) -> std::result::Result<(), String> {
        use std::fmt::Write as _;
        if word.is_empty() {
            return Ok(());
        }
        match *self {
            Comparison::Ngram { n, positional } => {
                let pad = n.saturating_sub(1);
                let mut chars = std::mem::take(&mut out.chars);
                chars.clear();
                chars.extend(
                    std::iter::repeat_n(' ', pad)
                        .chain(word.chars())
                        .chain(std::iter::repeat_n(' ', pad)),
                );
                for i in 0..(chars.len() + 1).saturating_sub(n) {
                    if positional {
                        write!(out.text, "{} ", i + 1).expect("write to String");
                    }
                    out.text.extend(&chars[i..i + n]);
                    out.end();
                }
                out.chars = chars;
            }
            Comparison::Exact => {
                out.text.push_str(word);
                out.end();
            }
            Comparison::Numeric {
                interval,
                resolution,
                precision,
            } => {
                let scale = 10i128.pow(precision);
                let v = match python_int(word) {
                    Some(v) => v.checked_mul(scale).ok_or("too large a number")?,
                    None => {
                        let f: f64 = word.trim().parse().map_err(|_| "not a number")?;
                        let scaled = if precision > 0 {
                            (f * 10f64.powi(precision as i32)).round_ties_even()
                        } else {
                            f.trunc()
                        };
                        if !scaled.is_finite() || scaled.abs() > 1e36 {
                            return Err("too large a number".into());
                        }
                        scaled as i128
                    }
                };
                let v = v * 2 * resolution;
                let residue = v.rem_euclid(interval);
                let v = if residue == 0 {
                    v
                } else if (residue as f64) < interval as f64 / 2.0 {
                    v - residue
                } else {
                    v + (interval - residue)
                };
                for i in -resolution..=resolution {
                    write!(out.text, "{}", v + i * interval).expect("write to String");
                    out.end();
                }
            }
        }
        Ok(())
    }
}

impl Strategy {
    /// The bits of token `i` of `tokens`.
    fn bits_for(self, i: usize, tokens: usize) -> usize {
        match self {
            Strategy::BitsPerToken(k) => k,
            Strategy::BitsPerFeature(total) => total / tokens + usize::from(i < total % tokens),
        }
    }
}

/// The `k` bit positions of a token from keyed BLAKE2b: digest `i` (salt: the decimal text of `i`) read as 32
/// little-endian 16-bit numbers, each taken modulo `l`.
fn blake_bits(token: &[u8], k: usize, key: &[u8], l: usize, positions: &mut Vec<u32>) {
    let mut set = 0;
    for i in 0..k.div_ceil(32) {
        let salt = i.to_string();
        let mut mac = Blake2bMac512::new_with_salt_and_personal(Some(key), salt.as_bytes(), &[])
            .expect("checked when the schema was read: a key of 1 to 64 bytes");
        mac.update(token);
        let digest = mac.finalize().into_bytes();
        for pair in digest.chunks_exact(2) {
            if set == k {
                return;
            }
            positions.push((usize::from(u16::from_le_bytes([pair[0], pair[1]])) % l) as u32);
            set += 1;
        }
    }
}

/// A digest read as a big-endian number, modulo `l`.
fn modulo(digest: &[u8], l: usize) -> usize {
    let l = l as u128;
    digest
        .iter()
        .fold(0u128, |r, &b| (r * 256 + u128::from(b)) % l) as usize
}

fn hmac_mod<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]], l: usize) -> usize {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    modulo(&mac.finalize().into_bytes(), l)
}

/// Double hashing (Schnell et al.): bit `(h_sha1 + i·h_md5) mod l` for `i < k`; with
/// `prevent_singularity`, `h_md5` is rehashed while it is 0 (then every `i` would hit one bit).
fn double_hash_bits(
    token: &[u8],
    k: usize,
    (key_sha1, key_md5): (&[u8], &[u8]),
    non_singular: bool,
    l: usize,
    positions: &mut Vec<u32>,
) {
    let sha1 = hmac_mod::<Hmac<sha1::Sha1>>(key_sha1, &[token], l);
    let mut md5 = hmac_mod::<Hmac<md5::Md5>>(key_md5, &[token], l);
    let mut i: u32 = 0;
    while non_singular && md5 == 0 {
        let mut suffix = [0u8; 4];
        let suffix = char::from_u32(i)
            .expect("a few rehashes at most")
            .encode_utf8(&mut suffix);
        md5 = hmac_mod::<Hmac<md5::Md5>>(key_md5, &[token, suffix.as_bytes()], l);
        i += 1;
    }
    positions.extend((0..k).map(|i| ((sha1 as u128 + i as u128 * md5 as u128) % l as u128) as u32));
}

/// A bit array numbered from the most significant bit of the first byte.
struct Bits {
    len: usize,
    bytes: Vec<u8>,
}

impl Bits {
    fn new(len: usize) -> Bits {
        Bits {
            len,
            bytes: vec![0; len.div_ceil(8)],
        }
    }

    fn get(&self, i: usize) -> bool {
        self.bytes[i / 8] & (0x80 >> (i % 8)) != 0
    }

    fn set(&mut self, i: usize) {
        self.bytes[i / 8] |= 0x80 >> (i % 8);
    }

    /// The first half XOR the second.
    fn fold(&mut self) {
        let half = self.len / 2;
        let mut folded = Bits::new(half);
        for i in 0..half {
            if self.get(i) != self.get(half + i) {
                folded.set(i);
            }
        }
        *self = folded;
    }

    fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grams(c: Comparison, word: &str) -> Vec<String> {
        let mut out = Tokens::default();
        c.tokenise(word, &mut out).unwrap();
        out.iter().map(String::from).collect()
    }

    #[test]
    fn tokens_as_clkhash_documents_them() {
        // clkhash's docstrings: the 2-grams and positional 2-grams of 'clkhash'.
        let bigrams = Comparison::Ngram {
            n: 2,
            positional: false,
        };
        assert_eq!(
            grams(bigrams, "clkhash"),
            [" c", "cl", "lk", "kh", "ha", "as", "sh", "h "]
        );
        let positional = Comparison::Ngram {
            n: 2,
            positional: true,
        };
        assert_eq!(grams(positional, "clkhash")[..2], ["1  c", "2 cl"]);
        // Numeric: threshold 8, resolution 2: 25 is quantised to 26 and its tokens are
        // 88, 96, 104, 112, 120 (the docstring's example).
        let numeric = Comparison::Numeric {
            interval: 8,
            resolution: 2,
            precision: 0,
        };
        assert_eq!(grams(numeric, "25"), ["88", "96", "104", "112", "120"]);
        assert!(grams(Comparison::Exact, "").is_empty());
    }

    #[test]
    fn bits_per_feature_spreads_the_remainder_over_the_first_tokens() {
        let bits = |s: Strategy, n| (0..n).map(|i| s.bits_for(i, n)).collect::<Vec<_>>();
        assert_eq!(bits(Strategy::BitsPerFeature(10), 4), [3, 3, 2, 2]);
        assert_eq!(bits(Strategy::BitsPerToken(5), 2), [5, 5]);
    }

    #[test]
    fn integers_read_as_python_reads_them() {
        for (text, v) in [("13", 13), (" +13 ", 13), ("-0", 0), ("1_000", 1000)] {
            assert_eq!(python_int(text), Some(v), "{text}");
        }
        for bad in ["", "1__0", "_1", "1_", "1.0", "0x10", "+"] {
            assert_eq!(python_int(bad), None, "{bad}");
        }
    }

    #[test]
    fn folding_xors_the_halves() {
        let mut b = Bits::new(16);
        b.set(0);
        b.set(8);
        b.set(3);
        b.fold();
        assert_eq!(b.into_bytes(), [0b0001_0000]);
    }
}
