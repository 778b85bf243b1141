//! A dataset whose codes are a set-valued attribute of its persons (`set_valued`). Pass 1 gathers
//! each person's distinct codes while spilling the transformed rows; the search
//! ([`crate::privacy::set_valued`]) chooses how each code is released and which persons are
//! suppressed; pass 2 releases the spilled rows so; then the sets are counted again from the
//! written file, and the delivery is refused if any holds a rare combination.

use std::path::Path;
use std::time::Instant;

use foldhash::{HashMap, HashMapExt, HashSet};
use polars::prelude::*;

use super::{DatasetState, Timings};
use crate::error::{Error, Result};
use crate::plan::{DatasetPlan, Plan, SetValuedPlan};
use crate::privacy::set_valued::{self, CodeTree, Persons, Summary};

/// The classes of the dataset a set-valued attribute is counted within ((k, k^m)-anonymity): each
/// delivered person's class, numbered; the persons it does not deliver are one class apart.
pub struct Classes {
    of: HashMap<String, u32>,
    count: u32,
    dataset: String,
}

impl Classes {
    /// Reads the person and quasi-identifier columns of `dataset`'s written file. An error when a
    /// person is in two classes (the dataset is not one row per person).
    pub(super) fn read(
        dataset: &str,
        person: &str,
        quasi_identifiers: impl Iterator<Item = String>,
        path: &Path,
        batch_rows: usize,
    ) -> Result<Classes> {
        let names: Vec<String> = std::iter::once(person.to_string())
            .chain(quasi_identifiers)
            .collect();
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut of: HashMap<String, u32> = HashMap::new();
        let mut twice = false;
        crate::source::read_parquet_text(path, &names, batch_rows, |df| {
            let columns = crate::source::str_values(df.columns())?;
            let mut key = String::new();
            for row in 0..df.height() {
                let Some(person) = columns[0][row] else {
                    continue;
                };
                key.clear();
                for c in &columns[1..] {
                    key.push_str(c[row].unwrap_or("\u{0}"));
                    key.push('\u{1f}');
                }
                let next = ids.len() as u32;
                let class = *ids.entry(key.clone()).or_insert(next);
                twice |= *of.entry(person.to_string()).or_insert(class) != class;
            }
            Ok(())
        })?;
        if twice {
            return Err(Error::Privacy(format!(
                "dataset `{dataset}` delivers a person in two classes (values not shown): the \
                 sets counted within its classes need one row per person"
            )));
        }
        Ok(Classes {
            of,
            count: ids.len() as u32,
            dataset: dataset.into(),
        })
    }

    /// The class of each person (delivered form); those outside the dataset, one class of their own.
    fn of<'a>(&self, persons: impl Iterator<Item = &'a str>) -> Vec<u32> {
        persons
            .map(|p| self.of.get(p).copied().unwrap_or(self.count))
            .collect()
    }
}

/// The released form of every code, and the persons left out.
pub struct CodeRelease {
    labels: HashMap<String, String>,
    suppressed: HashSet<String>,
    /// Rows of the suppressed persons left out so far.
    rows_left_out: std::sync::atomic::AtomicU64,
    pub summary: Summary,
}

/// Each person's distinct codes, persons and codes numbered as first met.
#[derive(Default)]
struct Gathered {
    persons: HashMap<String, u32>,
    codes: HashMap<String, u32>,
    /// Where each code was first met (file and record), for an error about it.
    first_met: Vec<(std::path::PathBuf, String)>,
    sets: Vec<Vec<u32>>,
}

impl Gathered {
    fn add(&mut self, sv: &SetValuedPlan, t: &super::Transformed) -> Result<()> {
        let persons = t.df.column(&sv.person_output)?.str()?;
        let codes = t.df.column(&sv.output)?.str()?;
        for (row, (person, code)) in persons.iter().zip(codes.iter()).enumerate() {
            if let Some(code) = code
                && self.note(person, code)
            {
                self.first_met
                    .push((t.origin.file.clone(), t.origin.place(t.rows[row])));
            }
        }
        Ok(())
    }

