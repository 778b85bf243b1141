//! Identifier normalisation and validation, applied before an identifier is pseudonymised, tokenised
//! or matched against the opt-out list: one rule for the extract, the opt-out list and every holder.
//!
//! Normalisation gives the same person's identifier one spelling, its **canonical form**
//! ([`CANONICAL_FORM`], recorded in every manifest beside the pseudonym version, and compared by
//! `link`), whatever the extract's habits:
//! 1. Unicode compatibility normalisation (NFKC): full-width letters and digits become ASCII, a
//!    letter and its combining accent one letter (`é` written either way);
//! 2. separators are removed anywhere: the permit's (space, tab, `-`, `.`, `/` by default), every
//!    other Unicode space and dash, and the invisible characters (zero-width spaces and joiners,
//!    bidirectional marks and isolates, soft hyphens, the byte-order mark, variation selectors);
//! 3. letters are upper-cased (then recomposed, NFC);
//! 4. a value holding a control character (a line break inside it, a NUL) or a digit of another
//!    script (Arabic-Indic, Devanagari…) is **invalid**: such a spelling is refused rather than given
//!    a second pseudonym.
//!
//! An ASCII value takes a fast path with the same result. Validation then checks the identifier's
//! kind (the French NIR with its control key, or a permit-given pattern that must match the whole
//! canonical value, with ASCII classes). Delivered pseudonyms (`pseudonym`) are taken exactly as
//! written.

use regex::Regex;

/// What a raw value turned out to be after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Valid,
    /// Null, empty or only separators.
    Missing,
    /// Present but not of the declared kind.
    Invalid,
}

/// The canonical form identifiers are normalised to (see the module's documentation); recorded in
/// every delivery's manifest: holders whose canonical forms differ cannot be linked.
pub const CANONICAL_FORM: &str = "v2: NFKC, separators, spaces, dashes and invisible characters removed, upper case, NFC; controls and non-ASCII digits invalid";

/// Compiles an identifier `pattern` as the permit means it: it must match the whole normalised value
/// (anchored), and its classes (`\d`, `\w`, `[[:alpha:]]`…) are ASCII unless the pattern turns
/// Unicode on itself with `(?u)`: a full-width or Arabic-Indic digit is not a digit of an identifier.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .unicode(false)
        .build()
        .map_err(|e| {
            format!("invalid pattern (ASCII classes; start it with `(?u)` for Unicode ones): {e}")
        })
}

/// The kinds of identifier the engine can validate.
#[derive(Debug, Clone)]
pub enum IdentifierKind {
    /// French social security number (NIR): 13 characters (digits, or 2A/2B for Corsica at positions 6–7)
    /// and a 2-digit control key equal to 97 − (number mod 97).
    Nir,
    /// A permit-given regular expression that the whole normalised value must match
    /// ([`compile_pattern`]).
    Pattern(Regex),
    /// Any non-empty value.
    Any,
    /// A delivered pseudonym (hex or base64url): kept exactly as written, since upper-casing would
    /// merge base64url pseudonyms that differ only in case.
    Pseudonym,
    /// A composite person the engine has already normalised ([`join_parts`]): taken as written.
    Joined,
}

/// Between the normal forms of a composite person's parts: a control character, which no valid
/// normal form holds, so two different tuples never join to the same text.
pub const PART_SEPARATOR: char = '\u{1f}';

/// A composite person (BEN_NIR_PSA + BEN_RNG_GEM: twins share the first) as one text: each part
/// normalised by its rule, joined by [`PART_SEPARATOR`]; None unless every part is valid.
pub fn join_parts(
    rules: &[IdentifierRule],
    parts: &[Option<&str>],
    normal: &mut String,
) -> Option<String> {
    let mut joined = String::new();
    for (i, (rule, part)) in rules.iter().zip(parts).enumerate() {
        if rule.check_into(*part, normal) != Checked::Valid {
            return None;
        }
        if i > 0 {
            joined.push(PART_SEPARATOR);
        }
        joined.push_str(normal);
    }
    Some(joined)
}

/// How one identifier column is normalised and validated.
#[derive(Debug, Clone)]
pub struct IdentifierRule {
    pub kind: IdentifierKind,
    /// Characters removed anywhere in the value (e.g. spaces and dots in `1 85 05 78 006 084 91`).
    separators: Vec<char>,
    /// The ASCII separators as a lookup table, for the fast path.
    ascii_separator: [bool; 128],
    /// Letters keep their case: for systems whose identifiers differ by case alone (SNDS
    /// pseudo-NIRs); upper-casing merges them.
    preserve_case: bool,
}

