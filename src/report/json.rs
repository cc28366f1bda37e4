//! `atrest.scan/v1` as JSON: serde over the report types, pretty-printed for humans and stable
//! for machines (maps are `BTreeMap`s, so key order never changes between runs).
use super::ScanReport;

/// Render the report; a trailing newline so the file is a proper text file.
pub(super) fn render(report: &ScanReport) -> String {
    // Serializing these plain structs (string-keyed maps only) cannot fail; keep a valid JSON
    // answer anyway rather than a panic.
    match serde_json::to_string_pretty(report) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        Err(e) => format!(
            "{{\"schema\":\"{}\",\"error\":{}}}\n",
            super::SCAN_SCHEMA,
            serde_json::Value::String(e.to_string())
        ),
    }
}

/// One object as it appears inside the document's `objects` array (pretty, indented 4), on
/// one line: the fragment's own newlines are written as `\u{1}` (pretty JSON has no raw
/// control bytes other than its structural newlines; string contents are escaped), and the
/// line ends with `\n`. Built in one pass over serde's output.
pub(super) fn object_line(rec: &crate::classify::ObjectRecord) -> Vec<u8> {
    let text = serde_json::to_vec_pretty(rec).unwrap_or_else(|_| b"{}".to_vec());
    let mut out = Vec::with_capacity(text.len() + 128);
    out.extend_from_slice(b"    ");
    for &b in &text {
        if b == b'\n' {
            out.extend_from_slice(b"\x01    ");
        } else {
            out.push(b);
        }
    }
    out.push(b'\n');
    out
}

/// The rendered document with an empty `objects` list, split around that `[]`.
pub(super) fn split_at_objects(doc: &str) -> Option<(&str, &str)> {
    const MARK: &str = "\n  \"objects\": []";
    let at = doc.find(MARK)?;
    let head_end = at + MARK.len() - 2;
    Some((&doc[..head_end], &doc[head_end + 2..]))
}

#[cfg(test)]
mod tests {
    use super::super::testutil;
    use serde_json::Value;

    #[test]
    fn has_the_contract_fields() {
        let r = testutil::sample();
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["schema"], "atrest.scan/v1");
        assert_eq!(v["source"]["type"], "etcd");
        assert_eq!(v["source"]["endpoints"][0], "https://127.0.0.1:2379");
        assert_eq!(v["source"]["revision"], 99);
        assert_eq!(v["prefix"], "/registry");
        assert_eq!(v["config"], "/etc/kubernetes/enc.yaml");
        assert_eq!(v["verified"], false);
        let s = &v["summary"];
        assert_eq!(s["objects"], 6);
        assert_eq!(s["current"], 3);
        assert_eq!(s["stale"], 1);
        assert_eq!(s["plaintext"], 1);
        assert_eq!(s["unknown-key"], 1);
        assert_eq!(s["undecryptable"], 0);
        assert_eq!(s["by_status"]["current"], 3);
        assert_eq!(s["by_resource"]["secrets"]["current"], 2);
        assert_eq!(s["by_resource"]["configmaps"]["current"], 1);
        assert_eq!(s["by_provider_key"]["aescbc/key1"]["current"], 2);
        assert_eq!(s["by_provider_key"]["identity"]["plaintext"], 1);
        assert_eq!(s["by_provider_key"]["kms/vault"]["unknown-key"], 1);
        let objs = v["objects"].as_array().unwrap();
        assert_eq!(objs.len(), 3, "only findings are listed");
        let keys: Vec<&str> = objs.iter().map(|o| o["key"].as_str().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "/registry/secrets/default/c",
                "/registry/secrets/default/d",
                "/registry/secrets/default/f"
            ]
        );
        for field in [
            "key",
            "group",
            "resource",
            "namespace",
            "name",
            "provider",
            "key_name",
            "status",
            "mod_revision",
            "size",
            "detail",
            "message",
            "provider_label",
            "kms_key_id",
        ] {
            assert!(objs[0].get(field).is_some(), "object field {field} missing");
        }
        assert_eq!(objs[0]["status"], "stale");
        assert_eq!(objs[1]["key_name"], Value::Null);
        assert_eq!(objs[2]["status"], "unknown-key");
        assert!(v.get("history").is_none());
        assert!(r.to_json().ends_with("}\n"));
    }
}
