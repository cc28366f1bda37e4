//! Prometheus text exposition (format 0.0.4) for node_exporter's textfile collector: object
//! counts by resource, provider, key and status, plus the scan's timestamp, duration,
//! revision and finding count. Every metric family has HELP and TYPE lines; label values are
//! escaped as the format requires (`\\`, `\"`, `\n`).
use super::ScanReport;
use crate::classify::Status;
use std::fmt::Write as _;

pub(super) fn render(r: &ScanReport) -> String {
    let mut out = String::new();
    let s = &r.summary;

    family(
        &mut out,
        "atrest_objects",
        "Objects stored under the etcd prefix, by resource, provider, key and status.",
    );
    for b in &s.breakdown {
        sample(
            &mut out,
            "atrest_objects",
            &[
                ("resource", &b.resource),
                ("provider", &b.provider),
                ("key", b.key_name.as_deref().unwrap_or("")),
                ("status", b.status.as_str()),
            ],
            b.objects as f64,
        );
    }

    family(
        &mut out,
        "atrest_objects_by_status",
        "Objects per status (every status present, 0 if none).",
    );
    for st in Status::ALL {
        let n = s.by_status.get(st.as_str()).copied().unwrap_or(0);
        sample(
            &mut out,
            "atrest_objects_by_status",
            &[("status", st.as_str())],
            n as f64,
        );
    }

    if !s.by_kms_key_id.is_empty() {
        family(
            &mut out,
            "atrest_kms_key_id_objects",
            "KMS v2 objects per EncryptedObject keyID.",
        );
        for (id, n) in &s.by_kms_key_id {
            sample(
                &mut out,
                "atrest_kms_key_id_objects",
                &[("key_id", id)],
                *n as f64,
            );
        }
    }

    let scalar = |out: &mut String, name: &str, help: &str, v: f64| {
        family(out, name, help);
        sample(out, name, &[], v);
    };
    scalar(
        &mut out,
        "atrest_scan_objects",
        "Objects examined by the scan.",
        s.objects as f64,
    );
    scalar(
        &mut out,
        "atrest_scan_findings",
        "Objects whose status is not current.",
        s.findings as f64,
    );
    scalar(
        &mut out,
        "atrest_scan_timestamp_seconds",
        "When the scan started, in seconds since the Unix epoch.",
        r.started_unix,
    );
    scalar(
        &mut out,
        "atrest_scan_duration_seconds",
        "How long the scan took.",
        r.duration_seconds,
    );
    scalar(
        &mut out,
        "atrest_scan_revision",
        "The etcd revision the scan read at.",
        r.source.revision as f64,
    );
    scalar(
        &mut out,
        "atrest_scan_verified",
        "1 if every encrypted value was decrypted (--verify), else 0.",
        if r.verified { 1.0 } else { 0.0 },
    );

    family(&mut out, "atrest_scan_info", "What was scanned (always 1).");
    sample(
        &mut out,
        "atrest_scan_info",
        &[
            ("source", &r.source.kind),
            ("prefix", &r.prefix),
            ("config", r.config.as_deref().unwrap_or("")),
        ],
        1.0,
    );

    if let Some(h) = &r.history {
        scalar(
            &mut out,
            "atrest_history_revisions_examined",
            "Older revisions examined (--history).",
            h.revisions_examined as f64,
        );
        scalar(
            &mut out,
            "atrest_history_residue_revisions",
            "Older revisions that are plaintext or under a stale or unknown key (--history).",
            h.residue_revisions as f64,
        );
        scalar(
            &mut out,
            "atrest_history_keys_with_residue",
            "Keys with at least one residue revision (--history).",
            h.keys_with_residue as f64,
        );
    }
    out
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} gauge");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

/// Integers without a fraction; otherwise Rust's shortest round-trip form (valid Go float).
fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Label values: backslash, double quote and line feed are escaped.
pub(crate) fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text: backslash and line feed are escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::super::testutil;
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A strict little parser of the exposition format: returns (name, labels, value) samples
    /// and checks every sample's family has HELP and TYPE before it.
    pub(crate) fn parse(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
        let mut helped = BTreeSet::new();
        let mut typed = BTreeSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                typed.insert(it.next().unwrap().to_string());
                assert_eq!(it.next(), Some("gauge"));
                continue;
            }
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line {line:?}"
            );
            let (name_labels, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            let (name, labels) = match name_labels.split_once('{') {
                None => (name_labels.to_string(), BTreeMap::new()),
                Some((n, rest)) => {
                    let body = rest.strip_suffix('}').unwrap();
                    (n.to_string(), parse_labels(body))
                }
            };
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name {name}"
            );
            assert!(
                helped.contains(&name) && typed.contains(&name),
                "{name} lacks HELP/TYPE"
            );
            samples.push((name, labels, value));
        }
        samples
    }

    fn parse_labels(body: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut chars = body.chars().peekable();
        while chars.peek().is_some() {
            let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert_eq!(chars.next(), Some('"'));
            let mut v = String::new();
            loop {
                match chars.next().unwrap() {
                    '\\' => match chars.next().unwrap() {
                        'n' => v.push('\n'),
                        c => v.push(c),
                    },
                    '"' => break,
                    c => v.push(c),
                }
            }
            out.insert(name, v);
            if chars.peek() == Some(&',') {
                chars.next();
            }
        }
        out
    }

    #[test]
    fn parses_and_adds_up() {
        let r = testutil::sample();
        let text = r.render_prometheus();
        let samples = parse(&text);
        let objects: f64 = samples
            .iter()
            .filter(|s| s.0 == "atrest_objects")
            .map(|s| s.2)
            .sum();
        assert_eq!(objects, r.summary.objects as f64);
        let by_status: f64 = samples
            .iter()
            .filter(|s| s.0 == "atrest_objects_by_status")
            .map(|s| s.2)
            .sum();
        assert_eq!(by_status, r.summary.objects as f64);
        let get = |n: &str| samples.iter().find(|s| s.0 == n).unwrap().2;
        assert_eq!(get("atrest_scan_revision"), 99.0);
        assert_eq!(get("atrest_scan_findings"), 3.0);
        assert_eq!(get("atrest_scan_duration_seconds"), 1.5);
        assert_eq!(get("atrest_scan_timestamp_seconds"), 1_796_137_200.0);
        let cell = samples
            .iter()
            .find(|s| {
                s.0 == "atrest_objects"
                    && s.1["resource"] == "secrets"
                    && s.1["key"] == "key1"
                    && s.1["status"] == "current"
            })
            .unwrap();
        assert_eq!(cell.2, 2.0);
        assert_eq!(cell.1["provider"], "aescbc");
    }

    #[test]
    fn escapes_label_values() {
        let mut r = testutil::sample();
        r.summary.breakdown[0].key_name = Some("we\"ird\\key\nname".into());
        let text = r.render_prometheus();
        assert!(text.contains(r#"key="we\"ird\\key\nname""#), "{text}");
        let samples = parse(&text);
        assert!(
            samples
                .iter()
                .any(|s| s.1.get("key").map(String::as_str) == Some("we\"ird\\key\nname"))
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
