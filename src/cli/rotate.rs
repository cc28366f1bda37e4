//! `atrest rotate`: flags, SIGINT handling, progress bar, the final verification pass and the
//! exit code (0 everything in scope current and nothing skipped; 1 findings remain; 2 the
//! rotation could not do its job — including an interrupted run, which says how to resume).
use super::common::{ConnectionArgs, parse_resources, print_stdout};
use super::progress::Bar;
use anyhow::{Context, bail};
use atrest::codec::chain::Transformers;
use atrest::config::EncryptionConfig;
use atrest::connect::hide_password;
use atrest::kms::GrpcConnector;
use atrest::report::ScanReport;
use atrest::resource::{DEFAULT_PREFIX, GroupResource};
use atrest::rotate::{self, ROTATE_SCHEMA, RotateOptions, RotateSummary};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateOutput {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 every object in scope is current and nothing was skipped; 1 findings remain \
(unknown-key, undecryptable or ambiguous-key objects left alone, keys that kept changing, stale/plaintext \
objects after the verification pass, or with --dry-run: objects that would be rewritten); 2 the rotation could \
not do its job (bad flags or config, a KMS v1 write target, etcd or KMS errors, a journal from another run or a \
file that is not a journal, or interrupted by Ctrl-C: rerun the same command to resume)."
)]
pub struct RotateArgs {
    #[command(flatten)]
    pub conn: Box<ConnectionArgs>,
    /// The EncryptionConfiguration kube-apiserver uses (its --encryption-provider-config).
    #[arg(long, value_name = "FILE")]
    pub encryption_provider_config: Option<PathBuf>,
    /// Checkpoint journal (created 0600). Rerunning with the same journal resumes.
    #[arg(long, value_name = "FILE", required_unless_present = "dry_run")]
    pub journal: Option<PathBuf>,
    /// kube-apiserver's --etcd-prefix.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Only these resources, as the config names them (`secrets`, `deployments.apps`,
    /// `widgets.example.com`); repeat or comma-separate.
    #[arg(long = "resource", value_name = "GROUP_RESOURCE", value_delimiter = ',', num_args = 1..)]
    pub resources: Vec<String>,
    /// Rewrites per etcd transaction (default: --max-txn-ops).
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// The etcd server's --max-txn-ops.
    #[arg(long, value_name = "N", default_value_t = rotate::DEFAULT_MAX_TXN_OPS)]
    pub max_txn_ops: usize,
    /// The etcd server's --max-request-bytes; transactions stay below it.
    #[arg(long, value_name = "BYTES", default_value_t = rotate::DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Throttle to this many rewritten objects per second.
    #[arg(long, value_name = "OBJECTS_PER_S")]
    pub max_rate: Option<f64>,
    /// Transactions in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: usize,
    /// Read and classify only: print what would be rewritten, write nothing (not even the journal).
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of the summary (stdout).
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: RotateOutput,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// The `atrest.rotate/v1` document.
#[derive(Serialize)]
struct RotateDoc<'a> {
    schema: &'static str,
    prefix: &'a str,
    resources: Vec<String>,
    config: String,
    /// `ok`, `findings`, `interrupted`.
    result: &'static str,
    exit_code: u8,
    #[serde(flatten)]
    summary: &'a RotateSummary,
    /// The final `scan --verify` over the scope (null for a dry run or an interrupted run).
    verification: Option<&'a ScanReport>,
}

pub fn run(a: RotateArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(a))
}

