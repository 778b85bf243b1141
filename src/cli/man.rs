//! `ehds-prep man`: the manual page (roff), with every subcommand, option, example and exit code.

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep man > /usr/local/share/man/man1/ehds-prep.1\n  ehds-prep man | man -l -";

/// Print the manual page (section 1, roff) on stdout.
#[derive(clap::Args)]
pub struct Args {}

pub fn execute(_: Args, command: clap::Command) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(command.clone()).render(&mut out)?;
    // Each subcommand's own page, after the main one, so that one file holds the whole manual.
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("ehds-prep-{}", sub.get_name());
        clap_mangen::Man::new(sub.clone().name(name)).render(&mut out)?;
    }
    Ok(())
}
