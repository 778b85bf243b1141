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
                let code = CONDITIONS[rng.random_range(0..CONDITIONS.len())];
                conditions
                    .line(format!("{condition_id},{id},{code},{start},{visit_id}").as_bytes())?;
            }
        }
    }
    Ok(person.finish()? + &period.finish()? + &visits.finish()? + &conditions.finish()?)
}
