//! The opt-out list (EHDS Art. 71): the people who refused secondary use, one identifier per line.
//! Their rows leave every dataset of the run.
//!
//! The list is read as people keep it: a UTF-8 byte-order mark, CRLF line ends, spaces around an
//! entry, blank lines and `#` comments (on a line of their own or after an entry) are all fine. An
//! entry that is not a valid identifier under the list's rule stops the run, naming the line (never
//! the entry), unless the permit accepts invalid entries: a refusal that silently fails to match
//! would deliver the person who refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use foldhash::{HashMap, HashMapExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::kernels::identifier::{Checked, IdentifierRule, join_parts};
use crate::permit::OptOutInvalid;

/// Normalised identifiers of the people who opted out, each with whether a row matched it.
pub struct OptOut {
    pub file: PathBuf,
    listed: HashMap<String, AtomicBool>,
    /// Entries read (lines that are not blank or a comment).
    pub entries: usize,
    /// Entries that are not valid identifiers (kept only when the permit accepts them).
    pub invalid_entries: usize,
}

/// What the report says of the list.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct OptOutReport {
    pub entries_read: usize,
    pub entries_valid: usize,
    pub entries_invalid: usize,
    /// Entries that matched a row of the run's cohort in at least one dataset.
    pub entries_matched: usize,
}

/// Normalises one entry into `normal`: one identifier, or the parts of a composite person joined
/// as the engine joins a row's (`identifier::join_parts`). Left empty when a part is missing.
fn check_entry(
    entry: &str,
    rules: &[IdentifierRule],
    separator: char,
    normal: &mut String,
) -> Checked {
    if let [rule] = rules {
        return rule.check_into(Some(entry), normal);
    }
    let parts: Vec<Option<&str>> = entry.split(separator).map(|p| Some(p.trim())).collect();
    if parts.len() != rules.len() {
        normal.clear();
        return Checked::Invalid;
    }
    let mut part = String::new();
    match join_parts(rules, &parts, &mut part) {
        Some(joined) => {
            *normal = joined;
            Checked::Valid
        }
        None => {
            normal.clear();
            Checked::Invalid
        }
    }
}

