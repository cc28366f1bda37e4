//! `atrest decode`: classify one stored etcd value (format, provider, key name, KMS v2 fields)
//! and, with an EncryptionConfiguration, say which chain entry kube-apiserver would use, whether
//! the value is stale, and (`--verify`) prove it decrypts. The plaintext is never printed unless
//! `--show-plaintext` is given; then stdout carries exactly the decrypted bytes.
//!
//! Exit codes: 0 classified/decrypted, 1 unreadable with the given config (the message names
//! the error class), 2 usage or config errors.

use anyhow::{Context, bail};
use atrest::codec::chain::{Identified, Transformers};
use atrest::codec::kmsv2::EncryptedObjectInfo;
use atrest::codec::plaintext::classify_plaintext;
use atrest::codec::{DecryptError, ValueClass, classify_value};
use atrest::config::EncryptionConfig;
use atrest::exit;
use atrest::kms::GrpcConnector;
use atrest::resource::{DEFAULT_PREFIX, parse_key};
use base64::Engine as _;
use serde::Serialize;
use std::io::{Read, Write};
use std::path::PathBuf;
use zeroize::Zeroizing;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeOutput {
    Table,
    Json,
}

/// How the value file/stdin is encoded.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEncoding {
    /// The exact stored bytes (e.g. `etcdctl get KEY --print-value-only | head -c -1`:
    /// etcdctl appends a newline).
    Raw,
    /// Standard base64, as in `etcdctl get KEY -w json` (surrounding whitespace ignored).
    Base64,
    /// Hex (surrounding whitespace ignored).
    Hex,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    etcdctl get /registry/secrets/default/db -w json | jq -r '.kvs[0].value' > v.b64\n  \
    atrest decode --key /registry/secrets/default/db --input base64 v.b64\n  \
    atrest decode --key /registry/secrets/default/db --input base64 \\\n      \
    --encryption-provider-config /etc/kubernetes/enc.yaml --verify v.b64")]
pub struct DecodeArgs {
    /// The full etcd key the value is stored under (it is the AES-GCM/KMS AAD).
    #[arg(long = "key", value_name = "ETCD_KEY")]
    pub key: String,
    /// File holding the value; `-` or absent reads stdin.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// How FILE/stdin is encoded.
    #[arg(long, value_enum, default_value_t = InputEncoding::Raw)]
    pub input: InputEncoding,
    /// The EncryptionConfiguration kube-apiserver reads: judge the value against it.
    #[arg(long, value_name = "FILE")]
    pub encryption_provider_config: Option<PathBuf>,
    /// Decrypt the value to prove it is readable (needs the config; contacts KMS plugins).
    #[arg(long)]
    pub verify: bool,
    /// Write exactly the decrypted bytes to stdout and nothing else (implies --verify).
    #[arg(long)]
    pub show_plaintext: bool,
    /// kube-apiserver's --etcd-prefix.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = DecodeOutput::Table)]
    pub output: DecodeOutput,
}

/// `atrest.decode/v1`.
#[derive(Serialize, Default)]
struct Report {
    schema: &'static str,
    etcd_key: String,
    value_bytes: usize,
    /// `encrypted`, `protobuf`, `json`, `cbor`, `other`.
    format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    /// The provider text of a `k8s:enc:` prefix no kube-apiserver provider has (`xyz:v1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown_provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_v2: Option<KmsV2Fields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<ConfigVerdict>,
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    decrypted: Option<DecryptedMeta>,
    /// `ok` or `unreadable`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorOut>,
}

#[derive(Serialize)]
struct KmsV2Fields {
    key_id: String,
    dek_source_type: String,
    annotations: std::collections::BTreeMap<String, String>,
}

impl From<&EncryptedObjectInfo> for KmsV2Fields {
    fn from(i: &EncryptedObjectInfo) -> Self {
        KmsV2Fields {
            key_id: i.key_id.clone(),
            dek_source_type: i.dek_source_type.clone(),
            annotations: i.annotations.clone(),
        }
    }
}

