//! Unit tests: the fixtures under `testdata/configs/` (valid ones load; each invalid one states
//! its expected field path and message in `# expect-field:` / `# expect-error:` header lines),
//! the vectors' configs, defaults, rule selection and the no-secret-in-errors guarantee.

use super::*;
use std::path::PathBuf;

fn fixture_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/configs")
        .join(kind)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// The values of every `secret:` in a fixture (so tests can assert none leaks).
pub(crate) fn secret_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("secret:") {
        rest = &rest[i + "secret:".len()..];
        let value: String = rest
            .trim_start_matches([' ', '|', '\n'])
            .chars()
            .take_while(|c| !matches!(c, '\n' | '}' | ',' | ' ' | ']'))
            .collect();
        let value = value.trim_matches(['"', '\'', '[']).to_owned();
        if value.len() >= 6 {
            out.push(value);
        }
    }
    out
}

fn header(text: &str, name: &str) -> String {
    let tag = format!("# {name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&tag))
        .unwrap_or_else(|| panic!("fixture lacks `{tag}`"))
        .to_owned()
}

fn load(path: &Path) -> Result<EncryptionConfig, ConfigError> {
    EncryptionConfig::load(path)
}

#[test]
fn valid_fixtures_load() {
    for path in files_in(&fixture_dir("valid")) {
        let config = load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(config.path.as_deref(), Some(path.as_path()));
        assert!(!config.rules.is_empty());
    }
}

#[test]
fn vector_configs_load() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors/configs");
    for path in files_in(&dir) {
        load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn invalid_fixtures_fail_with_upstream_message_and_field() {
    for path in files_in(&fixture_dir("invalid")) {
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let field = header(&text, "expect-field");
        let message = header(&text, "expect-error");
        let err = match load(&path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e,
        };
        let shown = err.to_string();
        let file = path.display().to_string();
        assert!(
            shown.starts_with(&file),
            "{}: error does not name the file: {shown}",
            path.display()
        );
        if field == "-" {
            assert!(
                matches!(err, ConfigError::Parse { .. }),
                "{}: {shown}",
                path.display()
            );
            assert!(
                shown.contains(&message),
                "{}: want {message:?} in {shown:?}",
                path.display()
            );
        } else {
            let want = format!("{file}: {field}: {message}");
            assert!(
                shown.contains(&want),
                "{}: want {want:?} in {shown:?}",
                path.display()
            );
            assert!(
                err.field_errors()
                    .iter()
                    .any(|e| e.field == field && e.message == message)
            );
        }
        for secret in secret_values(&text) {
            assert!(
                !shown.contains(&secret),
                "{}: error output contains a secret ({} chars)",
                path.display(),
                secret.len()
            );
        }
    }
}

#[test]
fn multiple_errors_are_all_reported() {
    let err = load(&fixture_dir("invalid").join("multiple-errors.yaml")).expect_err("invalid");
    let fields: Vec<String> = err.field_errors().into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "resources[0].providers[0].aescbc.keys[0].secret",
            "resources[1].resources[0]",
            "resources[1].providers",
        ]
    );
    assert_eq!(err.to_string().lines().count(), 3);
}

const K32: &str = "ACv6FLoeZ92F9VlEy1JWOAV8QFWgsBzTQmxQ9MjU024=";

fn parse(yaml: &str) -> Result<EncryptionConfig, ConfigError> {
    EncryptionConfig::parse(yaml, "enc.yaml")
}

fn doc(resources: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n{resources}"
    )
}

#[test]
fn kms_defaults_like_upstream() {
    let config = load(&fixture_dir("valid").join("kms-defaults.yaml")).expect("valid");
    let kms: Vec<&KmsConfig> = config.rules[0]
        .providers
        .iter()
        .filter_map(|p| match p {
            ProviderConfig::Kms(k) => Some(k),
            _ => None,
        })
        .collect();
    assert_eq!(kms.len(), 3);
    assert_eq!(kms[0].api_version, KmsApiVersion::V1);
    assert_eq!(kms[0].timeout, Duration::from_secs(3));
    assert_eq!(kms[0].cachesize, Some(1000));
    assert_eq!(
        kms[0].socket_path().as_deref(),
        Some("/var/run/kms-v1.sock")
    );
    assert_eq!(kms[1].api_version, KmsApiVersion::V2);
    assert_eq!(kms[1].timeout, Duration::from_secs(90));
    assert_eq!(kms[1].cachesize, None);
    assert_eq!(kms[1].socket_path().as_deref(), Some("@abstract-kms"));
    assert_eq!(kms[2].cachesize, Some(-1));
}

