//! Keyed pseudonymisation: HMAC-SHA-256 of a normalised identifier under a domain sub-key, truncated and
//! encoded as the permit asks.
//!
//! The kernel works on plain slices and writes fixed-width pseudonyms into one flat buffer, so the same
//! code serves polars here and any other executor later, with bit-identical results. The key is turned
//! into HMAC inner and outer states once ([`HmacKey`]); re-keying per value would cost about 40 %.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kernels::hex;
use crate::kernels::hmac::HmacKey;
use crate::kernels::identifier::{Checked, IdentifierKind, IdentifierRule, PART_SEPARATOR};
use crate::kernels::keys::SecretKey;

/// Rows handed to one parallel task: enough to amortise scheduling, few enough to balance the cores.
const ROWS_PER_TASK: usize = 16 * 1024;

/// HMAC-SHA-256 of `message` under `key` (any key length, as RFC 2104 allows).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    HmacKey::new(key).mac(message)
}

/// How a digest is written out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64url,
}

/// The text form of pseudonyms: encoding and number of digest bits kept (128 or 256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PseudonymFormat {
    pub encoding: Encoding,
    pub bits: u16,
}

impl Default for PseudonymFormat {
    fn default() -> Self {
        PseudonymFormat {
            encoding: Encoding::Hex,
            bits: 128,
        }
    }
}

impl PseudonymFormat {
    pub fn digest_bytes(&self) -> usize {
        self.bits as usize / 8
    }

    /// Characters in every pseudonym of this format.
    pub fn width(&self) -> usize {
        match self.encoding {
            Encoding::Hex => 2 * self.digest_bytes(),
            Encoding::Base64url => hex::base64url_len(self.digest_bytes()),
        }
    }

    /// Decodes a pseudonym of this format into its digest's kept bytes (`out[..digest_bytes]`,
    /// the rest left as it was); `None` unless `text` is exactly how this format writes a digest
    /// (lowercase hex, canonical base64url: no other spelling of the same bytes).
    pub fn decode_into(&self, text: &str, out: &mut [u8; 32]) -> Option<()> {
        let kept = &mut out[..self.digest_bytes()];
        if text.len() != self.width() {
            return None;
        }
        match self.encoding {
            Encoding::Hex => hex::decode_lower_into(text.as_bytes(), kept),
            Encoding::Base64url => {
                let decoded = hex::base64url_decode(text)?;
                (decoded.len() == kept.len() && hex::base64url(&decoded) == text)
                    .then(|| kept.copy_from_slice(&decoded))
            }
        }
    }

    fn encode_into(&self, digest: &[u8; 32], out: &mut [u8]) {
        let kept = &digest[..self.digest_bytes()];
        match self.encoding {
            Encoding::Hex => hex::encode_into(kept, out),
            Encoding::Base64url => hex::base64url_into(kept, out),
        }
    }
}

/// Pseudonyms of one column (or composite) of a batch: `width` bytes per row in `text`, meaningful only
/// where `status` is [`Checked::Valid`].
/// Reuse one across batches: its buffers keep their memory, which saves the page faults of fresh
/// allocations (about 0.5 s per GiB here).
#[derive(Debug, Default)]
pub struct PseudonymBatch {
    pub width: usize,
    pub text: Vec<u8>,
    pub status: Vec<Checked>,
}

impl PseudonymBatch {
    /// The batch's text, moved out (for a column to own it without a copy); the statuses stay, to
    /// read the values back with [`PseudonymBatch::values_in`].
    pub fn take_text(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.text)).expect("encodings are ASCII")
    }

    /// Every row's pseudonym (`None` where not valid) in `text`, the batch's text taken out by
    /// [`PseudonymBatch::take_text`]: checked as UTF-8 once, not row by row.
    pub fn values_in<'a>(
        &'a self,
        text: &'a str,
    ) -> impl ExactSizeIterator<Item = Option<&'a str>> {
        let width = self.width;
        self.status.iter().enumerate().map(move |(row, &status)| {
            (status == Checked::Valid).then(|| &text[row * width..(row + 1) * width])
        })
    }

    pub fn count(&self, status: Checked) -> usize {
        self.status.iter().filter(|&&s| s == status).count()
    }
}

/// One pseudonymisation domain, keyed and ready.
pub struct Pseudonymiser {
    key: HmacKey,
    format: PseudonymFormat,
}

