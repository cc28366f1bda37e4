//! The rotation checkpoint journal: an append-only JSON-lines file (created 0600) that lets a
//! killed or interrupted `atrest rotate` resume after its last committed batch.
//!
//! Line 1 is a [`JournalHeader`] identifying the run (prefix, resources, the target
//! fingerprints of every in-scope chain). Then one [`BatchRecord`] per committed batch, in key
//! order, fsynced before the next batch is journaled; a `complete` line ends a finished run.
//! It holds no plaintext and no key material: etcd keys (which are not secret), counts,
//! revisions and the codec's fingerprints (keyed hashes that reveal nothing about the keys).
//!
//! The header carries a random per-journal salt (hex): the target fingerprints are
//! `Chain::writer_fingerprint_salted(salt)`, so they cannot be used to test key guesses and
//! differ across journals. A resumed run recomputes them with the header's salt.
//!
//! A crash can leave a torn last line: only a last line WITHOUT a trailing newline counts as
//! torn (every record is written with its newline in one call, then fsynced); it is ignored and
//! cut off before appending. Any complete line that does not parse, or a first line that is not
//! our header, means the file is not a journal we wrote: it is an error, and the file is left
//! untouched (validation happens before any chmod, truncation or append).
//!
//! A pass that ends with keys that kept changing ("gave up") is not marked complete: it writes
//! a `restart` line so the next run examines the whole scope again and retries them.
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The journal's format identifier (first line's `schema`).
pub const JOURNAL_SCHEMA: &str = "atrest.rotate-journal/v1";

/// What identifies a rotation run. Two runs may share a journal only if `prefix`, `resources`
/// and `targets` are equal; `config`, `started_at` and `atrest_version` are informational.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalHeader {
    pub schema: String,
    /// Storage prefix as given (`/registry`).
    pub prefix: String,
    /// `--resource` filter, sorted (empty = every resource).
    pub resources: Vec<String>,
    /// In-scope rule (`secrets`, `*.*`, or `(no rule)`) → the writer fingerprint of its chain.
    pub targets: BTreeMap<String, String>,
    /// Path of the EncryptionConfiguration (informational).
    pub config: Option<String>,
    /// Hex of the random salt of the `targets` fingerprints (empty: a journal of an older
    /// atrest whose fingerprints were unsalted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub salt: String,
    pub started_at: String,
    pub atrest_version: String,
}

impl JournalHeader {
    /// What makes `other` a different run, one human-readable line per difference.
    pub fn differences(&self, other: &JournalHeader) -> Vec<String> {
        let mut out = Vec::new();
        if self.schema != other.schema {
            out.push(format!(
                "journal format: file has {:?}, this atrest writes {:?}",
                self.schema, other.schema
            ));
        }
        if self.prefix != other.prefix {
            out.push(format!(
                "prefix: journal has {:?}, this run uses {:?}",
                self.prefix, other.prefix
            ));
        }
        if self.resources != other.resources {
            out.push(format!(
                "resources: journal has [{}], this run uses [{}]",
                show_list(&self.resources),
                show_list(&other.resources)
            ));
        }
        if self.targets != other.targets {
            let mut names: Vec<&String> = self.targets.keys().chain(other.targets.keys()).collect();
            names.sort();
            names.dedup();
            for n in names {
                let (a, b) = (self.targets.get(n), other.targets.get(n));
                if a != b {
                    out.push(format!(
                        "write target of {n}: journal has {}, this config gives {}",
                        a.map(String::as_str).unwrap_or("(not in scope)"),
                        b.map(String::as_str).unwrap_or("(not in scope)")
                    ));
                }
            }
        }
        out
    }
}

fn show_list(v: &[String]) -> String {
    if v.is_empty() {
        "all".to_string()
    } else {
        v.join(", ")
    }
}

/// Cumulative counters (over every run that used this journal).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub examined: u64,
    pub rewritten: u64,
    pub already_current: u64,
    pub conflicts_retried: u64,
    /// Keys that changed under us and were already current when re-read (kube-apiserver wrote them).
    pub resolved_concurrently: u64,
    /// Keys deleted between our read and our write (never recreated).
    pub vanished: u64,
    pub skipped_unknown_key: u64,
    pub skipped_undecryptable: u64,
    /// Read through an aescbc key whose prefix overlaps another key's: left alone.
    #[serde(default)]
    pub skipped_ambiguous: u64,
    /// Keys still changing after every retry (left for the verification pass to judge).
    pub gave_up: u64,
    pub bytes_examined: u64,
    pub bytes_written: u64,
}

