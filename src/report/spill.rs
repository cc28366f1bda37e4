//! Large reports without large memory: a [`crate::scan::ObjectSink`] that writes each listed
//! object, already rendered as its `atrest.scan/v1` JSON fragment, to a private temporary file
//! (0600, removed on drop), and writers that emit the JSON document or the table from it. A
//! scan with a million findings then holds one record at a time, not a million.
use super::{ScanReport, json, table};
use crate::classify::ObjectRecord;
use crate::scan::{ObjectSink, ScanError};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Spills listed objects to a temporary file; also keeps the first `keep_first` in memory
/// (for the table, which shows only so many).
pub struct SpillSink {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    count: u64,
    keep_first: usize,
    first: Vec<ObjectRecord>,
}

impl SpillSink {
    /// A new spill file in the system temp dir (`$TMPDIR`).
    pub fn new(keep_first: usize) -> Result<SpillSink, ScanError> {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| ScanError::Sink(format!("random name: {e}")))?;
        let path = std::env::temp_dir().join(format!(
            "atrest-scan-{}-{}.json",
            std::process::id(),
            hex::encode(rnd)
        ));
        let mut o = OpenOptions::new();
        o.write(true).read(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let file = o.open(&path).map_err(|e| {
            ScanError::Sink(format!(
                "cannot create the report's temporary file {} (set TMPDIR to a writable directory): {e}",
                path.display()
            ))
        })?;
        Ok(SpillSink {
            path,
            out: Some(BufWriter::new(file)),
            count: 0,
            keep_first,
            first: Vec::new(),
        })
    }

    /// How many objects were spilled.
    pub fn len(&self) -> u64 {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first objects (up to `keep_first`), e.g. for the table.
    pub fn first(&self) -> &[ObjectRecord] {
        &self.first
    }

    fn reader(&mut self) -> io::Result<BufReader<File>> {
        let w = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("spill file already closed"))?;
        w.flush()?;
        let mut f = w.get_ref().try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        Ok(BufReader::new(f))
    }

    /// Write the whole `atrest.scan/v1` document with the spilled objects (byte for byte what
    /// [`ScanReport::to_json`] gives when the objects are in memory).
    pub fn write_json(&mut self, report: &ScanReport, w: &mut dyn Write) -> io::Result<()> {
        let head_tail = json::render(report);
        let (head, tail) = json::split_at_objects(&head_tail)
            .ok_or_else(|| io::Error::other("report without an objects field"))?;
        if self.count == 0 {
            return w.write_all(head_tail.as_bytes());
        }
        w.write_all(head.as_bytes())?;
        w.write_all(b"[\n")?;
        // Fragments are stored one per line, their own newlines as \u{1} (see push).
        let mut first = true;
        for line in self.reader()?.split(b'\n') {
            let line = line?;
            if !first {
                w.write_all(b",\n")?;
            }
            first = false;
            for (i, chunk) in line.split(|b| *b == 1).enumerate() {
                if i > 0 {
                    w.write_all(b"\n")?;
                }
                w.write_all(chunk)?;
            }
        }
        w.write_all(b"\n")?;
        w.write_all(b"  ]")?;
        w.write_all(tail.as_bytes())
    }

    /// The table (which lists at most its own limit, from the in-memory first objects).
    pub fn render_table(&self, report: &ScanReport) -> String {
        table::render_with(report, &self.first, self.count)
    }
}

impl ObjectSink for SpillSink {
    fn push(&mut self, rec: ObjectRecord) -> Result<(), ScanError> {
        let line = json::object_line(&rec);
        let w = self
            .out
            .as_mut()
            .ok_or_else(|| ScanError::Sink("spill file already closed".into()))?;
        w.write_all(&line).map_err(|e| {
            ScanError::Sink(format!(
                "cannot write the report's temporary file {}: {e}",
                self.path.display()
            ))
        })?;
        self.count += 1;
        if self.first.len() < self.keep_first {
            self.first.push(rec);
        }
        Ok(())
    }
}

impl Drop for SpillSink {
    fn drop(&mut self) {
        self.out.take();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil;
    use super::*;

    #[test]
    fn spilled_document_is_byte_identical() {
        let full = testutil::sample();
        assert!(!full.objects.is_empty());
        let mut sink = SpillSink::new(2).unwrap();
        for o in full.objects.clone() {
            sink.push(o).unwrap();
        }
        let mut bare = full.clone();
        bare.objects.clear();
        let mut out = Vec::new();
        sink.write_json(&bare, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), full.to_json());
        // Twice (stdout and --output-file) gives the same again.
        let mut again = Vec::new();
        sink.write_json(&bare, &mut again).unwrap();
        assert_eq!(String::from_utf8(again).unwrap(), full.to_json());
        assert_eq!(sink.len(), full.objects.len() as u64);
        assert_eq!(sink.first().len(), 2);
        // The table lists what it has and counts the rest.
        let t = sink.render_table(&bare);
        assert!(
            t.contains(&format!("Findings ({}):", full.objects.len())),
            "{t}"
        );
        assert!(t.contains("... and 1 more"), "{t}");
    }

    #[test]
    fn empty_spill_and_cleanup() {
        let mut r = testutil::sample();
        r.objects.clear();
        let mut sink = SpillSink::new(10).unwrap();
        let path = sink.path.clone();
        assert!(path.exists());
        let mut out = Vec::new();
        sink.write_json(&r, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r.to_json());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(sink);
        assert!(!path.exists(), "removed on drop");
    }

    #[test]
    fn details_with_newlines_and_control_bytes_survive() {
        let mut full = testutil::sample();
        full.objects[0].message = Some("line1\nline2\u{1}\"quoted\"".into());
        let mut sink = SpillSink::new(0).unwrap();
        for o in full.objects.clone() {
            sink.push(o).unwrap();
        }
        let mut bare = full.clone();
        bare.objects.clear();
        let mut out = Vec::new();
        sink.write_json(&bare, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), full.to_json());
    }
}