async fn run_async(a: RotateArgs) -> anyhow::Result<u8> {
    let resolved = a.conn.resolve()?;
    let config_path = a
        .encryption_provider_config
        .clone()
        .or(resolved.encryption_provider_config.clone())
        .context(
            "--encryption-provider-config FILE is required (or --apiserver-manifest naming one): rotate must know what kube-apiserver writes",
        )?;
    let prefix = a
        .prefix
        .clone()
        .or(resolved.prefix.clone())
        .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
    let batch = a.batch.unwrap_or(a.max_txn_ops);
    if batch == 0 || a.max_txn_ops == 0 {
        bail!("--batch and --max-txn-ops must be at least 1");
    }
    if batch > a.max_txn_ops {
        bail!(
            "--batch {batch} exceeds --max-txn-ops {}: etcd would refuse the transactions; lower --batch or raise --max-txn-ops to match the server",
            a.max_txn_ops
        );
    }
    if let Some(r) = a.max_rate
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--max-rate must be a positive number of objects per second");
    }
    if a.max_request_bytes < 64 * 1024 {
        bail!("--max-request-bytes must be at least 65536");
    }
    if a.dry_run && a.journal.is_some() {
        eprintln!("note: --dry-run writes nothing; the journal is neither created nor read");
    }
    let resources = parse_resources(&a.resources, false)?;

    let config = EncryptionConfig::load(&config_path)?;
    let transformers = Transformers::new(&config, &GrpcConnector)
        .with_context(|| format!("{}: cannot set up the providers", config_path.display()))?;
    transformers.prepare_kms().await?;

    let stop = Arc::new(AtomicBool::new(false));
    install_sigint(stop.clone(), a.journal.clone());

    let opts = RotateOptions {
        prefix: prefix.clone(),
        resources: resources.clone(),
        batch,
        max_request_bytes: a.max_request_bytes,
        max_rate: a.max_rate,
        dry_run: a.dry_run,
        journal: if a.dry_run { None } else { a.journal.clone() },
        config_path: Some(config_path.display().to_string()),
        page_size: 1000,
        concurrency: a.concurrency.max(1),
        command_timeout: resolved.connect.command_timeout,
        stop: stop.clone(),
    };

    let client = atrest::connect::connect(&resolved.connect).await?;
    let endpoints = resolved.connect.endpoints.clone();
    let progress = Bar::new(!a.no_progress, "objects");
    let summary = rotate::run_rotate(
        client.clone(),
        endpoints.clone(),
        &config,
        Arc::new(transformers),
        &opts,
        &progress,
    )
    .await;
    progress.finish();
    let summary = summary.map_err(|e| match (&e, &opts.journal) {
        (
            rotate::RotateError::Etcd { .. }
            | rotate::RotateError::Source(_)
            | rotate::RotateError::Internal(_),
            Some(j),
        ) => anyhow::anyhow!(
            "{e}\nThe journal {} lists every committed batch: fix the cause, then rerun the same command to resume.",
            j.display()
        ),
        _ => anyhow::Error::new(e),
    })?;

    let skipped_now = summary.this_run.skipped_unknown_key
        + summary.this_run.skipped_undecryptable
        + summary.this_run.skipped_ambiguous
        + summary.this_run.gave_up;
    let (report, code, result) = if summary.interrupted {
        (None, atrest::exit::ERROR, "interrupted")
    } else if summary.dry_run {
        let pending: u64 = summary.plan.iter().map(|r| r.objects).sum();
        let code = if pending > 0 || skipped_now > 0 {
            atrest::exit::FINDINGS
        } else {
            atrest::exit::OK
        };
        (None, code, if code == 0 { "ok" } else { "findings" })
    } else {
        let verify_transformers = Transformers::new(&config, &GrpcConnector)?;
        verify_transformers.prepare_kms().await?;
        let vprog = Bar::new(!a.no_progress, "objects verified");
        let report = rotate::verify(client, endpoints, verify_transformers, &opts, &vprog).await;
        vprog.finish();
        let report = report?;
        let findings = report.has_findings(&[
            atrest::classify::Status::Stale,
            atrest::classify::Status::Plaintext,
            atrest::classify::Status::UnknownKey,
            atrest::classify::Status::Undecryptable,
        ]);
        let code = if findings || skipped_now > 0 {
            atrest::exit::FINDINGS
        } else {
            atrest::exit::OK
        };
        (
            Some(report),
            code,
            if code == 0 { "ok" } else { "findings" },
        )
    };

    match a.output {
        RotateOutput::Json => {
            let doc = RotateDoc {
                schema: ROTATE_SCHEMA,
                prefix: &prefix,
                resources: resources.iter().map(|g| g.to_string()).collect(),
                config: config_path.display().to_string(),
                result,
                exit_code: code,
                summary: &summary,
                verification: report.as_ref(),
            };
            let text = serde_json::to_string_pretty(&doc)? + "\n";
            print_stdout(&mut |w| w.write_all(text.as_bytes()))?;
        }
        RotateOutput::Table => {
            let mut text = render_table(&prefix, &resources, &summary);
            if let Some(r) = &report {
                text.push_str("\nVerification (scan --verify over the scope):\n");
                text.push_str(&r.render_table());
            }
            print_stdout(&mut |w| w.write_all(text.as_bytes()))?;
        }
    }
    if summary.interrupted {
        eprintln!(
            "Interrupted: {} batch(es) committed and journaled in {}; the journal is consistent.\nTo resume, run the same command again with the same --journal:\n  {}",
            summary.batches,
            summary.journal.as_deref().unwrap_or("(no journal)"),
            resume_command(std::env::args())
        );
    } else if summary.retry_needed {
        eprintln!(
            "{} key(s) kept changing during every retry and were left for now; the journal {} is not marked complete. Rerun the same command to examine the scope again and retry them.",
            summary.this_run.gave_up,
            summary.journal.as_deref().unwrap_or("")
        );
    } else if summary.already_complete {
        eprintln!(
            "The journal {} records a finished rotation: nothing was rewritten, the scope was only re-checked. Use a new --journal file to rotate again.",
            summary.journal.as_deref().unwrap_or("")
        );
    }
    Ok(code)
}

