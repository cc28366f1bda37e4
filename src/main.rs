//! The `atrest` binary: a thin edge over the library. Parses the command line, runs the
//! command, prints errors with their causes and maps outcomes to the documented exit codes
//! (0 ok, 1 findings, 2 error).
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    install_panic_hook();
    init_logging();
    match cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(atrest::exit::ERROR)
        }
    }
}

/// A panic is a bug, but it must still honour the contract: exit code 2 (not Rust's 101), and
/// no panic payload on stderr — a payload could quote data the panicking code was handling.
/// Only the source location is printed, which is what a bug report needs.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown location".to_string());
        eprintln!(
            "error: atrest hit an internal error at {at} (a bug: please report it). \
             Nothing more is printed, so that no stored value can leak."
        );
        std::process::exit(i32::from(atrest::exit::ERROR));
    }));
}

/// Diagnostics go to stderr through `tracing`, at `warn` unless `RUST_LOG` says otherwise
/// (e.g. `RUST_LOG=atrest=debug`). Nothing the library logs contains a value or key material.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
