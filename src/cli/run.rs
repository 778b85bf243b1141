//! `ehds-prep run --permit FILE [--dry-run]`: run a permit and write its delivery.

use std::path::PathBuf;

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep run --permit configs/hospital.toml\n  ehds-prep run --permit configs/hospital.toml --dry-run\n  ehds-prep run --permit configs/hospital.toml --log-format json\n  ehds-prep run --permit configs/registry.toml --cluster df://10.0.0.1:50050";

/// Run a permit: read the extracts, minimise, pseudonymise, generalise and write the delivery.
#[derive(clap::Args)]
pub struct Args {
    /// The permit file (TOML).
    #[arg(long)]
    permit: PathBuf,
    /// Print the compiled plan (sources, cohort, column steps, key fingerprints) and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run on a cluster (`ehds-prep cluster`): `df://HOST:PORT` of its scheduler, or `local` for
    /// one started inside this process. The output folder must be on storage the executors share.
    /// Needs a build with the `cluster` feature.
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
}

pub fn execute(args: Args, quiet: bool) -> anyhow::Result<()> {
    let plan = ehds_prep::load_plan(&args.permit)?;
    if args.dry_run {
        print!("{}", plan.describe());
        println!(
            "dry run: nothing was read beyond the permit, keys and opt-out list; nothing was written"
        );
        return Ok(());
    }
    let report = match &args.cluster {
        None => ehds_prep::engine::run(&plan)?,
        #[cfg(feature = "cluster")]
        Some(url) => ehds_prep::cluster::run(&plan, url)?,
        #[cfg(not(feature = "cluster"))]
        Some(_) => return Err(super::cluster::not_built().into()),
    };
    if !quiet {
        print!("{}", report.summary());
    }
    Ok(())
}
