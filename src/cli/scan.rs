//! `atrest scan` (H5).
#[derive(clap::Args, Debug)]
pub struct ScanArgs {}
pub fn run(_a: ScanArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not yet implemented")
}
