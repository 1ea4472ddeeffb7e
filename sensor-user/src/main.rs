use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    aiwatch::cmd::main(aiwatch::cmd::Cli::parse())
}
