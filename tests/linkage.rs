//! `ehds-prep link`: three generated holders are delivered with a shared linkage key, then linked by
//! the access body. Overlaps are checked against the generator's ground truth, refusals against
//! deliveries that must not be linked, consistency counts against injected disagreements, and the
//! linked delivery against its privacy model, the holders' pseudonyms and a rerun.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use common::permit_text::*;
use common::{ehds_prep, stderr, write_private};
use ehds_prep::linkage;
use ehds_prep::permit::Permit;
use ehds_prep::report::Count;
use polars::prelude::*;

const PERMIT: &str = "FR-2029-0042";
const SOURCES: [&str; 3] = ["hospital", "insurer", "registry"];

/// The columns the hospital and the registry both deliver, for consistency checks.
fn with_sex_and_birth_year(d: DatasetText) -> DatasetText {
    d.column(kept("sex", "integer")).column(
        column("birth_date", "date", "generalise")
            .set("rule", "year")
            .set("rename", "birth_year")
            .set(
                "unshifted",
                "a birth year, not an event: it tells nothing of the shift",
            ),
    )
}

/// The event dates a holder delivers: none, as they are, or shifted per person with a key and range.
#[derive(Clone, Copy)]
enum Dates {
    Absent,
    Kept,
    Shifted { key: &'static str, days: i32 },
}

/// A generated population with its extracts, keys and holder permits.
struct World {
    dir: tempfile::TempDir,
    /// Lines added to every permit's `[pseudonyms]` (holders' and linking permits').
    pseudonyms: &'static str,
}

/// A 64-hex-digit key derived from a label (distinct, high-entropy test keys).
fn key_hex(label: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(label.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl World {
    fn new(people: usize, seed: u64) -> World {
        let dir = tempfile::tempdir().unwrap();
        ehds_prep::generate::write_extracts(&dir.path().join("data"), people, seed).unwrap();
        for name in ["linkage", "other-linkage", "access-a", "access-b"] {
            write_private(
                &dir.path().join(format!("{name}.hex")),
                key_hex(name).as_bytes(),
            );
        }
        World {
            dir,
            pseudonyms: "",
        }
    }

    fn path(&self, rest: &str) -> PathBuf {
        self.dir.path().join(rest)
    }

    /// Writes and runs one holder's permit into `out/<holder>`.
    fn deliver(&self, holder: &str, permit_id: &str, key: &str, version: &str) {
        let text = self.holder_permit(holder, permit_id, key, version, Dates::Absent);
        self.run_holder(holder, text);
    }

    /// Runs a holder's permit into `out/<holder>`, afresh.
    fn run_holder(&self, holder: &str, text: PermitText) {
        let path = text.write(&self.path(&format!("{holder}.toml")));
        // A delivery of another permit is never overwritten by a run: start afresh.
        let _ = std::fs::remove_dir_all(self.path(&format!("out/{holder}")));
        ehds_prep::engine::run(&ehds_prep::load_plan(&path).unwrap()).unwrap();
    }

    /// One holder's permit: the person's linkage pseudonym and a few columns; the insurer's and the
    /// registry's event dates as `dates` says.
    fn holder_permit(
        &self,
        holder: &str,
        permit_id: &str,
        key: &str,
        version: &str,
        dates: Dates,
    ) -> PermitText {
        // The registry delivers rows whose NIR is invalid or missing with a null pseudonym.
        let policy = if holder == "registry" {
            "null"
        } else {
            "reject-row"
        };
        let person = |d: DatasetText| {
            d.person("nir").column(
                nir("nir", "linkage")
                    .set("rename", "person_pseudonym")
                    .set("on_invalid", policy)
                    .set("on_missing", policy),
            )
        };
        let delivered = match holder {
            "hospital" => with_sex_and_birth_year(person(dataset(
                "patients",
                &["data/hospital/patients.csv"],
            ))),
            "insurer" => person(dataset(
                "pharmacy_claims",
                &["data/insurer/pharmacy_claims.csv"],
            ))
            .source("delimiter = \";\"")
            .source("encoding = \"latin-1\"")
            .column(kept("code_atc", "string")),
            _ => with_sex_and_birth_year(person(dataset(
                "cancer_cases",
                &["data/registry/cancer_cases.csv"],
            ))),
        };
        let mut text = permit(permit_id)
            .holder(holder)
            .recipient("access body")
            .output(&format!("out/{holder}"))
            .key_file("linkage", &format!("{key}.hex"))
            .domain(
                "linkage",
                "linkage",
                &format!("context = \"{permit_id}/linkage\""),
            )
            .section(&format!(
                "[pseudonyms]\nversion = \"{version}\"\n{}",
                self.pseudonyms
            ))
            .section("[opt_out]\nfile = \"data/opt_out.txt\"\nidentifier = \"nir\"");
        let date = |name: &str| match dates {
            Dates::Absent => None,
            Dates::Kept => Some(column(name, "date", "keep")),
            Dates::Shifted { .. } => Some(column(name, "date", "shift")),
        };
        let delivered = match (holder, date("date_delivrance"), date("diagnosis_date")) {
            ("insurer", Some(c), _) => delivered.column(c.set("format", "%d/%m/%Y")),
            ("registry", _, Some(c)) => delivered.column(c),
            _ => delivered,
        };
        if let Dates::Shifted { key, days } = dates {
            text = text
                .key_file("shift", &format!("{key}.hex"))
                .domain("shift", "shift", "")
                .section(&format!(
                    "[date_shift]\ndomain = \"shift\"\nmin_days = -{days}\nmax_days = {days}"
                ));
        }
        text.dataset(delivered)
    }

    fn deliver_all(&self) {
        for h in SOURCES {
            self.deliver(h, PERMIT, "linkage", "v1");
        }
    }

    /// Writes a linking permit named `name` (output `out/<name>`) under the access key `key`.
    fn linking_permit(&self, name: &str, key: &str, small_counts: u64) -> PathBuf {
        self.linking_permit_text(name, key, small_counts)
            .write(&self.path(&format!("{name}.toml")))
    }

    fn linking_permit_text(&self, name: &str, key: &str, small_counts: u64) -> PermitText {
        let researcher = |name: &str| {
            column(name, "string", "pseudonymise")
                .set("identifier", "pseudonym")
                .set("domain", "researcher")
        };
        let mut linkage =
            format!("[linkage]\ndomain = \"linkage\"\nsmall_counts = {small_counts}\n");
        for source in SOURCES {
            linkage += &format!(
                "\n[[linkage.sources]]\nname = \"{source}\"\ndelivery = \"out/{source}\"\n"
            );
        }
        for (attribute, column) in [("sex", "sex"), ("birth_year", "birth_year")] {
            linkage += &format!(
                "\n[[linkage.attributes]]\nname = \"{attribute}\"\ncolumns = \
                 [\"hospital.patients.{column}\", \"registry.cancer_cases.{column}\"]\n"
            );
        }
        permit(PERMIT)
            .holder("access body")
            .recipient("researcher")
            .output(&format!("out/{name}"))
            .key_file("access", &format!("{key}.hex"))
            .domain("researcher", "access", "")
            .section(&format!("[pseudonyms]\n{}", self.pseudonyms))
            .section(&linkage)
            .dataset(
                dataset("persons", &[])
                    .linked()
                    .person("person_pseudonym")
                    .column(researcher("person_pseudonym"))
                    .column(column("sex", "integer", "generalise").raw("levels", "[\"*\"]"))
                    .column(
                        column("birth_year", "integer", "generalise")
                            .raw("levels", "[\"width 5\", \"width 10\", \"width 20\"]"),
                    )
                    .column(kept("in_registry", "boolean"))
                    .privacy("k = 5\nsuppression_limit = 0.05"),
            )
            .dataset(
                dataset("cases", &["out/registry/cancer_cases.parquet"])
                    .parquet()
                    .person("person_pseudonym")
                    .column(researcher("person_pseudonym").set("on_missing", "null"))
                    .column(kept("birth_year", "integer")),
            )
            .dataset(
                dataset("claims", &["out/insurer/pharmacy_claims.parquet"])
                    .parquet()
                    .person("person_pseudonym")
                    .column(researcher("person_pseudonym"))
                    .column(kept("code_atc", "string")),
            )
    }

    fn link(&self, name: &str, key: &str, small_counts: u64) -> linkage::LinkOutcome {
        let permit = Permit::load(&self.linking_permit(name, key, small_counts)).unwrap();
        linkage::link(permit).unwrap()
    }

    /// The ground truth: per person, (nir, sex, birth year, opted out, presence per holder).
    fn truth(&self) -> Vec<(String, String, String, bool, [String; 3])> {
        let text = std::fs::read_to_string(self.path("data/truth.csv")).unwrap();
        text.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    f[1].into(),
                    f[2].into(),
                    f[3].into(),
                    f[4] == "true",
                    [f[5].into(), f[6].into(), f[7].into()],
                )
            })
            .collect()
    }
}

