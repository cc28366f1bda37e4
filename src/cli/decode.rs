//! `atrest decode` (H1).
#[derive(clap::Args, Debug)]
pub struct DecodeArgs {}
pub fn run(_a: DecodeArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not yet implemented")
}
