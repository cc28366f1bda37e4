//! `atrest snapshot status|verify`: offline integrity of an etcd snapshot file (the figures of
//! `etcdutl snapshot status`, the SHA-256 trailer, meta pages and tree structure) and the
//! disaster-recovery question "would every object decrypt with the keys we hold?".
//!
//! Exit codes: 0 intact (and, for verify, restorable); 1 (verify) some value is unknown-key,
//! undecryptable, or plaintext where the resource's provider chain has no identity (a restored
//! kube-apiserver could not read it); 2 the file is corrupt, truncated, lacks its trailer (unless
//! `--skip-hash-check`), or the job could not be done (bad config, KMS plugin down).
use super::progress::Bar;
use anyhow::Context;
use atrest::snapshot::{self, SnapshotSource, SnapshotStatus, StatusOptions};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Integrity and the same figures as `etcdutl snapshot status` (hash, revision, totalKey,
    /// totalSize, version), plus the SHA-256 trailer, meta page and structure checks.
    Status(StatusArgs),
    /// Integrity check plus a `--verify` scan of the latest state: would every object decrypt
    /// with the keys held in the EncryptionConfiguration (and its KMS plugins)?
    Verify(VerifyArgs),
}

/// `-o` for the snapshot commands.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 intact; 2 corrupt, truncated, wrong or missing SHA-256 trailer \
(see --skip-hash-check), an invalid meta page, or unreadable.\n\
Examples:\n  atrest snapshot status backup.db\n  atrest snapshot status backup.db -o json\n  \
atrest snapshot status /var/lib/etcd/member/snap/db --skip-hash-check   # copy of a stopped member"
)]
pub struct StatusArgs {
    /// Snapshot file (`etcdctl snapshot save` output) or a copy of `member/snap/db`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
    /// Accept a file without the SHA-256 trailer (e.g. a copied `member/snap/db`), as
    /// `etcdutl snapshot restore --skip-hash-check` does.
    #[arg(long)]
    pub skip_hash_check: bool,
    /// No progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 intact and every object decrypts; 1 some object is \
unknown-key, undecryptable, or plaintext with no identity provider for its resource; 2 the file failed its integrity check or the job could not be done \
(bad config, KMS plugin unreachable).\n\
Example:\n  atrest snapshot verify backup.db --encryption-provider-config /etc/kubernetes/enc.yaml"
)]
pub struct VerifyArgs {
    /// Snapshot file to verify.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The EncryptionConfiguration holding the keys in escrow (kube-apiserver's
    /// `--encryption-provider-config`).
    #[arg(long, value_name = "FILE")]
    pub encryption_provider_config: PathBuf,
    /// kube-apiserver's `--etcd-prefix`.
    #[arg(long, default_value = "/registry")]
    pub prefix: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
    /// Accept a file without the SHA-256 trailer.
    #[arg(long)]
    pub skip_hash_check: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run(c: SnapshotCommand) -> anyhow::Result<u8> {
    match c {
        SnapshotCommand::Status(a) => run_status(a),
        SnapshotCommand::Verify(a) => run_verify(a),
    }
}

fn run_status(a: StatusArgs) -> anyhow::Result<u8> {
    let bar = Bar::new(!a.no_progress, "keys");
    let st = snapshot::status_with(
        &a.file,
        StatusOptions {
            skip_hash_check: a.skip_hash_check,
        },
        &bar,
    )?;
    drop(bar);
    match a.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&st)?),
        Format::Table => print!("{}", render_status(&st)),
    }
    if !st.ok {
        for p in &st.problems {
            eprintln!("error: {}: {p}", st.path);
        }
        return Ok(atrest::exit::ERROR);
    }
    Ok(atrest::exit::OK)
}

