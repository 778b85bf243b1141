//! Value mapping from a dictionary file: local codes to standard codes, or to coarser labels.
//!
//! The dictionary is a UTF-8 CSV file with a header and two columns (`from`, `to`). A value missing
//! from it is, as the permit says, an error naming the column and the dictionary (never the value),
//! a null, or a fallback constant.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Dictionary {
    pub file: PathBuf,
    map: HashMap<String, String>,
}

/// What happens to a value the dictionary does not list.
#[derive(Debug, Clone, PartialEq)]
pub enum Unmapped {
    Fail,
    Null,
    Fallback(String),
}

impl Dictionary {
    /// The dictionary read from `file` (`bytes`): UTF-8 CSV `from,to` with a header line.
    pub fn parse(bytes: &[u8], file: &Path) -> Result<Dictionary> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            Error::input(
                file,
                "file",
                "the dictionary is not UTF-8 (a CSV `from,to` with a header line)",
            )
        })?;
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line
                .split(',')
                .map(|f| f.trim().trim_matches('"'))
                .collect();
            let [from, to] = fields[..] else {
                return Err(Error::input(
                    file,
                    format!("line {}", i + 1),
                    "a dictionary line has two fields: from,to",
                ));
            };
            if let Some(previous) = map.insert(from.to_string(), to.to_string())
                && previous != to
            {
                return Err(Error::input(
                    file,
                    format!("line {}", i + 1),
                    "this code is mapped twice, to different values",
                ));
            }
        }
        if map.is_empty() {
            return Err(Error::input(
                file,
                "file",
                "the dictionary has no entries (a header line, then from,to lines)",
            ));
        }
        Ok(Dictionary {
            file: file.into(),
            map,
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Maps every value; `Err(row)` names the first unmapped value's row under [`Unmapped::Fail`].
    /// Nulls stay null. The count is of unmapped values.
    pub fn apply<'a>(
        &'a self,
        values: &[Option<&str>],
        unmapped: &'a Unmapped,
    ) -> Result<(Vec<Option<&'a str>>, usize), usize> {
        let mut missing = 0;
        let mapped = values
            .iter()
            .enumerate()
            .map(|(row, v)| match v {
                None => Ok(None),
                Some(v) => match self.map.get(*v) {
                    Some(to) => Ok(Some(to.as_str())),
                    None => {
                        missing += 1;
                        match unmapped {
                            Unmapped::Fail => Err(row),
                            Unmapped::Null => Ok(None),
                            Unmapped::Fallback(f) => Ok(Some(f.as_str())),
                        }
                    }
                },
            })
            .collect::<Result<Vec<_>, usize>>()?;
        Ok((mapped, missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_with_each_unmapped_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("units.csv");
        std::fs::write(
            &file,
            "from,to\nU01,Cardiologie\nU02,Médecine générale\n\"U03\",Pédiatrie\n",
        )
        .unwrap();
        let d = Dictionary::parse(&std::fs::read(&file).unwrap(), &file).unwrap();
        assert_eq!(d.len(), 3);
        let values = [Some("U02"), None, Some("U03"), Some("U99"), Some("")];
        let (mapped, missing) = d.apply(&values, &Unmapped::Null).unwrap();
        assert_eq!(
            mapped,
            vec![
                Some("Médecine générale"),
                None,
                Some("Pédiatrie"),
                None,
                None
            ]
        );
        assert_eq!(missing, 2);
        let other = Unmapped::Fallback("Autre".into());
        let (mapped, _) = d.apply(&values, &other).unwrap();
        assert_eq!(mapped[3], Some("Autre"));
        assert_eq!(d.apply(&values, &Unmapped::Fail).unwrap_err(), 3);
    }

    #[test]
    fn bad_dictionaries_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.csv");
        std::fs::write(&file, "from,to\nA,1\nA,2\n").unwrap();
        assert!(
            Dictionary::parse(&std::fs::read(&file).unwrap(), &file)
                .unwrap_err()
                .to_string()
                .contains("line 3")
        );
        std::fs::write(&file, "from,to\nA,1,x\n").unwrap();
        assert!(
            Dictionary::parse(&std::fs::read(&file).unwrap(), &file)
                .unwrap_err()
                .to_string()
                .contains("line 2")
        );
        std::fs::write(&file, "from,to\n").unwrap();
        assert!(Dictionary::parse(&std::fs::read(&file).unwrap(), &file).is_err());
    }
}
