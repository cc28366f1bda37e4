//! Integration tests: `atrest config check` run as a binary on the vectors' configs (all valid),
//! on every fixture under `testdata/configs/invalid/` (exit 2, message naming the file and the
//! field, no secret in any output), and on `testdata/configs/valid/traps.yaml` (warnings).

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = root().join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no files in {}", dir.display());
    out
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(path: &Path, extra: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(["config", "check", "--encryption-provider-config"])
        .arg(path)
        .args(extra)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run atrest");
    Run {
        code: out
            .status
            .code()
            .expect("exit code (not killed by a signal)"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every `secret:` value of a YAML or JSON config file (to assert that none is ever printed).
fn secret_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(i) = rest.find("secret\":").or_else(|| rest.find("secret:")) {
            rest = &rest[i..];
            rest = rest.split_once(':').map_or("", |(_, r)| r);
            let value: String = rest
                .trim_start_matches([' ', '"', '\'', '|', '['])
                .chars()
                .take_while(|c| !matches!(c, '}' | ',' | ' ' | ']' | '"' | '\''))
                .collect();
            if value.len() >= 8 {
                out.push(value);
            }
        }
    }
    // Block scalars: the value is on the next line.
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.windows(2) {
        if pair[0].trim_end().ends_with("secret: |") {
            out.push(pair[1].trim().to_owned());
        }
    }
    out
}

fn assert_no_secret(path: &Path, run: &Run) {
    let text = std::fs::read_to_string(path).expect("read config");
    for secret in secret_values(&text) {
        assert!(
            !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
            "{}: output contains a secret ({} characters)",
            path.display(),
            secret.len()
        );
    }
}

fn header(text: &str, name: &str) -> String {
    let tag = format!("# {name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&tag))
        .unwrap_or_else(|| panic!("fixture lacks `{tag}`"))
        .to_owned()
}

#[test]
fn vector_configs_are_valid_and_shown_without_secrets() {
    for path in files("testdata/vectors/configs") {
        let run = check(&path, &[]);
        assert_eq!(
            run.code,
            0,
            "{}: {}{}",
            path.display(),
            run.stdout,
            run.stderr
        );
        assert!(
            run.stdout.contains("valid EncryptionConfiguration"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("secrets"), "{}", run.stdout);
        assert_no_secret(&path, &run);

        let run = check(&path, &["-o", "json"]);
        assert_eq!(run.code, 0, "{}: {}", path.display(), run.stderr);
        let doc: Value = serde_json::from_str(&run.stdout).expect("JSON report");
        assert_eq!(doc["schema"], "atrest.config-check/v1");
        assert_eq!(doc["valid"], true);
        let secrets = doc["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["resource"] == "secrets")
            .expect("a secrets rule");
        assert!(
            !secrets["read_order"]
                .as_array()
                .expect("read_order")
                .is_empty()
        );
        assert_eq!(secrets["write"], secrets["read_order"][0]);
        assert_no_secret(&path, &run);
    }
}

#[test]
fn write_provider_and_read_order_follow_the_file() {
    let path = root().join("testdata/vectors/configs/all-providers.encryption-config.yaml");
    let text = std::fs::read_to_string(&path).expect("read config");
    assert_eq!(
        secret_values(&text).len(),
        8,
        "the leak check must see every secret"
    );
    let run = check(&path, &["-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).expect("JSON report");
    let rule = &doc["rules"][0];
    assert_eq!(rule["write"]["provider"], "kms");
    assert_eq!(rule["write"]["kms_api_version"], "v2");
    assert_eq!(rule["write"]["prefix"], "k8s:enc:kms:v2:fake-kms-v2:");
    let order: Vec<String> = rule["read_order"]
        .as_array()
        .expect("read_order")
        .iter()
        .map(|p| {
            format!(
                "{}:{}",
                p["provider"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            "kms:fake-kms-v2",
            "kms:fake-kms-v1",
            "aesgcm:gcm-a",
            "aesgcm:gcm-b",
            "aesgcm:gcm-c",
            "aescbc:key1",
            "aescbc:key2",
            "aescbc:key3",
            "secretbox:sb1",
            "secretbox:sb2",
            "identity:",
        ]
    );
    // Resources without a rule are plaintext.
    assert_eq!(doc["unmatched"]["provider"], "identity");
    let codes: Vec<&str> = doc["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["code"].as_str())
        .collect();
    assert!(codes.contains(&"kms-v1-deprecated"), "{codes:?}");
    assert!(codes.contains(&"secret-32-ascii-chars"), "{codes:?}");
}

#[test]
fn invalid_fixtures_exit_2_naming_file_and_field() {
    for path in files("testdata/configs/invalid") {
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let field = header(&text, "expect-field");
        let message = header(&text, "expect-error");
        let file = path.display().to_string();

        let run = check(&path, &[]);
        assert_eq!(run.code, 2, "{file}: {}{}", run.stdout, run.stderr);
        let want = if field == "-" {
            format!("error: {file}: ")
        } else {
            format!("error: {file}: {field}: {message}")
        };
        assert!(
            run.stderr.contains(&want),
            "{file}: want {want:?} in {:?}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&message),
            "{file}: want {message:?} in {:?}",
            run.stderr
        );
        assert_no_secret(&path, &run);

        let run = check(&path, &["-o", "json"]);
        assert_eq!(run.code, 2, "{file}: {}", run.stderr);
        let doc: Value = serde_json::from_str(&run.stdout).expect("JSON error report");
        assert_eq!(doc["schema"], "atrest.config-check/v1");
        assert_eq!(doc["valid"], false);
        let errors = doc["errors"].as_array().expect("errors");
        if field != "-" {
            assert!(
                errors
                    .iter()
                    .any(|e| e["field"] == field.as_str() && e["message"] == message.as_str()),
                "{file}: {errors:?}"
            );
        }
        assert_no_secret(&path, &run);
    }
}

#[test]
fn traps_are_warned_about_and_strict_fails() {
    let path = root().join("testdata/configs/valid/traps.yaml");
    let run = check(&path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for code in [
        "identity-first",
        "no-identity",
        "aesgcm-wear-out",
        "kms-v1-deprecated",
        "secret-32-ascii-chars",
        "duplicate-key-name",
        "overlapping-key-prefix",
        "kms-endpoint-no-path",
    ] {
        assert!(
            run.stdout.contains(&format!("warning [{code}]")),
            "no {code} in {}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("identity (PLAINTEXT)"),
        "{}",
        run.stdout
    );
    assert_no_secret(&path, &run);

    let strict = check(&path, &["--strict"]);
    assert_eq!(strict.code, 1, "{}", strict.stderr);
}

#[test]
fn missing_file_and_bad_flags_exit_2() {
    let run = check(&root().join("testdata/configs/does-not-exist.yaml"), &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("does-not-exist.yaml: cannot read"),
        "{}",
        run.stderr
    );

    let run = check(
        &root().join("testdata/configs/valid/legacy.yaml"),
        &["-o", "yaml"],
    );
    assert_eq!(run.code, 2, "clap usage errors exit 2: {}", run.stderr);
}

#[test]
fn config_path_from_apiserver_manifest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = root().join("testdata/configs/valid/legacy.yaml");
    let manifest = dir.path().join("kube-apiserver.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.33.0\n    command:\n    - kube-apiserver\n    - --etcd-servers=https://127.0.0.1:2379\n    - --encryption-provider-config={}\n",
            config.display()
        ),
    )
    .expect("write manifest");
    let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(["config", "check", "--apiserver-manifest"])
        .arg(&manifest)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run atrest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{}: valid EncryptionConfiguration",
            config.display()
        )),
        "{stdout}"
    );

    // A manifest without the flag: nothing is encrypted; exit 2 with a clear message.
    std::fs::write(&manifest, "--etcd-servers=https://127.0.0.1:2379\n").expect("write flags");
    let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(["config", "check", "--apiserver-manifest"])
        .arg(&manifest)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run atrest");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no --encryption-provider-config"));
}