/// Persons a delivery holds according to the truth: a correctly written NIR, not opted out.
fn linked_mask(t: &(String, String, String, bool, [String; 3])) -> usize {
    (0..3)
        .filter(|&s| t.4[s] == "valid" && !t.3)
        .map(|s| 1 << s)
        .sum()
}

fn exact(c: &Count) -> u64 {
    c.exact().expect("exact report")
}

fn string_values(path: &Path) -> Vec<String> {
    let df = ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap();
    let mut out = Vec::new();
    for c in df.columns() {
        let text = c.cast(&DataType::String).unwrap();
        out.extend(text.str().unwrap().iter().flatten().map(String::from));
    }
    out
}

fn column_values(path: &Path, name: &str) -> Vec<Option<String>> {
    let df = ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap();
    let c = df.column(name).unwrap().cast(&DataType::String).unwrap();
    c.str()
        .unwrap()
        .iter()
        .map(|v| v.map(String::from))
        .collect()
}

/// Every format of pseudonym links: the holders' (decoded by the index) and the linking permit's
/// own (decoded to find the persons its person table suppressed).
const PSEUDONYM_FORMATS: [&str; 2] = ["", "encoding = \"base64url\"\nbits = 256"];

#[test]
fn every_overlap_count_equals_the_generator_truth() {
    for format in PSEUDONYM_FORMATS {
        overlap_counts_equal_the_generator_truth(format);
    }
}

