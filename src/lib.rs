//! ehds-prep: prepares health data for secondary use under the European Health Data Space regulation.
//!
//! One permit file drives a run, and the modules follow the data through it:
//!
//! ```text
//! permit ──► plan ──► engine ──────────────────────────────► delivery ──► report
//!  (file,    (steps,   │ batches from source (CSV, Parquet)     (Parquet,    (report.json,
//!   checks)   keys)    │ through the plan's steps, each a       manifest,    report.html,
//!                      │ kernel over slices; privacy for        commit)      audit, catalogue)
//!                      │ anonymised datasets
//! linkage: the access body's side, over verified deliveries, with the same engine.
//! ```
//!
//! [`permit`] parses and validates the permit, [`plan`] compiles it into steps with keys loaded,
//! [`engine`] executes the steps batch by batch over [`source`] extracts, [`privacy`] searches and
//! checks the generalisation of anonymised datasets, [`delivery`] writes and commits the Parquet
//! files with their manifest, and [`report`] says what was done. The [`kernels`] (identifiers,
//! pseudonyms, date shifts, generalisation, masking, value parsing) are plain Rust over slices, free
//! of polars types, so that any executor produces bit-identical results.

#[cfg(feature = "cluster")]
pub mod cluster;
pub mod delivery;
pub mod engine;
pub mod error;
pub mod generate;
pub mod kernels;
pub mod linkage;
pub mod permit;
pub mod plan;
pub mod privacy;
pub mod report;
pub mod source;

pub use error::{Error, Result};

/// The engine's version, recorded in every delivery, report and audit record.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Loads, validates and compiles a permit file (keys included), ready to run.
pub fn load_plan(permit_path: &std::path::Path) -> Result<plan::Plan> {
    plan::Plan::compile(permit::Permit::load(permit_path)?)
}