/// go-humanize `Bytes` (SI), as etcdutl prints TOTAL SIZE (spec §4.3).
pub fn humanize_bytes(s: u64) -> String {
    if s < 10 {
        return format!("{s} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((s as f64).ln() / 1000f64.ln()).floor() as i32;
    let e = e.clamp(0, 6);
    let val = ((s as f64) / 1000f64.powi(e) * 10.0 + 0.5).floor() / 10.0;
    let unit = units.get(e as usize).copied().unwrap_or("EB");
    if val < 10.0 {
        format!("{val:.1} {unit}")
    } else {
        format!("{val:.0} {unit}")
    }
}

/// etcdutl's table (hash in hex as `%x`, humanized size), then atrest's checks.
fn render_status(st: &SnapshotStatus) -> String {
    let head = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "VERSION"];
    let row = [
        format!("{:x}", st.hash),
        st.revision.to_string(),
        st.total_key.to_string(),
        humanize_bytes(st.total_size),
        st.version.clone(),
    ];
    let widths: Vec<usize> = head
        .iter()
        .zip(&row)
        .map(|(h, r)| h.len().max(r.len()))
        .collect();
    let sep: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("| {c:^w$} "))
            .collect::<String>()
            + "|\n"
    };
    let mut out = String::new();
    out += &sep;
    out += &line(head.iter().map(|s| s.to_string()).collect());
    out += &sep;
    out += &line(row.to_vec());
    out += &sep;
    let trailer = match st.trailer.matches {
        Some(true) => "present, matches".to_string(),
        Some(false) => "present, DOES NOT MATCH".to_string(),
        None => "missing".to_string(),
    };
    out += &format!(
        "file:             {} ({} bytes, page size {})\n",
        st.path, st.file_size, st.page_size
    );
    out += &format!("SHA-256 trailer:  {trailer}\n");
    let metas: Vec<String> = st
        .meta_pages
        .iter()
        .map(|m| match &m.problem {
            None => format!("{} valid (txid {})", m.page, m.txid),
            Some(p) => format!("{} INVALID ({p})", m.page),
        })
        .collect();
    out += &format!(
        "meta pages:       {}; using {}\n",
        metas.join(", "),
        st.meta_used
    );
    out += &format!(
        "structure:        ok ({} buckets, {} pages reachable)\n",
        st.buckets.len(),
        st.reachable_pages
    );
    let compact = st
        .meta
        .finished_compact_revision
        .map(|c| format!(", compacted at {c}"))
        .unwrap_or_default();
    out += &format!(
        "keys:             {} live at revision {}{compact}; revisions kept: {}, tombstones: {}\n",
        st.live_keys, st.current_revision, st.revisions, st.tombstones
    );
    out += &format!(
        "etcd:             schema {}{}\n",
        st.schema,
        st.cluster_version
            .as_deref()
            .map(|v| format!(", cluster version {v}"))
            .unwrap_or_default()
    );
    for n in &st.notes {
        out += &format!("note:             {n}\n");
    }
    if st.ok {
        out += "integrity:        ok\n";
    } else {
        out += &format!(
            "integrity:        FAILED ({} problems)\n",
            st.problems.len()
        );
        for p in &st.problems {
            out += &format!("  - {p}\n");
        }
    }
    out
}

/// How `classify::judge_plaintext` words a plaintext value that kube-apiserver cannot read (the
/// resource's provider chain has no identity entry); a unit test pins it to classify's wording.
const UNREADABLE_PLAINTEXT: &str = "unreadable by kube-apiserver";

/// Objects a restored kube-apiserver could not read although they are plaintext: their chain has
/// no identity provider. (Plaintext readable through a later identity entry is restorable.)
fn plaintext_unreadable(objects: &[atrest::classify::ObjectRecord]) -> u64 {
    objects
        .iter()
        .filter(|o| {
            o.status == atrest::classify::Status::Plaintext
                && o.message
                    .as_deref()
                    .is_some_and(|d| d.starts_with(UNREADABLE_PLAINTEXT))
        })
        .count() as u64
}

/// The verdict on a verify scan: (restorable, one line). Not restorable when any object would
/// fail to read in a restored kube-apiserver: undecryptable, unknown-key, or plaintext under a
/// chain without identity.
pub fn verdict(report: &atrest::report::ScanReport) -> (bool, String) {
    let by_status = &report.summary.by_status;
    let undecryptable = by_status.get("undecryptable").copied().unwrap_or(0);
    let unknown = by_status.get("unknown-key").copied().unwrap_or(0);
    let plaintext = plaintext_unreadable(&report.objects);
    if undecryptable == 0 && unknown == 0 && plaintext == 0 {
        return (true, "restorable with the held keys: yes".to_string());
    }
    let mut parts = Vec::new();
    if undecryptable > 0 || unknown > 0 {
        parts.push(format!(
            "{undecryptable} undecryptable, {unknown} unknown-key"
        ));
    }
    if plaintext > 0 {
        parts.push(format!(
            "{plaintext} plaintext unreadable without an identity provider"
        ));
    }
    (
        false,
        format!("restorable with the held keys: no: {}", parts.join(", ")),
    )
}