fn overlap_counts_equal_the_generator_truth(format: &'static str) {
    let mut w = World::new(3000, 11);
    w.pseudonyms = format;
    w.deliver_all();
    let outcome = w.link("linked", "access-a", 0);
    let report = &outcome.exact;
    let truth = w.truth();
    let mut by_mask = [0u64; 8];
    for t in &truth {
        by_mask[linked_mask(t)] += 1;
    }
    let combinations: BTreeMap<Vec<String>, u64> = report
        .combinations
        .iter()
        .map(|c| (c.sources.clone(), exact(&c.persons)))
        .collect();
    assert_eq!(combinations.len(), 7);
    for (mask, &expected) in by_mask.iter().enumerate().skip(1) {
        let names: Vec<String> = (0..3)
            .filter(|s| mask & (1 << s) != 0)
            .map(|s| SOURCES[s].to_string())
            .collect();
        assert_eq!(combinations[&names], expected, "{names:?}");
        assert!(expected > 0, "the sample exercises every combination");
    }
    assert_eq!(exact(&report.persons), by_mask[1..].iter().sum::<u64>());
    for p in &report.pairs {
        let bits: usize = p
            .sources
            .iter()
            .map(|n| 1 << SOURCES.iter().position(|s| s == n).unwrap())
            .sum();
        let expected: u64 = (1..8)
            .filter(|m| m & bits == bits)
            .map(|m| by_mask[m])
            .sum();
        assert_eq!(exact(&p.persons), expected, "{:?}", p.sources);
    }
    for (si, s) in report.sources.iter().enumerate() {
        let expected = truth
            .iter()
            .filter(|t| linked_mask(t) & (1 << si) != 0)
            .count() as u64;
        assert_eq!(exact(&s.persons), expected, "{}", s.name);
    }
    // The registry delivers a null pseudonym for every invalid or missing NIR (opted out or not:
    // a mistyped NIR does not match the opt-out list).
    let registry_unlinkable = truth
        .iter()
        .filter(|t| t.4[2] == "invalid" || t.4[2] == "missing")
        .count() as u64;
    assert_eq!(
        exact(&report.sources[2].tables[0].rows_without_pseudonym),
        registry_unlinkable
    );
    assert!(registry_unlinkable > 0);
    // No disagreement was injected: sex and birth year agree for every person compared, and the
    // persons compared are those in both the hospital and the registry.
    let both = (1..8)
        .filter(|m| m & 0b101 == 0b101)
        .map(|m| by_mask[m])
        .sum::<u64>();
    for a in &report.consistency {
        assert_eq!(exact(&a.persons_compared), both, "{}", a.attribute);
        assert_eq!(exact(&a.persons_disagreeing), 0, "{}", a.attribute);
    }
    // Exact duplicate rows of each holder table, counted here from its rows' texts (nulls apart
    // from empty text): rows minus distinct rows.
    let mut duplicates = 0;
    for (s, holder) in report.sources.iter().zip(SOURCES) {
        for t in &s.tables {
            let path = w.path(&format!("out/{holder}/{}.parquet", t.dataset));
            let df = ParquetReader::new(std::fs::File::open(&path).unwrap())
                .finish()
                .unwrap();
            let columns: Vec<Vec<Option<String>>> = df
                .get_column_names()
                .iter()
                .map(|n| column_values(&path, n))
                .collect();
            let rows: Vec<Vec<Option<String>>> = (0..df.height())
                .map(|r| columns.iter().map(|c| c[r].clone()).collect())
                .collect();
            let distinct: HashSet<&Vec<Option<String>>> = rows.iter().collect();
            let expected = (rows.len() - distinct.len()) as u64;
            assert_eq!(exact(&t.duplicate_rows), expected, "{holder}.{}", t.dataset);
            duplicates += expected;
        }
    }
    assert!(duplicates > 0, "the sample holds duplicate rows");
    // Rows per person: every linked person of a source falls in exactly one bucket.
    for (r, s) in report.rows_per_person.iter().zip(&report.sources) {
        let bucketed: u64 = r.persons_by_rows.iter().map(|b| exact(&b.persons)).sum();
        assert_eq!(bucketed, exact(&s.persons), "{}", r.source);
    }
}

