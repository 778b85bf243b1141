//! `ehds-prep validate --permit FILE`: check a permit, its keys and sources; write nothing.

use std::path::PathBuf;

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep validate --permit configs/hospital.toml";

/// Check a permit and its sources (files, columns, types on a sample) without writing anything.
#[derive(clap::Args)]
pub struct Args {
    /// The permit file (TOML).
    #[arg(long)]
    permit: PathBuf,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let plan = ehds_prep::load_plan(&args.permit)?;
    for c in ehds_prep::engine::validate(&plan)? {
        println!(
            "dataset {}: sources readable, {} sample rows parse in the declared types, {} would \
             be delivered",
            c.dataset, c.rows, c.delivered
        );
        if c.rows > 0 && c.delivered == 0 {
            eprintln!(
                "warning: dataset {}: none of the {} sample rows would be delivered ({} outside \
                 the cohort, {} opted out, {} with a rejected identifier): check the cohort (raw \
                 or delivered values) and the identifier rules",
                c.dataset, c.rows, c.outside_cohort, c.opted_out, c.rejected
            );
        }
    }
    println!(
        "permit {} is valid; nothing was written",
        plan.permit.spec.permit.id
    );
    Ok(())
}
