//! Upstream's EncryptionConfiguration validation, rule for rule and message for message
//! (`kubernetes/apiserver pkg/apis/apiserver/validation/validation_encryption.go`, defaults from
//! `pkg/apis/apiserver/v1/defaults.go`, the cross-entry masking check from
//! `pkg/server/options/encryptionconfig/config.go`), turning the raw decoded file into the
//! public validated types. Every error carries upstream's field path; none carries key material.

use super::raw::{RawConfig, RawKey, RawKeys, RawKms, RawProvider, RawResource, parse_go_duration};
use super::{
    FieldError, KeyFacts, KmsApiVersion, KmsConfig, KmsFacts, NamedKey, ProviderConfig,
    ResourceRule,
};
use crate::resource::GroupResource;
use crate::secret::SecretBytes;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::collections::HashSet;
use std::time::Duration;
use zeroize::Zeroizing;

const AES_KEY_SIZES: &[usize] = &[16, 24, 32];
const SECRETBOX_KEY_SIZES: &[usize] = &[32];
/// Upstream defaults (`pkg/apis/apiserver/v1/defaults.go`).
const DEFAULT_KMS_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_KMS_CACHE_SIZE: i32 = 1000;

const MORE_THAN_ONE_ELEMENT: &str = "more than one provider specified in a single element, should split into different list elements";
const NO_PROVIDER: &str = "provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity";
const BASE64_ENCODING: &str = "secrets must be base64 encoded";
const EVENTS_GROUP: &str = "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file";
const EXTENSIONS_GROUP: &str =
    "'extensions' group has been removed and cannot be used for encryption";
const STAR_RESOURCE: &str =
    "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources";
const OVERLAP: &str = "using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed as they will be masked";
const NON_REST_API_RESOURCE: &str = "resources which do not have REST API/s cannot be encrypted";
const RESOURCE_NAME: &str = "resource name should not contain capital letters";
const RESOURCE_ACROSS_GROUP: &str = "encrypting the same resource across groups is not supported";
const DUPLICATE_RESOURCE: &str = "the same resource cannot be specified multiple times";

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits tolerated.
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// The validated content of a file, or every problem found (upstream aggregates them).
pub(crate) struct Validated {
    pub rules: Vec<ResourceRule>,
    pub key_facts: Vec<KeyFacts>,
    pub kms_facts: Vec<KmsFacts>,
}

/// Validate a decoded file. Errors come in upstream's order; the masking check (a build-time
/// check upstream) runs only once field validation passed, as in kube-apiserver.
pub(crate) fn validate(raw: RawConfig) -> Result<Validated, Vec<FieldError>> {
    let mut v = Validator::default();
    let entries = raw.resources.unwrap_or_default();
    if entries.is_empty() {
        v.err("resources", "at least one resources is required");
        return Err(v.errors);
    }
    let mut rules = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        rules.push(v.resource_entry(i, entry));
    }
    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    check_masking(&rules)?;
    Ok(Validated {
        rules,
        key_facts: v.key_facts,
        kms_facts: v.kms_facts,
    })
}

#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
    kms_names: HashSet<String>,
    key_facts: Vec<KeyFacts>,
    kms_facts: Vec<KmsFacts>,
}

impl Validator {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn resource_entry(&mut self, i: usize, entry: RawResource) -> ResourceRule {
        let r = format!("resources[{i}].resources");
        let p = format!("resources[{i}].providers");
        let resources = entry.resources.unwrap_or_default();
        if resources.is_empty() {
            self.err(&r, format!("at least one {r} is required"));
        }
        self.resource_overlap(&resources, &r);
        self.resource_names(&resources, &r);
        let raw_providers = entry.providers.unwrap_or_default();
        if raw_providers.is_empty() {
            self.err(&p, format!("at least one {p} is required"));
        }
        let mut providers = Vec::with_capacity(raw_providers.len());
        for (j, provider) in raw_providers.into_iter().enumerate() {
            if let Some(pc) = self.provider(i, j, &format!("{p}[{j}]"), provider) {
                providers.push(pc);
            }
        }
        ResourceRule {
            resources,
            providers,
        }
    }

