//! `ehds-prep link --permit FILE`: the access body's linkage of the holders' deliveries.

use std::path::PathBuf;

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep link --permit configs/linkage.toml";

/// Access bodies: verify the holders' deliveries of a permit, link them on their linkage
/// pseudonym, re-pseudonymise into the linking permit's domain, apply its privacy models and write
/// the linked delivery with `linkage.json` (overlaps, consistency; small counts masked).
#[derive(clap::Args)]
pub struct Args {
    /// The linking permit (a permit with a [linkage] section).
    #[arg(long)]
    permit: PathBuf,
}

pub fn execute(args: Args, quiet: bool) -> anyhow::Result<()> {
    let permit = ehds_prep::permit::Permit::load(&args.permit)?;
    let outcome = ehds_prep::linkage::link(permit)?;
    if !quiet {
        print!("{}", outcome.masked.summary());
        print!("{}", outcome.run.summary());
        println!("  linking: {} ms", outcome.index_ms);
    }
    Ok(())
}