/// The separators stripped when a permit does not say otherwise.
pub const DEFAULT_SEPARATORS: &[char] = &[' ', '-', '.', '/', '\t'];

impl IdentifierRule {
    pub fn new(kind: IdentifierKind) -> Self {
        let mut ascii_separator = [false; 128];
        for c in DEFAULT_SEPARATORS {
            ascii_separator[*c as usize] = true;
        }
        IdentifierRule {
            kind,
            separators: DEFAULT_SEPARATORS.to_vec(),
            ascii_separator,
            preserve_case: false,
        }
    }

    /// Whether letters keep their case.
    pub fn preserves_case(&self) -> bool {
        self.preserve_case
    }

    /// The same rule, keeping letters' case (every other step of the canonical form stays).
    pub fn preserving_case(mut self) -> Self {
        self.preserve_case = true;
        self
    }

    /// Normalises `raw` into `out` (cleared first) and validates it. `out` is reused across values so
    /// that no allocation happens per value once it has grown.
    pub fn check_into(&self, raw: Option<&str>, out: &mut String) -> Checked {
        out.clear();
        let Some(raw) = raw else {
            return Checked::Missing;
        };
        if let IdentifierKind::Joined = self.kind {
            out.push_str(raw);
            return if raw.is_empty() {
                Checked::Missing
            } else {
                Checked::Valid
            };
        }
        if let IdentifierKind::Pseudonym = self.kind {
            out.push_str(raw);
            // Every byte tested without an early exit, so that the test runs on whole vectors.
            return match raw.bytes().fold(true, |ok, b| {
                ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_'))
            }) {
                _ if raw.is_empty() => Checked::Missing,
                true => Checked::Valid,
                false => Checked::Invalid,
            };
        }
        if is_already_normal(raw) || (self.preserve_case && is_plain_ascii(raw)) {
            out.push_str(raw);
        } else if raw.is_ascii() {
            let raw = raw.trim_ascii();
            // Copy the runs between separators, then upper-case in place: no per-character push.
            // Most values have no separator: one tight scan, then a single copy.
            let table = &self.ascii_separator;
            if raw
                .bytes()
                .any(|b| b.is_ascii_control() && !table[b as usize])
            {
                return Checked::Invalid;
            }
            if !raw.bytes().any(|b| table[b as usize]) {
                out.push_str(raw);
            } else {
                let mut start = 0;
                for (i, b) in raw.bytes().enumerate() {
                    if table[b as usize] {
                        out.push_str(&raw[start..i]);
                        start = i + 1;
                    }
                }
                out.push_str(&raw[start..]);
            }
            if !self.preserve_case {
                out.make_ascii_uppercase();
            }
        } else if !self.canonical_into(raw, out) {
            return Checked::Invalid;
        }
        if out.is_empty() || is_placeholder(out) {
            return Checked::Missing;
        }
        let valid = match &self.kind {
            IdentifierKind::Nir => nir_is_valid(out),
            IdentifierKind::Pattern(re) => re.is_match(out),
            IdentifierKind::Any => true,
            IdentifierKind::Pseudonym | IdentifierKind::Joined => unreachable!("checked above"),
        };
        if valid {
            Checked::Valid
        } else {
            Checked::Invalid
        }
    }
}

impl IdentifierRule {
    /// The canonical form of a value that is not ASCII (steps in the module's documentation);
    /// false for a value holding a control character or a digit of another script.
    fn canonical_into(&self, raw: &str, out: &mut String) -> bool {
        use unicode_normalization::UnicodeNormalization;
        let mut upper = String::with_capacity(raw.len());
        for c in raw.trim().nfkc() {
            if self.separators.contains(&c)
                || (!c.is_control() && c.is_whitespace())
                || is_dash(c)
                || is_invisible(c)
            {
                continue;
            }
            if c.is_control() || (c.is_numeric() && !c.is_ascii_digit()) {
                return false;
            }
            if self.preserve_case {
                upper.push(c);
            } else {
                upper.extend(c.to_uppercase());
            }
        }
        out.extend(upper.nfc());
        true
    }
}

/// Dashes other than `-` (hyphens, the minus sign, figure and em dashes, small and full-width
/// hyphen-minus), all separators as `-` is.
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}'
    )
}