    /// `validateResourceOverlap`: one duplicate and one overlap error at most, on the list.
    fn resource_overlap(&mut self, resources: &[String], field: &str) {
        if resources.len() < 2 {
            return;
        }
        let parsed: Vec<GroupResource> =
            resources.iter().map(|s| GroupResource::parse(s)).collect();
        let (mut duplicate, mut overlap) = (false, false);
        for (i, r1) in parsed.iter().enumerate() {
            for (j, r2) in parsed.iter().enumerate() {
                if i == j {
                    continue;
                }
                if r1 == r2 && !duplicate {
                    duplicate = true;
                    continue;
                }
                if overlap {
                    continue;
                }
                if r1.group == "*" && r1.resource == "*" {
                    overlap = true;
                    continue;
                }
                if r1.group != r2.group {
                    continue;
                }
                if r1.resource == "*" || r2.resource == "*" {
                    overlap = true;
                }
            }
        }
        if duplicate {
            self.err(field, DUPLICATE_RESOURCE);
        }
        if overlap {
            self.err(field, OVERLAP);
        }
    }

    /// `validateResourceNames`: one error per offending entry, first rule that applies.
    fn resource_names(&mut self, resources: &[String], field: &str) {
        for (j, res) in resources.iter().enumerate() {
            let jj = format!("{field}[{j}]");
            let gr = GroupResource::parse(res);
            let message = if res.to_lowercase() != *res {
                RESOURCE_NAME
            } else if res == "*" {
                STAR_RESOURCE
            } else if matches!(
                res.as_str(),
                "apiserveripinfo" | "serviceipallocations" | "servicenodeportallocations"
            ) {
                NON_REST_API_RESOURCE
            } else if gr.group == "events.k8s.io" {
                EVENTS_GROUP
            } else if gr.group == "extensions" {
                EXTENSIONS_GROUP
            } else if gr.group == "*" && gr.resource != "*" {
                RESOURCE_ACROSS_GROUP
            } else {
                continue;
            };
            self.err(jj, message);
        }
    }

    fn provider(
        &mut self,
        i: usize,
        j: usize,
        path: &str,
        raw: RawProvider,
    ) -> Option<ProviderConfig> {
        let found = usize::from(raw.kms.is_some())
            + usize::from(raw.aesgcm.is_some())
            + usize::from(raw.aescbc.is_some())
            + usize::from(raw.secretbox.is_some())
            + usize::from(raw.identity.is_some());
        if found == 0 {
            self.err(path, NO_PROVIDER);
            return None;
        }
        if found > 1 {
            self.err(path, MORE_THAN_ONE_ELEMENT);
            // Upstream still validates the first present type (its switch order); so do we.
        }
        if let Some(kms) = raw.kms {
            let field = format!("{path}.kms");
            self.kms_facts.push(KmsFacts {
                field: field.clone(),
                rule: i,
                provider: j,
                api_version_omitted: kms.api_version.is_none(),
            });
            return self.kms(&field, kms).map(ProviderConfig::Kms);
        }
        if let Some(keys) = raw.aesgcm {
            let keys = self.keys(i, j, &format!("{path}.aesgcm.keys"), keys, AES_KEY_SIZES);
            return Some(ProviderConfig::AesGcm { keys });
        }
        if let Some(keys) = raw.aescbc {
            let keys = self.keys(i, j, &format!("{path}.aescbc.keys"), keys, AES_KEY_SIZES);
            return Some(ProviderConfig::AesCbc { keys });
        }
        if let Some(keys) = raw.secretbox {
            let keys = self.keys(
                i,
                j,
                &format!("{path}.secretbox.keys"),
                keys,
                SECRETBOX_KEY_SIZES,
            );
            return Some(ProviderConfig::Secretbox { keys });
        }
        Some(ProviderConfig::Identity)
    }

