//! `ehds-prep generate`, `generate-extract`, `generate-snds`, `generate-omop` and
//! `scale-up`: synthetic data for the tests, the demo
//! and the benchmarks.

use std::path::PathBuf;

/// Examples shown under `--help` of each generator.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep generate --out sample-data --people 2000\n  ehds-prep generate --out /data/big --people 1000000 --seed 7";
pub const EXTRACT_EXAMPLES: &str =
    "Examples:\n  ehds-prep generate-extract --out stays.csv --rows 10000000";
pub const SNDS_EXAMPLES: &str = "Examples:\n  ehds-prep generate-snds --out sample-data/snds";
pub const OMOP_EXAMPLES: &str = "Examples:\n  ehds-prep generate-omop --out sample-data/omop";
pub const SCALE_UP_EXAMPLES: &str =
    "Examples:\n  ehds-prep scale-up --input patients.csv --out patients-10m.csv --rows 10000000";

/// A seeded population of any size, and where its extracts go (`generate`, `generate-snds`,
/// `generate-omop`).
#[derive(clap::Args)]
pub struct Args {
    /// Output folder for the extracts.
    #[arg(long)]
    out: PathBuf,
    /// Number of people in the population.
    #[arg(long, default_value_t = 2000)]
    people: usize,
    /// The generator's seed: the same seed and size give the same bytes.
    #[arg(long, default_value_t = 2029)]
    seed: u64,
}

/// Generate the wide hospital extract of the performance comparison (stays with their patient's
/// attributes, 12 columns), of any number of rows, in memory that does not grow with rows.
#[derive(clap::Args)]
pub struct ExtractArgs {
    /// The CSV file to write.
    #[arg(long)]
    out: PathBuf,
    /// Number of stays (rows).
    #[arg(long)]
    rows: usize,
    /// The generator's seed: the same seed and size give the same bytes.
    #[arg(long, default_value_t = 2029)]
    seed: u64,
}

/// Write a perturbed scale-up of a delimited table (for benchmarks): rows resampled, then each
/// value replaced with probability --perturb by the same column's value in another random row.
#[derive(clap::Args)]
pub struct ScaleUpArgs {
    /// The delimited table to scale up (with a header).
    #[arg(long)]
    input: PathBuf,
    /// The table to write.
    #[arg(long)]
    out: PathBuf,
    /// Number of rows of the table written.
    #[arg(long)]
    rows: usize,
    /// The tables' field delimiter.
    #[arg(long, default_value_t = ';')]
    delimiter: char,
    /// The probability that a value is replaced by the same column's value in another row.
    #[arg(long, default_value_t = 0.1, value_parser = probability)]
    perturb: f64,
    /// The generator's seed: the same seed and size give the same bytes.
    #[arg(long, default_value_t = 2029)]
    seed: u64,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let summary = ehds_prep::generate::write_extracts(&args.out, args.people, args.seed)?;
    print!("{summary}");
    Ok(())
}

pub fn execute_extract(args: ExtractArgs) -> anyhow::Result<()> {
    print!(
        "{}",
        ehds_prep::generate::write_hospital_extract(&args.out, args.rows, args.seed)?
    );
    Ok(())
}

pub fn execute_snds(args: Args) -> anyhow::Result<()> {
    let summary = ehds_prep::generate::snds::write_snds(&args.out, args.people, args.seed)?;
    print!("{summary}");
    Ok(())
}

pub fn execute_omop(args: Args) -> anyhow::Result<()> {
    let summary = ehds_prep::generate::omop::write_omop(&args.out, args.people, args.seed)?;
    print!("{summary}");
    Ok(())
}

pub fn execute_scale_up(args: ScaleUpArgs) -> anyhow::Result<()> {
    let ScaleUpArgs {
        input,
        out,
        rows,
        delimiter,
        perturb,
        seed,
    } = args;
    ehds_prep::generate::scale_up(&input, delimiter, rows, perturb, seed, &out)?;
    println!("wrote {rows} rows to {}", out.display());
    Ok(())
}

/// A number from 0 to 1, for clap.
fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "`{text}` is not a probability (a number from 0 to 1)"
        )),
    }
}
