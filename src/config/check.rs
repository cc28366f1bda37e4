//! `config check`'s analysis of a valid EncryptionConfiguration: for every resource string the
//! effective provider list kube-apiserver builds (entries naming the same resource concatenated,
//! spec §4), who writes and in which order reads go, and warnings for the known traps of
//! spec §8. Pure data (serializable as `atrest.config-check/v1`); no key material, only key
//! names, sizes and prefixes.

use super::{EncryptionConfig, KmsApiVersion, ParseNotes, ProviderConfig};
use crate::resource::GroupResource;
use serde::Serialize;

/// JSON schema identifier of [`CheckReport`].
pub const SCHEMA: &str = "atrest.config-check/v1";

/// The analysis of one config.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub schema: &'static str,
    pub file: String,
    pub valid: bool,
    /// One per distinct resource string, in file order.
    pub rules: Vec<RuleReport>,
    /// What applies to resources no rule names: null when a `*.*` rule exists, else identity.
    pub unmatched: Option<ProviderReport>,
    pub warnings: Vec<Warning>,
}

/// The effective providers of one resource string (`secrets`, `*.apps`, `*.*`).
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    pub resource: String,
    pub group: String,
    /// `resources[i]` entries contributing, in order (several when a resource is repeated).
    pub entries: Vec<usize>,
    /// The first provider (and for keyed providers its first key): what new writes use.
    pub write: ProviderReport,
    /// Every candidate in the order kube-apiserver tries on read (one per key / KMS provider).
    pub read_order: Vec<ProviderReport>,
}

/// One candidate in a read chain; never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderReport {
    /// `identity`, `aescbc`, `aesgcm`, `secretbox`, `kms`.
    pub provider: &'static str,
    /// Key name (aescbc/aesgcm/secretbox) or KMS provider name; null for identity.
    pub name: Option<String>,
    /// Key size in bits (aescbc/aesgcm/secretbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<usize>,
    /// KMS `apiVersion` (`v1`, `v2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The stored-value prefix this candidate writes and matches (`k8s:enc:aescbc:v1:key1:`);
    /// empty for identity.
    pub prefix: String,
    /// True for identity: values are stored unencrypted.
    pub plaintext: bool,
}

impl ProviderReport {
    fn identity() -> Self {
        ProviderReport {
            provider: "identity",
            name: None,
            key_bits: None,
            kms_api_version: None,
            endpoint: None,
            prefix: String::new(),
            plaintext: true,
        }
    }

    /// `aescbc:key1`, `kms-v2:plugin`, `identity`: the compact form used in tables.
    pub fn label(&self) -> String {
        match (&self.name, &self.kms_api_version) {
            (Some(name), Some(v)) => format!("kms-{v}:{name}"),
            (Some(name), None) => format!("{}:{name}", self.provider),
            (None, _) => self.provider.to_owned(),
        }
    }
}

/// One warning: a stable code, the field it is about, the resource strings affected, a message
/// that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub field: String,
    pub resources: Vec<String>,
    pub message: String,
}

/// Analyse a valid config.
pub fn check(config: &EncryptionConfig, notes: &ParseNotes, file: &str) -> CheckReport {
    let mut report = CheckReport {
        schema: SCHEMA,
        file: file.to_owned(),
        valid: true,
        rules: Vec::new(),
        unmatched: Some(ProviderReport::identity()),
        warnings: Vec::new(),
    };
    let mut seen: Vec<GroupResource> = Vec::new();
    for rule in &config.rules {
        for resource in &rule.resources {
            let gr = GroupResource::parse(resource);
            if seen.contains(&gr) {
                continue;
            }
            seen.push(gr.clone());
            if gr.group == "*" && gr.resource == "*" {
                report.unmatched = None;
            }
            report.rules.push(rule_report(config, resource, &gr));
        }
    }
    if config.select(&GroupResource::new("", "secrets")).is_none() {
        report.warnings.push(Warning {
            code: "secrets-not-covered",
            field: "resources".to_owned(),
            resources: vec!["secrets".to_owned()],
            message:
                "no rule names secrets (nor *. or *.*): Secrets are written in plaintext; add \
                      secrets to the resources of an encrypting rule"
                    .to_owned(),
        });
    }
    chain_warnings(&mut report);
    key_warnings(config, notes, &mut report);
    kms_warnings(config, notes, &mut report);
    if notes.extra_documents {
        report.warnings.push(Warning {
            code: "extra-yaml-documents",
            field: "---".to_owned(),
            resources: Vec::new(),
            message: "the file holds more than one YAML document: kube-apiserver (and atrest) use only the \
                      first one and silently ignore the rest; remove or merge the others"
                .to_owned(),
        });
    }
    // The same pair can be reached twice (two keys named `a`, both overlapping `a:b`).
    let mut unique: Vec<Warning> = Vec::with_capacity(report.warnings.len());
    for w in report.warnings.drain(..) {
        if !unique.contains(&w) {
            unique.push(w);
        }
    }
    report.warnings = unique;
    report
}

