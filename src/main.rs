//! The `tangaroa` binary; the work, argument parsing and exit codes included, lives in the
//! library (`tangaroa::cli_main`).

fn main() -> std::process::ExitCode {
    tangaroa::cli_main()
}
