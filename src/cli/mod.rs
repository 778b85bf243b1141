//! The command line: the global options, the subcommands (one file each, opening with its usage)
//! and what an error becomes (its exit code, on stderr as text or JSON).

mod assess;
mod cluster;
mod completions;
mod describe;
mod generate;
mod inspect;
mod keygen;
mod link;
mod man;
mod permit_schema;
mod reidentify;
mod run;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ehds_prep::error::exit;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  internal error (a bug, a panic included: nothing is committed; please report it)
  2  usage error (bad command line)
  3  invalid permit (the message names the key path and what is allowed)
  4  bad input data (file, record, line and column are named; values never are)
  5  key missing, unreadable or too weak
  6  verification failed (inspect, link: a checksum, size, row count or footer differs;
     link: deliveries of another permit, linkage key or pseudonym scheme;
     reidentify: a token does not authenticate)
  7  the delivery could not be written, or another run holds the output (nothing is left at the
     output path)
  8  privacy models not met: no transformation within the permit's levels and suppression limit
     (run), or a class below k / no feasible transformation (assess)";

/// Prepares health data extracts for secondary use under an EHDS data permit.
#[derive(Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only errors on stderr, and no summary on stdout.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log the run's events (start, each dataset, commit) and each batch.
    #[arg(long, short, global = true)]
    verbose: bool,
    /// Log lines as text for people or JSON for batch schedulers (stderr). Never a value or a key.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// What every subcommand's help ends with: its examples, and where the exit codes are.
fn after_help(examples: &str) -> String {
    format!("{examples}\n\nExit codes: `ehds-prep exit-codes` (0: success).")
}

#[derive(Subcommand)]
enum Command {
    #[command(after_help = after_help(run::EXAMPLES))]
    Run(run::Args),
    #[command(after_help = after_help(link::EXAMPLES))]
    Link(link::Args),
    #[command(after_help = after_help(validate::EXAMPLES))]
    Validate(validate::Args),
    #[command(after_help = after_help(keygen::EXAMPLES))]
    Keygen(keygen::Args),
    #[command(after_help = after_help(inspect::EXAMPLES))]
    Inspect(inspect::Args),
    #[command(after_help = after_help(reidentify::EXAMPLES))]
    Reidentify(reidentify::Args),
    #[command(after_help = after_help(assess::EXAMPLES))]
    Assess(assess::Args),
    #[command(after_help = after_help(describe::EXAMPLES))]
    Describe(describe::Args),
    #[command(after_help = after_help(permit_schema::EXAMPLES))]
    PermitSchema(permit_schema::Args),
    /// Generate synthetic extracts of four holders sharing one population (seeded, any size).
    #[command(after_help = after_help(generate::EXAMPLES))]
    Generate(generate::Args),
    #[command(after_help = after_help(generate::EXTRACT_EXAMPLES))]
    GenerateExtract(generate::ExtractArgs),
    /// Generate an extract shaped like the French SNDS (DCIR beneficiaries, claims and
    /// dispensings; PMSI MCO stays, C and B tables), Latin-1 with `;`, with its conventions: twins
    /// told apart by rank, case-sensitive pseudo-NIRs, sentinel dates, partial dates,
    /// placeholders, decimal commas.
    #[command(after_help = after_help(generate::SNDS_EXAMPLES))]
    GenerateSnds(generate::Args),
    /// Generate a hospital extract in the OMOP CDM 5.4 (person, observation_period,
    /// visit_occurrence, condition_occurrence), shaped like Synthea's samples.
    #[command(after_help = after_help(generate::OMOP_EXAMPLES))]
    GenerateOmop(generate::Args),
    #[command(after_help = after_help(generate::SCALE_UP_EXAMPLES))]
    ScaleUp(generate::ScaleUpArgs),
    #[command(after_help = after_help(cluster::EXAMPLES))]
    Cluster(cluster::Args),
    #[command(after_help = after_help(completions::EXAMPLES))]
    Completions(completions::Args),
    #[command(after_help = after_help(man::EXAMPLES))]
    Man(man::Args),
    /// Print the exit codes and what each means.
    ExitCodes,
}