impl Totals {
    /// Count one skipped key under its status.
    pub fn count_skip(&mut self, s: &SkippedKey) {
        match s.status.as_str() {
            "unknown-key" => self.skipped_unknown_key += 1,
            "ambiguous" => self.skipped_ambiguous += 1,
            "gave-up" => self.gave_up += 1,
            _ => self.skipped_undecryptable += 1,
        }
    }

    pub fn add(&mut self, o: &Totals) {
        self.examined += o.examined;
        self.rewritten += o.rewritten;
        self.already_current += o.already_current;
        self.conflicts_retried += o.conflicts_retried;
        self.resolved_concurrently += o.resolved_concurrently;
        self.vanished += o.vanished;
        self.skipped_unknown_key += o.skipped_unknown_key;
        self.skipped_undecryptable += o.skipped_undecryptable;
        self.skipped_ambiguous += o.skipped_ambiguous;
        self.gave_up += o.gave_up;
        self.bytes_examined += o.bytes_examined;
        self.bytes_written += o.bytes_written;
    }
}

/// At most this many skipped keys are kept in memory and printed; counts stay exact.
pub const SKIPPED_KEPT: usize = 1000;

/// Append `items` to `list` keeping at most [`SKIPPED_KEPT`]; returns how many were dropped.
pub fn push_capped(list: &mut Vec<SkippedKey>, items: impl IntoIterator<Item = SkippedKey>) -> u64 {
    let mut dropped = 0u64;
    for it in items {
        if list.len() < SKIPPED_KEPT {
            list.push(it);
        } else {
            dropped += 1;
        }
    }
    dropped
}

/// A key that was left alone and why (keys are not secret; `detail` never holds plaintext).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedKey {
    pub key: String,
    /// `unknown-key`, `undecryptable`, `ambiguous` (overlapping aescbc prefixes) or `gave-up`
    /// (kept changing during every retry).
    pub status: String,
    /// `provider/key` as stored, when known.
    pub from: Option<String>,
    pub detail: Option<String>,
}

/// One committed batch: everything up to and including `last_key` is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub seq: u64,
    /// Base64 of the exact key bytes (keys may be any bytes).
    pub last_key: String,
    /// The same key, lossily decoded, for humans reading the file.
    pub last_key_text: String,
    /// etcd revision of the batch's last commit (0 if nothing was written).
    pub revision: i64,
    pub at: String,
    /// This batch's counts.
    pub counts: Totals,
    pub skipped: Vec<SkippedKey>,
}

impl BatchRecord {
    pub fn new(
        seq: u64,
        last_key: &[u8],
        revision: i64,
        counts: Totals,
        skipped: Vec<SkippedKey>,
    ) -> Self {
        BatchRecord {
            seq,
            last_key: B64.encode(last_key),
            last_key_text: String::from_utf8_lossy(last_key).into_owned(),
            revision,
            at: now_rfc3339(),
            counts,
            skipped,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Line {
    Header(JournalHeader),
    Resumed {
        at: String,
        atrest_version: String,
    },
    Batch(BatchRecord),
    Complete {
        at: String,
        totals: Totals,
    },
    /// A pass reached the end of the scope but left keys to retry: start over next time.
    Restart {
        at: String,
        gave_up: u64,
    },
}

/// What the journal says about earlier runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalState {
    /// Resume after this key (exclusive). None = start at the beginning.
    pub last_key: Option<Vec<u8>>,
    pub batches: u64,
    pub totals: Totals,
    /// The first [`SKIPPED_KEPT`] skipped keys; `skipped_omitted` counts the rest.
    pub skipped: Vec<SkippedKey>,
    pub skipped_omitted: u64,
    /// A previous run finished the whole scope.
    pub complete: bool,
    /// The file existed and held a header (this is a resumed run).
    pub resumed: bool,
    /// The header of the first run (for messages).
    pub started_at: Option<String>,
    /// A previous pass ended with keys to retry; this run starts over from the beginning.
    pub restarted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {message}: {source}")]
    Io {
        path: String,
        message: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "journal {path} belongs to a different rotation:\n  {}\nUse a new --journal file for this run, or rerun with the original configuration, prefix and --resource list to resume it.",
        differences.join("\n  ")
    )]
    Mismatch {
        path: String,
        differences: Vec<String>,
    },
    #[error(
        "{path} is not an atrest rotate journal (its first line is not a journal header); it was left untouched: pass a new path to --journal"
    )]
    NotAJournal { path: String },
    #[error(
        "journal {path}: line {line} is not a journal record we wrote ({message}); refusing to guess. Use a new --journal file."
    )]
    Corrupt {
        path: String,
        line: usize,
        message: String,
    },
}

