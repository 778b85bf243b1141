//! The research subset: the rows of a dataset that are delivered when the whole dataset is the
//! population an attacker may know (ARX's `DataSubset`). δ-presence bounds, class by class, the
//! share of the population's rows that are delivered; k-map without an estimate counts a delivered
//! class's rows in the population.
//!
//! The subset is a CSV file whose header names delivered columns of the dataset and whose rows are
//! rows of it, values as they stand before generalisation. Rows are matched in the order the
//! dataset is read: a dataset row is in the subset when a subset row with its values is not yet
//! matched. Both passes match afresh, in the same order, and so agree.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};

/// The subset's rows, as a multiset of value tuples.
#[derive(Debug, Clone, PartialEq)]
pub struct ResearchSubset {
    /// The delivered columns the file names, in its order.
    pub columns: Vec<String>,
    rows: HashMap<String, u32>,
    /// Rows in the file.
    pub len: u64,
}

/// Joins a row's fields into one map key (a separator no text field of a CSV line holds).
const FIELD_SEPARATOR: char = '\u{1f}';

impl ResearchSubset {
    /// Parses the file's text (`path` names it in messages; no value is ever quoted in one).
    /// Fields are split on `delimiter`; quoted fields are refused rather than misread.
    pub fn parse(text: &str, delimiter: char, path: &Path) -> Result<ResearchSubset> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(n, l)| (n + 1, l.strip_suffix('\r').unwrap_or(l)))
            .filter(|(_, l)| !l.is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(Error::input(
                path,
                "line 1",
                "the research subset file is empty",
            ));
        };
        let columns: Vec<String> = header.split(delimiter).map(str::to_string).collect();
        let mut rows: HashMap<String, u32> = HashMap::new();
        let mut len = 0;
        for (n, line) in lines {
            if line.contains('"') {
                return Err(Error::input(
                    path,
                    format!("line {n}"),
                    "holds a quote: quoted fields are not read in a research subset file (write \
                     the values unquoted, with a delimiter no value holds)",
                ));
            }
            let fields: Vec<&str> = line.split(delimiter).collect();
            if fields.len() != columns.len() {
                return Err(Error::input(
                    path,
                    format!("line {n}"),
                    format!(
                        "has {} fields where the header names {} columns",
                        fields.len(),
                        columns.len()
                    ),
                ));
            }
            *rows
                .entry(fields.join(&FIELD_SEPARATOR.to_string()))
                .or_default() += 1;
            len += 1;
        }
        Ok(ResearchSubset { columns, rows, len })
    }

    /// A fresh matcher: every subset row unmatched.
    pub fn matcher(&self) -> Matcher {
        Matcher {
            columns: self.columns.clone(),
            unmatched: self.rows.clone(),
        }
    }
}

/// Matches a dataset's rows, in the order read, against the subset's.
#[derive(Debug)]
pub struct Matcher {
    columns: Vec<String>,
    unmatched: HashMap<String, u32>,
}

impl Matcher {
    /// Whether each row of `df` is in the subset (taking the subset row it matches).
    pub fn members(&mut self, df: &DataFrame) -> PolarsResult<Vec<bool>> {
        let columns: Vec<Column> = self
            .columns
            .iter()
            .map(|name| df.column(name)?.cast(&DataType::String))
            .collect::<PolarsResult<_>>()?;
        let texts: Vec<&StringChunked> = columns
            .iter()
            .map(|c| c.str())
            .collect::<PolarsResult<_>>()?;
        let mut members = Vec::with_capacity(df.height());
        let mut key = String::new();
        for row in 0..df.height() {
            key.clear();
            for (i, text) in texts.iter().enumerate() {
                if i > 0 {
                    key.push(FIELD_SEPARATOR);
                }
                key.push_str(text.get(row).unwrap_or(""));
            }
            let member = match self.unmatched.get_mut(&key) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            };
            members.push(member);
        }
        Ok(members)
    }

    /// Subset rows no dataset row matched.
    pub fn unmatched(&self) -> u64 {
        self.unmatched.values().map(|&n| n as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_once_each_in_order() {
        let path = Path::new("subset.csv");
        let subset = ResearchSubset::parse("\u{feff}a;b\r\n1;x\n1;x\n2;y\n\n", ';', path).unwrap();
        assert_eq!(subset.columns, ["a", "b"]);
        assert_eq!(subset.len, 3);
        let df = df!("a" => [1, 1, 1, 2, 3], "b" => ["x", "x", "x", "y", "y"]).unwrap();
        let mut m = subset.matcher();
        assert_eq!(m.members(&df).unwrap(), [true, true, false, true, false]);
        assert_eq!(m.unmatched(), 0);
        // A second matcher starts afresh.
        let mut again = subset.matcher();
        assert_eq!(again.members(&df.slice(3, 2)).unwrap(), [true, false]);
        assert_eq!(again.unmatched(), 2);
    }

    #[test]
    fn malformed_files_are_refused_without_their_values() {
        let path = Path::new("subset.csv");
        let err = ResearchSubset::parse("a,b\n\"secret\",x\n", ',', path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("quote"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = ResearchSubset::parse("a,b\nsecret\n", ',', path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("1 fields"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(ResearchSubset::parse("", ',', path).is_err());
    }
}