#[test]
fn injected_disagreements_are_counted_exactly() {
    let w = World::new(3000, 12);
    let truth = w.truth();
    // Flip the sex of 7 persons held by the hospital and the registry, and of 3 held by the registry
    // only (not comparable: not counted); move the birth year of 4 others.
    let in_both: Vec<usize> = (0..truth.len())
        .filter(|&i| linked_mask(&truth[i]) & 0b101 == 0b101)
        .collect();
    let registry_only: Vec<usize> = (0..truth.len())
        .filter(|&i| linked_mask(&truth[i]) == 0b100)
        .collect();
    let sex_flipped: HashSet<usize> = in_both[..7]
        .iter()
        .chain(&registry_only[..3])
        .copied()
        .collect();
    let year_moved: HashSet<usize> = in_both[7..11].iter().copied().collect();
    let path = w.path("data/registry/cancer_cases.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut f: Vec<String> = l.split(',').map(String::from).collect();
            let Some(i) = f[0].strip_prefix('K').and_then(|n| n.parse::<usize>().ok()) else {
                return l.to_string();
            };
            if sex_flipped.contains(&i) {
                f[2] = if f[2] == "1" { "2" } else { "1" }.into();
                changed += 1;
            }
            if year_moved.contains(&i) {
                let year: i32 = f[3][..4].parse().unwrap();
                f[3] = format!("{}{}", year - 1, &f[3][4..]);
                changed += 1;
            }
            f.join(",")
        })
        .collect();
    assert_eq!(changed, 14);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    w.deliver_all();
    let report = w.link("linked", "access-a", 0).exact;
    let by_name: BTreeMap<&str, _> = report
        .consistency
        .iter()
        .map(|a| (a.attribute.as_str(), a))
        .collect();
    assert_eq!(exact(&by_name["sex"].persons_disagreeing), 7);
    assert_eq!(exact(&by_name["birth_year"].persons_disagreeing), 4);
    assert_eq!(
        exact(&by_name["sex"].persons_compared),
        in_both.len() as u64
    );
    assert_eq!(exact(&by_name["sex"].pairs[0].disagreeing), 7);
}

