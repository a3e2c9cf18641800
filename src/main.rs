//! `outbox-lab`: a thin command line over the library. Each subcommand parses its flags,
//! opens the data directory, and calls one library function. See README.md for the tour.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("outbox-lab: error: {e}");
            ExitCode::from(2)
        }
    }
}
