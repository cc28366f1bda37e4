//! `atrest config ...`: EncryptionConfiguration tools. `config check` validates a file exactly
//! as kube-apiserver would (exit 2 with upstream's messages if it would refuse to start), then
//! shows per resource rule the write provider/key and the read order, and warns about the known
//! traps. It never prints key material: only key names, sizes and stored-value prefixes.
use anyhow::Context;
use atrest::config::check::{self, CheckReport, ProviderReport};
use atrest::config::{ConfigError, EncryptionConfig};
use atrest::exit;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate an EncryptionConfiguration as kube-apiserver would, show which provider/key
    /// writes each resource and the read order, and warn about known traps.
    ///
    /// Exit codes: 0 valid (warnings allowed), 1 valid but with warnings under --strict,
    /// 2 invalid or unreadable.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The file passed to kube-apiserver's --encryption-provider-config.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "apiserver_manifest"
    )]
    pub encryption_provider_config: Option<PathBuf>,
    /// Take the file from a kube-apiserver static pod manifest's --encryption-provider-config
    /// (an explicit --encryption-provider-config wins).
    #[arg(long, value_name = "FILE")]
    pub apiserver_manifest: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: CheckOutput,
    /// Exit 1 when there are warnings (for CI gates).
    #[arg(long)]
    pub strict: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckOutput {
    Table,
    Json,
}

pub fn run(c: ConfigCommand) -> anyhow::Result<u8> {
    match c {
        ConfigCommand::Check(a) => run_check(&a),
    }
}

/// The JSON document for a file kube-apiserver would refuse.
#[derive(Serialize)]
struct InvalidReport<'a> {
    schema: &'static str,
    file: &'a str,
    valid: bool,
    errors: Vec<JsonError>,
}

#[derive(Serialize)]
struct JsonError {
    /// Upstream's field path, or null for read/parse errors.
    field: Option<String>,
    message: String,
}

/// The config file to check: the flag, else the manifest's `--encryption-provider-config`.
fn config_path(a: &CheckArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &a.encryption_provider_config {
        return Ok(path.clone());
    }
    let manifest = a
        .apiserver_manifest
        .as_ref()
        .context("give --encryption-provider-config FILE (or --apiserver-manifest FILE)")?;
    let flags = atrest::connect::read_apiserver_manifest(manifest)?;
    flags.encryption_provider_config.with_context(|| {
        format!(
            "{}: kube-apiserver has no --encryption-provider-config, so nothing is encrypted at rest \
             (every resource is written in plaintext)",
            manifest.display()
        )
    })
}

fn run_check(a: &CheckArgs) -> anyhow::Result<u8> {
    let path = config_path(a)?;
    let file = path.display().to_string();
    let mut out = std::io::stdout().lock();
    match EncryptionConfig::load_with_notes(&path) {
        Ok((config, notes)) => {
            let report = check::check(&config, &notes, &file);
            match a.output {
                CheckOutput::Json => {
                    serde_json::to_writer_pretty(&mut out, &report)?;
                    writeln!(out)?;
                }
                CheckOutput::Table => write_table(&mut out, &report)?,
            }
            out.flush().context("writing the report")?;
            Ok(if a.strict && !report.warnings.is_empty() {
                exit::FINDINGS
            } else {
                exit::OK
            })
        }
        Err(e) => {
            if a.output == CheckOutput::Json {
                let doc = InvalidReport {
                    schema: check::SCHEMA,
                    file: &file,
                    valid: false,
                    errors: json_errors(&e),
                };
                serde_json::to_writer_pretty(&mut out, &doc)?;
                writeln!(out)?;
                out.flush().context("writing the report")?;
            }
            // One line per problem, each naming the file and field.
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            if !matches!(e, ConfigError::Io { .. }) {
                eprintln!(
                    "kube-apiserver would refuse to start with this --encryption-provider-config"
                );
            }
            Ok(exit::ERROR)
        }
    }
}

fn json_errors(e: &ConfigError) -> Vec<JsonError> {
    let fields = e.field_errors();
    if fields.is_empty() {
        return vec![JsonError {
            field: None,
            message: e.to_string(),
        }];
    }
    fields
        .into_iter()
        .map(|f| JsonError {
            field: Some(f.field),
            message: f.message,
        })
        .collect()
}

fn write_table(out: &mut impl Write, r: &CheckReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "{}: valid EncryptionConfiguration ({} resource rule{})",
        r.file,
        r.rules.len(),
        if r.rules.len() == 1 { "" } else { "s" }
    )?;
    writeln!(out)?;
    let mut rows: Vec<[String; 3]> = vec![[
        "RESOURCE".to_owned(),
        "WRITES WITH".to_owned(),
        "READ ORDER".to_owned(),
    ]];
    for rule in &r.rules {
        rows.push([
            rule.resource.clone(),
            write_label(&rule.write),
            rule.read_order
                .iter()
                .map(ProviderReport::label)
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    if let Some(unmatched) = &r.unmatched {
        rows.push([
            "(anything else)".to_owned(),
            write_label(unmatched),
            unmatched.label(),
        ]);
    }
    let w0 = rows.iter().map(|x| x[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|x| x[1].len()).max().unwrap_or(0);
    for [a, b, c] in &rows {
        writeln!(out, "{a:<w0$}  {b:<w1$}  {c}")?;
    }
    if r.warnings.is_empty() {
        writeln!(out, "\nno warnings")?;
    } else {
        writeln!(out)?;
        for w in &r.warnings {
            writeln!(out, "warning [{}] {}: {}", w.code, w.field, w.message)?;
        }
    }
    Ok(())
}

/// The write column: the candidate, and what it means when nothing is encrypted.
fn write_label(p: &ProviderReport) -> String {
    let mut label = p.label();
    if p.plaintext {
        label.push_str(" (PLAINTEXT)");
    } else if let Some(bits) = p.key_bits {
        label.push_str(&format!(" ({bits}-bit key)"));
    }
    label
}