/// Runs `link` through the binary and expects a verification failure that names `expected`, with
/// nothing at the output path.
fn refused(w: &World, expected: &str) {
    let permit = w.linking_permit("linked", "access-a", 10);
    let o = ehds_prep(&["link", "--permit", permit.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert!(err.contains(expected), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!w.path("out/linked").exists());
    assert!(!w.path("out/.linked.staging").exists());
}

#[test]
fn deliveries_that_must_not_be_linked_are_refused() {
    let w = World::new(400, 13);
    w.deliver_all();
    // Another linkage key.
    w.deliver("registry", PERMIT, "other-linkage", "v1");
    refused(&w, "the holders used different linkage keys");
    // Another permit.
    w.deliver("registry", "FR-2029-9999", "linkage", "v1");
    refused(
        &w,
        "was delivered for permit FR-2029-9999, not for FR-2029-0042",
    );
    // A stale pseudonym version.
    w.deliver("registry", PERMIT, "linkage", "v0");
    refused(&w, "a stale or different pseudonym scheme");
    // A tampered file.
    w.deliver("registry", PERMIT, "linkage", "v1");
    let claims = w.path("out/insurer/pharmacy_claims.parquet");
    let mut bytes = std::fs::read(&claims).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&claims, bytes).unwrap();
    refused(&w, "pharmacy_claims.parquet");
    // Restored, the same deliveries link.
    w.deliver("insurer", PERMIT, "linkage", "v1");
    let permit = w.linking_permit("linked", "access-a", 10);
    let o = ehds_prep(&["link", "--permit", permit.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Dates moved by different keys or ranges, or moved at one holder and not at another, make every
/// interval across holders wrong: `link` refuses them, and links those moved alike.
#[test]
fn deliveries_whose_dates_moved_differently_are_refused() {
    let w = World::new(300, 15);
    w.deliver("hospital", PERMIT, "linkage", "v1");
    let holder = |name: &str, dates: Dates| {
        w.run_holder(name, w.holder_permit(name, PERMIT, "linkage", "v1", dates))
    };
    let shifted = Dates::Shifted {
        key: "access-b",
        days: 30,
    };
    holder("insurer", shifted);
    // Another range.
    holder(
        "registry",
        Dates::Shifted {
            key: "access-b",
            days: 60,
        },
    );
    refused(&w, "-60 to 60 days");
    // Another key.
    holder(
        "registry",
        Dates::Shifted {
            key: "other-linkage",
            days: 30,
        },
    );
    refused(
        &w,
        "deliver every source with one date-shift domain, key and range",
    );
    // The registry's dates not moved at all.
    holder("registry", Dates::Kept);
    refused(&w, "no date shifted");
    // The manifests say so in fields, not only in words.
    let manifest = |holder: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(w.path(&format!("out/{holder}/manifest.json"))).unwrap(),
        )
        .unwrap()
    };
    holder("registry", shifted);
    let (insurer, registry) = (manifest("insurer"), manifest("registry"));
    assert_eq!(insurer["date_shift"], registry["date_shift"]);
    assert_eq!(insurer["date_shift"]["min_days"], -30);
    assert_eq!(insurer["date_shift"]["domain"], "shift");
    let field = |m: &serde_json::Value, name: &str| {
        m["datasets"][0]["schema"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(field(&registry, "diagnosis_date")["shifted"], true);
    assert_eq!(field(&registry, "person_pseudonym")["domain"], "linkage");
    assert!(manifest("hospital").get("date_shift").is_none());
    // Moved alike (the hospital delivers no date): linked.
    let permit = w.linking_permit("linked", "access-a", 10);
    let o = ehds_prep(&["link", "--permit", permit.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_linking_permit_may_not_deliver_the_holders_pseudonyms() {
    let w = World::new(300, 14);
    w.deliver_all();
    let path = w.linking_permit("linked", "access-a", 10);
    let text = std::fs::read_to_string(&path).unwrap();
    // The claims table keeps the holder's pseudonym as it is.
    let keep = text.replacen(
        "action = \"pseudonymise\"\nidentifier = \"pseudonym\"\ndomain = \"researcher\"\n\n[[datasets.columns]]\nname = \"code_atc\"",
        "action = \"keep\"\nidentifier = \"pseudonym\"\n\n[[datasets.columns]]\nname = \"code_atc\"",
        1,
    );
    assert_ne!(keep, text);
    std::fs::write(&path, keep).unwrap();
    let err = linkage::link(Permit::load(&path).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("holds pseudonyms or tokens of a holder's domain"),
        "{err}"
    );
    // A pseudonym of another of the holder's domains (a local stay or patient number) is the
    // holder's too.
    let hospital = w
        .holder_permit("hospital", PERMIT, "linkage", "v1", Dates::Absent)
        .text()
        + "[[datasets.columns]]\nname = \"patient_id\"\ntype = \"string\"\n\
           action = \"pseudonymise\"\ndomain = \"local\"\n\n\
           [domains.local]\nkey = \"linkage\"\n";
    std::fs::write(w.path("hospital.toml"), hospital).unwrap();
    std::fs::remove_dir_all(w.path("out/hospital")).unwrap();
    ehds_prep::engine::run(&ehds_prep::load_plan(&w.path("hospital.toml")).unwrap()).unwrap();
    let local = w
        .linking_permit_text("linked", "access-a", 10)
        .dataset(
            dataset("patients", &["out/hospital/patients.parquet"])
                .parquet()
                .person("person_pseudonym")
                .column(
                    column("person_pseudonym", "string", "pseudonymise")
                        .set("identifier", "pseudonym")
                        .set("domain", "researcher"),
                )
                .column(kept("patient_id", "string")),
        )
        .write(&w.path("local.toml"));
    let err = linkage::link(Permit::load(&local).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("datasets[3].columns[1].action")
            && err.contains("`patient_id` holds pseudonyms or tokens of a holder's domain"),
        "{err}"
    );
    // A source file outside the verified deliveries.
    std::fs::copy(
        w.path("out/insurer/pharmacy_claims.parquet"),
        w.path("claims-copy.parquet"),
    )
    .unwrap();
    let outside = text.replace("out/insurer/pharmacy_claims.parquet", "claims-copy.parquet");
    std::fs::write(&path, outside).unwrap();
    let err = linkage::link(Permit::load(&path).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is not a table of a delivery"), "{err}");
    assert!(!w.path("out/linked").exists());
    // The linked delivery may not replace a holder's delivery (same permit id).
    let onto_holder = text.replace("dir = \"out/linked\"", "dir = \"out/registry\"");
    std::fs::write(&path, onto_holder).unwrap();
    let err = linkage::link(Permit::load(&path).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("output.dir") && err.contains("write the delivery to a folder of its own"),
        "{err}"
    );
    ehds_prep::delivery::verify(&w.path("out/registry")).unwrap();
}

#[test]
fn linked_pseudonyms_are_new_per_permit_key_and_consistent_across_tables() {
    let w = World::new(1500, 15);
    w.deliver_all();
    w.link("linked-a", "access-a", 10);
    w.link("linked-b", "access-b", 10);
    let holder_pseudonyms: HashSet<String> = [
        "hospital/patients",
        "insurer/pharmacy_claims",
        "registry/cancer_cases",
    ]
    .iter()
    .flat_map(|t| column_values(&w.path(&format!("out/{t}.parquet")), "person_pseudonym"))
    .flatten()
    .collect();
    assert!(holder_pseudonyms.len() > 1000);
    let mut persons = Vec::new();
    for name in ["linked-a", "linked-b"] {
        let out = w.path(&format!("out/{name}"));
        for entry in std::fs::read_dir(&out).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "parquet") {
                for v in string_values(&path) {
                    assert!(!holder_pseudonyms.contains(&v), "{}", path.display());
                }
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                for p in &holder_pseudonyms {
                    assert!(!text.contains(p.as_str()), "{}", path.display());
                }
            }
        }
        let person_set: BTreeSet<String> =
            column_values(&out.join("persons.parquet"), "person_pseudonym")
                .into_iter()
                .flatten()
                .collect();
        // The same person has the same new pseudonym in every table of one linked delivery.
        for table in ["cases", "claims"] {
            let linked: BTreeSet<String> =
                column_values(&out.join(format!("{table}.parquet")), "person_pseudonym")
                    .into_iter()
                    .flatten()
                    .collect();
            assert!(!linked.is_empty());
            // Persons the privacy model suppressed from the person table left this table too.
            assert!(linked.is_subset(&person_set), "{table}");
        }
        persons.push(person_set);
    }
    assert!(
        persons[0].is_disjoint(&persons[1]),
        "two permits' pseudonyms must not join"
    );
    assert!(persons[0].len() > 1000);
}

#[test]
fn the_linked_person_table_meets_its_model_when_counted_from_the_file() {
    for format in PSEUDONYM_FORMATS {
        linked_person_table_meets_its_model(format);
    }
}

fn linked_person_table_meets_its_model(format: &'static str) {
    let mut w = World::new(2000, 16);
    w.pseudonyms = format;
    w.deliver_all();
    let outcome = w.link("linked", "access-a", 10);
    let path = w.path("out/linked/persons.parquet");
    let (sex, year, pseudonym) = (
        column_values(&path, "sex"),
        column_values(&path, "birth_year"),
        column_values(&path, "person_pseudonym"),
    );
    let mut classes: BTreeMap<(Option<String>, Option<String>), BTreeSet<String>> = BTreeMap::new();
    for ((s, y), p) in sex.into_iter().zip(year).zip(pseudonym) {
        classes.entry((s, y)).or_default().insert(p.unwrap());
    }
    assert!(classes.len() > 1);
    for (class, persons) in &classes {
        assert!(
            persons.len() >= 5,
            "{class:?} holds {} persons",
            persons.len()
        );
    }
    let delivered: usize = classes.values().map(|p| p.len()).sum();
    let a = outcome.run.datasets[0].anonymisation.as_ref().unwrap();
    assert_eq!(
        delivered as u64 + a.rows_suppressed,
        exact(&outcome.exact.persons)
    );
    // The suppressed persons' rows left the event tables: in the holders' deliveries, the rows of
    // persons absent from the person table are exactly those removed.
    assert!(a.rows_suppressed > 0, "the sample needs suppression");
    let kept: HashSet<String> = column_values(&path, "person_pseudonym")
        .into_iter()
        .flatten()
        .collect();
    // The format asked for is the one written, by the holders and by the linking permit.
    let width = if format.is_empty() { 32 } else { 43 };
    let holders = column_values(
        &w.path("out/insurer/pharmacy_claims.parquet"),
        "person_pseudonym",
    );
    for p in kept.iter().chain(holders.iter().flatten()) {
        assert_eq!(p.len(), width, "{format:?}");
    }
    for (dataset, holder) in [(1, "registry/cancer_cases"), (2, "insurer/pharmacy_claims")] {
        let report = &outcome.run.datasets[dataset];
        let written: Vec<Option<String>> = column_values(
            &w.path(&format!("out/linked/{}.parquet", report.name)),
            "person_pseudonym",
        );
        assert!(
            written.iter().flatten().all(|p| kept.contains(p)),
            "{}",
            report.name
        );
        let holder_rows = column_values(
            &w.path(&format!("out/{holder}.parquet")),
            "person_pseudonym",
        );
        let with_person = holder_rows.iter().filter(|p| p.is_some()).count() as u64;
        let written_with_person = written.iter().filter(|p| p.is_some()).count() as u64;
        assert_eq!(
            with_person - written_with_person,
            report.rows_of_removed_persons,
            "{}",
            report.name
        );
    }
    assert!(outcome.run.datasets[2].rows_of_removed_persons > 0);
}

/// Walks the masked and exact reports side by side: each count from 1 to threshold − 1 is masked,
/// every other value is equal.
fn compare_masked(
    masked: &serde_json::Value,
    exact: &serde_json::Value,
    threshold: u64,
    seen: &mut u64,
) {
    use serde_json::Value;
    match (masked, exact) {
        (Value::String(m), Value::Number(n)) => {
            let n = n.as_u64().unwrap();
            assert_eq!(m, &format!("< {threshold}"));
            assert!((1..threshold).contains(&n), "{n} masked");
            *seen += 1;
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                compare_masked(x, y, threshold, seen);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, x) in a {
                if k == "masking" {
                    continue;
                }
                compare_masked(x, &b[k], threshold, seen);
            }
        }
        (Value::Number(m), Value::Number(n)) => {
            assert_eq!(m, n);
            if let Some(n) = n.as_u64() {
                assert!(n == 0 || n >= threshold || n == 128, "{n} shown unmasked");
            }
        }
        (m, n) => assert_eq!(m, n),
    }
}

#[test]
fn small_counts_are_masked_in_the_delivered_report_and_the_rerun_is_byte_identical() {
    let w = World::new(1200, 17);
    w.deliver_all();
    let exact_path = w.path("exact.json");
    let permit = w.linking_permit("linked", "access-a", 20);
    let text = std::fs::read_to_string(&permit)
        .unwrap()
        .replace(
            "small_counts = 20",
            &format!(
                "small_counts = 20\nexact_report = \"{}\"",
                exact_path.display()
            ),
        )
        .replace("[output]\n", "[output]\naudit_log = \"audit.jsonl\"\n");
    std::fs::write(&permit, text).unwrap();
    let run = || {
        let o = ehds_prep(&["link", "--permit", permit.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = w.path("out/linked");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            // The reports carry timings; everything else must repeat byte for byte.
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("report.")
            })
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let first = run();
    assert_eq!(run(), first);
    assert!(w.path("out/linked/report.html").exists());
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cases.parquet",
            "claims.parquet",
            "linkage.json",
            "linkage.txt",
            "manifest.json",
            "persons.parquet"
        ]
    );
    let masked: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path("out/linked/linkage.json")).unwrap()).unwrap();
    let exact: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&exact_path).unwrap()).unwrap();
    let mut seen = 0;
    compare_masked(&masked, &exact, 20, &mut seen);
    assert!(seen > 0, "the small sample has counts below 20");
    // Each link appended its audit record: outcome, the access body's key fingerprint, counts.
    let audit = std::fs::read_to_string(w.path("audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    let key =
        ehds_prep::kernels::keys::SecretKey::from_private_file(&w.path("access-a.hex"), false)
            .unwrap();
    for r in &records {
        assert_eq!(
            (&r["event"], &r["outcome"], &r["exit_code"]),
            (&"link".into(), &"ok".into(), &0.into())
        );
        assert_eq!(
            r["key_fingerprints"][0],
            serde_json::json!(["researcher", key.fingerprint()])
        );
        assert_eq!(r["datasets"][0]["name"], "persons");
        assert!(r["datasets"][2]["rows_delivered"].as_u64().unwrap() > 0);
    }
    let summary = String::from_utf8(first[3].1.clone()).unwrap();
    assert!(summary.contains("< 20"), "{summary}");
}
