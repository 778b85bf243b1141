//! `ehds-prep completions SHELL`: the shell's completion script for every subcommand and option.

/// Examples shown under `--help`.
pub const EXAMPLES: &str = "Examples:\n  ehds-prep completions bash > /etc/bash_completion.d/ehds-prep\n  ehds-prep completions zsh > ~/.zfunc/_ehds-prep\n  ehds-prep completions fish > ~/.config/fish/completions/ehds-prep.fish";

/// Print the completion script of a shell (bash, zsh, fish, elvish, powershell) on stdout.
#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn execute(args: Args, mut command: clap::Command) -> anyhow::Result<()> {
    clap_complete::generate(
        args.shell,
        &mut command,
        "ehds-prep",
        &mut std::io::stdout(),
    );
    Ok(())
}