#[test]
fn keys_are_decoded_and_never_printed() {
    let config = parse(&doc(&format!(
        "  - resources: [secrets]\n    providers:\n      - aescbc: {{keys: [{{name: k1, secret: {K32}}}]}}\n"
    )))
    .expect("valid");
    let keys = config.rules[0].providers[0].keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name, "k1");
    assert_eq!(keys[0].secret.len(), 32);
    let debug = format!("{config:?}");
    assert!(!debug.contains(K32));
    assert!(debug.contains("32 bytes"));
}

#[test]
fn ascii_32_char_secret_is_noted() {
    let (_, notes) =
        EncryptionConfig::load_with_notes(&fixture_dir("valid").join("traps.yaml")).expect("valid");
    let flagged: Vec<&str> = notes
        .keys
        .iter()
        .filter(|k| k.ascii_32_chars_24_bytes)
        .map(|k| k.field.as_str())
        .collect();
    assert_eq!(flagged, ["resources[0].providers[1].aescbc.keys[0]"]);
    assert_eq!(notes.keys.len(), 4);
}

#[test]
fn json_and_legacy_forms() {
    let json = format!(
        r#"{{"apiVersion":"v1","kind":"EncryptionConfig","resources":[{{"resources":["secrets"],"providers":[{{"secretbox":{{"keys":[{{"name":"s","secret":"{K32}"}}]}}}}]}}]}}"#
    );
    let config = parse(&json).expect("legacy JSON");
    assert!(matches!(
        config.rules[0].providers[0],
        ProviderConfig::Secretbox { .. }
    ));
}

#[test]
fn bad_yaml_never_leaks_secrets() {
    let cases = [
        format!(
            "{}\n  - resources: [secrets]\n    providers:\n      - aescbc: {{keys: [{{name: k, secret: \"{K32}}}]}}\n",
            doc("")
        ),
        format!(
            "{}  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n          - name: k\n            secret: {K32}\n\t  bad: x\n",
            doc("")
        ),
        format!(
            "{}  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n          - name: k\n            secret: {{ {K32}: 1 }}\n",
            doc("")
        ),
        format!(
            "{}  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n          - name: k\n            secret: !!binary {K32}\n",
            doc("")
        ),
        format!(
            "{}  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n          - name: k\n            secret: {K32}\n            secret: {K32}\n",
            doc("")
        ),
        format!(
            "{}  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n          - name: k\n            secret: {K32}\n            {K32}: x\n",
            doc("")
        ),
        format!(
            "{}  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n          - name: k\n            secret: {}\n",
            doc(""),
            &K32[..30]
        ),
        format!(
            "{}  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n          - name: k\n            secret: x\n          - name: k\n            {K32}: 1\n            {K32}: 2\n",
            doc("")
        ),
        format!(
            "{}  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys: {K32}\n",
            doc("")
        ),
        format!(
            "{}  - resources: [secrets]\n    providers:\n      - kms:\n          name: {K32}\n          cachesize: {K32}\n",
            doc("")
        ),
    ];
    for (i, yaml) in cases.iter().enumerate() {
        let err = parse(yaml).expect_err("must be rejected");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains(&K32[..20]),
            "case {i}: secret leaked into the error"
        );
    }
}

fn selected(config: &EncryptionConfig, gr: &str) -> Option<(String, Vec<&'static str>)> {
    config.select(&GroupResource::parse(gr)).map(|s| {
        (
            s.matched,
            s.providers.iter().map(|p| p.type_name()).collect(),
        )
    })
}

#[test]
fn select_follows_transformer_from_overrides() {
    let config = load(&fixture_dir("valid").join("wildcards.yaml")).expect("valid");
    let s = |gr| selected(&config, gr);
    assert_eq!(
        s("secrets"),
        Some(("secrets".into(), vec!["aescbc", "identity"]))
    );
    assert_eq!(
        s("configmaps"),
        Some(("configmaps".into(), vec!["aescbc", "identity"]))
    );
    assert_eq!(
        s("deployments.apps"),
        Some(("*.apps".into(), vec!["secretbox"]))
    );
    assert_eq!(s("pods"), Some(("*.".into(), vec!["aesgcm", "identity"])));
    assert_eq!(
        s("leases.coordination.k8s.io"),
        Some(("*.*".into(), vec!["identity"]))
    );
}

