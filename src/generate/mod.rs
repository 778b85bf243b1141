//! Synthetic extracts of four holders that share one population: a hospital (patients and stays), an
//! insurer (pharmacy claims, Latin-1 with `;`), a cancer registry, and a cohort without NIR (names
//! typed with errors, for fuzzy linkage), plus an opt-out list.
//!
//! Seeded and deterministic, at any size, with the quirks of real extracts: invalid and missing NIRs,
//! NIRs written with spaces, accented names, duplicate rows, empty values, French date formats.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::error::{Error, Result};

pub mod omop;
pub mod snds;

const LAST_NAMES: &[&str] = &[
    "Martin",
    "Bernard",
    "Lefèvre",
    "Dubois",
    "Moreau",
    "Laurent",
    "Girard",
    "Roux",
    "Fournier",
    "Müller",
    "Mercier",
    "Bonnet",
    "François",
    "Lemaître",
    "Noël",
    "Rousseau",
    "Garçon",
    "Faure",
    "André",
    "Chevalier",
];
const FIRST_NAMES: &[&str] = &[
    "Hélène",
    "Jérôme",
    "Zoé",
    "Loïc",
    "Anaïs",
    "Cécile",
    "François",
    "Chloé",
    "Gaëlle",
    "Noémie",
    "Léa",
    "Hugo",
    "Éric",
    "Mathéo",
    "Inès",
    "Adèle",
    "Raphaël",
    "Océane",
    "Benoît",
    "Maëlys",
];
const DEPARTMENTS: &[&str] = &[
    "75", "92", "93", "94", "69", "13", "33", "59", "31", "44", "2A", "2B", "67", "35",
];
const DIAGNOSES: &[&str] = &[
    "I10", "E11.9", "J18.9", "I21.4", "K35.8", "N39.0", "S72.0", "C50.9", "C61", "C34.1", "F32.9",
    "I63.9", "O80", "Z38.0",
];
const CANCERS: &[&str] = &[
    "C50.9", "C61", "C34.1", "C18.7", "C43.5", "C67.9", "C64", "C25.0",
];
const DRUGS: &[(&str, &str)] = &[
    ("N02BE01", "paracétamol"),
    ("A10BA02", "metformine"),
    ("C09AA05", "ramipril"),
    ("C10AA05", "atorvastatine"),
    ("J01CA04", "amoxicilline"),
    ("N06AB06", "sertraline"),
    ("R03AC02", "salbutamol"),
    ("B01AC06", "acide acétylsalicylique"),
    ("A02BC01", "oméprazole"),
    ("L02BG04", "létrozole"),
];

struct Person {
    nir: String,
    sex: u8,
    birth: (i32, u32, u32),
    department: &'static str,
    postcode: String,
    last: &'static str,
    first: &'static str,
}

fn nir_for(sex: u8, year: i32, month: u32, department: &str, commune: u32, order: u32) -> String {
    let body_text = format!(
        "{sex}{:02}{month:02}{department}{commune:03}{order:03}",
        year % 100
    );
    let numeric = body_text.replace("2A", "19").replace("2B", "18");
    let body: u64 = numeric.parse().expect("digits");
    format!("{body_text}{:02}", 97 - body % 97)
}

fn population(n: usize, rng: &mut ChaCha8Rng) -> Vec<Person> {
    (0..n).map(|i| person(i, rng)).collect()
}

/// Person `i` of a population: the order number `i % 1000` makes NIRs unique within it.
fn person(i: usize, rng: &mut ChaCha8Rng) -> Person {
    let sex = rng.random_range(1..=2u8);
    let birth = (
        rng.random_range(1930..=2020),
        rng.random_range(1..=12u32),
        rng.random_range(1..=28u32),
    );
    let department = DEPARTMENTS[rng.random_range(0..DEPARTMENTS.len())];
    let commune = rng.random_range(1..=999u32);
    let nir = nir_for(
        sex,
        birth.0,
        birth.1,
        department,
        commune,
        (i % 1000) as u32,
    );
    let dep_digits = department.replace("2A", "20").replace("2B", "20");
    let postcode = format!("{dep_digits}{:03}", rng.random_range(0..=990u32) / 10 * 10);
    Person {
        nir,
        sex,
        birth,
        department,
        postcode,
        last: LAST_NAMES[rng.random_range(0..LAST_NAMES.len())],
        first: FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
    }
}

