//! The bundled demo (`scripts/demo`, the README's main command) end to end: it starts its two
//! real KMS plugin processes, templates the config, and runs `snapshot status`, `config check`,
//! `scan --snapshot --verify` and `snapshot verify` on the shared snapshot. The test points
//! `ATREST_BIN_DIR` at cargo's debug binaries (a release build per test run would be far too
//! slow) and checks each step's figures against the testdata, not against hard-coded output.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin_dir() -> PathBuf {
    crate::common::bin_path("atrest")
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

fn demo_cmd(bin_dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new("bash");
    cmd.arg(root().join("scripts/demo"))
        .env("ATREST_BIN_DIR", bin_dir)
        // Debug binaries on a loaded 2-core machine; the demo itself takes seconds.
        .timeout(Duration::from_secs(240));
    for k in crate::common::scrubbed_env() {
        cmd.env_remove(k);
    }
    cmd
}

/// One `$ atrest ...` step of the demo's output: the command line, its output, its exit code.
#[derive(Debug)]
struct Step {
    command: String,
    output: String,
    code: i32,
}

fn steps(stdout: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for chunk in stdout.split("\n$ atrest ").skip(1) {
        let (command, body) = chunk.split_once('\n').unwrap_or((chunk, ""));
        let (output, code) = body
            .rsplit_once("(exit code ")
            .unwrap_or_else(|| panic!("step `atrest {command}` has no exit code line"));
        let code: i32 = code
            .split(')')
            .next()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("step `atrest {command}`: unparsable exit code"));
        out.push(Step {
            command: command.to_string(),
            output: output.to_string(),
            code,
        });
    }
    out
}

#[derive(Deserialize)]
struct EtcdctlStatus {
    hash: u32,
    revision: i64,
    #[serde(rename = "totalKey")]
    total_key: u64,
}

#[derive(Deserialize)]
struct Manifest {
    keys: Vec<ManifestKey>,
}

#[derive(Deserialize)]
struct ManifestKey {
    key: String,
    expect_with_all_providers_config: Option<String>,
}

/// Status counts the scan of `/registry` must report, from kube-apiserver's outcomes:
/// (objects, undecryptable, unknown-key).
fn expected_counts() -> (usize, usize, usize) {
    let text = std::fs::read_to_string(root().join("testdata/snapshots/public-v34.keys.json"))
        .expect("manifest");
    let m: Manifest = serde_json::from_str(&text).expect("manifest JSON");
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    let mut objects = 0;
    for k in m.keys.iter().filter(|k| k.key.starts_with("/registry/")) {
        objects += 1;
        match k.expect_with_all_providers_config.as_deref() {
            Some("ok") | None => {}
            Some("unknown-key") => *by.entry("unknown-key").or_default() += 1,
            Some(_) => *by.entry("undecryptable").or_default() += 1,
        }
    }
    (
        objects,
        by.get("undecryptable").copied().unwrap_or(0),
        by.get("unknown-key").copied().unwrap_or(0),
    )
}

fn step<'a>(steps: &'a [Step], prefix: &str) -> &'a Step {
    steps
        .iter()
        .find(|s| s.command.starts_with(prefix))
        .unwrap_or_else(|| panic!("the demo did not run `atrest {prefix} ...`"))
}

