//! The rotation checkpoint journal: an append-only JSON-lines file (created 0600) that lets a
//! killed or interrupted `atrest rotate` resume after its last committed batch.
//!
//! Line 1 is a [`JournalHeader`] identifying the run (prefix, resources, the target
//! fingerprints of every in-scope chain). Then one [`BatchRecord`] per committed batch, in key
//! order, fsynced before the next batch is journaled; a `complete` line ends a finished run.
//! It holds no plaintext and no key material: etcd keys (which are not secret), counts,
//! revisions and the codec's fingerprints (keyed hashes that reveal nothing about the keys).
//!
//! A crash can leave a torn last line (no trailing newline, or half a JSON document): it is
//! ignored and cut off before appending. Any other unreadable line means the file is not a
//! journal we wrote, and is an error rather than a guess.
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
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
    /// Keys still changing after every retry (left for the verification pass to judge).
    pub gave_up: u64,
    pub bytes_examined: u64,
    pub bytes_written: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.examined += o.examined;
        self.rewritten += o.rewritten;
        self.already_current += o.already_current;
        self.conflicts_retried += o.conflicts_retried;
        self.resolved_concurrently += o.resolved_concurrently;
        self.vanished += o.vanished;
        self.skipped_unknown_key += o.skipped_unknown_key;
        self.skipped_undecryptable += o.skipped_undecryptable;
        self.gave_up += o.gave_up;
        self.bytes_examined += o.bytes_examined;
        self.bytes_written += o.bytes_written;
    }
}

/// A key that was left alone and why (keys are not secret; `detail` never holds plaintext).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedKey {
    pub key: String,
    /// `unknown-key`, `undecryptable` or `gave-up` (kept changing during every retry).
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
    Resumed { at: String, atrest_version: String },
    Batch(BatchRecord),
    Complete { at: String, totals: Totals },
}

