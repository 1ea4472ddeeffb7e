use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    aiwatch::cli::main(aiwatch::cli::Cli::parse())
}
