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

/// Every subcommand's help ends with examples of itself and points to `ehds-prep exit-codes`;
/// the exit-code table is written once, in the top-level help and that command.
#[test]
fn every_subcommand_has_examples_and_the_exit_codes_are_written_once() {
    let table_line = "8  privacy models not met";
    for command in subcommands() {
        let o = ehds_prep(&[&command, "--help"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        if command == "exit-codes" {
            continue;
        }
        let examples: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "Examples:")
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .collect();
        assert!(
            !examples.is_empty()
                && examples
                    .iter()
                    .all(|e| e.starts_with(&format!("  ehds-prep {command}"))),
            "`{command} --help` has no examples of itself: {examples:?}"
        );
        assert!(text.contains("`ehds-prep exit-codes`"), "{command}");
        assert!(
            !text.contains(table_line),
            "{command} repeats the exit codes"
        );
    }
    let top = ehds_prep(&["--help"]);
    assert!(String::from_utf8_lossy(&top.stdout).contains(table_line));
    let codes = ehds_prep(&["exit-codes"]);
    assert!(codes.status.success());
    assert!(String::from_utf8_lossy(&codes.stdout).contains(table_line));
}

/// `completions SHELL` completes every subcommand; `man` is one roff manual with a page for each.
#[test]
fn completions_and_the_manual_cover_every_subcommand() {
    let commands = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = ehds_prep(&["completions", shell]);
        assert!(o.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&o.stdout);
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell} completion lacks {c}");
        }
    }
    let o = ehds_prep(&["man"]);
    assert!(o.status.success());
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(page.contains(".TH ehds-prep 1"));
    for c in &commands {
        assert!(
            page.contains(&format!(".TH ehds-prep-{c} 1")),
            "no page for {c}"
        );
    }
    assert!(
        page.contains("exit\\-codes"),
        "the manual lists the exit codes command"
    );
}

/// Under `--log-format json` every error is one JSON record on stderr: a command line that does
/// not parse (kind `usage`, exit 2) as a permit that does not load (kind, file and key path).
#[test]
fn errors_are_json_records_under_json_logs() {
    let record = |o: &std::process::Output| -> serde_json::Value {
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err.lines().last().expect("a record");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {err}"))
    };
    let o = ehds_prep(&["rn", "--log-format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let r = record(&o);
    assert_eq!(r["kind"], "usage");
    assert_eq!(r["exit_code"], 2);
    assert!(r["message"].as_str().unwrap().contains("`run`"), "{r}");
    let o = ehds_prep(&["run", "--log-format=json"]);
    assert_eq!(record(&o)["kind"], "usage");
    let tmp = tempfile::tempdir().unwrap();
    let permit = tmp.path().join("p.toml");
    std::fs::write(&permit, "[permit]\nid = 3\n").unwrap();
    let o = ehds_prep(&[
        "validate",
        "--permit",
        permit.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let r = record(&o);
    assert_eq!(r["kind"], "permit");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["file"], permit.to_str().unwrap());
    assert!(
        r["at"].as_str().is_some_and(|a| a.contains("permit")),
        "{r}"
    );
}
