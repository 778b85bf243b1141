//! Generalisation hierarchies: for each quasi-identifier, the ladder of ever coarser values its
//! generalisation may climb (level 0 is the value itself, the last level is `*`).
//!
//! A hierarchy comes from an ARX-format CSV file (one row per value, one column per level) or from a
//! rule in the permit (date ladders, age bands, numeric intervals and ranges, string prefixes and masks,
//! ICD-10 and ATC codes, French départements), applied to the values the extract actually holds. Either
//! way it is stored the same: integer codes per level and, for every code, the code one level up, so
//! that the lattice search generalises by table lookups. A hierarchy must be a tree (a value at one
//! level has one parent); a rule or file that is not is refused with the offending level named.

use std::path::Path;

use foldhash::{HashMap, HashMapExt};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// Label of every code, per level.
    labels: Vec<Vec<String>>,
    /// `up[l][c]`: the code at level `l + 1` of code `c` at level `l`.
    up: Vec<Vec<u32>>,
    /// Level-0 code of each level-0 text.
    index: HashMap<String, u32>,
}

impl Hierarchy {
    /// Builds a hierarchy from each level-0 value's labels at levels 1.. (all paths the same length).
    /// `source` names the hierarchy in errors.
    pub fn from_paths(
        paths: impl IntoIterator<Item = (String, Vec<String>)>,
        source: &str,
    ) -> Result<Hierarchy> {
        let mut labels: Vec<Vec<String>> = vec![Vec::new()];
        let mut codes: Vec<HashMap<String, u32>> = vec![HashMap::new()];
        let mut up: Vec<Vec<u32>> = Vec::new();
        let mut height = None;
        for (value, path) in paths {
            let h = *height.get_or_insert(path.len() + 1);
            if path.len() + 1 != h {
                return Err(Error::Hierarchy {
                    source_name: source.into(),
                    message: format!(
                        "rows have different numbers of levels ({} and {})",
                        h,
                        path.len() + 1
                    ),
                });
            }
            if labels.len() < h {
                labels.resize_with(h, Vec::new);
                codes.resize_with(h, HashMap::new);
                up.resize_with(h - 1, Vec::new);
            }
            if codes[0].contains_key(&value) {
                return Err(Error::Hierarchy {
                    source_name: source.into(),
                    message: "a level-0 value is listed twice".into(),
                });
            }
            let mut below = intern(&mut codes[0], &mut labels[0], value);
            for (l, label) in path.into_iter().enumerate() {
                let code = intern(&mut codes[l + 1], &mut labels[l + 1], label);
                let parents = &mut up[l];
                if parents.len() <= below as usize {
                    parents.resize(below as usize + 1, u32::MAX);
                }
                match parents[below as usize] {
                    u32::MAX => parents[below as usize] = code,
                    p if p != code => {
                        return Err(Error::Hierarchy {
                            source_name: source.into(),
                            message: format!(
                                "not a tree: a value at level {l} has two parents at level {} (`{}` and `{}`)",
                                l + 1,
                                labels[l + 1][p as usize],
                                labels[l + 1][code as usize]
                            ),
                        });
                    }
                    _ => {}
                }
                below = code;
            }
        }
        let index = codes.swap_remove(0);
        Ok(Hierarchy { labels, up, index })
    }