    fn keys(
        &mut self,
        i: usize,
        j: usize,
        path: &str,
        raw: RawKeys,
        sizes: &[usize],
    ) -> Vec<NamedKey> {
        let raw_keys = raw.keys.unwrap_or_default();
        if raw_keys.is_empty() {
            self.err(path, "at least one keys is required");
            return Vec::new();
        }
        let mut keys = Vec::with_capacity(raw_keys.len());
        for (k, key) in raw_keys.into_iter().enumerate() {
            if let Some(nk) = self.key(&format!("{path}[{k}]"), key, sizes, (i, j, k)) {
                keys.push(nk);
            }
        }
        keys
    }

    /// `validateKey`. Secrets are decoded here; no error message ever includes them.
    fn key(
        &mut self,
        path: &str,
        raw: RawKey,
        sizes: &[usize],
        (rule, provider, key): (usize, usize, usize),
    ) -> Option<NamedKey> {
        let name = raw.name.unwrap_or_default();
        if name.is_empty() {
            self.err(
                format!("{path}.name"),
                "name is a mandatory field for a key",
            );
        }
        let secret_text = raw.secret.map(|s| s.0).unwrap_or_default();
        if secret_text.is_empty() {
            self.err(
                format!("{path}.secret"),
                "secret is a mandatory field for a key",
            );
            return None;
        }
        // Go's base64 decoder skips '\r' and '\n' (e.g. a YAML block scalar's trailing newline).
        let compact: Zeroizing<String> = Zeroizing::new(
            secret_text
                .chars()
                .filter(|c| *c != '\r' && *c != '\n')
                .collect(),
        );
        let decoded = match GO_STD_BASE64.decode(compact.as_bytes()) {
            Ok(bytes) => SecretBytes::new(bytes),
            Err(_) => {
                self.err(format!("{path}.secret"), BASE64_ENCODING);
                return None;
            }
        };
        if !sizes.contains(&decoded.len()) {
            self.err(
                format!("{path}.secret"),
                format!(
                    "secret is not of the expected length, got {}, expected one of {}",
                    decoded.len(),
                    go_int_list(sizes)
                ),
            );
            return None;
        }
        self.key_facts.push(KeyFacts {
            field: path.to_owned(),
            rule,
            provider,
            key,
            name: name.clone(),
            ascii_32_chars_24_bytes: compact.len() == 32
                && compact.is_ascii()
                && decoded.len() == 24,
        });
        Some(NamedKey {
            name,
            secret: decoded,
        })
    }