/// Characters that show nothing (Unicode's default-ignorable code points that survive NFKC):
/// written by editors and copy-paste, never part of an identifier.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// One character written over a whole identifier (`xxxxxxxxxxxxxxxxx`, `000000000000000`) is how
/// systems write "no identifier" (PMSI when chaining failed): never a person, or all the rows
/// without one would be delivered as one person. A digit must fill a whole identifier's width:
/// sequential ids (OMOP's `person_id`) include 11111 and 999999, who are persons.
fn is_placeholder(normal: &str) -> bool {
    let b = normal.as_bytes();
    let least = match b.first() {
        Some(c) if c.is_ascii_digit() => PLACEHOLDER_MIN_DIGITS,
        _ => PLACEHOLDER_MIN_LEN,
    };
    b.len() >= least && b.iter().all(|&c| c == b[0])
}

/// Shorter values of one letter or sign may be real codes of small systems.
const PLACEHOLDER_MIN_LEN: usize = 5;
/// A digit repeated this many times is past any sequential id.
const PLACEHOLDER_MIN_DIGITS: usize = 10;

/// Whether `raw` is only ASCII digits and capital letters, which normalisation leaves as they are (no
/// separator is alphanumeric). Most identifiers in an extract are: one branch-free pass, no rewriting.
#[inline]
fn is_already_normal(raw: &str) -> bool {
    debug_assert!(
        DEFAULT_SEPARATORS
            .iter()
            .all(|c| !c.is_ascii_alphanumeric())
    );
    raw.bytes().fold(true, |normal, b| {
        normal & (b.wrapping_sub(b'0') < 10 || b.wrapping_sub(b'A') < 26)
    })
}