#[test]
fn select_concatenates_exact_entries_and_none_without_rule() {
    let config = load(&fixture_dir("valid").join("concat.yaml")).expect("valid");
    assert_eq!(
        selected(&config, "secrets"),
        Some(("secrets".into(), vec!["aescbc", "secretbox", "identity"]))
    );
    assert_eq!(
        selected(&config, "pandas.awesome.bears.example"),
        Some((
            "pandas.awesome.bears.example".into(),
            vec!["secretbox", "identity"]
        ))
    );
    assert_eq!(selected(&config, "configmaps"), None);
    assert_eq!(selected(&config, "pandas"), None);
    // Masterleases can only be matched by a wildcard.
    assert_eq!(selected(&config, "apiServerIPInfo"), None);
}

#[test]
fn go_base64_tolerances() {
    // Trailing newline of a block scalar is skipped, like Go's decoder.
    let config = load(&fixture_dir("valid").join("block-secret.yaml")).expect("valid");
    assert_eq!(config.rules[0].providers[0].keys()[0].secret.len(), 32);
    // Non-canonical trailing bits are accepted by Go's StdEncoding.
    let yaml = doc(
        "  - resources: [secrets]\n    providers:\n      - aesgcm: {keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAB==}]}\n",
    );
    assert_eq!(
        parse(&yaml).expect("valid").rules[0].providers[0].keys()[0]
            .secret
            .len(),
        16
    );
}

#[test]
fn endpoint_urls() {
    let u = EndpointUrl::parse("unix://foo.sock").expect("parses");
    assert_eq!(
        (u.scheme.as_str(), u.host.as_str(), u.path.as_str()),
        ("unix", "foo.sock", "")
    );
    let u = EndpointUrl::parse("UNIX:///run/a%20b.sock").expect("parses");
    assert_eq!(
        (u.scheme.as_str(), u.path.as_str()),
        ("unix", "/run/a b.sock")
    );
    assert_eq!(
        EndpointUrl::parse("/run/kms.sock").expect("parses").scheme,
        ""
    );
    assert!(EndpointUrl::parse("://x").is_err());
    assert!(EndpointUrl::parse("unix:///a\nb").is_err());
    assert!(EndpointUrl::parse("unix://[::1/x").is_err());
}

#[test]
fn only_the_first_yaml_document_counts() {
    let one = doc("  - resources: [secrets]\n    providers: [{identity: {}}]\n");
    for (text, extra) in [
        (format!("---\n{one}---\n"), false),
        (format!("{one}...\n"), false),
        (format!("--- # first\n{one}---\nfoo: bar\n"), true),
        (format!("{one}--- {{foo: bar}}\n"), true),
        (format!("{one}...\n---\n- a list\n"), true),
    ] {
        let (config, notes) = EncryptionConfig::parse_with_notes(&text, "enc.yaml")
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(config.rules.len(), 1);
        assert_eq!(notes.extra_documents, extra, "{text:?}");
    }
    // A broken first document is still an error, with the right line number.
    let err = parse(&format!("{one}  bad: [\n---\n{one}")).expect_err("invalid");
    assert!(err.to_string().contains("line 6"), "{err}");
    // `---text` is not a marker.
    let (_, notes) = EncryptionConfig::parse_with_notes(&one, "enc.yaml").expect("valid");
    assert!(!notes.extra_documents);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// A valid document to mutate, so the fuzzer reaches validation and not only the scanner.
    fn base() -> String {
        doc(&format!(
            "  - resources: [secrets, '*.apps']\n    providers:\n      - aescbc: {{keys: [{{name: k1, secret: {K32}}}]}}\n      - kms: {{apiVersion: v2, name: p, endpoint: 'unix:///x.sock', timeout: 3s}}\n      - identity: {{}}\n"
        ))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = EncryptionConfig::parse(&text, "fuzz.yaml");
        }

        #[test]
        fn mutated_config_never_panics_or_leaks(pos in 0usize..600, len in 0usize..8, insert in "[ -~\n]{0,12}") {
            let text = base();
            let pos = pos.min(text.len());
            let end = (pos + len).min(text.len());
            if !(text.is_char_boundary(pos) && text.is_char_boundary(end)) {
                return Ok(());
            }
            let mutated = format!("{}{}{}", &text[..pos], insert, &text[end..]);
            if let Err(e) = EncryptionConfig::parse(&mutated, "fuzz.yaml") {
                let shown = e.to_string();
                prop_assert!(!shown.contains(&K32[..20]), "secret leaked");
            }
        }
    }
}
