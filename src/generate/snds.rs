//! A synthetic extract shaped like France's national health data system (SNDS): the insurer's
//! DCIR (beneficiaries `IR_BEN_R`, claims `ER_PRS_F`, pharmacy dispensings `ER_PHA_F` reaching
//! the claims through DCIR's 9-column key) and a hospital's PMSI MCO stays (`T_MCOaaC`, which
//! names the patient, and `T_MCOaaB`, which reaches it through ETA_NUM + RSA_NUM).
//!
//! With the conventions that make national extracts hard: Latin-1 files with `;`; case-sensitive
//! pseudo-NIRs (`BEN_NIR_PSA`), some differing from another by case alone; twins sharing a
//! BEN_NIR_PSA, told apart by their rank `BEN_RNG_GEM`; the sentinel `1600-01-01` for "no
//! date"; partial dates (`SOR_ANN` YYYY, `SOR_MOI` YYYYMM) beside the date they belong to;
//! PMSI's placeholder `xxxxxxxxxxxxxxxxx` where chaining failed (return code `NIR_RET` ≠ 0);
//! decimal commas; 3-character départements (`075`, `02A`, `974`). The ground truth (`truth.csv`)
//! says who each beneficiary is, and what each extract holds of them.

use std::fmt::Write as _;
use std::path::Path;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::{Out, date_after, latin1};
use crate::error::Result;

/// What SNDS writes for "no date".
pub const SENTINEL_DATE: &str = "1600-01-01";
/// What PMSI writes where the stay could not be chained to a person.
pub const PLACEHOLDER: &str = "xxxxxxxxxxxxxxxxx";

const DEPARTEMENTS: &[&str] = &[
    "075", "092", "093", "094", "013", "069", "033", "059", "031", "02A", "02B", "974", "971",
];
const SPECIALTIES: &[&str] = &[
    "Médecine générale",
    "Cardiologie",
    "Pédiatrie",
    "Gériatrie",
    "Endocrinologie",
];
/// Nature of the service (PRS_NAT_REF): a consultation, a visit, a pharmacy dispensing.
const SERVICES: &[&str] = &["1111", "1112", "3317"];
const PHARMACY: &str = "3317";
/// CIP13 codes with the ATC class they map to (the delivered dictionary).
const MEDICINES: &[(&str, &str)] = &[
    ("3400930000011", "A10BA02"),
    ("3400930000028", "A10BB09"),
    ("3400930000035", "C09AA05"),
    ("3400930000042", "C10AA05"),
    ("3400930000059", "N02BE01"),
    ("3400930000066", "J01CA04"),
    ("3400930000073", "B01AC06"),
    ("3400930000080", "R03AC02"),
];
const DIAGNOSES: &[&str] = &[
    "I10", "E119", "I214", "J189", "K358", "N390", "I639", "E660",
];
const GHM: &[&str] = &["05M09T", "10M02T", "04M05T", "06C04J", "01M30T"];
const HOSPITALS: &[&str] = &["750100042", "130786049", "690781810"];

struct Beneficiary {
    nir_psa: String,
    rank: u8,
    sex: u8,
    birth: (i32, u32),
    departement: &'static str,
    death: Option<chrono::NaiveDate>,
    opted_out: bool,
}

/// A pseudo-NIR as SNDS writes it: 17 characters, digits and letters of both cases.
fn pseudo_nir(rng: &mut ChaCha8Rng) -> String {
    const CHARS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..17)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// The same letters in another case: another beneficiary whom upper-casing would merge.
fn case_variant(nir: &str) -> String {
    let flipped: String = nir
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    if flipped == nir {
        format!("a{}", &nir[1..])
    } else {
        flipped
    }
}

fn beneficiaries(people: usize, rng: &mut ChaCha8Rng) -> Vec<Beneficiary> {
    let mut out: Vec<Beneficiary> = Vec::with_capacity(people + people / 20);
    while out.len() < people {
        let nir_psa = match out.last() {
            Some(previous) if rng.random_bool(0.01) => case_variant(&previous.nir_psa),
            _ => pseudo_nir(rng),
        };
        let birth = (rng.random_range(1930..=2015), rng.random_range(1..=12u32));
        let departement = DEPARTEMENTS[rng.random_range(0..DEPARTEMENTS.len())];
        let twins = rng.random_bool(0.03);
        for rank in 1..=(1 + twins as u8) {
            let death = rng
                .random_bool(0.05)
                .then(|| date_after((2019, 1, 1), 6 * 365, rng));
            out.push(Beneficiary {
                nir_psa: nir_psa.clone(),
                rank,
                sex: rng.random_range(1..=2),
                birth,
                departement,
                death,
                opted_out: rng.random_bool(0.01),
            });
        }
    }
    // The first twin of rank 2 refused: their twin's rows stay.
    if let Some(twin) = out.iter_mut().find(|b| b.rank == 2) {
        twin.opted_out = true;
    }
    out
}

