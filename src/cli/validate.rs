//! `ehds-prep validate --permit FILE`: check a permit, its keys and sources; write nothing.

use std::path::PathBuf;

/// Check a permit and its sources (files, columns, types on a sample) without writing anything.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    permit: PathBuf,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let plan = ehds_prep::load_plan(&args.permit)?;
    for (dataset, rows) in ehds_prep::engine::validate(&plan)? {
        println!(
            "dataset {dataset}: sources readable, {rows} sample rows parse in the declared types"
        );
    }
    println!(
        "permit {} is valid; nothing was written",
        plan.permit.spec.permit.id
    );
    Ok(())
}
