//! `ehds-prep describe --permit FILE --dataset NAME [--out FILE]`: a holder dataset described for
//! the national catalogue (HealthDCAT-AP as JSON-LD); needs no key.

use std::path::PathBuf;

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep describe --permit configs/hospital.toml --dataset patients --out patients.jsonld";

/// Describe a holder dataset for the national catalogue: HealthDCAT-AP as JSON-LD, from the
/// dataset's [datasets.catalogue] entry and figures measured from its extract (records, unique
/// individuals, temporal coverage, typical ages, per-column DQV quality measurements).
#[derive(clap::Args)]
pub struct Args {
    /// The permit that declares the dataset (its source, columns and catalogue entry).
    #[arg(long)]
    permit: PathBuf,
    /// The dataset's name in the permit.
    #[arg(long)]
    dataset: String,
    /// Write the JSON-LD here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    use ehds_prep::report::describe;
    // No key is loaded: describing a dataset reads it, and pseudonymises nothing.
    let permit = ehds_prep::permit::Permit::load(&args.permit)?;
    if let Some(path) = &args.out {
        ehds_prep::source::inputs::refuse_to_overwrite(path, &permit.inputs())?;
    }
    let profile = describe::profile(&permit, &args.dataset)?;
    let text =
        serde_json::to_string_pretty(&describe::describe(&permit, &args.dataset, &profile)?)?
            + "\n";
    match &args.out {
        Some(path) => super::write_report(path, &text)?,
        None => print!("{text}"),
    }
    Ok(())
}