impl OptOut {
    /// Checks the list read from `file`; every entry is normalised by `rules`: one rule for
    /// an identifier, or one per part of a composite person, the parts separated by `separator`.
    pub fn parse(
        bytes: &[u8],
        file: &Path,
        rules: &[IdentifierRule],
        separator: char,
        on_invalid: OptOutInvalid,
    ) -> Result<OptOut> {
        if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
            return Err(Error::input(
                file,
                "line 1",
                "the opt-out list is UTF-16 (it starts with a UTF-16 byte-order mark); convert it to UTF-8",
            ));
        }
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut out = OptOut {
            file: file.into(),
            listed: HashMap::new(),
            entries: 0,
            invalid_entries: 0,
        };
        let mut normal = String::new();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let at = || format!("line {}", i + 1);
            let line = std::str::from_utf8(line).map_err(|_| {
                Error::input(
                    file,
                    at(),
                    "the opt-out list is not UTF-8 (one identifier per line)",
                )
            })?;
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            out.entries += 1;
            match check_entry(entry, rules, separator, &mut normal) {
                Checked::Valid => {}
                Checked::Missing | Checked::Invalid => match on_invalid {
                    OptOutInvalid::Fail => {
                        return Err(Error::input(
                            file,
                            at(),
                            "opt-out entry is not a valid identifier under the list's rule \
                             (or not one part per column of a composite person; value not shown): a person who refused would not be recognised; fix \
                             the entry, or set `on_invalid = \"keep\"` under [opt_out] to keep \
                             invalid entries as written",
                        ));
                    }
                    // Kept as written (normalised): it still removes the same spelling in an extract.
                    OptOutInvalid::Keep => out.invalid_entries += 1,
                },
            }
            if normal.is_empty() {
                normal.push_str(entry);
            }
            out.listed.insert(normal.clone(), AtomicBool::new(false));
        }
        Ok(out)
    }

    /// Whether `normal` (an identifier normalised by the list's rule) is listed; a match is
    /// remembered for the report.
    pub fn contains(&self, normal: &str) -> bool {
        match self.listed.get(normal) {
            Some(matched) => {
                matched.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Distinct identifiers listed.
    pub fn len(&self) -> usize {
        self.listed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    pub fn report(&self) -> OptOutReport {
        OptOutReport {
            entries_read: self.entries,
            entries_valid: self.entries - self.invalid_entries,
            entries_invalid: self.invalid_entries,
            entries_matched: self
                .listed
                .values()
                .filter(|m| m.load(Ordering::Relaxed))
                .count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::identifier::IdentifierKind;

    fn parse(text: &[u8], on_invalid: OptOutInvalid) -> Result<OptOut> {
        let rule = IdentifierRule::new(IdentifierKind::Nir);
        OptOut::parse(text, Path::new("opt_out.txt"), &[rule], ';', on_invalid)
    }

    /// 185057800608491 and 255081416802538 are valid NIRs (keys computed independently in
    /// `identifier`'s tests).
    #[test]
    fn every_way_people_keep_a_list_finds_the_same_entries() {
        for text in [
            &b"185057800608491\n255081416802538\n"[..],
            b"\xEF\xBB\xBF185057800608491\r\n255081416802538\r\n",
            b"# refusals\n  185057800608491  # refused 2024-03-01\n\n\t255081416802538",
            b"185057800608491 #x\r\n\r\n255081416802538#y\n# end\n",
            b"1 85 05 78 006 084 91\n2.55.08.14.168.025.38\n",
        ] {
            let list = parse(text, OptOutInvalid::Fail).unwrap();
            assert_eq!((list.entries, list.len()), (2, 2), "{text:?}");
            assert!(list.contains("185057800608491") && list.contains("255081416802538"));
            assert!(!list.contains("175057800608491"));
        }
    }

    #[test]
    fn an_invalid_entry_stops_the_run_naming_its_line_never_its_value() {
        let text = b"185057800608491\n# c\n185057800608492\n";
        let e = parse(text, OptOutInvalid::Fail).err().unwrap().to_string();
        assert!(e.contains("opt_out.txt") && e.contains("line 3"), "{e}");
        assert!(!e.contains("185057800608492"), "{e}");
        let e = parse(b"\xE9\n", OptOutInvalid::Fail)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 1") && e.contains("UTF-8"), "{e}");
        let e = parse(b"\xFF\xFE1\x00", OptOutInvalid::Fail)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("UTF-16"), "{e}");
    }

    /// Entries of a composite person give each part, separated, each normalised by its rule; an
    /// entry without every part names nobody and stops the run.
    #[test]
    fn composite_entries_name_one_person_by_all_their_parts() {
        let rules = [
            IdentifierRule::new(IdentifierKind::Any).preserving_case(),
            IdentifierRule::new(IdentifierKind::Any),
        ];
        let file = Path::new("opt_out.txt");
        let text = b"aB 12 ; 2\nCd34;1 # twin 1 only\n";
        let list = OptOut::parse(text, file, &rules, ';', OptOutInvalid::Fail).unwrap();
        assert_eq!((list.entries, list.len()), (2, 2));
        assert!(list.contains("aB12\u{1f}2") && list.contains("Cd34\u{1f}1"));
        assert!(!list.contains("aB12\u{1f}1") && !list.contains("AB12\u{1f}2"));
        for bad in [&b"aB12\n"[..], b"aB12;2;3\n", b"aB12;\n"] {
            let e = OptOut::parse(bad, file, &rules, ';', OptOutInvalid::Fail);
            let e = e.err().unwrap().to_string();
            assert!(e.contains("line 1") && !e.contains("aB12"), "{e}");
        }
    }

    #[test]
    fn accepted_invalid_entries_are_counted_and_still_match_their_spelling() {
        let text = b"185057800608491\nABC-12\n";
        let list = parse(text, OptOutInvalid::Keep).unwrap();
        assert_eq!((list.entries, list.invalid_entries), (2, 1));
        assert!(list.contains("185057800608491"));
        let report = list.report();
        assert_eq!(
            report,
            OptOutReport {
                entries_read: 2,
                entries_valid: 1,
                entries_invalid: 1,
                entries_matched: 1
            }
        );
    }
}
