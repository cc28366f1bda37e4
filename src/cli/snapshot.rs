//! `atrest snapshot ...` (H3).
#[derive(clap::Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Integrity and the same figures as `etcdutl snapshot status`.
    Status,
}
pub fn run(_c: SnapshotCommand) -> anyhow::Result<u8> {
    anyhow::bail!("not yet implemented")
}