/// The command line that resumes this run, with `--password` and the password part of
/// `--user name:password` redacted, shell-quoted where needed.
fn resume_command(args: impl Iterator<Item = String>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut redact_next: Option<&str> = None;
    for a in args {
        let shown = match redact_next.take() {
            Some("--password") => "<password>".to_string(),
            Some(_) => hide_password(&a, "<password>"),
            None => {
                if a == "--password" || a == "--user" {
                    redact_next = Some(if a == "--password" {
                        "--password"
                    } else {
                        "--user"
                    });
                    a.clone()
                } else if a.starts_with("--password=") {
                    "--password=<password>".to_string()
                } else if let Some(u) = a.strip_prefix("--user=") {
                    format!("--user={}", hide_password(u, "<password>"))
                } else {
                    a.clone()
                }
            }
        };
        out.push(shell_quote(&shown));
    }
    out.join(" ")
}

/// The argument as a POSIX shell word: unchanged when every character is safe, else in single
/// quotes (an embedded `'` becomes `'\''`).
fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// First Ctrl-C: stop after the batches in flight. Second: exit at once (still safe: every
/// commit is a compare-and-swap and the journal only lists committed batches).
fn install_sigint(stop: Arc<AtomicBool>, journal: Option<PathBuf>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        stop.store(true, Ordering::SeqCst);
        eprintln!(
            "\ninterrupt: finishing the batches in flight, then stopping (Ctrl-C again to quit at once)"
        );
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupt: quitting now. Resume with the same command{}.",
                journal
                    .map(|j| format!(" and --journal {}", j.display()))
                    .unwrap_or_default()
            );
            std::process::exit(i32::from(atrest::exit::ERROR));
        }
    });
}

