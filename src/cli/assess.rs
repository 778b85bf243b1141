//! `ehds-prep assess --permit FILE` or `ehds-prep assess --input FILE --quasi-identifiers A,B
//! [--person P] [-k K] [--population FILE]`: re-identification risk; writes nothing but `--html`.

use std::path::PathBuf;

use ehds_prep::permit::TextEncoding;

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep assess --permit configs/research.toml --html assess.html\n  ehds-prep assess --input out/research/patients.parquet --quasi-identifiers age,sex,department --person person_pseudonym -k 5";

/// Assess re-identification risk without writing anything. With --permit: profile each anonymised
/// dataset and report the transformation the search chooses (or the pinned one, feasible or not),
/// its metrics and the risks before and after (after: each dataset alone, before the persons
/// another dataset suppresses leave it; blanked rows counted in persons give none). With --input:
/// the classes of the named
/// quasi-identifiers in any CSV or Parquet file (an extract or a delivery), in persons when --person
/// is given; --population adds journalist and marketer risk. Prints JSON.
#[derive(clap::Args)]
pub struct Args {
    /// The permit whose anonymised datasets are assessed (their search's choice, or the pinned
    /// levels).
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    permit: Option<PathBuf>,
    /// A CSV or Parquet file (Parquet by its extension).
    #[arg(long, requires = "quasi_identifiers")]
    input: Option<PathBuf>,
    /// Comma-separated quasi-identifier columns of --input.
    #[arg(long, value_delimiter = ',')]
    quasi_identifiers: Vec<String>,
    /// The column identifying the person: classes count distinct persons.
    #[arg(long)]
    person: Option<String>,
    /// Count records in classes below k (exit 8 if any).
    #[arg(short, long)]
    k: Option<u32>,
    /// The population file (same columns) for journalist and marketer risk.
    #[arg(long)]
    population: Option<PathBuf>,
    /// Prosecutor risk above which a record counts as at risk.
    #[arg(long, default_value_t = 0.2)]
    risk_threshold: f64,
    /// CSV delimiter.
    #[arg(long, default_value_t = ',')]
    delimiter: char,
    /// CSV encoding.
    #[arg(long, value_enum, default_value_t = Encoding::Utf8)]
    encoding: Encoding,
    /// Also write the assessment as a self-contained HTML report (charts of class sizes and risk).
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Encoding {
    #[value(name = "utf-8")]
    Utf8,
    #[value(name = "latin-1")]
    Latin1,
    #[value(name = "windows-1252")]
    Windows1252,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    match &args.permit {
        Some(permit) => of_permit(permit, args.html.as_deref()),
        None => of_file(args),
    }
}

fn of_permit(permit: &std::path::Path, html: Option<&std::path::Path>) -> anyhow::Result<()> {
    let plan = ehds_prep::load_plan(permit)?;
    if let Some(path) = html {
        ehds_prep::source::inputs::refuse_to_overwrite(path, &plan.permit.inputs())?;
    }
    let assessed = ehds_prep::engine::assess(&plan)?;
    let json: Vec<serde_json::Value> = assessed
        .iter()
        .map(|(name, a)| serde_json::json!({ "dataset": name, "assessment": a }))
        .collect();
    println!("{}", serde_json::to_string_pretty(&json)?);
    if let Some(path) = html {
        let page =
            ehds_prep::report::html::assessment_report(&plan.permit.spec.permit.id, &assessed);
        super::write_report(path, &page)?;
    }
    let failing: Vec<&str> = assessed
        .iter()
        .filter(|(_, a)| a.as_ref().is_none_or(|a| !a.feasible))
        .map(|(name, _)| name.as_str())
        .collect();
    if !failing.is_empty() {
        return Err(ehds_prep::Error::Privacy(format!(
            "no feasible transformation for {}",
            failing.join(", ")
        ))
        .into());
    }
    Ok(())
}

fn of_file(args: Args) -> anyhow::Result<()> {
    let spec = ehds_prep::report::assess::AssessSpec {
        input: args.input.expect("clap: --input or --permit"),
        quasi_identifiers: args.quasi_identifiers,
        person: args.person,
        k: args.k,
        risk_threshold: args.risk_threshold,
        population: args.population,
        delimiter: args.delimiter,
        encoding: match args.encoding {
            Encoding::Utf8 => TextEncoding::Utf8,
            Encoding::Latin1 => TextEncoding::Latin1,
            Encoding::Windows1252 => TextEncoding::Windows1252,
        },
    };
    let inputs: Vec<(String, PathBuf)> = std::iter::once(("--input", &spec.input))
        .chain(spec.population.iter().map(|p| ("--population", p)))
        .map(|(what, path)| (what.to_string(), path.clone()))
        .collect();
    if let Some(path) = &args.html {
        ehds_prep::source::inputs::refuse_to_overwrite(path, &inputs)?;
    }
    let risk = ehds_prep::report::assess::assess_file(&spec)?;
    println!("{}", serde_json::to_string_pretty(&risk)?);
    if let Some(path) = &args.html {
        let page = ehds_prep::report::html::risk_report(
            &spec.input.display().to_string(),
            &spec.quasi_identifiers,
            &risk,
        );
        super::write_report(path, &page)?;
    }
    if let Some(n) = risk.records_in_classes_below_k.filter(|&n| n > 0) {
        return Err(
            ehds_prep::Error::Privacy(format!("{n} records are in classes below k")).into(),
        );
    }
    Ok(())
}