#[test]
fn demo_runs_end_to_end() {
    let out = demo_cmd(&bin_dir()).output().expect("run scripts/demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "scripts/demo failed; stderr:\n{stderr}"
    );
    // The demo data holds plaintext Secrets; none may reach the terminal (protobuf plaintexts
    // carry NUL bytes, and every line the tool prints is text).
    let stdout = String::from_utf8(out.stdout).expect("demo output is UTF-8");
    assert!(!stdout.contains('\0'), "demo output contains binary data");
    assert!(
        !stdout.contains("k8s\u{0}"),
        "demo output contains a protobuf plaintext"
    );

    let steps = steps(&stdout);
    assert_eq!(steps.len(), 4, "four demo steps: {steps:#?}");

    // 1. snapshot status: etcdctl's figures, and the trailer check.
    let status: EtcdctlStatus = serde_json::from_str(
        &std::fs::read_to_string(root().join("testdata/snapshots/public-v34.status.json"))
            .expect("status fixture"),
    )
    .expect("status JSON");
    let s = step(&steps, "snapshot status");
    assert_eq!(s.code, 0, "snapshot status:\n{}", s.output);
    let row = s
        .output
        .lines()
        .find(|l| l.contains(&format!("{:08x}", status.hash)))
        .unwrap_or_else(|| {
            panic!(
                "no row with etcdctl's hash {:08x}:\n{}",
                status.hash, s.output
            )
        });
    let cells: Vec<&str> = row
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells.get(1),
        Some(&status.revision.to_string().as_str()),
        "revision: {row}"
    );
    assert_eq!(
        cells.get(2),
        Some(&status.total_key.to_string().as_str()),
        "total keys: {row}"
    );
    assert!(
        s.output.contains("SHA-256 trailer:  present, matches"),
        "{}",
        s.output
    );
    assert!(s.output.contains("integrity:        ok"), "{}", s.output);

    // 2. config check: valid, and KMS v2 writes the encrypted resources.
    let c = step(&steps, "config check");
    assert_eq!(c.code, 0, "config check:\n{}", c.output);
    assert!(
        c.output.contains("valid EncryptionConfiguration"),
        "{}",
        c.output
    );
    let secrets = c
        .output
        .lines()
        .find(|l| l.starts_with("secrets "))
        .unwrap_or_else(|| panic!("no secrets row:\n{}", c.output));
    assert!(secrets.contains("kms-v2:fake-kms-v2"), "{secrets}");

    // 3. the scan table: the summary matches kube-apiserver's outcomes, findings exit 1.
    let (objects, undecryptable, unknown) = expected_counts();
    let scan = step(&steps, "scan --snapshot");
    assert_eq!(scan.code, 1, "the demo data has findings:\n{}", scan.output);
    assert!(scan.output.contains("RESOURCE"), "{}", scan.output);
    assert!(scan.output.contains("PROVIDER/KEY"), "{}", scan.output);
    let total = scan
        .output
        .lines()
        .find(|l| l.starts_with("Total: "))
        .unwrap_or_else(|| panic!("no Total line:\n{}", scan.output));
    assert!(
        total.starts_with(&format!("Total: {objects} objects")),
        "{total}"
    );
    assert!(
        total.contains(&format!(" {unknown} unknown-key")),
        "{total}"
    );
    assert!(
        total.contains(&format!(" {undecryptable} undecryptable")),
        "{total}"
    );
    assert!(scan.output.contains("Findings ("), "{}", scan.output);

    // 4. snapshot verify: the one verdict line.
    let v = step(&steps, "snapshot verify");
    assert_eq!(v.code, 1, "snapshot verify:\n{}", v.output);
    let verdict = v
        .output
        .lines()
        .find(|l| l.starts_with("restorable with the held keys: "))
        .unwrap_or_else(|| panic!("no verdict line:\n{}", v.output));
    assert!(
        verdict.starts_with("restorable with the held keys: no"),
        "{verdict}"
    );
    assert!(
        verdict.contains(&format!(" {undecryptable} undecryptable")),
        "{verdict}"
    );
    assert!(
        verdict.contains(&format!(" {unknown} unknown-key")),
        "{verdict}"
    );

    assert!(
        stdout
            .trim_end()
            .ends_with("the demo snapshot holds deliberately damaged values."),
        "closing remark"
    );
    // The demo cleaned up after itself: its temp dir (KMS sockets, config) is gone.
    let config_path = c
        .command
        .split_whitespace()
        .last()
        .expect("config check names the config");
    let work = Path::new(config_path).parent().expect("demo work dir");
    assert!(
        work.starts_with(std::env::temp_dir()) || work.starts_with("/tmp"),
        "demo work dir {} is a temp dir",
        work.display()
    );
    assert!(!work.exists(), "demo left {} behind", work.display());
}

#[test]
fn demo_refuses_a_bin_dir_without_binaries() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = demo_cmd(empty.path()).output().expect("run scripts/demo");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ATREST_BIN_DIR") && stderr.contains("atrest"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing ran");
}