#[derive(Serialize, Default)]
struct ConfigVerdict {
    file: String,
    /// The resource the key maps to (`secrets`, `deployments.apps`), if any.
    resource: Option<String>,
    /// The config rule that applies (`secrets`, `*.*`), None = bare identity.
    rule: Option<String>,
    /// Write provider/key of the chain.
    writer: String,
    /// The chain's entries in read order (`aescbc key1`, `identity`).
    read_order: Vec<String>,
    /// Chain entry that matches (identify) or that read the value (verify).
    entry: Option<usize>,
    entry_provider: Option<String>,
    entry_name: Option<String>,
    stale: Option<bool>,
    /// Several entries' prefixes match the value (overlapping key names): without `--verify`
    /// `entry`/`stale` are only the first candidate's.
    ambiguous: bool,
    /// Verified through aescbc (no MAC) while another entry shares the prefix: the decrypted
    /// bytes may come from the wrong key (garbage). Present only after a successful read.
    #[serde(skip_serializing_if = "Option::is_none")]
    unauthenticated_overlap: Option<bool>,
}

#[derive(Serialize)]
struct DecryptedMeta {
    bytes: usize,
    format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

#[derive(Serialize)]
struct ErrorOut {
    class: String,
    message: String,
}

pub fn run(a: DecodeArgs) -> anyhow::Result<u8> {
    let value = read_value(&a)?;
    let verify = a.verify || a.show_plaintext;
    let mut report = Report {
        schema: "atrest.decode/v1",
        etcd_key: a.key.clone(),
        value_bytes: value.len(),
        status: "ok",
        ..Default::default()
    };
    describe_value(&mut report, &value);

    let Some(cfg_path) = &a.encryption_provider_config else {
        if verify {
            if report.format == "encrypted" {
                bail!(
                    "--verify/--show-plaintext on an encrypted value needs --encryption-provider-config FILE"
                );
            }
            // A plaintext value is its own plaintext.
            if a.show_plaintext {
                return write_plaintext(&value);
            }
        }
        return finish(&a, &report);
    };

    let config = EncryptionConfig::load(cfg_path)
        .with_context(|| format!("loading {}", cfg_path.display()))?;
    let transformers = Transformers::new(&config, &GrpcConnector)
        .with_context(|| format!("setting up the providers of {}", cfg_path.display()))?;
    let info = parse_key(&a.prefix, a.key.as_bytes());
    let chain = transformers.chain_for(info.gr.as_ref());
    let (writer_kind, writer_name) = chain.writer();
    let mut verdict = ConfigVerdict {
        file: cfg_path.display().to_string(),
        resource: info.gr.as_ref().map(|g| g.to_string()),
        rule: info
            .gr
            .as_ref()
            .and_then(|g| config.select(g))
            .map(|s| s.matched),
        writer: match writer_name {
            Some(n) => format!("{writer_kind} {n}"),
            None => writer_kind.to_string(),
        },
        read_order: chain
            .entries()
            .iter()
            .map(|(k, n)| match n {
                Some(n) => format!("{k} {n}"),
                None => k.to_string(),
            })
            .collect(),
        ..Default::default()
    };

    let identified = chain.identify(&value);
    let cannot_match = match &identified {
        Identified::Plaintext { identity_index } => {
            verdict.entry = *identity_index;
            verdict.entry_provider = identity_index.map(|_| "identity".to_string());
            verdict.stale = identity_index.map(|i| i != 0);
            identity_index.is_none()
        }
        Identified::Matched {
            index,
            provider,
            name,
            stale_hint,
            ambiguous,
            ..
        } => {
            verdict.entry = Some(*index);
            verdict.entry_provider = Some(provider.to_string());
            verdict.entry_name = name.clone();
            verdict.stale = Some(*stale_hint);
            verdict.ambiguous = *ambiguous;
            false
        }
        Identified::Unknown { .. } => true,
    };

    if verify || cannot_match {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        match rt.block_on(chain.read(a.key.as_bytes(), &value)) {
            Ok(outcome) => {
                verdict.entry = Some(outcome.index);
                verdict.entry_provider = Some(outcome.provider.to_string());
                verdict.entry_name = outcome.name.clone();
                verdict.stale = Some(outcome.stale);
                verdict.unauthenticated_overlap = Some(outcome.unauthenticated_overlap);
                report.verified = true;
                if outcome.unauthenticated_overlap {
                    eprintln!("warning: {OVERLAP_WARNING}");
                }
                if a.show_plaintext {
                    summary_to_stderr(&verdict);
                    return write_plaintext(outcome.plaintext.expose());
                }
                let pk = classify_plaintext(outcome.plaintext.expose());
                let (av, k) = pk.type_meta();
                report.decrypted = Some(DecryptedMeta {
                    bytes: outcome.plaintext.len(),
                    format: pk.format_name().to_string(),
                    api_version: av.map(str::to_string),
                    kind: k.map(str::to_string),
                });
            }
            Err(e) => {
                report.config = Some(verdict);
                return unreadable(&a, report, e);
            }
        }
    }
    report.config = Some(verdict);
    finish(&a, &report)
}

/// Why a successful aescbc read with an overlapping prefix proves little.
const OVERLAP_WARNING: &str = "another configured aescbc key shares this value's prefix and aescbc has \
     no MAC: a wrong key passes the padding check about once in 256 values, so the decrypted \
     bytes may be garbage. Give every key a unique name that is not a prefix of another";

/// The value's bytes. A stored value may be a plaintext Secret, so every buffer holding it
/// (raw input, whitespace-stripped text, decoded bytes) is wiped on drop.
fn read_value(a: &DecodeArgs) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let raw = match a.file.as_deref() {
        None => read_stdin()?,
        Some(p) if p.as_os_str() == "-" => read_stdin()?,
        Some(p) => Zeroizing::new(
            std::fs::read(p).with_context(|| format!("reading the value from {}", p.display()))?,
        ),
    };
    let stripped = || -> Zeroizing<Vec<u8>> {
        Zeroizing::new(
            raw.iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect(),
        )
    };
    match a.input {
        InputEncoding::Raw => Ok(raw),
        InputEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(&*stripped())
            .map(Zeroizing::new)
            .context("--input base64: the value is not valid standard base64"),
        InputEncoding::Hex => hex::decode(&*stripped())
            .map(Zeroizing::new)
            .context("--input hex: the value is not valid hex"),
    }
}

