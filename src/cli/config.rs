//! `atrest config ...` (H2).
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate an EncryptionConfiguration as kube-apiserver would.
    Check,
}
pub fn run(_c: ConfigCommand) -> anyhow::Result<u8> {
    anyhow::bail!("not yet implemented")
}