    /// Notes that `person` (when there is one) holds `code`; whether the code is new.
    fn note(&mut self, person: Option<&str>, code: &str) -> bool {
        let next = self.codes.len() as u32;
        let code_id = *self.codes.entry(code.to_string()).or_insert(next);
        if let Some(person) = person {
            let next = self.persons.len() as u32;
            let p = *self.persons.entry(person.to_string()).or_insert(next);
            if p == next {
                self.sets.push(Vec::new());
            }
            self.sets[p as usize].push(code_id);
        }
        code_id == next
    }
}

/// Pass 1 and the search.
pub(super) fn choose(
    plan: &Plan,
    d: &DatasetPlan,
    sv: &SetValuedPlan,
    classes: Option<&Classes>,
    state: &mut DatasetState,
    spill: &Path,
    timings: &mut Timings,
) -> Result<CodeRelease> {
    let started = Instant::now();
    let mut gathered = Gathered::default();
    let (to_spill, batches) = std::sync::mpsc::sync_channel::<DataFrame>(1);
    std::thread::scope(|scope| {
        let spilling = scope.spawn(move || super::write_spill(spill, batches));
        let label = format!("{} (codes per person)", d.name);
        let read = super::read_transformed(plan, d, state, &label, |t| {
            gathered.add(sv, &t)?;
            // A closed channel means the spill writer failed; its error is reported below.
            to_spill
                .send(t.df)
                .map_err(|_| Error::Internal("the spill writer stopped".into()))
        });
        drop(to_spill);
        spilling
            .join()
            .map_err(|_| Error::Internal("the spill writer panicked".into()))??;
        read
    })?;
    timings.transform += started.elapsed().as_millis();

    // Codes numbered in text order, so that the same data gives the same tree and search.
    let mut codes: Vec<(String, u32)> = gathered.codes.into_iter().collect();
    codes.sort_unstable();
    let mut renumber = vec![0u32; codes.len()];
    let mut paths = Vec::with_capacity(codes.len());
    for (leaf, (code, first)) in codes.iter().enumerate() {
        renumber[*first as usize] = leaf as u32;
        paths.push(sv.source.path_of(code).map_err(|m| {
            let (file, place) = &gathered.first_met[*first as usize];
            Error::input(file, format!("{place}, column `{}`", sv.column), m)
        })?);
    }
    let tree = CodeTree::new(&paths).map_err(|m| Error::Hierarchy {
        source_name: format!("{}.{}", d.name, sv.column),
        message: m,
    })?;
    let mut persons: Vec<(String, u32)> = gathered.persons.into_iter().collect();
    persons.sort_unstable();
    let sets: Vec<Vec<u32>> = persons
        .iter()
        .map(|(_, p)| {
            let mut set: Vec<u32> = gathered.sets[*p as usize]
                .iter()
                .map(|&c| renumber[c as usize])
                .collect();
            set.sort_unstable();
            set.dedup();
            set
        })
        .collect();
    let search = Instant::now();
    let class_of = classes.map(|c| c.of(persons.iter().map(|(p, _)| p.as_str())));
    let input = Persons {
        codes: &sets,
        classes: class_of.as_deref(),
    };
    let chosen = set_valued::anonymise(&tree, &input, &sv.model).map_err(|e| {
        let within = classes.map_or(String::new(), |c| {
            format!(" within the classes of `{}`", c.dataset)
        });
        Error::Privacy(format!(
            "dataset `{}`: no release of `{}` meets k^m-anonymity (k = {}, m = {}){within} \
             within the suppression limit: even with every code released as `*`, {} persons \
             would be suppressed where {} may be; lower k or m, or raise \
             set_valued.suppression_limit",
            d.name, sv.column, sv.model.k, sv.model.m, e.persons, e.budget
        ))
    })?;
    let labels = codes
        .iter()
        .enumerate()
        .map(|(leaf, (code, _))| {
            (
                code.clone(),
                tree.label(chosen.cut.node(leaf as u32)).to_string(),
            )
        })
        .collect();
    let suppressed: HashSet<String> = persons
        .into_iter()
        .zip(&chosen.suppressed)
        .filter(|(_, gone)| **gone)
        .map(|((person, _), _)| person)
        .collect();
    tracing::info!(
        dataset = %d.name,
        column = %sv.column,
        persons = sets.len(),
        persons_suppressed = suppressed.len(),
        information_loss = chosen.loss,
        search_ms = search.elapsed().as_millis() as u64,
        "set-valued release chosen"
    );
    let summary = Summary {
        column: sv.output.clone(),
        k: sv.model.k,
        m: sv.model.m,
        suppression_limit: sv.model.suppression_limit,
        within: classes.map(|c| c.dataset.clone()),
        persons: sets.len() as u64,
        persons_suppressed: suppressed.len() as u64,
        rows_suppressed: 0,
        codes: tree.leaves() as u64,
        codes_by_height: chosen
            .cut
            .heights(&tree)
            .into_iter()
            .map(|n| n as u64)
            .collect(),
        information_loss: chosen.loss,
        generalisations: chosen.generalisations as u64,
        persons_at_risk_after: 0,
    };
    Ok(CodeRelease {
        labels,
        suppressed,
        rows_left_out: Default::default(),
        summary,
    })
}

