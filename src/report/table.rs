//! The terminal rendering: a header saying what was scanned, the resource × provider/key ×
//! status summary, then the listed objects (findings by default), notes and history residue.
//! Columns are sized to their content but capped, so it stays readable at 80–120 columns.
use super::ScanReport;
use crate::classify::{ObjectRecord, Status};
use std::fmt::Write as _;

/// Objects listed in the terminal before pointing at `-o json` for the rest.
const MAX_LISTED: usize = super::TABLE_MAX_LISTED;
/// Widest a summary column gets before it is shortened with `…`.
const MAX_COL: usize = 40;

/// `listed` are the first objects of the report's list, `total` how many it has in all (the
/// rest may have been streamed elsewhere).
pub(super) fn render_with(r: &ScanReport, listed: &[ObjectRecord], total: u64) -> String {
    let mut out = String::new();
    header(r, &mut out);
    summary(r, &mut out);
    objects(r, listed, total, &mut out);
    history(r, &mut out);
    notes(r, &mut out);
    out
}

fn header(r: &ScanReport, out: &mut String) {
    let what = match (&r.source.endpoints, &r.source.path) {
        (Some(eps), _) => format!("etcd {}", eps.join(",")),
        (None, Some(p)) => format!("snapshot {p}"),
        (None, None) => r.source.kind.clone(),
    };
    let _ = writeln!(
        out,
        "Scanned {what} at revision {}, prefix {}",
        r.source.revision, r.prefix
    );
    let _ = writeln!(
        out,
        "Config: {}   Verified (decrypted): {}   Started: {}   Took: {:.2}s",
        r.config.as_deref().unwrap_or("none"),
        if r.verified { "yes" } else { "no" },
        r.started_at,
        r.duration_seconds
    );
    out.push('\n');
}

fn summary(r: &ScanReport, out: &mut String) {
    let rows: Vec<[String; 4]> = r
        .summary
        .breakdown
        .iter()
        .map(|b| {
            [
                b.resource.clone(),
                crate::classify::provider_key(&b.provider, b.key_name.as_deref()),
                b.status.as_str().to_string(),
                b.objects.to_string(),
            ]
        })
        .collect();
    let head = ["RESOURCE", "PROVIDER/KEY", "STATUS", "OBJECTS"];
    let widths = col_widths(&head, &rows);
    line(out, &head, &widths);
    for row in &rows {
        line(out, row, &widths);
    }
    if rows.is_empty() {
        out.push_str("(no objects)\n");
    }
    let counts: Vec<String> = Status::ALL
        .iter()
        .filter_map(|s| {
            let n = r.summary.by_status.get(s.as_str()).copied().unwrap_or(0);
            // Always show the statuses that matter; `encrypted` only when it occurs.
            (n > 0 || *s != Status::Encrypted).then(|| format!("{n} {s}"))
        })
        .collect();
    let _ = writeln!(
        out,
        "\nTotal: {} objects: {}",
        r.summary.objects,
        counts.join(", ")
    );
    if !r.summary.by_kms_key_id.is_empty() {
        let ids: Vec<String> = r
            .summary
            .by_kms_key_id
            .iter()
            .map(|(id, n)| {
                let id = if id.is_empty() {
                    "<empty>"
                } else {
                    id.as_str()
                };
                format!("{id} ({n})")
            })
            .collect();
        let _ = writeln!(out, "KMS v2 key IDs: {}", ids.join(", "));
    }
}

fn objects(r: &ScanReport, listed: &[ObjectRecord], total: u64, out: &mut String) {
    let all_listed = total == r.summary.objects && r.summary.objects > 0;
    let title = if all_listed && r.summary.findings < r.summary.objects {
        "Objects"
    } else {
        "Findings"
    };
    if total == 0 {
        let _ = writeln!(out, "\nNo findings.");
        return;
    }
    let _ = writeln!(out, "\n{title} ({total}):");
    let shown = &listed[..listed.len().min(MAX_LISTED)];
    let status_w = Status::ALL
        .iter()
        .map(|s| s.as_str().len())
        .max()
        .unwrap_or(0);
    let pk_w = shown
        .iter()
        .map(|o| o.provider_key_display().chars().count())
        .max()
        .unwrap_or(0)
        .clamp("PROVIDER/KEY".len(), 24);
    let _ = writeln!(
        out,
        "{:<status_w$}  {:<pk_w$}  {:>9}  KEY",
        "STATUS", "PROVIDER/KEY", "REVISION"
    );
    for o in shown {
        let _ = writeln!(
            out,
            "{:<status_w$}  {:<pk_w$}  {:>9}  {}",
            o.status.as_str(),
            shorten(&o.provider_key_display(), pk_w),
            o.mod_revision,
            o.key
        );
        if let Some(m) = o.message.as_ref().or(o.detail.as_ref()) {
            let _ = writeln!(out, "{:status_w$}  └ {m}", "");
        }
    }
    let rest = total.saturating_sub(shown.len() as u64);
    if rest > 0 {
        let _ = writeln!(out, "... and {rest} more (use -o json for the full list)");
    }
}

