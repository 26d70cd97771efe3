//! Every subcommand's `--help` has examples, and every example is a command line that
//! parses (README.md promises examples for each).

use clap::{CommandFactory, Parser};

use crate::Cli;

/// The words of an example as a shell splits them, up to its first pipe or redirection
/// (single and double quotes only: the examples use no escapes).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                word.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, '|' | '<' | '>') if word.is_none() => return words,
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// Checks the examples of every subcommand under `command` (whose words are `path`):
/// each has some, each is a command line of that subcommand, and each parses.
fn check_examples(command: &clap::Command, path: &mut Vec<String>, checked: &mut usize) {
    for sub in command.get_subcommands() {
        path.push(sub.get_name().to_owned());
        let shown = format!("`ephemeral {}`", path.join(" "));
        let help = sub
            .get_after_help()
            .or(sub.get_after_long_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            help.contains("Examples:\n"),
            "{shown} --help has no Examples: section: {help:?}"
        );
        let examples: Vec<&str> = help
            .lines()
            .filter_map(|l| l.strip_prefix("  "))
            .filter(|l| l.starts_with("ephemeral "))
            .collect();
        assert!(!examples.is_empty(), "{shown}: no example lines: {help:?}");
        for example in examples {
            let command_line = example.split(" #").next().unwrap_or(example);
            let words = shell_words(command_line);
            let mut rest = words.iter();
            assert!(
                path.iter().all(|name| rest.any(|w| w == name)),
                "{example:?} is not an example of {shown}"
            );
            if let Err(e) = Cli::try_parse_from(&words) {
                panic!("the example {example:?} of {shown} does not parse: {e}");
            }
        }
        *checked += 1;
        check_examples(sub, path, checked);
        path.pop();
    }
}

#[test]
fn every_subcommand_has_examples_that_parse() {
    let mut checked = 0;
    check_examples(&Cli::command(), &mut Vec::new(), &mut checked);
    // 14 subcommands, 5 of `kv` and 2 of `room`: the walk reached them all.
    assert!(checked >= 21, "walked only {checked} subcommands");
}

#[test]
fn shell_words_split_as_a_shell_would() {
    assert_eq!(
        shell_words(r#"ephemeral publish t '{"id":42}' -   < order.json"#),
        ["ephemeral", "publish", "t", r#"{"id":42}"#, "-"]
    );
    assert_eq!(
        shell_words("ephemeral top --once --json | jq ."),
        ["ephemeral", "top", "--once", "--json"]
    );
    assert_eq!(
        shell_words("ephemeral raise x --payload ''"),
        ["ephemeral", "raise", "x", "--payload", ""]
    );
}
