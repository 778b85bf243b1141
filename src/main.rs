//! The `ehds-prep` command line: a thin front over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ehds_prep::error::exit;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc keeps freed pages instead of handing them back to the OS: every batch needs about the same
/// memory again, and faulting it back in cost a fifth of a run (peak memory stays bounded by a batch).
/// A thin pointer to a NUL-terminated string, as jemalloc's `malloc_conf` expects.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 36] = b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

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
enum Encoding {
    #[value(name = "utf-8")]
    Utf8,
    #[value(name = "latin-1")]
    Latin1,
    #[value(name = "windows-1252")]
    Windows1252,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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

#[derive(Subcommand)]
enum Command {
    /// Run a permit: read the extracts, minimise, pseudonymise, generalise and write the delivery.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// The permit file (TOML).
        #[arg(long)]
        permit: PathBuf,
        /// Print the compiled plan (sources, cohort, column steps, key fingerprints) and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Access bodies: verify the holders' deliveries of a permit, link them on their linkage
    /// pseudonym, re-pseudonymise into the linking permit's domain, apply its privacy models and write
    /// the linked delivery with `linkage.json` (overlaps, consistency; small counts masked).
    #[command(after_help = EXIT_CODES)]
    Link {
        /// The linking permit (a permit with a [linkage] section).
        #[arg(long)]
        permit: PathBuf,
    },
    /// Check a permit and its sources (files, columns, types on a sample) without writing anything.
    #[command(after_help = EXIT_CODES)]
    Validate {
        #[arg(long)]
        permit: PathBuf,
    },
    /// Create a new random 256-bit key file (mode 0600); refuses to overwrite.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a delivery's manifest and verify every checksum and footer.
    #[command(after_help = EXIT_CODES)]
    Inspect {
        /// The delivery folder.
        delivery: PathBuf,
    },
    /// Turn listed reversible tokens back into identifiers (trusted third party only). Needs the permit's
    /// [tokens] key; writes `token,identifier` lines to a new file (mode 0600) and appends a record of
    /// what it did (counts only) to the audit log.
    #[command(after_help = EXIT_CODES)]
    Reidentify {
        /// The permit whose delivery holds the tokens.
        #[arg(long)]
        permit: PathBuf,
        /// The tokens to open, one per line (e.g. those of an incidental finding).
        #[arg(long)]
        tokens: PathBuf,
        /// Where to write the identifiers; must not exist.
        #[arg(long)]
        out: PathBuf,
        /// JSON-lines log that receives one record per call.
        #[arg(long)]
        audit_log: PathBuf,
    },
    /// Assess re-identification risk without writing anything. With --permit: profile each anonymised
    /// dataset and report the transformation the search chooses (or the pinned one, feasible or not),
    /// its metrics and the risks before and after. With --input: the classes of the named
    /// quasi-identifiers in any CSV or Parquet file (an extract or a delivery), in persons when --person
    /// is given; --population adds journalist and marketer risk. Prints JSON.
    #[command(after_help = EXIT_CODES)]
    Assess {
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
    },
    /// Describe a holder dataset for the national catalogue: HealthDCAT-AP as JSON-LD, from the
    /// dataset's [datasets.catalogue] entry and figures measured from its extract (records, unique
    /// individuals, temporal coverage, typical ages, per-column DQV quality measurements).
    #[command(after_help = EXIT_CODES)]
    Describe {
        /// The permit that declares the dataset (its source, columns and catalogue entry).
        #[arg(long)]
        permit: PathBuf,
        /// The dataset's name in the permit.
        #[arg(long)]
        dataset: String,
        /// Write the JSON-LD here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema of the permit file (for editors and CI checks of permits).
    PermitSchema,
    /// Generate synthetic extracts of three holders sharing one population (seeded, any size).
    Generate {
        /// Output folder for the extracts.
        #[arg(long)]
        out: PathBuf,
        /// Number of people in the population.
        #[arg(long, default_value_t = 2000)]
        people: usize,
        #[arg(long, default_value_t = 2029)]
        seed: u64,
    },
    /// Generate the wide hospital extract of the performance comparison (stays with their patient's
    /// attributes, 12 columns), of any number of rows, in memory that does not grow with rows.
    GenerateExtract {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        rows: usize,
        #[arg(long, default_value_t = 2029)]
        seed: u64,
    },
    /// Write a perturbed scale-up of a delimited table (for benchmarks): rows resampled, then each
    /// value replaced with probability --perturb by the same column's value in another random row.
    ScaleUp {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        rows: usize,
        #[arg(long, default_value_t = ';')]
        delimiter: char,
        #[arg(long, default_value_t = 0.1, value_parser = probability)]
        perturb: f64,
        #[arg(long, default_value_t = 2029)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    // A closed standard output (`ehds-prep permit-schema | head -1`) ends the process quietly, as
    // the shell expects of a command line tool, rather than as a failed print.
    // SAFETY: setting a signal's disposition to its default has no precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    forbid_memory_images();
    // A panic is a bug: say so, and end with the internal-error code rather than Rust's 101.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!(
            "error: internal error{at}: the engine panicked; nothing was committed. Please report \
             it with the command and the permit (never the data or a key)."
        );
    }));
    match std::panic::catch_unwind(run_cli) {
        Ok(code) => code,
        Err(_) => ExitCode::from(exit::INTERNAL as u8),
    }
}