fn entries_naming(config: &EncryptionConfig, gr: &GroupResource) -> Vec<usize> {
    config
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.resources.iter().any(|s| GroupResource::parse(s) == *gr))
        .map(|(i, _)| i)
        .collect()
}

fn rule_report(config: &EncryptionConfig, resource: &str, gr: &GroupResource) -> RuleReport {
    let entries = entries_naming(config, gr);
    let read_order: Vec<ProviderReport> = entries
        .iter()
        .filter_map(|&i| config.rules.get(i))
        .flat_map(|r| r.providers.iter())
        .flat_map(candidates)
        .collect();
    RuleReport {
        resource: resource.to_owned(),
        group: gr.group.clone(),
        entries,
        write: read_order
            .first()
            .cloned()
            .unwrap_or_else(ProviderReport::identity),
        read_order,
    }
}

/// A provider element flattened to the candidates the prefix chain holds.
fn candidates(p: &ProviderConfig) -> Vec<ProviderReport> {
    match p {
        ProviderConfig::Identity => vec![ProviderReport::identity()],
        ProviderConfig::Kms(k) => {
            let v = k.api_version.to_string();
            vec![ProviderReport {
                provider: "kms",
                name: Some(k.name.clone()),
                key_bits: None,
                prefix: format!("k8s:enc:kms:{v}:{}:", k.name),
                kms_api_version: Some(v),
                endpoint: Some(k.endpoint.clone()),
                plaintext: false,
            }]
        }
        keyed => keyed
            .keys()
            .iter()
            .map(|key| ProviderReport {
                provider: keyed.type_name(),
                name: Some(key.name.clone()),
                key_bits: Some(key.secret.len() * 8),
                kms_api_version: None,
                endpoint: None,
                prefix: format!("k8s:enc:{}:v1:{}:", keyed.type_name(), key.name),
                plaintext: false,
            })
            .collect(),
    }
}

/// Warnings about each effective chain, grouped over the resources sharing the same entries.
fn chain_warnings(report: &mut CheckReport) {
    let mut groups: Vec<(Vec<usize>, Vec<String>, Vec<ProviderReport>)> = Vec::new();
    for rule in &report.rules {
        match groups.iter_mut().find(|(e, _, _)| *e == rule.entries) {
            Some((_, resources, _)) => resources.push(rule.resource.clone()),
            None => groups.push((
                rule.entries.clone(),
                vec![rule.resource.clone()],
                rule.read_order.clone(),
            )),
        }
    }
    for (entries, resources, chain) in groups {
        let first = entries.first().copied().unwrap_or(0);
        let list = resources.join(", ");
        let Some(writer) = chain.first() else {
            continue;
        };
        let has_identity = chain.iter().any(|c| c.plaintext);
        if writer.plaintext && chain.len() > 1 {
            report.warnings.push(Warning {
                code: "identity-first",
                field: format!("resources[{first}].providers[0]"),
                resources: resources.clone(),
                message: format!(
                    "identity is the first provider, so new writes of {list} are stored in PLAINTEXT; \
                     values encrypted earlier stay readable through the later providers but count as stale, \
                     so a storage migration (atrest rotate) decrypts them. Move the provider you want to \
                     write with to the top"
                ),
            });
        } else if writer.plaintext {
            report.warnings.push(Warning {
                code: "identity-only",
                field: format!("resources[{first}].providers[0]"),
                resources: resources.clone(),
                message: format!("{list}: identity is the only provider, nothing is encrypted"),
            });
        }
        if !has_identity {
            report.warnings.push(Warning {
                code: "no-identity",
                field: format!("resources[{first}].providers"),
                resources: resources.clone(),
                message: format!(
                    "no identity provider: any {list} value still stored in plaintext is unreadable \
                     (\"no matching prefix found\"). Fine once every value has been rewritten (check with \
                     atrest scan); until then keep `- identity: {{}}` as the last provider"
                ),
            });
        }
        match writer.provider {
            "aesgcm" => report.warnings.push(Warning {
                code: "aesgcm-wear-out",
                field: format!("resources[{first}].providers[0].aesgcm"),
                resources: resources.clone(),
                message: format!(
                    "aesgcm writes {list} with random nonces: a key must not encrypt more than 2^32 values \
                     (every update of every covered object counts). Rotate the key often, or prefer kms v2"
                ),
            }),
            "aescbc" => report.warnings.push(Warning {
                code: "aescbc-not-recommended",
                field: format!("resources[{first}].providers[0].aescbc"),
                resources: resources.clone(),
                message: format!(
                    "aescbc writes {list}: it is unauthenticated (padding-oracle prone) and Kubernetes no \
                     longer recommends it; prefer kms v2 or secretbox"
                ),
            }),
            _ => {}
        }
        overlap_warnings(&chain, first, &resources, report);
    }
}