/// ASCII letters and digits only: nothing to remove or fold when case is kept.
fn is_plain_ascii(raw: &str) -> bool {
    raw.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks a normalised NIR: 15 characters, the control key matching the 13-character body.
pub fn nir_is_valid(nir: &str) -> bool {
    let Ok(b) = <&[u8; 15]>::try_from(nir.as_bytes()) else {
        return false;
    };
    // Corsica: department 2A counts as 19 and 2B as 18 for the control key.
    let mut digits = [b'0'; 16];
    digits[1..].copy_from_slice(b);
    match &b[5..7] {
        b"2A" => digits[6..8].copy_from_slice(b"19"),
        b"2B" => digits[6..8].copy_from_slice(b"18"),
        _ => {}
    }
    // Read as two groups of eight digits ("0" + the first 7, then the other 8), each at once: the
    // per-value check is a large share of the pseudonym kernel.
    let (Some(high), Some(low)) = (
        eight_digits(digits[..8].try_into().expect("8 bytes")),
        eight_digits(digits[8..].try_into().expect("8 bytes")),
    ) else {
        return false;
    };
    // The body is the first 13 digits (the key the last 2): high · 10^6 + low / 100.
    let body = high * 1_000_000 + low / 100;
    low % 100 == 97 - body % 97
}

/// The number eight ASCII digits write, or `None` when one is not a digit. All eight at once in a
/// 64-bit word (SWAR): pairs, then fours, then the eight are combined by three multiplications.
fn eight_digits(text: [u8; 8]) -> Option<u64> {
    let word = u64::from_le_bytes(text);
    // Digits are the bytes 0x30–0x39: high nibble 3, and still 3 once 6 is added (0x3A–0x3F reach
    // 0x40). The addition carries into no other byte when every high nibble is 3.
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    if word & HIGH != THREES || word.wrapping_add(0x0606_0606_0606_0606) & HIGH != THREES {
        return None;
    }
    let values = word - THREES;
    // Little-endian: the first digit is the lowest byte.
    let pairs = (values * 10 + (values >> 8)) & 0x00ff_00ff_00ff_00ff;
    let fours = (pairs * 100 + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    Some((fours * 10_000 + (fours >> 32)) & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts are normalised each by its rule and joined so that no two tuples meet; a missing or
    /// invalid part leaves no person.
    #[test]
    fn composite_parts_join_into_one_person_or_none() {
        let nir = IdentifierRule::new(IdentifierKind::Any).preserving_case();
        let rank = IdentifierRule::new(IdentifierKind::Pattern(
            compile_pattern("[0-9]{1,3}").unwrap(),
        ));
        let rules = [nir, rank];
        let mut normal = String::new();
        let mut join = |a: Option<&str>, b: Option<&str>| join_parts(&rules, &[a, b], &mut normal);
        assert_eq!(
            join(Some(" aB 12 "), Some("1")).as_deref(),
            Some("aB12\u{1f}1")
        );
        assert_ne!(join(Some("aB1"), Some("21")), join(Some("aB12"), Some("1")));
        assert_ne!(join(Some("ab12"), Some("1")), join(Some("aB12"), Some("1")));
        assert_eq!(join(Some("aB12"), None), None);
        assert_eq!(join(Some("aB12"), Some("x")), None);
        assert_eq!(join(Some("xxxxxxx"), Some("1")), None);
        let joined = IdentifierRule::new(IdentifierKind::Joined);
        assert_eq!(
            check(&joined, Some("aB12\u{1f}1")),
            (Checked::Valid, "aB12\u{1f}1".into())
        );
    }

    fn check(rule: &IdentifierRule, raw: Option<&str>) -> (Checked, String) {
        let mut out = String::new();
        let c = rule.check_into(raw, &mut out);
        (c, out)
    }

    /// PMSI writes `xxxxxxxxxxxxxxxxx` where chaining failed; other systems zeros or nines: one
    /// character over the whole value is missing, whatever its case, separators or kind, while
    /// values of four such characters (a small system's codes) and near-placeholders stay.
    #[test]
    fn one_character_over_a_whole_identifier_is_missing() {
        let rules = [
            IdentifierRule::new(IdentifierKind::Any),
            IdentifierRule::new(IdentifierKind::Any).preserving_case(),
            IdentifierRule::new(IdentifierKind::Nir),
        ];
        for rule in &rules {
            for placeholder in [
                "xxxxxxxxxxxxxxxxx",
                "XXXXX",
                "000 000 000 000 000",
                "9999999999999",
            ] {
                assert_eq!(
                    check(rule, Some(placeholder)).0,
                    Checked::Missing,
                    "{placeholder}"
                );
            }
        }
        let any = &rules[0];
        for real in [
            "xxxx",
            "xxxxxxxxxxxxxxxxy",
            "1000000000000000",
            "11111",
            "999999999",
        ] {
            assert_eq!(check(any, Some(real)).0, Checked::Valid, "{real}");
        }
        // The test is on the normal form: case folded, unless it is kept.
        assert_eq!(check(any, Some("aAaAa")).0, Checked::Missing);
        assert_eq!(check(&rules[1], Some("aAaAa")).0, Checked::Valid);
    }

    /// Control keys computed independently of this code (Python, 97 − body mod 97):
    /// 1850578006084 mod 97 = 6 → key 91; 2550814168025 mod 97 = 59 → key 38;
    /// Corsica 2A as 19: 1600119123456 mod 97 = 67 → key 30; 2B as 18: 2700518234567 mod 97 = 77 → key 20.
    /// SNDS pseudo-NIRs differ by case alone: a case-preserving rule keeps three apart, the
    /// default merges them; every other step of the canonical form (separators, full-width
    /// characters, invisible ones) still applies.
    #[test]
    fn a_case_preserving_rule_keeps_identifiers_that_differ_by_case_apart() {
        let kept = IdentifierRule::new(IdentifierKind::Any).preserving_case();
        let folded = IdentifierRule::new(IdentifierKind::Any);
        let spellings = ["aB3x", "AB3X", "ab3x"];
        let normal = |rule: &IdentifierRule| -> Vec<String> {
            spellings.iter().map(|s| check(rule, Some(s)).1).collect()
        };
        assert_eq!(normal(&kept), ["aB3x", "AB3X", "ab3x"]);
        assert_eq!(normal(&folded), ["AB3X", "AB3X", "AB3X"]);
        assert_eq!(check(&kept, Some(" aB 3-x ")).1, "aB3x");
        assert_eq!(
            check(&kept, Some("ａB3x\u{200B}")),
            (Checked::Valid, "aB3x".to_string())
        );
    }

    #[test]
    fn known_nirs_validate_and_altered_ones_fail() {
        let rule = IdentifierRule::new(IdentifierKind::Nir);
        for (raw, normal) in [
            ("1 85 05 78 006 084 91", "185057800608491"),
            ("255081416802538", "255081416802538"),
            ("1 60 01 2A 123 456 30", "160012A12345630"),
            ("2.70.05.2b.234.567.20", "270052B23456720"),
        ] {
            assert_eq!(
                check(&rule, Some(raw)),
                (Checked::Valid, normal.to_string()),
                "{raw}"
            );
        }
        for raw in [
            "185057800608492",
            "185057800608419",
            "1850578006084",
            "18505780060849X",
            "160012C12345630",
            "160012A12345631",
        ] {
            assert_eq!(check(&rule, Some(raw)).0, Checked::Invalid, "{raw}");
        }
        assert_eq!(check(&rule, None).0, Checked::Missing);
        assert_eq!(check(&rule, Some("  - ")).0, Checked::Missing);
    }

    /// Mod-97 keys catch every single-digit substitution: alter each digit of a valid NIR in turn.
    #[test]
    fn every_single_digit_change_is_detected() {
        let valid = "185057800608491";
        assert!(nir_is_valid(valid));
        for pos in 0..15 {
            for d in b'0'..=b'9' {
                let mut v = valid.as_bytes().to_vec();
                if v[pos] == d {
                    continue;
                }
                v[pos] = d;
                assert!(
                    !nir_is_valid(std::str::from_utf8(&v).unwrap()),
                    "pos {pos} digit {d}"
                );
            }
        }
    }

    /// The check agrees with a plain computation (the 13-digit body parsed as a number, its key
    /// 97 − body mod 97) on random bodies, with their right key and with others, and on texts with
    /// a character that is not a digit at each place.
    #[test]
    fn nir_checks_agree_with_a_plain_computation() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(97);
        let plain = |nir: &str| -> bool {
            let b = nir.as_bytes();
            if b.len() != 15 {
                return false;
            }
            let body = match &nir[5..7] {
                "2A" => format!("{}19{}", &nir[..5], &nir[7..13]),
                "2B" => format!("{}18{}", &nir[..5], &nir[7..13]),
                _ => nir[..13].to_string(),
            };
            if !body
                .bytes()
                .chain(b[13..].iter().copied())
                .all(|c| c.is_ascii_digit())
            {
                return false;
            }
            let body: u64 = body.parse().unwrap();
            nir[13..].parse::<u64>().unwrap() == 97 - body % 97
        };
        let mut valid = 0;
        for i in 0..20_000 {
            let body = rng.random_range(0..10_000_000_000_000u64);
            let mut nir = format!("{body:013}");
            if i % 10 == 0 {
                nir.replace_range(5..7, ["2A", "2B"][i % 20 / 10]);
            }
            let corsica = match &nir[5..7] {
                "2A" => 19,
                "2B" => 18,
                _ => nir[5..7].parse::<u64>().unwrap(),
            };
            let numeric = body - (body / 1_000_000 % 100) * 1_000_000 + corsica * 1_000_000;
            let key = match i % 3 {
                0 => 97 - numeric % 97,
                _ => rng.random_range(0..100),
            };
            nir.push_str(&format!("{key:02}"));
            if i % 7 == 0 {
                let at = rng.random_range(0..15);
                let odd = [b'/', b':', b' ', b'A'][rng.random_range(0..4)];
                let mut bytes = nir.into_bytes();
                bytes[at] = odd;
                nir = String::from_utf8(bytes).unwrap();
            }
            assert_eq!(nir_is_valid(&nir), plain(&nir), "{nir}");
            valid += usize::from(plain(&nir));
        }
        assert!(valid > 5_000, "{valid} valid");
    }

    #[test]
    fn patterns_match_whole_values_with_ascii_classes() {
        let rule = IdentifierRule::new(IdentifierKind::Pattern(compile_pattern(r"\d{8}").unwrap()));
        assert_eq!(check(&rule, Some("12345678")).0, Checked::Valid);
        // Unanchored, `\d{8}` would accept a value that merely contains eight digits.
        for raw in ["X12345678", "123456789", "12345678X"] {
            assert_eq!(check(&rule, Some(raw)).0, Checked::Invalid, "{raw}");
        }
        // An Arabic-Indic digit is not an ASCII `\d` (and is refused before the pattern anyway);
        // `(?u)` asks for Unicode classes.
        let word = IdentifierRule::new(IdentifierKind::Pattern(compile_pattern(r"\w+").unwrap()));
        assert_eq!(check(&word, Some("ÉCOLE")).0, Checked::Invalid);
        let unicode = IdentifierRule::new(IdentifierKind::Pattern(
            compile_pattern(r"(?u)\w+").unwrap(),
        ));
        assert_eq!(
            check(&unicode, Some("école")),
            (Checked::Valid, "ÉCOLE".into())
        );
        assert!(compile_pattern("([0-9").is_err());
    }

    /// Spellings of one identifier as extracts, opt-out lists and other holders write it: spaces
    /// of every kind, dashes, invisible and bidirectional characters, full-width digits, lower
    /// case, decomposed accents. Every spelling has the plain one's canonical form; spellings with
    /// a control character or another script's digits are refused.
    #[test]
    fn every_spelling_of_an_identifier_has_one_canonical_form() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(28);
        let nir = IdentifierRule::new(IdentifierKind::Nir);
        let any = IdentifierRule::new(IdentifierKind::Any);
        let gaps = [
            " ", "\t", "-", ".", "/", "\u{A0}", "\u{202F}", "\u{3000}", "\u{2010}", "\u{2212}",
            "\u{200B}", "\u{200E}", "\u{200F}", "\u{2066}", "\u{2069}", "\u{202E}", "\u{FEFF}",
            "\u{AD}", "\u{2060}",
        ];
        let spell = |rng: &mut rand::rngs::ChaCha8Rng, plain: &str| -> String {
            let mut out = String::new();
            for c in plain.chars() {
                if rng.random_range(0..3) == 0 {
                    out.push_str(gaps[rng.random_range(0..gaps.len())]);
                }
                match (c, rng.random_range(0..3)) {
                    // Full-width digits and letters.
                    ('0'..='9' | 'A'..='Z', 0) => {
                        out.push(char::from_u32(c as u32 - 0x20 + 0xFF00).unwrap())
                    }
                    ('A'..='Z', 1) => out.push(c.to_ascii_lowercase()),
                    // É and Ü decomposed into a letter and its combining accent.
                    ('É', 1) => out.push_str("E\u{301}"),
                    ('Ü', 1) => out.push_str("u\u{308}"),
                    _ => out.push(c),
                }
            }
            out
        };
        for plain in ["185057800608491", "160012A12345630", "270052B23456720"] {
            for _ in 0..300 {
                let spelling = spell(&mut rng, plain);
                assert_eq!(
                    check(&nir, Some(&spelling)),
                    (Checked::Valid, plain.to_string()),
                    "{spelling:?}"
                );
            }
        }
        for plain in ["ZOÉMÜLLER42", "DOSSIER-É-9".replace('-', "").as_str()] {
            for _ in 0..300 {
                let spelling = spell(&mut rng, plain);
                assert_eq!(
                    check(&any, Some(&spelling)),
                    (Checked::Valid, plain.to_string()),
                    "{spelling:?}"
                );
            }
        }
        // Refused, never a second pseudonym: another script's digits, a control character.
        for raw in [
            "\u{661}85057800608491",
            "1850578006084\u{96F}1",
            "18505780\n0608491",
            "185057800608491\u{0}",
            "ZOÉ\u{85}MÜLLER",
        ] {
            assert_eq!(check(&nir, Some(raw)).0, Checked::Invalid, "{raw:?}");
            assert_eq!(check(&any, Some(raw)).0, Checked::Invalid, "{raw:?}");
        }
    }

    #[test]
    fn pattern_and_case_folding() {
        let rule = IdentifierRule::new(IdentifierKind::Pattern(
            compile_pattern("P[0-9]{6}").unwrap(),
        ));
        assert_eq!(
            check(&rule, Some(" p-012345 ")),
            (Checked::Valid, "P012345".into())
        );
        assert_eq!(check(&rule, Some("Q012345")).0, Checked::Invalid);
        let any = IdentifierRule::new(IdentifierKind::Any);
        assert_eq!(
            check(&any, Some("Zoé Müller")),
            (Checked::Valid, "ZOÉMÜLLER".into())
        );
    }

    #[test]
    fn pseudonyms_are_taken_as_written() {
        let rule = IdentifierRule::new(IdentifierKind::Pseudonym);
        // base64url pseudonyms differing only in case are different persons.
        assert_eq!(
            check(&rule, Some("aB-_9")),
            (Checked::Valid, "aB-_9".into())
        );
        assert_eq!(
            check(&rule, Some("Ab-_9")),
            (Checked::Valid, "Ab-_9".into())
        );
        assert_eq!(check(&rule, Some("ab 12")).0, Checked::Invalid);
        assert_eq!(check(&rule, Some("")).0, Checked::Missing);
        assert_eq!(check(&rule, None).0, Checked::Missing);
    }
}