/// What a holder's extract holds for a person, as the ground truth records it.
#[derive(Clone, Copy, PartialEq)]
enum Presence {
    Absent,
    /// Written correctly (possibly with spaces): linkable.
    Valid,
    /// A typing error: the control key no longer matches.
    Invalid,
    Missing,
}

impl Presence {
    fn of(written: &str, p: &Person) -> Presence {
        if written.is_empty() {
            Presence::Missing
        } else if written.replace(' ', "") == p.nir {
            Presence::Valid
        } else {
            Presence::Invalid
        }
    }

    fn label(self) -> &'static str {
        match self {
            Presence::Absent => "",
            Presence::Valid => "valid",
            Presence::Invalid => "invalid",
            Presence::Missing => "missing",
        }
    }
}

/// How an extract writes a person's NIR: usually clean, sometimes spaced, sometimes wrong or missing.
fn written_nir(p: &Person, rng: &mut ChaCha8Rng) -> String {
    let r: f64 = rng.random();
    if r < 0.02 {
        String::new()
    } else if r < 0.04 {
        // A typing error in one digit of the body: the control key no longer matches.
        let mut b = p.nir.clone().into_bytes();
        let pos = [0usize, 3, 8, 12][rng.random_range(0..4)];
        b[pos] = if b[pos] == b'9' { b'1' } else { b[pos] + 1 };
        String::from_utf8(b).expect("ASCII")
    } else if r < 0.14 {
        let n = &p.nir;
        format!(
            "{} {} {} {} {} {} {}",
            &n[0..1],
            &n[1..3],
            &n[3..5],
            &n[5..7],
            &n[7..10],
            &n[10..13],
            &n[13..15]
        )
    } else {
        p.nir.clone()
    }
}

pub(crate) fn date_after(
    start: (i32, u32, u32),
    max_days: i64,
    rng: &mut ChaCha8Rng,
) -> chrono::NaiveDate {
    let base = chrono::NaiveDate::from_ymd_opt(start.0, start.1, start.2).expect("valid date");
    base + chrono::Duration::days(rng.random_range(0..max_days))
}

pub(crate) struct Out {
    path: std::path::PathBuf,
    w: BufWriter<File>,
    rows: usize,
}

impl Out {
    pub(crate) fn create(path: std::path::PathBuf, header: &str) -> Result<Out> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::output(parent, e))?;
        }
        let f = File::create(&path).map_err(|e| Error::output(&path, e))?;
        let mut out = Out {
            path,
            w: BufWriter::with_capacity(1 << 20, f),
            rows: 0,
        };
        out.line(header.as_bytes())?;
        out.rows = 0;
        Ok(out)
    }

    pub(crate) fn line(&mut self, bytes: &[u8]) -> Result<()> {
        self.rows += 1;
        self.w
            .write_all(bytes)
            .and_then(|_| self.w.write_all(b"\n"))
            .map_err(|e| Error::output(&self.path, e))
    }

    pub(crate) fn finish(mut self) -> Result<String> {
        self.w.flush().map_err(|e| Error::output(&self.path, e))?;
        Ok(format!("  {} ({} rows)\n", self.path.display(), self.rows))
    }
}

