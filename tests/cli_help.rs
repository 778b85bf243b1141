//! The command line follows conventions (#21 item 7, part): every subcommand's `--help` describes
//! every option and argument it takes.

mod common;

use common::ehds_prep;

/// The subcommands `ehds-prep --help` lists.
fn subcommands() -> Vec<String> {
    let o = ehds_prep(&["--help"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_option_of_every_subcommand_is_described() {
    let commands = subcommands();
    assert!(commands.len() >= 14, "{commands:?}");
    for command in &commands {
        // Long help: each option's description on the lines below it, indented.
        let o = ehds_prep(&[command, "--help"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        let mut options = 0;
        for (i, line) in lines.iter().enumerate() {
            let item = line.trim_start();
            let is_item = line.starts_with("  ")
                && !line.starts_with("          ")
                && (item.starts_with('-') || item.starts_with('<'));
            if !is_item {
                continue;
            }
            options += 1;
            // The description follows on the same line after two spaces, or on the next line.
            let same_line = item
                .split_once("  ")
                .is_some_and(|(_, rest)| rest.trim().chars().next().is_some_and(|c| c != '['));
            let next_line = lines.get(i + 1).is_some_and(|next| {
                next.starts_with("          ")
                    && next.trim().chars().next().is_some_and(|c| c != '[')
            });
            assert!(
                same_line || next_line,
                "`ehds-prep {command}`: {} has no description",
                item.split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        assert!(options >= 4, "`{command} --help` lists {options} options");
    }
}

/// A mistyped command gets the nearest one (`rn` is `run`, not `reidentify`), exit 2; a word near
/// none gets no guess.
#[test]
fn a_mistyped_command_suggests_the_nearest() {
    for (typed, nearest) in [
        ("rn", "run"),
        ("inspct", "inspect"),
        ("valdate", "validate"),
    ] {
        let o = ehds_prep(&[typed]);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("did you mean `{nearest}`?")), "{err}");
    }
    let o = ehds_prep(&["xyzzyqq"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("did you mean"));
}
