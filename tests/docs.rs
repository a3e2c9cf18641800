//! The documentation a reader follows holds: every command `outbox-lab --help` lists has a row
//! in README's command table, and every relative link in README, WRITEUP and docs/ names a
//! file that exists.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Subcommand names from a `--help` page's `Commands:` section (without `help`).
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_command_table_lists_every_command() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `outbox-lab "))
        .collect();
    let top = commands(&ok(&["--help"]));
    assert!(top.len() >= 20, "parsed the command list: {top:?}");
    // A row starts `outbox-lab NAME`, or names NAME after a ` / ` (`pay …` / `ship …`).
    let listed = |name: &str| {
        rows.iter().any(|row| {
            row.contains(&format!("`outbox-lab {name} "))
                || row.contains(&format!("`outbox-lab {name}`"))
                || row.contains(&format!("/ `{name} "))
        })
    };
    let missing: Vec<&String> = top.iter().filter(|name| !listed(name)).collect();
    assert!(
        missing.is_empty(),
        "commands without a README row: {missing:?}"
    );
    let bench_row = rows
        .iter()
        .find(|row| row.starts_with("| `outbox-lab bench "))
        .expect("a bench row");
    for name in commands(&ok(&["bench", "--help"])) {
        assert!(
            bench_row.contains(&format!("{name}\\|")) || bench_row.contains(&format!("{name} …")),
            "bench {name} missing from the README's bench row"
        );
    }
}

/// `](target)` links in `text` that point into the repository (not http, not `#anchor`).
fn relative_links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|target| target.split('#').next().unwrap_or("").to_string())
        .filter(|t| !t.is_empty() && !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_names_a_file_that_exists() {
    let mut files: Vec<PathBuf> = vec![repo().join("README.md"), repo().join("WRITEUP.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in relative_links(&text) {
            checked += 1;
            if !file.parent().unwrap().join(&target).exists() {
                broken.push(format!("{} -> {target}", file.display()));
            }
        }
    }
    assert!(checked >= 5, "found the links ({checked})");
    assert!(broken.is_empty(), "links to missing files: {broken:#?}");
}