fn read_stdin() -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .read_to_end(&mut buf)
        .context("reading the value from stdin")?;
    Ok(buf)
}

/// Fill the config-free part of the report.
fn describe_value(report: &mut Report, value: &[u8]) {
    match classify_value(value) {
        ValueClass::Plaintext(pk) => {
            report.format = pk.format_name().to_string();
            let (av, k) = pk.type_meta();
            report.api_version = av.map(str::to_string);
            report.kind = k.map(str::to_string);
        }
        ValueClass::Encrypted(e) => {
            report.format = "encrypted".to_string();
            report.provider = Some(match e.provider {
                Some(p) => p.to_string(),
                None => "unknown".to_string(),
            });
            if e.provider.is_none() {
                report.unknown_provider = Some(e.provider_label);
            }
            report.name = e.name;
            report.kms_v2 = e.kms_v2.as_ref().map(KmsV2Fields::from);
        }
    }
}

fn write_plaintext(bytes: &[u8]) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .context("writing the plaintext to stdout")?;
    out.flush().context("writing the plaintext to stdout")?;
    Ok(exit::OK)
}

fn summary_to_stderr(v: &ConfigVerdict) {
    let entry = match (&v.entry_provider, &v.entry_name) {
        (Some(p), Some(n)) => format!("{p} {n}"),
        (Some(p), None) => p.clone(),
        _ => "?".to_string(),
    };
    let stale = if v.stale == Some(true) {
        "stale"
    } else {
        "current"
    };
    eprintln!(
        "decrypted with {entry} (entry {}, {stale})",
        v.entry.unwrap_or(0)
    );
}

fn unreadable(a: &DecodeArgs, mut report: Report, e: DecryptError) -> anyhow::Result<u8> {
    report.status = "unreadable";
    report.error = Some(ErrorOut {
        class: e.class.to_string(),
        message: e.message.clone(),
    });
    if a.show_plaintext {
        eprintln!("error: value is unreadable with this config: {e}");
        return Ok(exit::FINDINGS);
    }
    finish(a, &report)?;
    if a.output == DecodeOutput::Table {
        eprintln!("error: value is unreadable with this config: {e}");
    }
    Ok(exit::FINDINGS)
}