fn history(r: &ScanReport, out: &mut String) {
    let Some(h) = &r.history else { return };
    let _ = writeln!(
        out,
        "\nHistory: {} older revisions examined, {} residue revisions in {} keys",
        h.revisions_examined, h.residue_revisions, h.keys_with_residue
    );
    if h.keys.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "{:>9}  {:>9}  {:>5}  STATUSES / KEY",
        "OLDEST", "NEWEST", "REVS"
    );
    for k in h.keys.iter().take(MAX_LISTED) {
        let statuses: Vec<&str> = k.statuses.iter().map(|s| s.as_str()).collect();
        let _ = writeln!(
            out,
            "{:>9}  {:>9}  {:>5}  {}  {}",
            k.oldest_revision,
            k.newest_revision,
            k.revisions,
            statuses.join(","),
            k.key
        );
    }
    if h.keys.len() > MAX_LISTED {
        let _ = writeln!(
            out,
            "... and {} more keys (use -o json for the full list)",
            h.keys.len() - MAX_LISTED
        );
    }
}

fn notes(r: &ScanReport, out: &mut String) {
    if r.notes.is_empty() {
        return;
    }
    out.push_str("\nNotes:\n");
    for n in &r.notes {
        let _ = writeln!(out, "  - {n}");
    }
}

fn col_widths<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> [usize; N] {
    let mut w = [0usize; N];
    for (i, h) in head.iter().enumerate() {
        w[i] = h.len();
    }
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count()).min(MAX_COL);
        }
    }
    w
}

/// One row; the last column (a count) is right-aligned.
fn line<S: AsRef<str>, const N: usize>(out: &mut String, cells: &[S; N], widths: &[usize; N]) {
    for (i, cell) in cells.iter().enumerate() {
        let c = shorten(cell.as_ref(), widths[i]);
        if i + 1 == N {
            let _ = write!(out, "{c:>w$}", w = widths[i]);
        } else {
            let _ = write!(out, "{c:<w$}  ", w = widths[i]);
        }
    }
    out.push('\n');
}

/// Cut `s` to `max` characters, marking the cut with `…`.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::super::testutil;
    use super::*;

    #[test]
    fn summary_then_findings() {
        let t = testutil::sample().render_table();
        assert!(t.contains("at revision 99"), "{t}");
        let summary_at = t.find("RESOURCE").unwrap();
        let findings_at = t.find("Findings (3):").unwrap();
        assert!(summary_at < findings_at);
        assert!(
            t.contains(
                "Total: 6 objects: 3 current, 1 stale, 1 plaintext, 1 unknown-key, 0 undecryptable"
            ),
            "{t}"
        );
        // The summary row for the two current aescbc/key1 secrets.
        let row = t
            .lines()
            .find(|l| l.starts_with("secrets") && l.contains("aescbc/key1"))
            .unwrap();
        assert!(
            row.contains("current") && row.trim_end().ends_with('2'),
            "{row}"
        );
        assert!(t.contains("/registry/secrets/default/d"));
        assert!(
            !t.contains("/registry/secrets/default/a"),
            "current objects are not listed"
        );
        assert!(t.contains("  - a note"));
    }

    #[test]
    fn readable_widths() {
        let mut r = testutil::sample();
        r.objects[0].key_name = Some("k".repeat(200));
        let t = r.render_table();
        for l in t
            .lines()
            .filter(|l| !l.contains("/registry/") && !l.contains("└"))
        {
            assert!(l.chars().count() <= 120, "line too wide: {l}");
        }
    }

    #[test]
    fn empty_report() {
        let mut r = testutil::sample();
        r.objects.clear();
        r.summary = Default::default();
        let t = r.render_table();
        assert!(t.contains("(no objects)"));
        assert!(t.contains("No findings."));
    }

    #[test]
    fn shorten_marks_cuts() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
