//! `ehds-prep inspect DELIVERY`: print a delivery's manifest and verify every file against it.

use std::path::PathBuf;

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep inspect out/hospital";

/// Print a delivery's manifest and verify every checksum and footer.
#[derive(clap::Args)]
pub struct Args {
    /// The delivery folder.
    delivery: PathBuf,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let manifest = ehds_prep::delivery::verify(&args.delivery)?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    println!(
        "delivery {}: {} files verified",
        args.delivery.display(),
        manifest.datasets.len()
    );
    Ok(())
}