/// The wide hospital extract of the performance comparison (`scripts/compare.sh`): `rows` stays with
/// their patient's attributes in 12 columns, people made one at a time (memory does not grow with
/// rows), 1 to 4 stays each. NIRs are never missing; 10 % are written with spaces and 1 % carry a
/// typing error, so that a script without validation and the engine agree on every row.
pub fn write_hospital_extract(path: &Path, rows: usize, seed: u64) -> Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Out::create(
        path.to_path_buf(),
        "stay_id,patient_id,nir,sex,birth_date,postcode,admission_date,discharge_date,\
         main_diagnosis,secondary_diagnosis,unit,cost",
    )?;
    let mut line = String::new();
    // Departments 01-95 by a Zipf law of exponent 2, so that the small departments hold classes of
    // fewer than 5 persons at any size and the job's k-anonymity step has rows to drop.
    let cumulative: Vec<f64> = (1..=95)
        .scan(0.0, |sum, r| {
            *sum += 1.0 / (r * r) as f64;
            Some(*sum)
        })
        .collect();
    let total = cumulative[94];
    let (mut written, mut i) = (0usize, 0usize);
    while written < rows {
        let p = person(i, &mut rng);
        let u = rng.random::<f64>() * total;
        let department = cumulative.partition_point(|&c| c < u).min(94) + 1;
        let postcode = format!("{department:02}{:03}", rng.random_range(0..100u32) * 10);
        let r: f64 = rng.random();
        let nir = if r < 0.01 {
            let mut b = p.nir.clone().into_bytes();
            b[8] = if b[8] == b'9' { b'1' } else { b[8] + 1 };
            String::from_utf8(b).expect("ASCII")
        } else if r < 0.11 {
            format!("{} {} {}", &p.nir[0..1], &p.nir[1..7], &p.nir[7..])
        } else {
            p.nir.clone()
        };
        let (y, m, d) = p.birth;
        for _ in 0..rng.random_range(1..=4).min(rows - written) {
            written += 1;
            let admission = date_after((2018, 1, 1), 8 * 365, &mut rng);
            let discharge = admission + chrono::Duration::days(rng.random_range(0..30));
            line.clear();
            write!(
                line,
                "S{written:09},P{i:08},{nir},{},{y:04}-{m:02}-{d:02},{},{admission},{discharge},{},{},U{:02},{}.{:02}",
                p.sex,
                postcode,
                DIAGNOSES[rng.random_range(0..DIAGNOSES.len())],
                DIAGNOSES[rng.random_range(0..DIAGNOSES.len())],
                rng.random_range(1..=20),
                rng.random_range(300..20_000u32),
                rng.random_range(0..100u32)
            )
            .expect("write to String");
            out.line(line.as_bytes())?;
        }
        i += 1;
    }
    out.finish()
}

/// Latin-1 bytes of a text made of Latin-1 characters.
pub(crate) fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("Latin-1 character"))
        .collect()
}

/// Writes the four holders' extracts, the opt-out list and the ground truth (`truth.csv`: per person,
/// sex, birth year, whether they opted out, how each holder's extract holds them, and their cohort
/// participant id) under `dir`;
/// returns a summary.
pub fn write_extracts(dir: &Path, people: usize, seed: u64) -> Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pop = population(people, &mut rng);
    // Per person: hospital, insurer, registry.
    let mut truth = vec![[Presence::Absent; 3]; pop.len()];
    let mut summary = String::new();
    summary += &write_hospital(dir, &pop, &mut truth, &mut rng)?;
    summary += &write_insurer(dir, &pop, &mut truth, &mut rng)?;
    summary += &write_registry(dir, &pop, &mut truth, &mut rng)?;
    let mut line = String::new();
    let mut opt_out = Out::create(
        dir.join("opt_out.txt"),
        "# NIRs of people who refused secondary use",
    )?;
    let mut opted_out = vec![false; pop.len()];
    for (i, p) in pop.iter().enumerate() {
        if rng.random_bool(0.01) {
            opt_out.line(p.nir.as_bytes())?;
            opted_out[i] = true;
        }
    }
    summary += &opt_out.finish()?;

    // The cohort draws from a stream of its own: the other holders' files stay as they were.
    let (cohort_summary, participants) = write_cohort(dir, &pop, seed)?;
    summary += &cohort_summary;

    let mut truth_out = Out::create(
        dir.join("truth.csv"),
        "person,nir,sex,birth_year,opted_out,hospital,insurer,registry,cohort",
    )?;
    for (i, p) in pop.iter().enumerate() {
        line.clear();
        let [h, a, r] = truth[i].map(Presence::label);
        write!(
            line,
            "{i},{},{},{},{},{h},{a},{r},{}",
            p.nir,
            p.sex,
            p.birth.0,
            opted_out[i],
            participants[i].as_deref().unwrap_or("")
        )
        .expect("write to String");
        truth_out.line(line.as_bytes())?;
    }
    summary += &truth_out.finish()?;
    Ok(summary)
}