    /// `validateKMSConfiguration` after defaulting: name, timeout, endpoint, cachesize,
    /// apiVersion, in upstream's order.
    fn kms(&mut self, path: &str, raw: RawKms) -> Option<KmsConfig> {
        let errors_before = self.errors.len();
        let version = raw.api_version.unwrap_or_else(|| "v1".to_owned());
        let name = raw.name.unwrap_or_default();
        let name_path = format!("{path}.name");
        if name.is_empty() {
            self.err(&name_path, "name is a mandatory field for a provider");
        }
        if version != "v1" && name.contains(':') {
            self.err(
                &name_path,
                format!("invalid KMS provider name {name}, must not contain ':'"),
            );
        }
        // v2 names must be unique across all KMS providers; v1 names only under automatic
        // reload, which atrest does not model (`config check` warns instead).
        if version != "v1" && self.kms_names.contains(&name) {
            self.err(
                &name_path,
                format!("duplicate KMS provider name {name}, names must be unique"),
            );
        }
        self.kms_names.insert(name.clone());

        let timeout = match raw.timeout.as_deref() {
            None => Some(DEFAULT_KMS_TIMEOUT),
            Some(text) => match parse_go_duration(text) {
                None => {
                    self.err(
                        format!("{path}.timeout"),
                        format!("time: invalid duration {text:?}"),
                    );
                    None
                }
                Some(ns) if ns <= 0 => {
                    self.err(
                        format!("{path}.timeout"),
                        "timeout should be a positive value",
                    );
                    None
                }
                Some(ns) => Some(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))),
            },
        };

        let endpoint = raw.endpoint.unwrap_or_default();
        if let Err(message) = validate_endpoint(&endpoint) {
            self.err(format!("{path}.endpoint"), message);
        }

        let cachesize = if version == "v1" {
            raw.cachesize.or(Some(DEFAULT_KMS_CACHE_SIZE))
        } else {
            raw.cachesize
        };
        if version != "v1" && cachesize.is_some() {
            self.err(
                format!("{path}.cachesize"),
                "cachesize is not supported in v2",
            );
        }
        if version == "v1" && cachesize == Some(0) {
            self.err(
                format!("{path}.cachesize"),
                "cachesize should be a positive value, or negative to disable",
            );
        }

        let api_version = match version.as_str() {
            "v1" => Some(KmsApiVersion::V1),
            "v2" => Some(KmsApiVersion::V2),
            other => {
                // Upstream formats the literal word "apiVersion" here (a bug); we name the value.
                self.err(
                    format!("{path}.apiVersion"),
                    format!(
                        "unsupported apiVersion {other:?} for KMS provider, only v1 and v2 are supported"
                    ),
                );
                None
            }
        };
        if self.errors.len() != errors_before {
            return None;
        }
        Some(KmsConfig {
            api_version: api_version?,
            name,
            endpoint,
            timeout: timeout?,
            cachesize,
        })
    }
}

/// Format like Go's `%v` of an `[]int`: `[16 24 32]`.
fn go_int_list(sizes: &[usize]) -> String {
    let items: Vec<String> = sizes.iter().map(usize::to_string).collect();
    format!("[{}]", items.join(" "))
}

/// `validateKMSEndpoint`: non-empty, parsable as a URL (Go's `url.Parse` rules for what can
/// fail), scheme `unix`. Like upstream, `unix://foo.sock` (a host, no path) passes.
fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() {
        return Err("endpoint is a mandatory field for a kms".to_owned());
    }
    let url = super::EndpointUrl::parse(endpoint)
        .map_err(|e| format!("invalid endpoint for kms provider, error: {e}"))?;
    if url.scheme != "unix" {
        return Err(format!(
            "unsupported scheme {:?} for KMS provider, only unix is supported",
            url.scheme
        ));
    }
    Ok(())
}

/// Upstream's build-time check (`loadConfig` → `getTransformerOverridesAndKMSPluginHealthzCheckers`):
/// a resource after an earlier `*.<group>` or `*.*` (in this entry or an earlier one) is masked.
fn check_masking(rules: &[ResourceRule]) -> Result<(), Vec<FieldError>> {
    let mut seen: HashSet<GroupResource> = HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        for (j, resource) in rule.resources.iter().enumerate() {
            let gr = GroupResource::parse(resource);
            let any_in_group = GroupResource::new(gr.group.clone(), "*");
            let any_any = GroupResource::new("*", "*");
            for mask in [any_in_group, any_any] {
                if seen.contains(&mask) {
                    return Err(vec![FieldError {
                        field: format!("resources[{i}].resources[{j}]"),
                        message: format!(
                            "resource {:?} is masked by earlier rule {:?}",
                            yaml_string(&gr),
                            yaml_string(&mask)
                        ),
                    }]);
                }
            }
            seen.insert(gr);
        }
    }
    Ok(())
}

/// Upstream `grYAMLString`: the core-group wildcard prints as `*.`.
pub(crate) fn yaml_string(gr: &GroupResource) -> String {
    if gr.group.is_empty() && gr.resource == "*" {
        "*.".to_owned()
    } else {
        gr.to_string()
    }
}
