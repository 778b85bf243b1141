//! `ehds-prep reidentify --permit FILE --tokens LIST --out FILE --audit-log FILE`: the trusted
//! third party opens reversible tokens.

use std::path::PathBuf;

use anyhow::Context;
use ehds_prep::kernels::tokens;

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep reidentify --permit configs/registry.toml --tokens tokens.txt --out identifiers.csv --audit-log reidentify.log";

/// Turn listed reversible tokens back into identifiers (trusted third party only). Needs the permit's
/// [tokens] key; writes `token,identifier` lines to a new file (mode 0600) and appends a record of
/// what it did (counts only) to the audit log.
#[derive(clap::Args)]
pub struct Args {
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
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let Args {
        permit,
        tokens: list_file,
        out,
        audit_log,
    } = args;
    let permit = ehds_prep::permit::Permit::load(&permit)?;
    let tokeniser = ehds_prep::plan::tokeniser_for(&permit)?;
    let list = std::fs::read_to_string(&list_file)
        .with_context(|| format!("cannot read token list {}", list_file.display()))?;
    let pairs = tokens::reidentify(&tokeniser, &list, &list_file)?;
    let text = tokens::reidentified_csv(&pairs);
    if out.symlink_metadata().is_ok() {
        return Err(ehds_prep::Error::output(
            &out,
            "exists; re-identified identifiers go to a new file",
        )
        .into());
    }
    let record = tokens::ReidentifyRecord {
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
    Ok(())
}