fn run_verify(a: VerifyArgs) -> anyhow::Result<u8> {
    // The config and the KMS plugins first: a bad config or a dead plugin must fail in a second,
    // not after a long integrity pass over a large file.
    let cfg_path = &a.encryption_provider_config;
    let config = atrest::config::EncryptionConfig::load(cfg_path).with_context(|| {
        format!(
            "cannot use --encryption-provider-config {}",
            cfg_path.display()
        )
    })?;
    let transformers =
        atrest::codec::chain::Transformers::new(&config, &atrest::kms::GrpcConnector)
            .with_context(|| format!("cannot set up the providers of {}", cfg_path.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(transformers.prepare_kms()).context(
        "cannot reach a KMS plugin named in the config (is it running? is the socket path right?)",
    )?;

    let bar = Bar::new(!a.no_progress, "keys");
    let st = snapshot::status_with(
        &a.file,
        StatusOptions {
            skip_hash_check: a.skip_hash_check,
        },
        &bar,
    )?;
    if !st.ok {
        drop(bar);
        let line = format!(
            "restorable with the held keys: no: the file failed its integrity check ({})",
            st.problems.join("; ")
        );
        print_verify(a.output, &st, None, false, &line)?;
        return Ok(atrest::exit::ERROR);
    }
    let report = rt.block_on(async {
        let classifier = atrest::classify::Classifier::new(&a.prefix, Some(transformers), true);
        let key_prefix = atrest::resource::storage_key_prefix(&a.prefix);
        let mut src =
            SnapshotSource::open_checked(&a.file, key_prefix.as_bytes(), 1000, &st.trailer, &bar)?;
        let opts = atrest::scan::ScanOptions {
            prefix: a.prefix.clone(),
            config_path: Some(cfg_path.display().to_string()),
            ..Default::default()
        };
        let report = atrest::scan::run_scan(&mut src, &classifier, &opts, &bar).await?;
        anyhow::Ok(report)
    })?;
    drop(bar);
    let (restorable, line) = verdict(&report);
    print_verify(a.output, &st, Some(&report), restorable, &line)?;
    Ok(if restorable {
        atrest::exit::OK
    } else {
        atrest::exit::FINDINGS
    })
}

/// The verify document (`atrest.snapshot-verify/v1`) or the table, verdict line last.
fn print_verify(
    format: Format,
    st: &SnapshotStatus,
    report: Option<&atrest::report::ScanReport>,
    restorable: bool,
    line: &str,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema": "atrest.snapshot-verify/v1",
                "restorable": restorable,
                "verdict": line,
                "status": st,
                "scan": report,
            }))?
        ),
        Format::Table => {
            print!("{}", render_status(st));
            if let Some(r) = report {
                println!();
                print!("{}", r.render_table());
            }
            println!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn humanize_like_go() {
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(20_480), "20 kB");
        assert_eq!(humanize_bytes(643_072), "643 kB");
        assert_eq!(humanize_bytes(5_672_960), "5.7 MB");
        assert_eq!(humanize_bytes(999), "999 B");
    }
    fn report(
        by_status: &[(&str, u64)],
        objects: Vec<atrest::classify::ObjectRecord>,
    ) -> atrest::report::ScanReport {
        let mut summary = atrest::report::Summary::default();
        for (s, n) in by_status {
            summary.by_status.insert(s.to_string(), *n);
        }
        atrest::report::ScanReport {
            schema: atrest::report::SCAN_SCHEMA,
            source: atrest::report::SourceInfo {
                kind: "snapshot".into(),
                endpoints: None,
                path: None,
                revision: 1,
            },
            prefix: "/registry".into(),
            config: None,
            verified: true,
            summary,
            objects,
            notes: Vec::new(),
            history: None,
            started_at: String::new(),
            duration_seconds: 0.0,
            started_unix: 0.0,
        }
    }

    fn plaintext_secret(identity_index: Option<usize>) -> atrest::classify::ObjectRecord {
        use atrest::classify::{ObjectRecord, Writer, judge_plaintext};
        let gr = atrest::resource::GroupResource {
            group: String::new(),
            resource: "secrets".into(),
        };
        let writer = Writer {
            kind: atrest::codec::ProviderKind::AesCbc,
            name: Some("key1"),
        };
        let v = judge_plaintext(&writer, Some(&gr), identity_index);
        ObjectRecord {
            key: "/registry/secrets/default/s".into(),
            group: Some(String::new()),
            resource: Some("secrets".into()),
            namespace: Some("default".into()),
            name: "s".into(),
            provider: v.provider.map(str::to_string),
            provider_label: v.provider_label,
            key_name: None,
            status: v.status,
            mod_revision: 2,
            size: 10,
            detail: v.detail,
            message: v.message,
            kms_key_id: None,
        }
    }

    #[test]
    fn verdict_lines() {
        let r = report(&[("current", 3)], Vec::new());
        assert_eq!(
            verdict(&r),
            (true, "restorable with the held keys: yes".into())
        );
        let r = report(&[("current", 3), ("unknown-key", 2)], Vec::new());
        let (ok, line) = verdict(&r);
        assert!(!ok);
        assert_eq!(
            line,
            "restorable with the held keys: no: 0 undecryptable, 2 unknown-key"
        );
    }

    #[test]
    fn plaintext_without_identity_is_not_restorable() {
        // Worded by classify itself, so a change of its wording fails here.
        let unreadable = plaintext_secret(None);
        let readable = plaintext_secret(Some(1));
        assert_eq!(unreadable.status, atrest::classify::Status::Plaintext);
        assert_eq!(readable.status, atrest::classify::Status::Plaintext);

        let r = report(&[("plaintext", 1)], vec![readable.clone()]);
        assert_eq!(
            verdict(&r),
            (true, "restorable with the held keys: yes".into())
        );

        let objs = vec![unreadable.clone(), unreadable.clone(), readable];
        let r = report(&[("plaintext", 3)], objs);
        assert_eq!(
            verdict(&r),
            (
                false,
                "restorable with the held keys: no: 2 plaintext unreadable without an identity provider"
                    .into()
            )
        );
        let r = report(&[("plaintext", 1), ("undecryptable", 1)], vec![unreadable]);
        assert_eq!(
            verdict(&r).1,
            "restorable with the held keys: no: 1 undecryptable, 0 unknown-key, 1 plaintext unreadable without an identity provider"
        );
    }
}