/// An open journal, positioned for appending.
pub struct Journal {
    file: File,
    path: PathBuf,
    next_seq: u64,
}

impl Journal {
    /// Open `path` for the run whose header `build` makes from the fingerprint salt (None:
    /// the existing journal predates salts, so compare unsalted fingerprints). A new file (0600,
    /// fsynced with its directory) gets a fresh random salt; an existing one is fully validated
    /// (our header, every complete line parses, same run) before anything in it is changed.
    pub fn open(
        path: &Path,
        build: impl FnOnce(Option<&[u8]>) -> JournalHeader,
    ) -> Result<(Journal, JournalState), JournalError> {
        let shown = path.display().to_string();
        let io = |message: &'static str| {
            let shown = shown.clone();
            move |source| JournalError::Io {
                path: shown,
                message,
                source,
            }
        };
        match std::fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::create(path, build),
            Err(e) => return Err(io("cannot look at the journal path")(e)),
        }
        // Read-only first: nothing is changed before the contents are validated.
        let bytes = std::fs::read(path).map_err(io("cannot read existing journal"))?;
        let parsed = parse(&shown, &bytes)?;
        let (header, salt) = match &parsed.header {
            None => {
                // Empty, or created but the header never fully reached the disk: a fresh start.
                let salt = new_salt(&shown)?;
                let mut h = build(Some(&salt));
                h.salt = hex::encode(salt);
                (None, h)
            }
            Some(h) => {
                let salt = if h.salt.is_empty() {
                    None
                } else {
                    Some(hex::decode(&h.salt).map_err(|e| JournalError::Corrupt {
                        path: shown.clone(),
                        line: 1,
                        message: format!("salt is not hex: {e}"),
                    })?)
                };
                let mut want = build(salt.as_deref());
                want.salt = h.salt.clone();
                let differences = h.differences(&want);
                if !differences.is_empty() {
                    return Err(JournalError::Mismatch {
                        path: shown,
                        differences,
                    });
                }
                (Some(()), want)
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("cannot open existing journal"))?;
        tighten_mode(&file).map_err(io("cannot restrict the journal to mode 0600"))?;
        if parsed.valid_len < bytes.len() as u64 {
            // Cut the torn tail so the next record starts on a fresh line.
            file.set_len(parsed.valid_len)
                .map_err(io("cannot truncate the journal's torn last line"))?;
            file.sync_data().map_err(io("cannot fsync journal"))?;
        }
        let mut j = Journal {
            file,
            path: path.to_path_buf(),
            next_seq: parsed.state.batches,
        };
        match header {
            None => {
                j.append(&Line::Header(salt))?;
                Ok((j, JournalState::default()))
            }
            Some(()) => {
                if !parsed.state.complete {
                    j.append(&Line::Resumed {
                        at: now_rfc3339(),
                        atrest_version: salt.atrest_version.clone(),
                    })?;
                }
                Ok((j, parsed.state))
            }
        }
    }

    /// Create a new journal (0600) with a fresh salt and its header.
    fn create(
        path: &Path,
        build: impl FnOnce(Option<&[u8]>) -> JournalHeader,
    ) -> Result<(Journal, JournalState), JournalError> {
        let shown = path.display().to_string();
        let salt = new_salt(&shown)?;
        let mut header = build(Some(&salt));
        header.salt = hex::encode(salt);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| JournalError::Io {
                path: shown.clone(),
                message: "cannot create journal",
                source,
            })?;
        let mut j = Journal {
            file,
            path: path.to_path_buf(),
            next_seq: 0,
        };
        j.append(&Line::Header(header))?;
        sync_parent_dir(path).map_err(|source| JournalError::Io {
            path: shown,
            message: "cannot fsync the journal's directory",
            source,
        })?;
        Ok((j, JournalState::default()))
    }

    /// Record a committed batch and fsync before returning.
    pub fn record_batch(
        &mut self,
        last_key: &[u8],
        revision: i64,
        counts: Totals,
        skipped: Vec<SkippedKey>,
    ) -> Result<(), JournalError> {
        let rec = BatchRecord::new(self.next_seq, last_key, revision, counts, skipped);
        self.append(&Line::Batch(rec))?;
        self.next_seq += 1;
        Ok(())
    }

    /// Record that a pass reached the end of the scope but `gave_up` keys must be retried:
    /// the next run starts over from the beginning.
    pub fn record_restart(&mut self, gave_up: u64) -> Result<(), JournalError> {
        self.append(&Line::Restart {
            at: now_rfc3339(),
            gave_up,
        })
    }

    /// Record that the whole scope was processed.
    pub fn record_complete(&mut self, totals: &Totals) -> Result<(), JournalError> {
        self.append(&Line::Complete {
            at: now_rfc3339(),
            totals: totals.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, line: &Line) -> Result<(), JournalError> {
        let mut text = serde_json::to_vec(line).map_err(|e| JournalError::Io {
            path: self.path.display().to_string(),
            message: "cannot encode a record",
            source: std::io::Error::other(e),
        })?;
        text.push(b'\n');
        // One write call per record: a crash leaves at most one torn line, at the end.
        self.file
            .write_all(&text)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| JournalError::Io {
                path: self.path.display().to_string(),
                message: "cannot append and fsync a record",
                source,
            })
    }
}