/// The hospital: patients and their stays.
fn write_hospital(
    dir: &Path,
    pop: &[Person],
    truth: &mut [[Presence; 3]],
    rng: &mut ChaCha8Rng,
) -> Result<String> {
    let mut line = String::new();
    let mut summary = String::new();
    let mut patients = Out::create(
        dir.join("hospital/patients.csv"),
        "patient_id,nir,last_name,first_name,sex,birth_date,postcode,city,phone",
    )?;
    let mut stays = Out::create(
        dir.join("hospital/stays.csv"),
        "stay_id,patient_id,nir,admission_date,discharge_date,main_diagnosis,unit,postcode",
    )?;
    let mut stay_id = 0u64;
    for (i, p) in pop.iter().enumerate() {
        if !rng.random_bool(0.7) {
            continue;
        }
        let nir = written_nir(p, rng);
        truth[i][0] = Presence::of(&nir, p);
        let postcode = if rng.random_bool(0.03) {
            String::new()
        } else {
            p.postcode.clone()
        };
        line.clear();
        let (y, m, d) = p.birth;
        write!(
            line,
            "P{i:07},{nir},\"{}\",{},{},{y:04}-{m:02}-{d:02},{postcode},\"Ville {}\",06{:08}",
            p.last,
            p.first,
            p.sex,
            p.department,
            rng.random_range(0..100_000_000u32)
        )
        .expect("write to String");
        patients.line(line.as_bytes())?;
        if rng.random_bool(0.01) {
            patients.line(line.as_bytes())?; // a duplicate row, as exports produce
        }
        for _ in 0..rng.random_range(1..=4) {
            stay_id += 1;
            let admission = date_after((2018, 1, 1), 8 * 365, rng);
            let discharge = admission + chrono::Duration::days(rng.random_range(0..30));
            let dx = DIAGNOSES[rng.random_range(0..DIAGNOSES.len())];
            line.clear();
            write!(
                line,
                "S{stay_id:09},P{i:07},{nir},{admission},{discharge},{dx},U{:02},{}",
                rng.random_range(1..=20),
                p.postcode
            )
            .expect("write to String");
            stays.line(line.as_bytes())?;
        }
    }
    summary += &patients.finish()?;
    summary += &stays.finish()?;

    Ok(summary)
}

/// The insurer: pharmacy claims, Latin-1 with semicolons.
fn write_insurer(
    dir: &Path,
    pop: &[Person],
    truth: &mut [[Presence; 3]],
    rng: &mut ChaCha8Rng,
) -> Result<String> {
    let mut line = String::new();
    let mut summary = String::new();
    let mut claims = Out::create(
        dir.join("insurer/pharmacy_claims.csv"),
        "nir;nom;prenom;date_delivrance;code_atc;libelle;montant",
    )?;
    for (i, p) in pop.iter().enumerate() {
        if !rng.random_bool(0.8) {
            continue;
        }
        let nir = written_nir(p, rng);
        truth[i][1] = Presence::of(&nir, p);
        for _ in 0..rng.random_range(1..=6) {
            let date = date_after((2019, 1, 1), 6 * 365, rng);
            let (atc, label) = DRUGS[rng.random_range(0..DRUGS.len())];
            let amount = rng.random_range(150..9000u32);
            line.clear();
            write!(
                line,
                "{nir};{};{};{};{atc};\"{label}\";{}.{:02}",
                p.last,
                p.first,
                date.format("%d/%m/%Y"),
                amount / 100,
                amount % 100
            )
            .expect("write to String");
            claims.line(&latin1(&line))?;
        }
    }
    summary += &claims.finish()?;

    Ok(summary)
}

/// The registry: cancer cases.
fn write_registry(
    dir: &Path,
    pop: &[Person],
    truth: &mut [[Presence; 3]],
    rng: &mut ChaCha8Rng,
) -> Result<String> {
    let mut line = String::new();
    let mut summary = String::new();
    let mut cases = Out::create(
        dir.join("registry/cancer_cases.csv"),
        "case_id,nir,sex,birth_date,diagnosis_date,icd10,stage,department",
    )?;
    for (i, p) in pop.iter().enumerate() {
        if !rng.random_bool(0.12) {
            continue;
        }
        let nir = written_nir(p, rng);
        truth[i][2] = Presence::of(&nir, p);
        let date = date_after((2010, 1, 1), 15 * 365, rng);
        let stage = if rng.random_bool(0.1) {
            String::new()
        } else {
            rng.random_range(1..=4).to_string()
        };
        let (y, m, d) = p.birth;
        line.clear();
        write!(
            line,
            "K{i:07},{nir},{},{y:04}-{m:02}-{d:02},{date},{},{stage},{}",
            p.sex,
            CANCERS[rng.random_range(0..CANCERS.len())],
            p.department
        )
        .expect("write to String");
        cases.line(line.as_bytes())?;
    }
    summary += &cases.finish()?;

    Ok(summary)
}