impl Pseudonymiser {
    pub fn new(domain_key: &SecretKey, format: PseudonymFormat) -> Self {
        Pseudonymiser {
            key: HmacKey::new(domain_key.expose()),
            format,
        }
    }

    pub fn format(&self) -> PseudonymFormat {
        self.format
    }

    /// The pseudonym of one already normalised message, as text.
    pub fn pseudonym(&self, message: &[u8]) -> String {
        let mut out = vec![0u8; self.format.width()];
        self.write(message, &mut out);
        String::from_utf8(out).expect("encodings are ASCII")
    }

    /// The digest of one already normalised message, cut to the format's bits (the rest zero):
    /// what [`Self::pseudonym`] writes, before it is written.
    pub fn digest(&self, message: &[u8]) -> [u8; 32] {
        let mut digest = self.key.mac(message);
        digest[self.format.digest_bytes()..].fill(0);
        digest
    }

    #[inline]
    fn write(&self, message: &[u8], out: &mut [u8]) {
        let digest = self.key.mac(message);
        self.format.encode_into(&digest, out);
    }

    /// Normalises, validates and pseudonymises every row of `parts` (one slice per identifier part, all of
    /// the same length), in parallel.
    ///
    /// The MAC message of a single identifier is its normalised UTF-8 bytes. For a composite (several
    /// parts, e.g. NIR + birth date + sex) each normalised part is preceded by its length as a 4-byte
    /// big-endian integer, so that no two different tuples give the same message. A row with any part
    /// missing is `Missing`; otherwise with any part invalid, `Invalid`.
    pub fn pseudonymise(
        &self,
        rules: &[&IdentifierRule],
        parts: &[&[Option<&str>]],
    ) -> PseudonymBatch {
        let mut batch = PseudonymBatch::default();
        self.pseudonymise_into(rules, parts, &mut batch);
        batch
    }

    /// [`Self::pseudonymise`] into a batch whose buffers are reused.
    pub fn pseudonymise_into(
        &self,
        rules: &[&IdentifierRule],
        parts: &[&[Option<&str>]],
        batch: &mut PseudonymBatch,
    ) {
        assert_eq!(rules.len(), parts.len(), "one rule per identifier part");
        let rows = parts.first().map_or(0, |p| p.len());
        assert!(
            parts.iter().all(|p| p.len() == rows),
            "identifier parts of unequal length"
        );
        let width = self.format.width();
        let PseudonymBatch {
            width: batch_width,
            text,
            status,
        } = batch;
        *batch_width = width;
        // Every row's bytes and status are written below: only newly grown memory needs initialising.
        text.truncate(rows * width);
        text.resize(rows * width, 0);
        status.truncate(rows);
        status.resize(rows, Checked::Missing);
        text.par_chunks_mut(ROWS_PER_TASK * width.max(1))
            .zip(status.par_chunks_mut(ROWS_PER_TASK))
            .enumerate()
            .for_each(|(task, (text, status))| {
                let first = task * ROWS_PER_TASK;
                let mut messages = [Message::default(), Message::default()];
                // Rows two at a time, so that two MACs share the SHA unit (`HmacKey::mac_pair`).
                let pairs = text.chunks_mut(2 * width).zip(status.chunks_mut(2));
                for (pair, (text, status)) in pairs.enumerate() {
                    let row = first + 2 * pair;
                    let (out_a, out_b) = text.split_at_mut(width.min(text.len()));
                    match status {
                        [a, b] => {
                            let [first_message, second_message] = &mut messages;
                            *a = first_message.load(rules, parts, row);
                            *b = second_message.load(rules, parts, row + 1);
                            if *a == Checked::Valid && *b == Checked::Valid {
                                let digests = self
                                    .key
                                    .mac_pair([first_message.bytes(), second_message.bytes()]);
                                self.format.encode_into(&digests[0], out_a);
                                self.format.encode_into(&digests[1], out_b);
                            } else {
                                self.write_checked(*a, first_message.bytes(), out_a);
                                self.write_checked(*b, second_message.bytes(), out_b);
                            }
                        }
                        [only] => {
                            *only = messages[0].load(rules, parts, row);
                            self.write_checked(*only, messages[0].bytes(), out_a);
                        }
                        _ => unreachable!("chunks of two rows"),
                    }
                }
            });
    }