/// Per beneficiary, what the extracts hold of them (the ground truth).
#[derive(Default, Clone)]
struct Held {
    claims: usize,
    dispensings: usize,
    stays: usize,
}

/// Writes the SNDS-shaped sample of `people` beneficiaries (and their twins) under `dir`:
/// `insurer/` and `hospital/` extracts, each holder's opt-out list, the CIP13 → ATC dictionary
/// and `truth.csv`; returns a summary.
pub fn write_snds(dir: &Path, people: usize, seed: u64) -> Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pop = beneficiaries(people, &mut rng);
    let mut held = vec![Held::default(); pop.len()];
    let mut summary = String::new();
    summary += &write_insurer(dir, &pop, &mut held, &mut rng)?;
    summary += &write_hospital(dir, &pop, &mut held, &mut rng)?;
    let mut insurer_list = Out::create(
        dir.join("insurer/opt_out.txt"),
        "# BEN_NIR_PSA;BEN_RNG_GEM of the beneficiaries who refused secondary use",
    )?;
    let mut hospital_list = Out::create(
        dir.join("hospital/opt_out.txt"),
        "# NIR_ANO_17 of the patients who refused (twins cannot be told apart here)",
    )?;
    for b in pop.iter().filter(|b| b.opted_out) {
        insurer_list.line(format!("{};{}", b.nir_psa, b.rank).as_bytes())?;
        hospital_list.line(b.nir_psa.as_bytes())?;
    }
    summary += &insurer_list.finish()?;
    summary += &hospital_list.finish()?;
    let mut dictionary = Out::create(dir.join("insurer/cip13_atc.csv"), "cip13,atc")?;
    for (cip, atc) in MEDICINES {
        dictionary.line(format!("{cip},{atc}").as_bytes())?;
    }
    summary += &dictionary.finish()?;
    let mut truth = Out::create(
        dir.join("truth.csv"),
        "BEN_NIR_PSA,BEN_RNG_GEM,opted_out,claims,dispensings,stays",
    )?;
    for (b, h) in pop.iter().zip(&held) {
        truth.line(
            format!(
                "{},{},{},{},{},{}",
                b.nir_psa, b.rank, b.opted_out, h.claims, h.dispensings, h.stays
            )
            .as_bytes(),
        )?;
    }
    summary += &truth.finish()?;
    Ok(summary)
}