/// What the journal says about earlier runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalState {
    /// Resume after this key (exclusive). None = start at the beginning.
    pub last_key: Option<Vec<u8>>,
    pub batches: u64,
    pub totals: Totals,
    pub skipped: Vec<SkippedKey>,
    /// A previous run finished the whole scope.
    pub complete: bool,
    /// The file existed and held a header (this is a resumed run).
    pub resumed: bool,
    /// The header of the first run (for messages).
    pub started_at: Option<String>,
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
    /// Open `path` for the run described by `header`: create it (0600, fsynced with its
    /// directory) if absent, or validate it and return the earlier runs' state.
    pub fn open(
        path: &Path,
        header: &JournalHeader,
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
        match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => {
                let mut j = Journal {
                    file,
                    path: path.to_path_buf(),
                    next_seq: 0,
                };
                j.append(&Line::Header(header.clone()))?;
                sync_parent_dir(path).map_err(io("cannot fsync the journal's directory"))?;
                Ok((j, JournalState::default()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(path)
                    .map_err(io("cannot open existing journal"))?;
                tighten_mode(&file).map_err(io("cannot restrict the journal to mode 0600"))?;
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)
                    .map_err(io("cannot read existing journal"))?;
                let parsed = parse(&shown, &bytes)?;
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
                match parsed.header {
                    None => {
                        // Created but the header never reached the disk: a fresh start.
                        j.append(&Line::Header(header.clone()))?;
                        Ok((j, JournalState::default()))
                    }
                    Some(h) => {
                        let differences = h.differences(header);
                        if !differences.is_empty() {
                            return Err(JournalError::Mismatch {
                                path: shown,
                                differences,
                            });
                        }
                        if !parsed.state.complete {
                            j.append(&Line::Resumed {
                                at: now_rfc3339(),
                                atrest_version: header.atrest_version.clone(),
                            })?;
                        }
                        Ok((j, parsed.state))
                    }
                }
            }
            Err(e) => Err(io("cannot create journal")(e)),
        }
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

/// Parse a journal's bytes, tolerating one torn last line.
fn parse(path: &str, bytes: &[u8]) -> Result<Parsed, JournalError> {
    let mut header = None;
    let mut state = JournalState::default();
    let mut offset = 0usize;
    let mut valid_len = 0u64;
    let mut lineno = 0usize;
    while offset < bytes.len() {
        lineno += 1;
        let rest = bytes.get(offset..).unwrap_or_default();
        let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => (rest.get(..n).unwrap_or_default(), true),
            None => (rest, false),
        };
        let next = offset + line.len() + usize::from(complete);
        let is_last = next >= bytes.len();
        let corrupt = |message: String| JournalError::Corrupt {
            path: path.to_string(),
            line: lineno,
            message,
        };
        let parsed: Line = match serde_json::from_slice(line) {
            Ok(l) if complete => l,
            // No newline: the write was torn (even if the JSON happens to be whole, the
            // fsync that would have made it count did not return).
            Ok(_) => break,
            Err(_) if is_last => break,
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
            _ if header.is_none() => return Err(corrupt("no header line".into())),
            Line::Resumed { .. } => {}
            Line::Batch(rec) => {
                let key = B64
                    .decode(rec.last_key.as_bytes())
                    .map_err(|e| corrupt(format!("last_key is not base64: {e}")))?;
                state.last_key = Some(key);
                state.batches += 1;
                state.totals.add(&rec.counts);
                state.skipped.extend(rec.skipped);
            }
            Line::Complete { .. } => state.complete = true,
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
        let (mut j, st) = Journal::open(&p, &header()).unwrap();
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
        let (_j, st) = Journal::open(&p, &h2).unwrap();
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
        let (mut j, _) = Journal::open(&p, &header()).unwrap();
        j.record_batch(b"/registry/secrets/a", 5, counts(1), vec![])
            .unwrap();
        drop(j);
        let whole = std::fs::read(&p).unwrap();
        // A second record torn half way.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"type":"batch","seq":1,"last_key":"L3JlZ2"#)
            .unwrap();
        drop(f);
        let (mut j, st) = Journal::open(&p, &header()).unwrap();
        assert_eq!(st.last_key.as_deref(), Some(&b"/registry/secrets/a"[..]));
        j.record_batch(b"/registry/secrets/b", 6, counts(1), vec![])
            .unwrap();
        drop(j);
        let text = std::fs::read(&p).unwrap();
        assert!(text.starts_with(&whole));
        let (_, st) = Journal::open(&p, &header()).unwrap();
        assert_eq!(st.last_key.as_deref(), Some(&b"/registry/secrets/b"[..]));
        assert_eq!(st.batches, 2);
    }

    #[test]
    fn whole_json_without_newline_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (j, _) = Journal::open(&p, &header()).unwrap();
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
        let (_, st) = Journal::open(&p, &header()).unwrap();
        assert_eq!(st.last_key, None);
    }

    #[test]
    fn mismatch_names_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        Journal::open(&p, &header()).unwrap();
        let mut other = header();
        other.prefix = "/other".into();
        other
            .targets
            .insert("secrets".into(), "secretbox/k3/def".into());
        let err = Journal::open(&p, &other).err().expect("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("prefix"), "{msg}");
        assert!(msg.contains("write target of secrets"), "{msg}");
        assert!(msg.contains("new --journal"), "{msg}");
    }

    #[test]
    fn corrupt_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&p, &header()).unwrap();
        j.record_batch(b"/registry/secrets/a", 5, counts(1), vec![])
            .unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"garbage\n").unwrap();
        f.write_all(b"{}\n").unwrap();
        drop(f);
        assert!(matches!(
            Journal::open(&p, &header()),
            Err(JournalError::Corrupt { line: 3, .. })
        ));
    }

    #[test]
    fn complete_is_recorded_and_not_a_file_of_ours_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&p, &header()).unwrap();
        j.record_complete(&counts(4)).unwrap();
        drop(j);
        let (_, st) = Journal::open(&p, &header()).unwrap();
        assert!(st.complete);

        let q = dir.path().join("notes.txt");
        std::fs::write(&q, "hello\nworld\n").unwrap();
        assert!(matches!(
            Journal::open(&q, &header()),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
    }

    #[test]
    fn empty_file_gets_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        std::fs::write(&p, "").unwrap();
        let (_, st) = Journal::open(&p, &header()).unwrap();
        assert!(!st.resumed);
        let (_, st) = Journal::open(&p, &header()).unwrap();
        assert!(st.resumed);
    }
}