    /// Writes the pseudonym of a valid row, zeros for any other (never read, but deterministic).
    #[inline]
    fn write_checked(&self, checked: Checked, message: &[u8], out: &mut [u8]) {
        if checked == Checked::Valid {
            self.write(message, out);
        } else {
            out.fill(0);
        }
    }
}

/// One row's MAC message, built in buffers reused from row to row.
#[derive(Default)]
struct Message {
    normal: String,
    composite: Vec<u8>,
    is_composite: bool,
}

impl Message {
    /// Normalises and checks the row's identifier parts; when `Valid`, [`Self::bytes`] is the message.
    #[inline]
    fn load(
        &mut self,
        rules: &[&IdentifierRule],
        parts: &[&[Option<&str>]],
        row: usize,
    ) -> Checked {
        if let ([rule], [only]) = (rules, parts)
            && matches!(rule.kind, IdentifierKind::Joined)
        {
            // A composite person already joined (`identifier::join_parts`): the message of its
            // parts, as if they were pseudonymised together.
            self.is_composite = true;
            self.composite.clear();
            let status = rule.check_into(only[row], &mut self.normal);
            for part in self.normal.split(PART_SEPARATOR) {
                self.composite
                    .extend_from_slice(&(part.len() as u32).to_be_bytes());
                self.composite.extend_from_slice(part.as_bytes());
            }
            status
        } else if let [only] = parts {
            self.is_composite = false;
            rules[0].check_into(only[row], &mut self.normal)
        } else {
            self.is_composite = true;
            self.composite.clear();
            composite_message(rules, parts, row, &mut self.normal, &mut self.composite)
        }
    }

    fn bytes(&self) -> &[u8] {
        if self.is_composite {
            &self.composite
        } else {
            self.normal.as_bytes()
        }
    }
}