fn finish(a: &DecodeArgs, report: &Report) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    match a.output {
        DecodeOutput::Json => {
            serde_json::to_writer_pretty(&mut out, report).context("writing JSON")?;
            writeln!(out)?;
        }
        DecodeOutput::Table => print_table(&mut out, report)?,
    }
    Ok(if report.status == "ok" {
        exit::OK
    } else {
        exit::FINDINGS
    })
}

/// `v` with control characters (ESC, CR, newlines...) shown as `\u{..}` escapes.
fn printable(v: &str) -> String {
    if !v.chars().any(char::is_control) {
        return v.to_string();
    }
    v.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn print_table(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    // Names, keyIDs, annotation keys and type metadata come from the untrusted value:
    // control characters are escaped so a crafted value cannot drive the terminal.
    let row = |out: &mut dyn Write, k: &str, v: &str| writeln!(out, "{k:<16}{}", printable(v));
    row(out, "etcd key", &r.etcd_key)?;
    row(out, "value", &format!("{} bytes", r.value_bytes))?;
    row(out, "format", &r.format)?;
    if let Some(v) = &r.api_version {
        row(out, "apiVersion", v)?;
    }
    if let Some(v) = &r.kind {
        row(out, "kind", v)?;
    }
    if let Some(v) = &r.provider {
        match &r.unknown_provider {
            Some(u) => row(out, "provider", &format!("{v} (prefix says {u:?})"))?,
            None => row(out, "provider", v)?,
        }
    }
    if let Some(v) = &r.name {
        row(out, "name", v)?;
    }
    if let Some(k) = &r.kms_v2 {
        row(out, "kms keyID", &k.key_id)?;
        row(out, "kms DEK type", &k.dek_source_type)?;
        for (ak, av) in &k.annotations {
            row(out, "kms annotation", &format!("{ak}={av} (base64)"))?;
        }
    }
    if let Some(c) = &r.config {
        row(out, "config", &c.file)?;
        row(
            out,
            "resource",
            c.resource.as_deref().unwrap_or("(not a resource key)"),
        )?;
        row(
            out,
            "rule",
            c.rule.as_deref().unwrap_or("(none: bare identity)"),
        )?;
        row(out, "writer", &c.writer)?;
        let order: Vec<String> = c
            .read_order
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i}: {e}"))
            .collect();
        row(out, "read order", &order.join(", "))?;
        match (c.entry, &c.entry_provider) {
            (Some(i), Some(p)) => {
                let name = c
                    .entry_name
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default();
                row(out, "matched entry", &format!("{i}: {p}{name}"))?;
            }
            _ => row(out, "matched entry", "none")?,
        }
        if c.ambiguous {
            let how = if r.verified {
                "the read above settled which one opens it"
            } else {
                "the entry and staleness above are only the first candidate's; --verify to decrypt"
            };
            row(
                out,
                "ambiguous",
                &format!("yes: several entries share this prefix, {how}"),
            )?;
        }
        if c.unauthenticated_overlap == Some(true) {
            row(out, "warning", OVERLAP_WARNING)?;
        }
        if let Some(s) = c.stale {
            let judged = if r.verified {
                ""
            } else {
                " (from the prefix; --verify to decrypt)"
            };
            row(
                out,
                "stale",
                &format!(
                    "{}{judged}",
                    if s {
                        "yes (would be rewritten on update)"
                    } else {
                        "no"
                    }
                ),
            )?;
        }
    }
    if let Some(d) = &r.decrypted {
        let mut s = format!("ok, {} bytes of {}", d.bytes, d.format);
        if let (Some(av), Some(k)) = (&d.api_version, &d.kind) {
            s.push_str(&format!(" ({av} {k})"));
        }
        row(out, "decrypted", &s)?;
    }
    if let Some(e) = &r.error {
        row(out, "status", &format!("unreadable: {}", e.class))?;
    } else {
        row(out, "status", r.status)?;
    }
    Ok(())
}
