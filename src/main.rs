//! The `atrest` binary: a thin edge over the library. Parses the command line, runs the
//! command, prints errors with their causes and maps outcomes to the documented exit codes
//! (0 ok, 1 findings, 2 error).
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(atrest::exit::ERROR)
        }
    }
}