struct Parsed {
    header: Option<JournalHeader>,
    state: JournalState,
    /// Bytes up to the end of the last complete, valid line.
    valid_len: u64,
}

/// The start of our header line as serde writes it (`Line` is internally tagged, tag first).
const HEADER_START: &[u8] = br#"{"type":"header""#;

/// Parse a journal's bytes. Only a last line without its newline may be torn (ignored); any
/// complete line that does not parse is [`JournalError::Corrupt`], and a first line that is
/// not our header (complete, or torn but not the start of one) is [`JournalError::NotAJournal`].
fn parse(path: &str, bytes: &[u8]) -> Result<Parsed, JournalError> {
    let mut header = None;
    let mut state = JournalState::default();
    let mut offset = 0usize;
    let mut valid_len = 0u64;
    let mut lineno = 0usize;
    let not_ours = || JournalError::NotAJournal {
        path: path.to_string(),
    };
    while offset < bytes.len() {
        lineno += 1;
        let rest = bytes.get(offset..).unwrap_or_default();
        let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => (rest.get(..n).unwrap_or_default(), true),
            None => (rest, false),
        };
        let next = offset + line.len() + usize::from(complete);
        let corrupt = |message: String| JournalError::Corrupt {
            path: path.to_string(),
            line: lineno,
            message,
        };
        if !complete {
            // A torn write (even if the JSON happens to be whole, the fsync that would have
            // made it count did not return). A torn first line must look like our header.
            if lineno == 1 && !(line.starts_with(HEADER_START) || HEADER_START.starts_with(line)) {
                return Err(not_ours());
            }
            break;
        }
        let parsed: Line = match serde_json::from_slice(line) {
            Ok(l) => l,
            Err(_) if lineno == 1 => return Err(not_ours()),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        match parsed {
            Line::Header(h) => {
                if header.is_some() || lineno != 1 {
                    return Err(corrupt("a second header".into()));
                }
                state.started_at = Some(h.started_at.clone());
                state.resumed = true;
                header = Some(h);
            }
            _ if header.is_none() => return Err(not_ours()),
            Line::Resumed { .. } => {}
            Line::Batch(rec) => {
                let key = B64
                    .decode(rec.last_key.as_bytes())
                    .map_err(|e| corrupt(format!("last_key is not base64: {e}")))?;
                state.last_key = Some(key);
                state.batches += 1;
                state.totals.add(&rec.counts);
                state.skipped_omitted += push_capped(&mut state.skipped, rec.skipped);
            }
            Line::Complete { .. } => state.complete = true,
            Line::Restart { .. } => {
                // The next pass examines everything again and finds the skipped keys anew.
                state.last_key = None;
                state.skipped.clear();
                state.skipped_omitted = 0;
                state.restarted = true;
            }
        }
        offset = next;
        valid_len = next as u64;
    }
    Ok(Parsed {
        header,
        state,
        valid_len,
    })
}

/// A fresh random fingerprint salt (16 bytes; not secret, stored in the header).
fn new_salt(path: &str) -> Result<[u8; 16], JournalError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| JournalError::Io {
        path: path.to_string(),
        message: "cannot get random bytes for the journal's fingerprint salt",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(salt)
}

/// A journal someone created by hand (or with a lax umask) is narrowed to 0600.
fn tighten_mode(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perm = file.metadata()?.permissions();
    if perm.mode() & 0o077 != 0 {
        perm.set_mode(perm.mode() & 0o700);
        file.set_permissions(perm)?;
    }
    Ok(())
}

fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// UTC now as RFC 3339 (seconds precision).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn header() -> JournalHeader {
        JournalHeader {
            schema: JOURNAL_SCHEMA.into(),
            prefix: "/registry".into(),
            resources: vec!["secrets".into()],
            targets: [("secrets".to_string(), "aesgcm/k2/abc".to_string())].into(),
            config: Some("/etc/enc.yaml".into()),
            salt: String::new(),
            started_at: now_rfc3339(),
            atrest_version: "0.1.0".into(),
        }
    }

    fn counts(n: u64) -> Totals {
        Totals {
            examined: n,
            rewritten: n,
            ..Totals::default()
        }
    }

    #[test]
    fn create_is_0600_and_resume_continues_after_last_batch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, st) = Journal::open(&p, |_| header()).unwrap();
        assert!(!st.resumed);
        assert_eq!(st.last_key, None);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        j.record_batch(b"/registry/secrets/a/x", 10, counts(3), vec![])
            .unwrap();
        j.record_batch(b"/registry/secrets/b/\xffy", 12, counts(2), vec![])
            .unwrap();
        drop(j);

        let mut h2 = header();
        h2.started_at = "later".into();
        h2.config = Some("/other/path.yaml".into());
        let (_j, st) = Journal::open(&p, |_| h2).unwrap();
        assert!(st.resumed);
        assert!(!st.complete);
        assert_eq!(st.batches, 2);
        assert_eq!(
            st.last_key.as_deref(),
            Some(&b"/registry/secrets/b/\xffy"[..])
        );
        assert_eq!(st.totals.rewritten, 5);
    }

    #[test]
    fn torn_last_line_is_ignored_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&p, |_| header()).unwrap();
        j.record_batch(b"/registry/secrets/a", 5, counts(1), vec![])
            .unwrap();
        drop(j);
        let whole = std::fs::read(&p).unwrap();
        // A second record torn half way.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"type":"batch","seq":1,"last_key":"L3JlZ2"#)
            .unwrap();
        drop(f);
        let (mut j, st) = Journal::open(&p, |_| header()).unwrap();
        assert_eq!(st.last_key.as_deref(), Some(&b"/registry/secrets/a"[..]));
        j.record_batch(b"/registry/secrets/b", 6, counts(1), vec![])
            .unwrap();
        drop(j);
        let text = std::fs::read(&p).unwrap();
        assert!(text.starts_with(&whole));
        let (_, st) = Journal::open(&p, |_| header()).unwrap();
        assert_eq!(st.last_key.as_deref(), Some(&b"/registry/secrets/b"[..]));
        assert_eq!(st.batches, 2);
    }

    #[test]
    fn whole_json_without_newline_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (j, _) = Journal::open(&p, |_| header()).unwrap();
        drop(j);
        let rec = Line::Batch(BatchRecord::new(
            0,
            b"/registry/secrets/z",
            1,
            counts(1),
            vec![],
        ));
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&serde_json::to_vec(&rec).unwrap()).unwrap();
        drop(f);
        let (_, st) = Journal::open(&p, |_| header()).unwrap();
        assert_eq!(st.last_key, None);
    }

    #[test]
    fn mismatch_names_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        Journal::open(&p, |_| header()).unwrap();
        let mut other = header();
        other.prefix = "/other".into();
        other
            .targets
            .insert("secrets".into(), "secretbox/k3/def".into());
        let err = Journal::open(&p, |_| other).err().expect("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("prefix"), "{msg}");
        assert!(msg.contains("write target of secrets"), "{msg}");
        assert!(msg.contains("new --journal"), "{msg}");
    }

    #[test]
    fn corrupt_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&p, |_| header()).unwrap();
        j.record_batch(b"/registry/secrets/a", 5, counts(1), vec![])
            .unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"garbage\n").unwrap();
        f.write_all(b"{}\n").unwrap();
        drop(f);
        assert!(matches!(
            Journal::open(&p, |_| header()),
            Err(JournalError::Corrupt { line: 3, .. })
        ));
    }

    #[test]
    fn complete_is_recorded_and_not_a_file_of_ours_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&p, |_| header()).unwrap();
        j.record_complete(&counts(4)).unwrap();
        drop(j);
        let (_, st) = Journal::open(&p, |_| header()).unwrap();
        assert!(st.complete);

        let q = dir.path().join("notes.txt");
        std::fs::write(&q, "hello\nworld\n").unwrap();
        assert!(matches!(
            Journal::open(&q, |_| header()),
            Err(JournalError::NotAJournal { .. })
        ));
    }

    /// Review P1: a one-line non-journal file (complete last line) used to be taken for a
    /// torn write, truncated, chmodded and given a header.
    #[test]
    fn foreign_files_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [&[u8]; 5] = [
            b"important data\n",
            b"{\"some\":\"json\"}\n",
            b"no newline at all",
            b"{\"type\":\"batch\",\"seq\":0}\n",
            b"line one\nline two",
        ];
        for (i, content) in cases.iter().enumerate() {
            let q = dir.path().join(format!("f{i}"));
            std::fs::write(&q, content).unwrap();
            std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = Journal::open(&q, |_| header()).err().expect("must refuse");
            assert!(
                matches!(err, JournalError::NotAJournal { .. }),
                "case {i}: {err}"
            );
            assert!(err.to_string().contains("pass a new path"), "{err}");
            assert_eq!(
                &std::fs::read(&q).unwrap()[..],
                *content,
                "case {i} changed"
            );
            let mode = std::fs::metadata(&q).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "case {i} chmodded");
        }
    }

    /// A complete but unparsable LAST line is corruption, not a torn write: refused, file
    /// untouched.
    #[test]
    fn complete_unparsable_last_line_is_corrupt_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&p, |_| header()).unwrap();
        j.record_batch(b"/registry/secrets/a", 5, counts(1), vec![])
            .unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"type\":\"batch\",\"seq\":1\n").unwrap();
        drop(f);
        let before = std::fs::read(&p).unwrap();
        assert!(matches!(
            Journal::open(&p, |_| header()),
            Err(JournalError::Corrupt { line: 3, .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), before);
    }

    #[test]
    fn mismatch_leaves_the_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (j, _) = Journal::open(&p, |_| header()).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"type\":\"batch\"").unwrap(); // a torn tail
        drop(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::read(&p).unwrap();
        let mut other = header();
        other.prefix = "/other".into();
        assert!(matches!(
            Journal::open(&p, |_| other),
            Err(JournalError::Mismatch { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), before);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    /// The salt is random per journal, stored in the header and handed back on resume.
    #[test]
    fn salt_is_generated_stored_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let q = dir.path().join("k.jsonl");
        let mut first = None;
        Journal::open(&p, |s| {
            first = s.map(<[u8]>::to_vec);
            header()
        })
        .unwrap();
        let first = first.expect("a new journal gets a salt");
        assert_eq!(first.len(), 16);
        let mut other = None;
        Journal::open(&q, |s| {
            other = s.map(<[u8]>::to_vec);
            header()
        })
        .unwrap();
        assert_ne!(Some(first.clone()), other);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(&hex::encode(&first)), "salt stored in header");
        let mut again = None;
        Journal::open(&p, |s| {
            again = s.map(<[u8]>::to_vec);
            header()
        })
        .unwrap();
        assert_eq!(again, Some(first));
    }

    /// A pass with gave-up keys is not complete: the next run starts over.
    #[test]
    fn restart_line_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&p, |_| header()).unwrap();
        let skip = SkippedKey {
            key: "/registry/secrets/a".into(),
            status: "gave-up".into(),
            from: None,
            detail: None,
        };
        j.record_batch(b"/registry/secrets/z", 5, counts(1), vec![skip])
            .unwrap();
        j.record_restart(1).unwrap();
        drop(j);
        let (_, st) = Journal::open(&p, |_| header()).unwrap();
        assert!(!st.complete);
        assert!(st.restarted);
        assert_eq!(st.last_key, None);
        assert!(st.skipped.is_empty());
        assert_eq!(st.totals.rewritten, 1);
    }

    #[test]
    fn skipped_keys_are_capped_counts_exact() {
        let mut v = Vec::new();
        let mk = |i: usize| SkippedKey {
            key: format!("/k{i}"),
            status: "unknown-key".into(),
            from: None,
            detail: None,
        };
        let dropped = push_capped(&mut v, (0..SKIPPED_KEPT + 7).map(mk));
        assert_eq!(v.len(), SKIPPED_KEPT);
        assert_eq!(dropped, 7);
        assert_eq!(push_capped(&mut v, (0..3).map(mk)), 3);
    }

    #[test]
    fn empty_file_gets_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        std::fs::write(&p, "").unwrap();
        let (_, st) = Journal::open(&p, |_| header()).unwrap();
        assert!(!st.resumed);
        let (_, st) = Journal::open(&p, |_| header()).unwrap();
        assert!(st.resumed);
    }
}