/// Parses the command line and runs it; the exit code says how it ended.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let nearest = nearest_command(&e);
            if e.use_stderr() && json_requested() {
                let message = nearest.unwrap_or_else(|| e.render().to_string());
                let record = serde_json::json!({
                    "level": "ERROR",
                    "kind": "usage",
                    "exit_code": exit::USAGE,
                    "message": message.trim().trim_start_matches("error: "),
                });
                eprintln!("{record}");
            } else if let Some(nearest) = nearest {
                eprintln!("{nearest}");
            } else {
                let _ = e.print();
            }
            return ExitCode::from(if e.use_stderr() { exit::USAGE as u8 } else { 0 });
        }
    };
    init_logging(&cli);
    // Bars are for a person watching: never in JSON logs, quiet runs or when stderr is redirected.
    if !cli.quiet
        && cli.log_format == LogFormat::Text
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        ehds_prep::report::progress::enable();
    }
    let json = cli.log_format == LogFormat::Json;
    let quiet = cli.quiet;
    let result = match cli.command {
        Command::Run(args) => run::execute(args, quiet),
        Command::Link(args) => link::execute(args, quiet),
        Command::Validate(args) => validate::execute(args),
        Command::Keygen(args) => keygen::execute(args),
        Command::Inspect(args) => inspect::execute(args),
        Command::Reidentify(args) => reidentify::execute(args),
        Command::Assess(args) => assess::execute(args),
        Command::Describe(args) => describe::execute(args),
        Command::PermitSchema(args) => permit_schema::execute(args),
        Command::Generate(args) => generate::execute(args),
        Command::GenerateExtract(args) => generate::execute_extract(args),
        Command::GenerateSnds(args) => generate::execute_snds(args),
        Command::GenerateOmop(args) => generate::execute_omop(args),
        Command::ScaleUp(args) => generate::execute_scale_up(args),
        Command::Cluster(args) => cluster::execute(args),
        Command::Completions(args) => {
            completions::execute(args, <Cli as clap::CommandFactory>::command())
        }
        Command::Man(args) => man::execute(args, <Cli as clap::CommandFactory>::command()),
        Command::ExitCodes => {
            println!("{EXIT_CODES}");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e
                .downcast_ref::<ehds_prep::Error>()
                .map_or(exit::INTERNAL, |e| e.exit_code());
            if json {
                let engine = e.downcast_ref::<ehds_prep::Error>();
                let (file, at) = engine.map_or((None, None), |e| e.place());
                tracing::error!(
                    exit_code = code,
                    kind = engine.map_or("internal", |e| e.kind()),
                    file = file.map(|f| f.display().to_string()),
                    at,
                    "{e:#}"
                );
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(code as u8)
        }
    }
}

/// Whether the command line asks for JSON logs, read from the raw arguments (for a command line
/// that does not parse).
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--log-format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--log-format" && w[1] == "json")
}

fn init_logging(cli: &Cli) {
    // At a terminal the summary on stdout says what happened; schedulers reading JSON want the events.
    let level = if cli.quiet {
        tracing::Level::ERROR
    } else if cli.verbose {
        tracing::Level::DEBUG
    } else if cli.log_format == LogFormat::Json {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// For a mistyped subcommand, the error naming the nearest one by edit distance (clap's own tip
/// prefers long names: `rn` got `reidentify`, not `run`).
fn nearest_command(e: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidSubcommand {
        return None;
    }
    let Some(ContextValue::String(typed)) = e.get(ContextKind::InvalidSubcommand) else {
        return None;
    };
    let command = Cli::command();
    let (distance, nearest) = command
        .get_subcommands()
        .map(|c| c.get_name())
        .map(|name| (edit_distance(typed, name), name))
        .min_by_key(|&(d, name)| (d, name.len()))?;
    let tip = if distance <= typed.len().max(2) / 2 + 1 {
        format!(": did you mean `{nearest}`?")
    } else {
        String::new()
    };
    Some(format!(
        "error: unrecognized subcommand `{typed}`{tip} (`ehds-prep --help` lists the commands)"
    ))
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// Writes a report or description to `path` whole (never half-written); the command checked
/// first that `path` is none of its inputs.
fn write_report(path: &std::path::Path, text: &str) -> Result<(), ehds_prep::Error> {
    ehds_prep::delivery::write_durably(path, text.as_bytes())
        .map_err(|e| ehds_prep::Error::output(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every example of every subcommand's help is a command line that parses.
    #[test]
    fn the_examples_parse() {
        let mut seen = 0;
        for sub in Cli::command().get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            for line in help.lines().filter(|l| l.starts_with("  ehds-prep ")) {
                // The shell's redirections and pipes are not the command's.
                let words: Vec<&str> = line
                    .split_whitespace()
                    .take_while(|w| *w != ">" && *w != "|")
                    .collect();
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("`{line}` does not parse: {e}");
                }
                seen += 1;
            }
        }
        assert!(seen >= 16, "{seen}");
    }
}
