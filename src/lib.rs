//! ehds-prep: prepares health data for secondary use under the European Health Data Space regulation.
//!
//! One permit file drives a run: [`permit`] parses and validates it, [`plan`] compiles it into steps
//! with keys loaded, [`engine`] executes the steps batch by batch over [`source`] extracts and writes a
//! [`delivery`] with its manifest and a [`report`]. The kernels ([`identifier`], [`pseudonymise`],
//! [`generalise`], [`values`]) are plain Rust over slices, free of polars types, so that any executor
//! produces bit-identical results.

pub mod anonymise;
pub mod assess;
pub mod audit;
pub mod csv_columns;
pub mod dateshift;
pub mod delivery;
pub mod describe;
pub mod engine;
pub mod error;
pub mod generalise;
pub mod generate;
pub mod hex;
pub mod hierarchy;
pub mod hmac_kernel;
pub mod html;
pub mod identifier;
pub mod inputs;
pub mod keys;
pub mod lattice;
pub mod linkage;
pub mod mapping;
pub mod mask;
pub mod opt_out;
pub mod permit;
pub mod plan;
pub mod privacy;
pub mod progress;
pub mod pseudonymise;
pub mod report;
pub mod risk;
pub mod row_group;
pub mod source;
pub mod text_column;
pub mod tokens;
pub mod values;

pub use error::{Error, Result};

/// Loads, validates and compiles a permit file (keys included), ready to run.
pub fn load_plan(permit_path: &std::path::Path) -> Result<plan::Plan> {
    plan::Plan::compile(permit::Permit::load(permit_path)?)
}