/// DCIR: the beneficiaries, their claims, and the claims' pharmacy dispensings.
fn write_insurer(
    dir: &Path,
    pop: &[Beneficiary],
    held: &mut [Held],
    rng: &mut ChaCha8Rng,
) -> Result<String> {
    let dir = dir.join("insurer");
    let mut ben = Out::create(
        dir.join("IR_BEN_R.csv"),
        "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN;BEN_NAI_MOI;BEN_RES_DPT;BEN_DCD_DTE",
    )?;
    let key = "FLX_DIS_DTD;FLX_TRT_DTD;FLX_EMT_TYP;FLX_EMT_NUM;FLX_EMT_ORD;ORG_CLE_NUM;\
               DCT_ORD_NUM;PRS_ORD_NUM;REM_TYP_AFF";
    let mut claims = Out::create(
        dir.join("ER_PRS_F.csv"),
        &format!(
            "BEN_NIR_PSA;BEN_RNG_GEM;{key};EXE_SOI_DTD;EXE_SOI_DTF;PRS_NAT_REF;PSE_SPE_LIB;PRS_PAI_MNT"
        ),
    )?;
    let mut dispensings = Out::create(
        dir.join("ER_PHA_F.csv"),
        &format!("{key};PHA_PRS_C13;PHA_ACT_QSN"),
    )?;
    let mut line = String::new();
    let mut document = 0u64;
    for (b, h) in pop.iter().zip(held.iter_mut()) {
        let death = b.death.map_or(SENTINEL_DATE.to_string(), |d| d.to_string());
        line.clear();
        write!(
            line,
            "{};{};{};{};{:02};{};{death}",
            b.nir_psa, b.rank, b.sex, b.birth.0, b.birth.1, b.departement
        )
        .expect("write to String");
        ben.line(&latin1(&line))?;
        for _ in 0..rng.random_range(0..=6) {
            document += 1;
            let care = date_after((2018, 6, 1), 6 * 365, rng);
            let flow = care + chrono::Duration::days(rng.random_range(1..60));
            let key = format!(
                "{flow};{};1;{};0;01C{:03};{document};0;0",
                flow + chrono::Duration::days(rng.random_range(0..5)),
                rng.random_range(1..100),
                rng.random_range(1..=999)
            );
            let end = if rng.random_bool(0.6) {
                SENTINEL_DATE.to_string()
            } else {
                (care + chrono::Duration::days(rng.random_range(0..10))).to_string()
            };
            let service = SERVICES[rng.random_range(0..SERVICES.len())];
            line.clear();
            write!(
                line,
                "{};{};{key};{care};{end};{service};{};{},{:02}",
                b.nir_psa,
                b.rank,
                SPECIALTIES[rng.random_range(0..SPECIALTIES.len())],
                rng.random_range(5..200),
                rng.random_range(0..100)
            )
            .expect("write to String");
            claims.line(&latin1(&line))?;
            h.claims += 1;
            if service == PHARMACY {
                for _ in 0..rng.random_range(1..=3) {
                    let (cip, _) = MEDICINES[rng.random_range(0..MEDICINES.len())];
                    let quantity = rng.random_range(1..=3);
                    dispensings.line(format!("{key};{cip};{quantity}").as_bytes())?;
                    h.dispensings += 1;
                }
            }
        }
    }
    Ok(ben.finish()? + &claims.finish()? + &dispensings.finish()?)
}

/// PMSI MCO: the C table chains each stay to the patient's NIR_ANO_17 (the BEN_NIR_PSA, without
/// the rank: twins share it), or writes the placeholder with a return code; the B table describes
/// the stay.
fn write_hospital(
    dir: &Path,
    pop: &[Beneficiary],
    held: &mut [Held],
    rng: &mut ChaCha8Rng,
) -> Result<String> {
    let dir = dir.join("hospital");
    let mut c = Out::create(
        dir.join("T_MCOaaC.csv"),
        "ETA_NUM;RSA_NUM;NIR_ANO_17;NIR_RET;NAI_RET;SEX_RET;EXE_SOI_DTD;EXE_SOI_DTF;SOR_ANN;SOR_MOI",
    )?;
    let mut b_table = Out::create(
        dir.join("T_MCOaaB.csv"),
        "ETA_NUM;RSA_NUM;DGN_PAL;GRG_GHM;SEJ_NBJ;BDI_DEP;COD_SEX;AGE_ANN",
    )?;
    let mut stay = 0u64;
    for (b, h) in pop.iter().zip(held.iter_mut()) {
        if !rng.random_bool(0.3) {
            continue;
        }
        for _ in 0..rng.random_range(1..=3) {
            stay += 1;
            let hospital = HOSPITALS[rng.random_range(0..HOSPITALS.len())];
            let admission = date_after((2019, 1, 1), 5 * 365, rng);
            let days = rng.random_range(0..20);
            let discharge = admission + chrono::Duration::days(days);
            let chained = rng.random_bool(0.95);
            let (nir, code) = if chained {
                (b.nir_psa.as_str(), "0")
            } else {
                (PLACEHOLDER, "1")
            };
            let fr = |d: chrono::NaiveDate| d.format("%d/%m/%Y").to_string();
            c.line(
                format!(
                    "{hospital};{stay:010};{nir};{code};{code};0;{};{};{};{}",
                    fr(admission),
                    fr(discharge),
                    discharge.format("%Y"),
                    discharge.format("%Y%m")
                )
                .as_bytes(),
            )?;
            let age = chrono::Datelike::year(&admission) - b.birth.0;
            b_table.line(
                format!(
                    "{hospital};{stay:010};{};{};{days};{};{};{age}",
                    DIAGNOSES[rng.random_range(0..DIAGNOSES.len())],
                    GHM[rng.random_range(0..GHM.len())],
                    b.departement,
                    b.sex
                )
                .as_bytes(),
            )?;
            if chained {
                h.stays += 1;
            }
        }
    }
    Ok(c.finish()? + &b_table.finish()?)
}