/// The cohort (a biobank): participants with no NIR, only the identifying fields it was given,
/// with the errors of records typed by hand: one-letter typos (replaced, left out, added or swapped
/// letters) in either name, given name and surname swapped, a missing given name, day and month
/// swapped, a birth date typed `DD/MM/YYYY`, a postcode moved within its département or missing. Fuzzy linkage (CLKs) is its only
/// way to the other holders; `truth.csv` gives each person's participant id. Returns the summary
/// and, per person, the participant id.
fn write_cohort(dir: &Path, pop: &[Person], seed: u64) -> Result<(String, Vec<Option<String>>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC040_4B10_B4A4);
    let mut out = Out::create(
        dir.join("cohort/participants.csv"),
        "participant_id,given_name,surname,birth_date,sex,postcode,bmi,smoker",
    )?;
    let mut ids = vec![None; pop.len()];
    let mut line = String::new();
    for (i, p) in pop.iter().enumerate() {
        if !rng.random_bool(0.15) {
            continue;
        }
        let id = format!("B{:07}", out.rows + 1);
        let mut given = p.first.to_string();
        let mut surname = p.last.to_string();
        if rng.random_bool(0.08) {
            given = typo(&given, &mut rng);
        }
        if rng.random_bool(0.08) {
            surname = typo(&surname, &mut rng);
        }
        if rng.random_bool(0.03) {
            std::mem::swap(&mut given, &mut surname);
        }
        if rng.random_bool(0.04) {
            given.clear();
        }
        let (y, mut m, mut d) = p.birth;
        if d <= 12 && d != m && rng.random_bool(0.03) {
            std::mem::swap(&mut m, &mut d);
        }
        // A date typed the French way, which the linkage schema refuses.
        let birth = if rng.random_bool(0.01) {
            format!("{d:02}/{m:02}/{y:04}")
        } else {
            format!("{y:04}-{m:02}-{d:02}")
        };
        let postcode = match rng.random_range(0..100) {
            0..2 => String::new(),
            2..7 => format!(
                "{}{:03}",
                &p.postcode[..2],
                rng.random_range(0..100u32) * 10
            ),
            _ => p.postcode.clone(),
        };
        line.clear();
        write!(
            line,
            "{id},{given},{surname},{birth},{},{postcode},{:.1},{}",
            p.sex,
            rng.random_range(170..400u32) as f64 / 10.0,
            if rng.random_bool(0.2) { "yes" } else { "no" }
        )
        .expect("write to String");
        out.line(line.as_bytes())?;
        ids[i] = Some(id);
    }
    Ok((out.finish()?, ids))
}

/// One typing error in a name: a letter replaced, left out, added, or two neighbours swapped.
fn typo(name: &str, rng: &mut ChaCha8Rng) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    let at = rng.random_range(0..chars.len());
    let letter = char::from(b'a' + rng.random_range(0..26u8));
    match rng.random_range(0..4) {
        0 => chars[at] = letter,
        1 if chars.len() > 2 => {
            chars.remove(at);
        }
        2 => chars.insert(at, letter),
        _ if at + 1 < chars.len() => chars.swap(at, at + 1),
        _ => chars[at] = letter,
    }
    chars.into_iter().collect()
}

