//! The `tangaroa` binary: argument parsing and exit codes; the work lives in the library.

use clap::Parser;
use std::process::ExitCode;
use tangaroa::cli::logging::LogFormat;
use tangaroa::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tangaroa::cli::logging::init(cli.log_format);
    // Node processes this one starts (cluster, demo, bench) log in the same format.
    std::env::set_var("TANGAROA_LOG_FORMAT", cli.log_format.name());
    let failed = |violations: bool| u8::from(violations);
    let format = cli.log_format;
    let outcome = match cli.command {
        Command::Sim(args) => tangaroa::cli::sim::run(args).map(failed),
        Command::Keygen(args) => tangaroa::cli::keygen::run(args).map(|()| 0),
        Command::Node(args) => tangaroa::cli::node::run(args).map(failed),
        Command::Client(args) => tangaroa::cli::client::run(args),
        Command::Status(args) => tangaroa::cli::status::run(args),
        Command::Cluster(args) => tangaroa::cli::cluster::run(args),
        Command::Demo(args) => tangaroa::cli::demo::run(args),
        Command::Bench(args) => tangaroa::cli::bench::run(args),
        Command::Completions(args) => tangaroa::cli::completions::run(args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            match format {
                // Scripts reading JSON logs get the reason as one more JSON line.
                LogFormat::Json => tracing::error!("{e}"),
                // Not eprintln!: a closed stderr must not turn an error into a panic.
                LogFormat::Text => {
                    use std::io::Write;
                    let _ = writeln!(std::io::stderr(), "error: {e}");
                }
            }
            ExitCode::from(2)
        }
    }
}