fn run_cli() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
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
    match execute(cli.command, cli.quiet) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e
                .downcast_ref::<ehds_prep::Error>()
                .map_or(exit::INTERNAL, |e| e.exit_code());
            if json {
                tracing::error!(exit_code = code, "{e:#}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(code as u8)
        }
    }
}

fn execute(command: Command, quiet: bool) -> anyhow::Result<()> {
    match command {
        Command::Run { permit, dry_run } => {
            let plan = ehds_prep::load_plan(&permit)?;
            if dry_run {
                print!("{}", plan.describe());
                println!(
                    "dry run: nothing was read beyond the permit, keys and opt-out list; nothing was written"
                );
                return Ok(());
            }
            let report = ehds_prep::engine::run(&plan)?;
            if !quiet {
                print!("{}", report.summary());
            }
        }
        Command::Link { permit } => {
            let permit = ehds_prep::permit::Permit::load(&permit)?;
            let outcome = ehds_prep::linkage::link(permit)?;
            if !quiet {
                print!("{}", outcome.masked.summary());
                print!("{}", outcome.run.summary());
                println!("  linking: {} ms", outcome.index_ms);
            }
        }
        Command::Validate { permit } => {
            let plan = ehds_prep::load_plan(&permit)?;
            for (dataset, rows) in ehds_prep::engine::validate(&plan)? {
                println!(
                    "dataset {dataset}: sources readable, {rows} sample rows parse in the declared types"
                );
            }
            println!(
                "permit {} is valid; nothing was written",
                plan.permit.spec.permit.id
            );
        }
        Command::Keygen { out } => {
            write_new_key(&out).map_err(|e| ehds_prep::Error::output(&out, e))?;
            println!(
                "wrote a new 256-bit key to {} (mode 0600); keep it secret, never commit it",
                out.display()
            );
        }
        Command::Inspect { delivery } => {
            let manifest = ehds_prep::delivery::verify(&delivery)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            println!(
                "delivery {}: {} files verified",
                delivery.display(),
                manifest.datasets.len()
            );
        }
        Command::Reidentify {
            permit,
            tokens,
            out,
            audit_log,
        } => {
            let permit = ehds_prep::permit::Permit::load(&permit)?;
            let tokeniser = ehds_prep::kernels::tokens::tokeniser_for(&permit)?;
            let list = std::fs::read_to_string(&tokens)
                .with_context(|| format!("cannot read token list {}", tokens.display()))?;
            let pairs = ehds_prep::kernels::tokens::reidentify(&tokeniser, &list, &tokens)?;
            let text = ehds_prep::kernels::tokens::reidentified_csv(&pairs);
            if out.symlink_metadata().is_ok() {
                return Err(ehds_prep::Error::output(
                    &out,
                    "exists; re-identified identifiers go to a new file",
                )
                .into());
            }
            let record = ehds_prep::kernels::tokens::ReidentifyRecord {
                event: "reidentify",
                unix_time: ehds_prep::report::audit::unix_now(),
                permit_id: permit.spec.permit.id.clone(),
                context: tokeniser.context().into(),
                tokens_requested: pairs.len(),
                identifiers_returned: pairs.len(),
                output: out.display().to_string(),
            };
            // The record first: identifiers are never written without it.
            ehds_prep::report::audit::append_line(&audit_log, &serde_json::to_string(&record)?)?;
            ehds_prep::delivery::write_new_private(&out, text.as_bytes())
                .map_err(|e| ehds_prep::Error::output(&out, format!("cannot create: {e}")))?;
            eprintln!(
                "re-identified {} tokens into {}; logged in {}",
                pairs.len(),
                out.display(),
                audit_log.display()
            );
        }
        Command::Assess {
            permit: Some(permit),
            html,
            ..
        } => {
            let plan = ehds_prep::load_plan(&permit)?;
            if let Some(path) = &html {
                ehds_prep::source::inputs::refuse_to_overwrite(path, &plan.permit.inputs())?;
            }
            let assessed = ehds_prep::engine::assess(&plan)?;
            let json: Vec<serde_json::Value> = assessed
                .iter()
                .map(|(name, a)| serde_json::json!({ "dataset": name, "assessment": a }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&json)?);
            if let Some(path) = &html {
                let page = ehds_prep::report::html::assessment_report(
                    &plan.permit.spec.permit.id,
                    &assessed,
                );
                write_report(path, &page)?;
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
        }
        Command::Assess {
            input,
            quasi_identifiers,
            person,
            k,
            population,
            risk_threshold,
            delimiter,
            encoding,
            html,
            ..
        } => {
            let spec = ehds_prep::privacy::assess::AssessSpec {
                input: input.expect("clap: --input or --permit"),
                quasi_identifiers,
                person,
                k,
                risk_threshold,
                population,
                delimiter,
                encoding: match encoding {
                    Encoding::Utf8 => ehds_prep::permit::TextEncoding::Utf8,
                    Encoding::Latin1 => ehds_prep::permit::TextEncoding::Latin1,
                    Encoding::Windows1252 => ehds_prep::permit::TextEncoding::Windows1252,
                },
            };
            let inputs: Vec<(String, PathBuf)> = std::iter::once(("--input", &spec.input))
                .chain(spec.population.iter().map(|p| ("--population", p)))
                .map(|(what, path)| (what.to_string(), path.clone()))
                .collect();
            if let Some(path) = &html {
                ehds_prep::source::inputs::refuse_to_overwrite(path, &inputs)?;
            }
            let risk = ehds_prep::privacy::assess::assess_file(&spec)?;
            println!("{}", serde_json::to_string_pretty(&risk)?);
            if let Some(path) = &html {
                let page = ehds_prep::report::html::risk_report(
                    &spec.input.display().to_string(),
                    &spec.quasi_identifiers,
                    &risk,
                );
                write_report(path, &page)?;
            }
            if risk.records_in_classes_below_k.is_some_and(|n| n > 0) {
                return Err(ehds_prep::Error::Privacy(format!(
                    "{} records are in classes below k",
                    risk.records_in_classes_below_k.unwrap_or(0)
                ))
                .into());
            }
        }
        Command::Describe {
            permit,
            dataset,
            out,
        } => {
            // No key is loaded: describing a dataset reads it, and pseudonymises nothing.
            let permit = ehds_prep::permit::Permit::load(&permit)?;
            if let Some(path) = &out {
                ehds_prep::source::inputs::refuse_to_overwrite(path, &permit.inputs())?;
            }
            let profile = ehds_prep::report::describe::profile(&permit, &dataset)?;
            let text = serde_json::to_string_pretty(&ehds_prep::report::describe::describe(
                &permit, &dataset, &profile,
            )?)? + "\n";
            match out {
                Some(path) => write_report(&path, &text)?,
                None => print!("{text}"),
            }
        }
        Command::PermitSchema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&ehds_prep::permit::json_schema())?
            );
        }
        Command::ScaleUp {
            input,
            out,
            rows,
            delimiter,
            perturb,
            seed,
        } => {
            ehds_prep::generate::scale_up(&input, delimiter, rows, perturb, seed, &out)?;
            println!("wrote {rows} rows to {}", out.display());
        }
        Command::GenerateExtract { out, rows, seed } => {
            print!(
                "{}",
                ehds_prep::generate::write_hospital_extract(&out, rows, seed)?
            );
        }
        Command::Generate { out, people, seed } => {
            let summary = ehds_prep::generate::write_extracts(&out, people, seed)?;
            print!("{summary}");
        }
    }
    Ok(())
}

/// No core dump of this process, and no other process of the same user attaching to it: a memory
/// image of a run holds the domain keys' HMAC states, enough to compute every pseudonym.
fn forbid_memory_images() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct given; prctl(PR_SET_DUMPABLE, 0) takes no pointer.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Writes a report or description to `path` whole (never half-written); the command checked
/// first that `path` is none of its inputs.
fn write_report(path: &std::path::Path, text: &str) -> Result<(), ehds_prep::Error> {
    ehds_prep::delivery::write_durably(path, text.as_bytes())
        .map_err(|e| ehds_prep::Error::output(path, e))
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

fn write_new_key(path: &std::path::Path) -> std::io::Result<()> {
    let text = ehds_prep::kernels::keys::generate_key_text().map_err(std::io::Error::other)?;
    ehds_prep::delivery::write_new_private(path, text.as_bytes())
}
