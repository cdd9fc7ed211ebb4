//! The `tangaroa` binary: argument parsing and exit codes; the work lives in the library.

use clap::Parser;
use std::process::ExitCode;
use tangaroa::cli::{Cli, Command};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TANGAROA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Sim(args) => tangaroa::cli::sim::run(args),
        Command::Keygen(args) => tangaroa::cli::keygen::run(args).map(|()| false),
    };
    match outcome {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