impl CodeRelease {
    /// How many rows of suppressed persons were left out.
    pub(super) fn rows_left_out(&self) -> u64 {
        self.rows_left_out
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A spilled batch released: the suppressed persons' rows left out (and noted in
    /// `suppressed`), each code as its released node.
    pub(super) fn apply(
        &self,
        sv: &SetValuedPlan,
        df: DataFrame,
        suppressed: &mut HashSet<String>,
    ) -> Result<DataFrame> {
        let persons = df.column(&sv.person_output)?.str()?;
        let keep: BooleanChunked = persons
            .iter()
            .map(|p| match p {
                Some(p) if self.suppressed.contains(p) => {
                    suppressed.insert(p.to_string());
                    false
                }
                _ => true,
            })
            .collect();
        let left_out = keep.len() - keep.sum().unwrap_or(0) as usize;
        self.rows_left_out
            .fetch_add(left_out as u64, std::sync::atomic::Ordering::Relaxed);
        let mut df = df.filter(&keep)?;
        let released: StringChunked = df
            .column(&sv.output)?
            .str()?
            .iter()
            .map(|c| c.map(|c| self.labels[c].as_str()))
            .collect();
        df.replace(
            &sv.output,
            released.with_name(sv.output.as_str().into()).into_column(),
        )?;
        Ok(df)
    }
}

/// The persons of the written file holding a set of up to m released codes that fewer than k
/// persons hold, counted from the file itself.
pub(super) fn recheck(
    sv: &SetValuedPlan,
    classes: Option<&Classes>,
    path: &Path,
    batch_rows: usize,
) -> Result<u64> {
    let mut gathered = Gathered::default();
    let names = [sv.person_output.clone(), sv.output.clone()];
    crate::source::read_parquet_text(path, &names, batch_rows, |df| {
        let columns = crate::source::str_values(df.columns())?;
        for (person, code) in columns[0].iter().zip(&columns[1]) {
            if let Some(code) = code {
                gathered.note(*person, code);
            }
        }
        Ok(())
    })?;
    let Gathered {
        persons,
        codes,
        mut sets,
        ..
    } = gathered;
    for set in &mut sets {
        set.sort_unstable();
        set.dedup();
    }
    // The released labels as leaves of a flat tree, each released as itself.
    let mut labels: Vec<(String, u32)> = codes.into_iter().collect();
    labels.sort_by_key(|(_, id)| *id);
    let paths: Vec<Vec<String>> = labels
        .into_iter()
        .map(|(label, _)| vec![label, crate::kernels::levels::TOP.to_string()])
        .collect();
    if paths.is_empty() {
        return Ok(0);
    }
    let tree = CodeTree::new(&paths).map_err(Error::Internal)?;
    let mut ordered: Vec<(&String, &u32)> = persons.iter().collect();
    ordered.sort_by_key(|(_, id)| **id);
    let class_of = classes.map(|c| c.of(ordered.into_iter().map(|(p, _)| p.as_str())));
    let input = Persons {
        codes: &sets,
        classes: class_of.as_deref(),
    };
    let none = vec![false; sets.len()];
    let cut = set_valued::Cut::identity(&tree);
    Ok(set_valued::persons_at_risk(&input, &cut, &none, &sv.model) as u64)
}