fn composite_message(
    rules: &[&IdentifierRule],
    parts: &[&[Option<&str>]],
    row: usize,
    normal: &mut String,
    message: &mut Vec<u8>,
) -> Checked {
    let mut worst = Checked::Valid;
    for (rule, part) in rules.iter().zip(parts) {
        match rule.check_into(part[row], normal) {
            Checked::Missing => return Checked::Missing,
            Checked::Invalid => worst = Checked::Invalid,
            Checked::Valid => {}
        }
        message.extend_from_slice(&(normal.len() as u32).to_be_bytes());
        message.extend_from_slice(normal.as_bytes());
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::identifier::{IdentifierKind, nir_is_valid};

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 4231 test cases 1–4, 6 and 7 (case 5 tests truncation to 128 bits, checked below too).
    #[test]
    fn hmac_matches_rfc4231_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (vec![0x0b; 20], b"Hi There".to_vec(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            (vec![0xaa; 20], vec![0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            (
                unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            assert_eq!(hex::encode(&hmac_sha256(&key, &data)), expected);
        }
        // Case 5: output truncated to 128 bits.
        let t = hmac_sha256(&[0x0c; 20], b"Test With Truncation");
        assert_eq!(hex::encode(&t[..16]), "a3b6167473100ee06e0c796c2955552b");
    }

    fn key() -> SecretKey {
        SecretKey::from_text(
            &hex::encode(
                &(0u8..32)
                    .map(|i| i.wrapping_mul(37) ^ 0x5a)
                    .collect::<Vec<_>>(),
            ),
            "t",
        )
        .unwrap()
    }

    /// The parallel batch kernel agrees with the one-shot HMAC of the normalised value for every format,
    /// across task boundaries, and marks missing and invalid rows.
    #[test]
    fn batch_kernel_matches_one_shot_hmac() {
        let domain = key().domain_key("test/linkage");
        let nir = IdentifierRule::new(IdentifierKind::Nir);
        let raw: Vec<String> = (0..(ROWS_PER_TASK as u64 * 2 + 7))
            .map(|i| {
                let body = 1_850_578_000_000 + i * 7919;
                format!("{body} {:02}", 97 - body % 97)
            })
            .collect();
        let mut values: Vec<Option<&str>> = raw.iter().map(|s| Some(s.as_str())).collect();
        values[3] = None;
        values[5] = Some("185057800608400");
        for format in [
            PseudonymFormat {
                encoding: Encoding::Hex,
                bits: 128,
            },
            PseudonymFormat {
                encoding: Encoding::Hex,
                bits: 256,
            },
            PseudonymFormat {
                encoding: Encoding::Base64url,
                bits: 128,
            },
            PseudonymFormat {
                encoding: Encoding::Base64url,
                bits: 256,
            },
        ] {
            let p = Pseudonymiser::new(&domain, format);
            let batch = p.pseudonymise(&[&nir], &[&values]);
            // A reused batch that held longer, all-valid output gives the same bytes as a fresh one.
            let mut reused = p.pseudonymise(&[&nir], &[&[Some("185057800608491"); 40_000][..]]);
            p.pseudonymise_into(&[&nir], &[&values], &mut reused);
            assert_eq!((&reused.text, &reused.status), (&batch.text, &batch.status));
            let text = std::str::from_utf8(&batch.text).unwrap();
            let pseudonyms: Vec<Option<&str>> = batch.values_in(text).collect();
            assert_eq!(pseudonyms.len(), values.len());
            assert!(
                batch.text[3 * format.width()..4 * format.width()]
                    .iter()
                    .all(|&b| b == 0)
            );
            assert_eq!(batch.status[3], Checked::Missing);
            assert_eq!(batch.status[5], Checked::Invalid);
            assert_eq!(batch.count(Checked::Valid), values.len() - 2);
            for (row, v) in values.iter().enumerate() {
                let Some(v) = v.filter(|v| nir_is_valid(&v.replace(' ', ""))) else {
                    continue;
                };
                let digest = hmac_sha256(domain.expose(), v.replace(' ', "").as_bytes());
                let kept = &digest[..format.digest_bytes()];
                let expected = match format.encoding {
                    Encoding::Hex => hex::encode(kept),
                    Encoding::Base64url => {
                        let mut o = vec![0; hex::base64url_len(kept.len())];
                        hex::base64url_into(kept, &mut o);
                        String::from_utf8(o).unwrap()
                    }
                };
                assert_eq!(pseudonyms[row], Some(expected.as_str()), "row {row}");
            }
        }
    }

    #[test]
    fn composite_messages_are_length_prefixed() {
        let p = Pseudonymiser::new(&key(), PseudonymFormat::default());
        let any = IdentifierRule::new(IdentifierKind::Any);
        let a = [Some("ab"), Some("a"), None];
        let b = [Some("c"), Some("bc"), Some("x")];
        let batch = p.pseudonymise(&[&any, &any], &[&a, &b]);
        // ("ab","c") and ("a","bc") concatenate to the same text but must not collide.
        let text = std::str::from_utf8(&batch.text).unwrap();
        let pseudonyms: Vec<Option<&str>> = batch.values_in(text).collect();
        assert_ne!(pseudonyms[0], pseudonyms[1]);
        let mut message = Vec::new();
        for part in ["AB", "C"] {
            message.extend_from_slice(&(part.len() as u32).to_be_bytes());
            message.extend_from_slice(part.as_bytes());
        }
        assert_eq!(
            pseudonyms[0].unwrap(),
            hex::encode(&hmac_sha256(key().expose(), &message)[..16])
        );
        assert_eq!(batch.status[2], Checked::Missing);
    }

    /// A composite person joined by the engine pseudonymises as its parts do together, so a
    /// table that reaches the person through a join key delivers the parent's pseudonym.
    #[test]
    fn a_joined_person_pseudonymises_as_its_parts() {
        let p = Pseudonymiser::new(&key(), PseudonymFormat::default());
        let nir = IdentifierRule::new(IdentifierKind::Any).preserving_case();
        let rank = IdentifierRule::new(IdentifierKind::Any);
        let (a, b) = ([Some("Ab 12"), Some("ab12")], [Some("1"), Some("2")]);
        let parts = p.pseudonymise(&[&nir, &rank], &[&a, &b]);
        let mut normal = String::new();
        let rules = [nir.clone(), rank.clone()];
        let joined: Vec<Option<String>> = (0..2)
            .map(|row| {
                crate::kernels::identifier::join_parts(&rules, &[a[row], b[row]], &mut normal)
            })
            .collect();
        let joined: Vec<Option<&str>> = joined.iter().map(Option::as_deref).collect();
        let rule = IdentifierRule::new(IdentifierKind::Joined);
        let from_joined = p.pseudonymise(&[&rule], &[&joined]);
        assert_eq!(parts.text, from_joined.text);
        assert_eq!(from_joined.status, [Checked::Valid, Checked::Valid]);
        assert_ne!(parts.text[..32], parts.text[32..]);
    }
}