/// Two candidates of one chain whose prefixes overlap: same provider type and same name, or a
/// name that is another's name plus `:...` (`a` vs `a:b`). All get tried on read; for aescbc a
/// wrong key can even "succeed" with garbage (no MAC).
fn overlap_warnings(
    chain: &[ProviderReport],
    first_entry: usize,
    resources: &[String],
    report: &mut CheckReport,
) {
    for (i, a) in chain.iter().enumerate() {
        for b in chain.iter().skip(i + 1) {
            if a.plaintext || b.plaintext || a.provider != b.provider {
                continue;
            }
            let (code, detail) = if a.prefix == b.prefix {
                (
                    "duplicate-key-name",
                    format!("the name {:?} is used twice", a.label()),
                )
            } else if b.prefix.starts_with(&a.prefix) || a.prefix.starts_with(&b.prefix) {
                (
                    "overlapping-key-prefix",
                    format!(
                        "{:?} and {:?} have overlapping prefixes",
                        a.label(),
                        b.label()
                    ),
                )
            } else {
                continue;
            };
            let note = if a.provider == "aescbc" {
                "; with aescbc (no MAC) a wrong key can even return garbage instead of failing"
            } else {
                ""
            };
            report.warnings.push(Warning {
                code,
                field: format!("resources[{first_entry}].providers"),
                resources: resources.to_vec(),
                message: format!(
                    "{detail} for {}: values match both and are tried in order{note}. Give every key a unique name without ':'",
                    resources.join(", ")
                ),
            });
        }
    }
}

fn rule_resources(config: &EncryptionConfig, rule: usize) -> Vec<String> {
    config
        .rules
        .get(rule)
        .map(|r| r.resources.clone())
        .unwrap_or_default()
}

fn key_warnings(config: &EncryptionConfig, notes: &ParseNotes, report: &mut CheckReport) {
    for key in notes.keys.iter().filter(|k| k.ascii_32_chars_24_bytes) {
        report.warnings.push(Warning {
            code: "secret-32-ascii-chars",
            field: format!("{}.secret", key.field),
            resources: rule_resources(config, key.rule),
            message: format!(
                "the secret of key {:?} is 32 characters that decode to 24 bytes, so this key is AES-192. \
                 If you meant AES-256, this is the classic mistake of pasting a 32-character string where \
                 base64 of 32 random bytes belongs: generate keys with `head -c 32 /dev/urandom | base64`",
                key.name
            ),
        });
    }
}

