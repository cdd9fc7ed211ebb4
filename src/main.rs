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
        // Its default reports a failed write with eprintln!, which panics when stderr is
        // a closed pipe: a node whose log reader exited would die (or, in the signal
        // task, ignore SIGTERM for good). A lost log line is not worth the process.
        .log_internal_errors(false)
        .init();
    let cli = Cli::parse();
    let failed = |violations: bool| u8::from(violations);
    let outcome = match cli.command {
        Command::Sim(args) => tangaroa::cli::sim::run(args).map(failed),
        Command::Keygen(args) => tangaroa::cli::keygen::run(args).map(|()| 0),
        Command::Node(args) => tangaroa::cli::node::run(args).map(failed),
        Command::Client(args) => tangaroa::cli::client::run(args),
        Command::Status(args) => tangaroa::cli::status::run(args),
        Command::Cluster(args) => tangaroa::cli::cluster::run(args),
        Command::Demo(args) => tangaroa::cli::demo::run(args),
        Command::Bench(args) => tangaroa::cli::bench::run(args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(2)
        }
    }
}
