//! `ehds-prep keygen --out FILE`: a new random 256-bit key, mode 0600, never over an existing file.

use std::path::PathBuf;

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep keygen --out /secure/keys/holder.hex";

/// Create a new random 256-bit key file (mode 0600); refuses to overwrite.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the new key (hex text, mode 0600); the file must not exist.
    #[arg(long)]
    out: PathBuf,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let out = args.out;
    let text = ehds_prep::kernels::keys::generate_key_text()?;
    // Whole or not at all: a full disk leaves no empty key file that would block the next keygen.
    ehds_prep::delivery::write_new_private(&out, text.as_bytes()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ehds_prep::Error::Usage(format!(
                "{} already exists: keygen never overwrites a key (what it protects would be \
                 lost); give a new path",
                out.display()
            ))
        } else {
            ehds_prep::Error::output(&out, e)
        }
    })?;
    println!(
        "wrote a new 256-bit key to {} (mode 0600); keep it secret, never commit it",
        out.display()
    );
    Ok(())
}