    /// An ARX hierarchy CSV (no header, one row per value, level 0 first) from its text; `path`
    /// names the file in messages.
    pub fn parse_csv(text: &str, delimiter: char, path: &Path) -> Result<Hierarchy> {
        let mut paths = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split(delimiter).map(str::to_string);
            let value = fields.next().expect("split yields one field");
            paths.push((n + 1, value, fields.collect::<Vec<_>>()));
        }
        if paths.is_empty() {
            return Err(Error::input(path, "file", "hierarchy file has no rows"));
        }
        let name = path.display().to_string();
        let widths: Vec<usize> = paths.iter().map(|(_, _, p)| p.len()).collect();
        if widths.iter().all(|&w| w == 0) {
            let other = [';', ',', '\t', '|']
                .into_iter()
                .find(|&c| c != delimiter && paths.iter().all(|(_, v, _)| v.contains(c)));
            let hint = match other {
                Some(c) => format!(
                    "; every row holds {:?}: is hierarchy_delimiter `{delimiter}` right?",
                    c
                ),
                None => String::new(),
            };
            return Err(Error::input(
                path,
                "line 1",
                format!(
                    "every row is one field: a hierarchy lists each value's levels above it (the \
                     last usually `*`), separated by `{delimiter}`{hint}"
                ),
            ));
        }
        // Empty lines are skipped: a row's line number is not its position in `paths`.
        if let Some((line, _, levels)) = paths.iter().find(|(_, _, p)| p.len() != widths[0]) {
            return Err(Error::input(
                path,
                format!("line {line}"),
                format!(
                    "row has {} levels where the first row has {} (every row lists every level)",
                    levels.len() + 1,
                    widths[0] + 1
                ),
            ));
        }
        Hierarchy::from_paths(paths.into_iter().map(|(_, v, p)| (v, p)), &name)
    }

    /// Number of levels, level 0 included.
    pub fn height(&self) -> usize {
        self.labels.len()
    }

    /// Number of distinct values at a level.
    pub fn cardinality(&self, level: usize) -> usize {
        self.labels[level].len()
    }

    pub fn code(&self, value: &str) -> Option<u32> {
        self.index.get(value).copied()
    }

    pub fn label(&self, level: usize, code: u32) -> &str {
        &self.labels[level][code as usize]
    }

    /// The code one level up.
    pub fn parent(&self, level: usize, code: u32) -> u32 {
        self.up[level][code as usize]
    }

    /// The code at `level` of a level-0 code.
    pub fn generalise(&self, code0: u32, level: usize) -> u32 {
        (0..level).fold(code0, |c, l| self.up[l][c as usize])
    }

    /// For every level-0 code, its code at `level`.
    pub fn level_map(&self, level: usize) -> Vec<u32> {
        (0..self.cardinality(0) as u32)
            .map(|c| self.generalise(c, level))
            .collect()
    }
}

fn intern(codes: &mut HashMap<String, u32>, labels: &mut Vec<String>, label: String) -> u32 {
    if let Some(&c) = codes.get(&label) {
        return c;
    }
    let c = labels.len() as u32;
    labels.push(label.clone());
    codes.insert(label, c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file read with the wrong delimiter is one field a row: refused, with the delimiter the
    /// rows hold named (ARX writes `;`), never a value.
    #[test]
    fn a_hierarchy_read_with_the_wrong_delimiter_says_so() {
        let text = "75011;75;*\n13001;13;*\n";
        let path = Path::new("postcode.csv");
        let e = Hierarchy::parse_csv(text, ',', path)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is hierarchy_delimiter `,` right?"), "{e}");
        assert!(e.contains("';'") && !e.contains("75011"), "{e}");
        let h = Hierarchy::parse_csv(text, ';', path).unwrap();
        assert_eq!(h.height(), 3);
    }

    #[test]
    fn paths_make_a_tree_with_codes_per_level() {
        let h = Hierarchy::from_paths(
            [
                ("75011".to_string(), vec!["75".to_string(), "*".to_string()]),
                ("75012".into(), vec!["75".into(), "*".into()]),
                ("13001".into(), vec!["13".into(), "*".into()]),
            ],
            "test",
        )
        .unwrap();
        assert_eq!(h.height(), 3);
        assert_eq!(
            [h.cardinality(0), h.cardinality(1), h.cardinality(2)],
            [3, 2, 1]
        );
        let c = h.code("75012").unwrap();
        assert_eq!(h.label(1, h.generalise(c, 1)), "75");
        assert_eq!(h.label(2, h.generalise(c, 2)), "*");
        assert_eq!(h.level_map(1), vec![0, 0, 1]);
        // A value with two parents is not a tree.
        let err = Hierarchy::from_paths(
            [
                ("a".to_string(), vec!["x".to_string(), "1".to_string()]),
                ("b".into(), vec!["x".into(), "2".into()]),
            ],
            "h.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("h.csv") && err.contains("two parents"),
            "{err}"
        );
    }
}
