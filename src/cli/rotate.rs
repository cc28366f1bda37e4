//! `atrest rotate` (later).
#[derive(clap::Args, Debug)]
pub struct RotateArgs {}
pub fn run(_a: RotateArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not yet implemented")
}