/// A perturbed scale-up of a delimited table (for search benchmarks on `adult`): `rows` rows drawn
/// with replacement from the input's, then each value replaced, with probability `p`, by the same
/// column's value in another random row, so that the result is not trivially k-anonymous. The header
/// is kept; values are copied as written.
pub fn scale_up(
    input: &Path,
    delimiter: char,
    rows: usize,
    p: f64,
    seed: u64,
    out: &Path,
) -> Result<()> {
    let text = std::fs::read_to_string(input)
        .map_err(|e| Error::input(input, "file", format!("cannot read: {e}")))?;
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let header = lines
        .next()
        .ok_or_else(|| Error::input(input, "file", "empty file"))?;
    let table: Vec<Vec<&str>> = lines.map(|l| l.split(delimiter).collect()).collect();
    let width = header.split(delimiter).count();
    if let Some(n) = table.iter().position(|r| r.len() != width) {
        return Err(Error::input(
            input,
            format!("line {}", n + 2),
            format!("has {} fields where the header has {width}", table[n].len()),
        ));
    }
    if table.is_empty() {
        return Err(Error::input(input, "file", "no data rows"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let file = File::create(out).map_err(|e| Error::output(out, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut line = String::new();
    let written = writeln!(w, "{header}").and_then(|_| {
        for _ in 0..rows {
            let row = &table[rng.random_range(0..table.len())];
            line.clear();
            for (c, value) in row.iter().enumerate() {
                if c > 0 {
                    line.push(delimiter);
                }
                let value = if rng.random_bool(p) {
                    table[rng.random_range(0..table.len())][c]
                } else {
                    value
                };
                line.push_str(value);
            }
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
        w.flush()
    });
    written.map_err(|e| Error::output(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::identifier::nir_is_valid;

    #[test]
    fn the_comparison_extract_has_its_rows_columns_and_identifier_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("extract.csv");
        write_hospital_extract(&path, 20_000, 7).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_001);
        assert!(lines.iter().all(|l| l.split(',').count() == 12));
        let nirs: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split(',').nth(2).unwrap())
            .collect();
        assert!(nirs.iter().all(|n| !n.is_empty()), "no NIR is missing");
        let share = |f: &dyn Fn(&str) -> bool| {
            nirs.iter().filter(|n| f(n)).count() as f64 / nirs.len() as f64
        };
        let spaced = share(&|n: &str| n.contains(' '));
        let invalid = share(&|n: &str| !nir_is_valid(&n.replace(' ', "")));
        assert!((0.08..0.14).contains(&spaced), "{spaced}");
        assert!((0.003..0.02).contains(&invalid), "{invalid}");
        // Zipf departments: the largest holds about 60 % of rows, and small ones exist.
        let departments: Vec<&str> = lines[1..]
            .iter()
            .map(|l| &l.split(',').nth(5).unwrap()[..2])
            .collect();
        let first = departments.iter().filter(|d| **d == "01").count() as f64 / 20_000.0;
        assert!((0.55..0.67).contains(&first), "{first}");
        assert!(departments.iter().any(|d| d.parse::<u32>().unwrap() > 50));
        let again = dir.path().join("again.csv");
        write_hospital_extract(&again, 20_000, 7).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), text.as_bytes(), "seeded");
    }

    #[test]
    fn generated_nirs_are_valid_and_unique() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let pop = population(3000, &mut rng);
        let mut seen = std::collections::HashSet::new();
        for p in &pop {
            assert!(nir_is_valid(&p.nir), "{}", p.nir);
            assert!(seen.insert(p.nir.clone()));
        }
        assert!(
            pop.iter().any(|p| p.nir.contains("2A")) && pop.iter().any(|p| p.nir.contains("2B"))
        );
    }

    #[test]
    fn scale_up_resamples_and_perturbs_within_columns() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        // Column a holds only a-values, column b only b-values: a perturbed value must stay in its column.
        let rows: String = (0..50).map(|i| format!("a{i};b{i}\n")).collect();
        std::fs::write(&input, format!("a;b\n{rows}")).unwrap();
        let (one, two) = (dir.path().join("1.csv"), dir.path().join("2.csv"));
        scale_up(&input, ';', 20_000, 0.1, 7, &one).unwrap();
        scale_up(&input, ';', 20_000, 0.1, 7, &two).unwrap();
        let text = std::fs::read_to_string(&one).unwrap();
        assert_eq!(text, std::fs::read_to_string(&two).unwrap(), "seeded");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!((lines[0], lines.len()), ("a;b", 20_001));
        let mut mixed = 0;
        for l in &lines[1..] {
            let (a, b) = l.split_once(';').unwrap();
            assert!(a.starts_with('a') && b.starts_with('b'), "{l}");
            mixed += usize::from(a[1..] != b[1..]);
        }
        // A row stays whole with probability 0.9² plus the chance of redrawing its own value: about
        // 18 % of rows are mixed.
        let share = mixed as f64 / 20_000.0;
        assert!((0.15..0.21).contains(&share), "{share}");
    }
}