fn render_table(prefix: &str, resources: &[GroupResource], s: &RotateSummary) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let scope = if resources.is_empty() {
        "all resources".to_string()
    } else {
        resources
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let title = if s.dry_run { "Dry run" } else { "Rotation" };
    let _ = writeln!(o, "{title} of {prefix} ({scope})");
    if let Some(j) = &s.journal {
        let _ = writeln!(o, "  journal              {j}");
    }
    if let Some(k) = &s.resumed_after {
        let _ = writeln!(o, "  resumed after        {k}");
    }
    let t = &s.this_run;
    let _ = writeln!(o, "  examined             {}", t.examined);
    if s.dry_run {
        let n: u64 = s.plan.iter().map(|r| r.objects).sum();
        let _ = writeln!(o, "  would rewrite        {n}");
    } else {
        let _ = writeln!(o, "  rewritten            {}", t.rewritten);
    }
    let _ = writeln!(o, "  already current      {}", t.already_current);
    let _ = writeln!(
        o,
        "  conflicts retried    {} (already current when re-read: {}, deleted meanwhile: {})",
        t.conflicts_retried, t.resolved_concurrently, t.vanished
    );
    let _ = writeln!(
        o,
        "  skipped              {} unknown-key, {} undecryptable, {} ambiguous key, {} still changing",
        t.skipped_unknown_key, t.skipped_undecryptable, t.skipped_ambiguous, t.gave_up
    );
    let _ = writeln!(
        o,
        "  elapsed              {:.1}s ({:.0} objects/s, {} read, {} written)",
        s.elapsed_seconds,
        s.objects_per_second,
        indicatif::HumanBytes(t.bytes_examined),
        indicatif::HumanBytes(t.bytes_written)
    );
    if s.resumed {
        let a = &s.all_runs;
        let _ = writeln!(
            o,
            "  all runs             {} examined, {} rewritten, {} already current",
            a.examined, a.rewritten, a.already_current
        );
    }
    if !s.plan.is_empty() {
        let w0 = s
            .plan
            .iter()
            .map(|r| r.resource.len())
            .max()
            .unwrap_or(0)
            .max(8);
        let w1 = s
            .plan
            .iter()
            .map(|r| r.from.len())
            .max()
            .unwrap_or(0)
            .max(4);
        let w2 = s.plan.iter().map(|r| r.to.len()).max().unwrap_or(0).max(2);
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:w0$}  {:w1$}  {:w2$}  OBJECTS",
            "RESOURCE", "FROM", "TO"
        );
        for r in &s.plan {
            let _ = writeln!(
                o,
                "{:w0$}  {:w1$}  {:w2$}  {}",
                r.resource, r.from, r.to, r.objects
            );
        }
    }
    if !s.skipped.is_empty() {
        let total = s.skipped.len() as u64 + s.skipped_omitted;
        let _ = writeln!(o, "\nLeft unchanged ({total}):");
        const SHOWN: usize = 50;
        for k in s.skipped.iter().take(SHOWN) {
            let _ = writeln!(
                o,
                "  {}  {}  {}  {}",
                k.key,
                k.status,
                k.from.as_deref().unwrap_or("-"),
                k.detail.as_deref().unwrap_or("")
            );
        }
        if total > SHOWN as u64 {
            let listed = if s.skipped_omitted > 0 {
                format!("-o json lists the first {}", s.skipped.len())
            } else {
                "-o json lists all".to_string()
            };
            let _ = writeln!(o, "  ... and {} more ({listed})", total - SHOWN as u64);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_command_redacts_passwords() {
        let args = [
            "atrest",
            "rotate",
            "--password",
            "hunter2",
            "--user=root:s3cret",
            "--journal",
            "/tmp/my journal",
            "--password=topsecret",
            "--user",
            "admin:pw",
        ]
        .map(String::from);
        let c = resume_command(args.into_iter());
        assert!(!c.contains("hunter2") && !c.contains("s3cret"), "{c}");
        assert!(!c.contains("topsecret") && !c.contains(":pw"), "{c}");
        assert!(c.contains("--user=root:<password>"), "{c}");
        assert!(c.contains("'/tmp/my journal'"), "{c}");
        assert!(c.contains("'<password>'"), "{c}");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("'quoted'"), r"''\''quoted'\'''");
        assert!(c.starts_with("atrest rotate --password"), "{c}");
    }
}