fn kms_warnings(config: &EncryptionConfig, notes: &ParseNotes, report: &mut CheckReport) {
    let mut v1_names: Vec<&str> = Vec::new();
    for facts in &notes.kms {
        let Some(ProviderConfig::Kms(kms)) = config
            .rules
            .get(facts.rule)
            .and_then(|r| r.providers.get(facts.provider))
        else {
            continue;
        };
        let resources = rule_resources(config, facts.rule);
        if kms.api_version == KmsApiVersion::V1 {
            let why = if facts.api_version_omitted {
                "apiVersion is not set, so it defaults to v1: "
            } else {
                ""
            };
            report.warnings.push(Warning {
                code: "kms-v1-deprecated",
                field: facts.field.clone(),
                resources: resources.clone(),
                message: format!(
                    "{why}KMS v1 is deprecated and off by default since Kubernetes 1.29 (kube-apiserver needs \
                     --feature-gates=KMSv1=true); migrate plugin {:?} to apiVersion: v2",
                    kms.name
                ),
            });
            if v1_names.contains(&kms.name.as_str()) {
                report.warnings.push(Warning {
                    code: "duplicate-kms-name",
                    field: format!("{}.name", facts.field),
                    resources: resources.clone(),
                    message: format!(
                        "KMS provider name {:?} is used more than once: kube-apiserver rejects this with \
                         --encryption-provider-config-automatic-reload; give every KMS provider a unique name",
                        kms.name
                    ),
                });
            }
            v1_names.push(&kms.name);
        }
        if kms.socket_path().is_none() {
            report.warnings.push(Warning {
                code: "kms-endpoint-no-path",
                field: format!("{}.endpoint", facts.field),
                resources,
                message: format!(
                    "endpoint {:?} has no path: only the URL path is dialed (here the socket name is parsed \
                     as a host), so kube-apiserver cannot reach the plugin. Use unix:///absolute/path.sock",
                    kms.endpoint
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn report_for(name: &str) -> CheckReport {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/configs/valid")
            .join(name);
        let (config, notes) = EncryptionConfig::load_with_notes(&path).expect("valid fixture");
        check(&config, &notes, name)
    }

    fn codes(r: &CheckReport) -> Vec<&'static str> {
        r.warnings.iter().map(|w| w.code).collect()
    }

    #[test]
    fn traps_fixture_raises_every_warning() {
        let r = report_for("traps.yaml");
        let got = codes(&r);
        for want in [
            "identity-first",
            "secret-32-ascii-chars",
            "duplicate-key-name",
            "overlapping-key-prefix",
            "no-identity",
            "aesgcm-wear-out",
            "kms-v1-deprecated",
            "kms-endpoint-no-path",
        ] {
            assert!(got.contains(&want), "missing {want} in {got:?}");
        }
        let w = r
            .warnings
            .iter()
            .find(|w| w.code == "secret-32-ascii-chars")
            .expect("warning");
        assert_eq!(w.field, "resources[0].providers[1].aescbc.keys[0].secret");
        assert!(
            !serde_json::to_string(&r)
                .expect("json")
                .contains("thisisa32character")
        );
    }

    #[test]
    fn effective_chains_concatenate_and_report_prefixes() {
        let r = report_for("concat.yaml");
        let secrets = r
            .rules
            .iter()
            .find(|x| x.resource == "secrets")
            .expect("secrets");
        assert_eq!(secrets.entries, [0, 1]);
        let labels: Vec<String> = secrets
            .read_order
            .iter()
            .map(ProviderReport::label)
            .collect();
        assert_eq!(labels, ["aescbc:first", "secretbox:second", "identity"]);
        assert_eq!(secrets.write.prefix, "k8s:enc:aescbc:v1:first:");
        assert_eq!(secrets.write.key_bits, Some(256));
        assert!(r.unmatched.is_some());
        assert_eq!(r.rules.len(), 2);
    }

    #[test]
    fn star_star_leaves_nothing_unmatched() {
        let r = report_for("wildcards.yaml");
        assert!(r.unmatched.is_none());
        let resources: Vec<&str> = r.rules.iter().map(|x| x.resource.as_str()).collect();
        assert_eq!(resources, ["secrets", "configmaps", "*.apps", "*.", "*.*"]);
        // secrets and configmaps share one entry: one grouped warning, not two.
        let n = r
            .warnings
            .iter()
            .filter(|w| w.code == "aescbc-not-recommended")
            .count();
        assert_eq!(n, 1);
        assert!(codes(&r).contains(&"identity-only"));
    }

    #[test]
    fn uncovered_secrets_are_flagged() {
        let config = EncryptionConfig::parse(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [configmaps]\n  providers: [{secretbox: {keys: [{name: s, secret: ACv6FLoeZ92F9VlEy1JWOAV8QFWgsBzTQmxQ9MjU024=}]}}]\n",
            "enc.yaml",
        )
        .expect("valid");
        let r = check(&config, &ParseNotes::default(), "enc.yaml");
        assert!(
            codes(&r).contains(&"secrets-not-covered"),
            "{:?}",
            codes(&r)
        );
        assert!(!codes(&report_for("concat.yaml")).contains(&"secrets-not-covered"));
    }

    #[test]
    fn kms_v1_by_default_is_explained() {
        let r = report_for("kms-defaults.yaml");
        let v1: Vec<&Warning> = r
            .warnings
            .iter()
            .filter(|w| w.code == "kms-v1-deprecated")
            .collect();
        assert_eq!(v1.len(), 2);
        assert!(v1[0].message.contains("defaults to v1"));
        assert!(!v1[1].message.contains("defaults to v1"));
        assert!(codes(&r).contains(&"duplicate-kms-name"));
        assert!(!codes(&r).contains(&"kms-endpoint-no-path"));
    }
}
