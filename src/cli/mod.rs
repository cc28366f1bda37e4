//! Command-line surface (clap derive). Each subcommand lives in its own module and returns the
//! exit code; errors bubble up as `anyhow` and exit 2.
use clap::{Parser, Subcommand};

mod common;
mod config;
mod decode;
mod progress;
mod rotate;
mod scan;
mod snapshot;

#[derive(Parser, Debug)]
#[command(name = "atrest", version, about = "Inspect, rotate and verify Kubernetes encryption at rest, straight from etcd", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Report every value's provider, key and status, from a live etcd or a snapshot file.
    Scan(scan::ScanArgs),
    /// Re-encrypt every value not under its resource's write provider/key (resumable, CAS).
    Rotate(rotate::RotateArgs),
    /// Snapshot files: integrity status and disaster-recovery verification.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// EncryptionConfiguration tools.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Classify (and with --verify, decrypt) one stored value.
    Decode(decode::DecodeArgs),
}

pub fn run() -> anyhow::Result<u8> {
    let cli = Cli::parse();
    match cli.command {
        Command::Scan(a) => scan::run(a),
        Command::Rotate(a) => rotate::run(a),
        Command::Snapshot(c) => snapshot::run(c),
        Command::Config(c) => config::run(c),
        Command::Decode(a) => decode::run(a),
    }
}
