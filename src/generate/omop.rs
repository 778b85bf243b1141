//! A synthetic hospital extract in the OMOP Common Data Model 5.4 (the tables a hospital delivers
//! most: `person`, `observation_period`, `visit_occurrence`, `condition_occurrence`), shaped like
//! Synthea's public samples: sequential person ids, an observation period that starts at birth,
//! visits and ICD-10 conditions over a few years.

use std::path::Path;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::{Out, date_after};
use crate::error::Result;

const VISIT_CONCEPTS: &[u32] = &[9201, 9202, 9203];
const CONDITIONS: &[&str] = &[
    "E11.9", "E10.9", "I10", "J45.9", "M54.5", "K21.9", "F32.9", "I25.1", "N39.0", "J20.9",
];
/// Rarer codes, drawn for one condition in six, the first more often than the last: the long tail
/// that makes a person's set of diagnoses identifying (`set_valued` in configs/omop.toml).
const RARE_CONDITIONS: &[&str] = &[
    "E11.2", "E11.3", "E11.4", "E11.5", "E10.2", "E10.3", "I21.0", "I21.1", "I21.4", "I48.0",
    "I48.1", "I50.0", "I50.1", "J44.0", "J44.1", "J18.9", "J15.9", "K50.0", "K51.0", "K57.3",
    "K80.2", "C50.9", "C34.1", "C18.7", "C61", "C67.9", "G35", "G40.9", "G20", "G30.1", "F20.0",
    "F31.1", "F41.1", "F10.2", "N18.3", "N18.4", "N18.5", "M05.9", "M06.9", "M32.1", "L40.0",
    "L20.9", "H40.1", "H35.3", "D50.9", "D69.3", "B20", "A41.9", "O24.4", "Q21.1",
];

/// Writes `people` persons' OMOP tables under `dir`; returns a summary.
pub fn write_omop(dir: &Path, people: usize, seed: u64) -> Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut person = Out::create(
        dir.join("person.csv"),
        "person_id,gender_concept_id,year_of_birth,birth_datetime",
    )?;
    let mut period = Out::create(
        dir.join("observation_period.csv"),
        "observation_period_id,person_id,observation_period_start_date,observation_period_end_date",
    )?;
    let mut visits = Out::create(
        dir.join("visit_occurrence.csv"),
        "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_end_date",
    )?;
    let mut conditions = Out::create(
        dir.join("condition_occurrence.csv"),
        "condition_occurrence_id,person_id,condition_source_value,condition_start_date,visit_occurrence_id",
    )?;
    let (mut visit_id, mut condition_id) = (0u64, 0u64);
    for id in 1..=people {
        let gender = if rng.random_bool(0.5) { 8507 } else { 8532 };
        let birth = date_after((1930, 1, 1), 85 * 365, &mut rng);
        person.line(format!("{id},{gender},{},{birth} 00:00:00", birth.format("%Y")).as_bytes())?;
        let end = date_after((2024, 1, 1), 365, &mut rng);
        period.line(format!("{id},{id},{birth},{end}").as_bytes())?;
        for _ in 0..rng.random_range(0..=5) {
            visit_id += 1;
            let start = date_after((2015, 1, 1), 9 * 365, &mut rng).max(birth);
            let stop = start + chrono::Duration::days(rng.random_range(0..10));
            let concept = VISIT_CONCEPTS[rng.random_range(0..VISIT_CONCEPTS.len())];
            visits.line(format!("{visit_id},{id},{concept},{start},{stop}").as_bytes())?;
            for _ in 0..rng.random_range(0..=2) {
                condition_id += 1;
                let code = if rng.random_bool(1.0 / 6.0) {
                    let u: f64 = rng.random();
                    RARE_CONDITIONS[(u * u * RARE_CONDITIONS.len() as f64) as usize]
                } else {
                    CONDITIONS[rng.random_range(0..CONDITIONS.len())]
                };
                conditions
                    .line(format!("{condition_id},{id},{code},{start},{visit_id}").as_bytes())?;
            }
        }
    }
    Ok(person.finish()? + &period.finish()? + &visits.finish()? + &conditions.finish()?)
}
