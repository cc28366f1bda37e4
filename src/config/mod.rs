//! The EncryptionConfiguration file kube-apiserver reads (`--encryption-provider-config`):
//! parsing (strict, like upstream), validation with upstream's rules and messages, and the
//! rule lookup that picks a resource's ordered provider list (spec §4, §5).
//! Errors name the file, the resource entry and the field; they never include key material.

pub mod check;
mod raw;
#[cfg(test)]
mod tests;
mod validation;

use crate::resource::GroupResource;
use crate::secret::SecretBytes;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed and validated EncryptionConfiguration.
#[derive(Debug, Clone)]
pub struct EncryptionConfig {
    /// Where it was read from (for messages and reports); None when parsed from a string.
    pub path: Option<PathBuf>,
    pub rules: Vec<ResourceRule>,
}

/// One `resources[]` entry.
#[derive(Debug, Clone)]
pub struct ResourceRule {
    /// The resource strings as written (`secrets`, `*.apps`, `*.*`).
    pub resources: Vec<String>,
    /// Providers in config order: the first is the writer.
    pub providers: Vec<ProviderConfig>,
}

/// One provider element.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Identity,
    AesCbc { keys: Vec<NamedKey> },
    AesGcm { keys: Vec<NamedKey> },
    Secretbox { keys: Vec<NamedKey> },
    Kms(KmsConfig),
}

/// A named key; `secret` holds the decoded key bytes (zeroized on drop, never printed).
#[derive(Debug, Clone)]
pub struct NamedKey {
    pub name: String,
    pub secret: SecretBytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsApiVersion {
    V1,
    V2,
}

#[derive(Debug, Clone)]
pub struct KmsConfig {
    pub api_version: KmsApiVersion,
    pub name: String,
    /// As written, e.g. `unix:///var/run/kms.sock`.
    pub endpoint: String,
    /// Default 3s.
    pub timeout: Duration,
    /// KMS v1 only; default 1000, negative disables the cache.
    pub cachesize: Option<i32>,
}

/// The providers that apply to one group/resource, in read order (first = writer), and which
/// rule(s) they came from. `rule` is the resource string that matched (`secrets`, `*.*`).
#[derive(Debug, Clone)]
pub struct Selection<'a> {
    pub matched: String,
    pub providers: Vec<&'a ProviderConfig>,
}

impl KmsConfig {
    /// The unix socket the endpoint names, as kube-apiserver dials it (`kubernetes/kms
    /// pkg/util/util.go`): the URL path, with `/@name` meaning the Linux abstract socket `@name`.
    /// None when the URL has no path (`unix://foo.sock`: `foo.sock` is the host, which upstream
    /// validation accepts but dialing then fails).
    pub fn socket_path(&self) -> Option<String> {
        let url = EndpointUrl::parse(&self.endpoint).ok()?;
        if url.path.is_empty() {
            return None;
        }
        match url.path.strip_prefix("/@") {
            Some(abstract_name) => Some(format!("@{abstract_name}")),
            None => Some(url.path),
        }
    }
}

impl ProviderConfig {
    /// The provider type as written in the file (`aescbc`, `kms`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderConfig::Identity => "identity",
            ProviderConfig::AesCbc { .. } => "aescbc",
            ProviderConfig::AesGcm { .. } => "aesgcm",
            ProviderConfig::Secretbox { .. } => "secretbox",
            ProviderConfig::Kms(_) => "kms",
        }
    }
    /// The named keys of aescbc/aesgcm/secretbox (empty for identity and kms).
    pub fn keys(&self) -> &[NamedKey] {
        match self {
            ProviderConfig::AesCbc { keys }
            | ProviderConfig::AesGcm { keys }
            | ProviderConfig::Secretbox { keys } => keys,
            ProviderConfig::Identity | ProviderConfig::Kms(_) => &[],
        }
    }
}

/// One validation problem: upstream's field path (`resources[0].providers[1].aescbc.keys[0].secret`)
/// and message. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Facts about one key's secret kept for `config check` warnings (no key material).
#[derive(Debug, Clone)]
pub struct KeyFacts {
    /// Field path of the key, e.g. `resources[0].providers[1].aescbc.keys[0]`.
    pub field: String,
    /// Indexes into `rules`, `providers`, `keys`.
    pub rule: usize,
    pub provider: usize,
    pub key: usize,
    pub name: String,
    /// The secret is exactly 32 ASCII characters that decode to 24 bytes: almost certainly a
    /// 32-character password pasted instead of base64 of 32 random bytes (silently AES-192).
    pub ascii_32_chars_24_bytes: bool,
}

/// Facts about one KMS provider element kept for `config check` warnings.
#[derive(Debug, Clone)]
pub struct KmsFacts {
    /// Field path of the element, e.g. `resources[0].providers[0].kms`.
    pub field: String,
    pub rule: usize,
    pub provider: usize,
    /// `apiVersion` was not written, so upstream defaulted it to v1.
    pub api_version_omitted: bool,
}

/// What a successful parse learned beyond the config itself.
#[derive(Debug, Clone, Default)]
pub struct ParseNotes {
    pub keys: Vec<KeyFacts>,
    pub kms: Vec<KmsFacts>,
    /// The file holds more YAML documents after the first; like kube-apiserver, atrest
    /// ignored them.
    pub extra_documents: bool,
}

/// A config error. Every variant names the file (or `<input>`) and, where it applies, the
/// entry (`resources[1]`) and field (`providers[0].aescbc.keys[0].secret`).
/// Messages never include key material, not even a malformed secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML/JSON, not UTF-8, empty, the wrong apiVersion/kind, an unknown or duplicate
    /// field, a wrongly typed value: what kube-apiserver's strict decoder rejects.
    #[error("{file}: not a valid EncryptionConfiguration: {message}")]
    Parse { file: String, message: String },
    /// One validation problem (upstream's field path and message).
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    /// Several validation problems (upstream reports them all at once); one line each.
    #[error("{}", format_many(file, errors))]
    InvalidMany {
        file: String,
        errors: Vec<FieldError>,
    },
}

fn format_many(file: &str, errors: &[FieldError]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("{file}: {}: {}", e.field, e.message))
        .collect();
    lines.join("\n")
}

impl ConfigError {
    /// The validation problems (empty for I/O and parse errors).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ConfigError::Invalid { field, message, .. } => vec![FieldError {
                field: field.clone(),
                message: message.clone(),
            }],
            ConfigError::InvalidMany { errors, .. } => errors.clone(),
            ConfigError::Io { .. } | ConfigError::Parse { .. } => Vec::new(),
        }
    }
}

/// The accepted type identities: the current one, and the legacy one upstream still registers
/// "due to a docs bug" (`pkg/apis/apiserver/v1/register.go`).
const ACCEPTED_TYPES: &[(&str, &str)] = &[
    ("apiserver.config.k8s.io/v1", "EncryptionConfiguration"),
    ("v1", "EncryptionConfig"),
];

/// Only the type identity, decoded leniently first so that a wrong file (say a Pod manifest)
/// is reported as such and not as a puzzling "unknown field".
#[derive(Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

fn yaml_options() -> serde_saphyr::Options {
    // No source snippets in errors: the snippet would quote the file, secrets included.
    serde_saphyr::options! { with_snippet: false }
}

impl EncryptionConfig {
    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_notes(path).map(|(c, _)| c)
    }

    /// [`EncryptionConfig::load`], also returning facts for `config check` warnings.
    pub fn load_with_notes(path: &Path) -> Result<(Self, ParseNotes), ConfigError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        let bytes = zeroize::Zeroizing::new(bytes);
        let text = std::str::from_utf8(&bytes).map_err(|e| ConfigError::Parse {
            file: file.clone(),
            message: format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        })?;
        let (mut config, notes) = Self::parse_with_notes(text, &file)?;
        config.path = Some(path.to_path_buf());
        Ok((config, notes))
    }

    /// Parse and validate YAML or JSON text. `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse_with_notes(text, origin).map(|(c, _)| c)
    }

    /// [`EncryptionConfig::parse`], also returning facts for `config check` warnings.
    pub fn parse_with_notes(text: &str, origin: &str) -> Result<(Self, ParseNotes), ConfigError> {
        let parse_err = |message: String| ConfigError::Parse {
            file: origin.to_owned(),
            message,
        };
        // A UTF-8 BOM is tolerated by upstream's YAML reader.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if is_blank_yaml(text) {
            return Err(parse_err(
                "the file is empty (kube-apiserver refuses an empty encryption provider config)"
                    .to_owned(),
            ));
        }
        // kube-apiserver's YAML reader decodes the first document and ignores the rest.
        let (text, extra_documents) = first_yaml_document(text);
        let meta: TypeMeta = serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|e| parse_err(yaml_error_message(&e)))?;
        check_type(meta.api_version.as_deref(), meta.kind.as_deref()).map_err(parse_err)?;
        let raw: raw::RawConfig = serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|e| parse_err(yaml_error_message(&e)))?;
        let validated = validation::validate(raw).map_err(|mut errors| {
            if errors.len() == 1 {
                let e = errors.remove(0);
                ConfigError::Invalid {
                    file: origin.to_owned(),
                    field: e.field,
                    message: e.message,
                }
            } else {
                ConfigError::InvalidMany {
                    file: origin.to_owned(),
                    errors,
                }
            }
        })?;
        Ok((
            EncryptionConfig {
                path: None,
                rules: validated.rules,
            },
            ParseNotes {
                keys: validated.key_facts,
                kms: validated.kms_facts,
                extra_documents,
            },
        ))
    }

    /// Upstream `transformerFromOverrides`: exact {group, resource}, else {group, *}, else
    /// {*, *}; an exact resource named in several entries gets their lists concatenated in
    /// entry order. None = no rule: kube-apiserver uses a bare identity transformer.
    /// (`*.` is the core group's wildcard, {"" , *}.)
    pub fn select(&self, gr: &GroupResource) -> Option<Selection<'_>> {
        self.select_exact(&gr.group, &gr.resource)
            .or_else(|| self.select_exact(&gr.group, "*"))
            .or_else(|| self.select_exact("*", "*"))
    }

    /// All entries naming exactly {group, resource}, concatenated in entry order.
    fn select_exact(&self, group: &str, resource: &str) -> Option<Selection<'_>> {
        let mut matched: Option<&str> = None;
        let mut providers = Vec::new();
        for rule in &self.rules {
            if let Some(s) = rule
                .resources
                .iter()
                .find(|s| split_group_resource(s) == (group, resource))
            {
                matched.get_or_insert(s.as_str());
                providers.extend(rule.providers.iter());
            }
        }
        matched.map(|m| Selection {
            matched: m.to_owned(),
            providers,
        })
    }
}

/// `ParseGroupResource` without allocating: (group, resource).
fn split_group_resource(s: &str) -> (&str, &str) {
    match s.split_once('.') {
        Some((r, g)) => (g, r),
        None => ("", s),
    }
}

/// The text of the first YAML document (a prefix of `text`, so error line numbers stay
/// right) and whether anything follows it. Document markers (`---`, `...`) are only markers
/// at column 0 and YAML forbids them there inside content, so a line scan is exact.
fn first_yaml_document(text: &str) -> (&str, bool) {
    let mut seen_content = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker_rest = |m: &str| {
            bare.strip_prefix(m)
                .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if let Some(rest) = marker_rest("---") {
            if seen_content {
                return (&text[..offset], has_documents(&text[offset..]));
            }
            let rest = rest.trim();
            seen_content = !rest.is_empty() && !rest.starts_with('#');
        } else if marker_rest("...").is_some() {
            if seen_content {
                let end = offset + line.len();
                return (&text[..end], has_documents(&text[end..]));
            }
        } else {
            let t = bare.trim();
            if !t.is_empty() && !t.starts_with('#') && !t.starts_with('%') {
                seen_content = true;
            }
        }
        offset += line.len();
    }
    (text, false)
}

/// Whether `rest` (after the first document) holds anything but markers and comments.
fn has_documents(rest: &str) -> bool {
    rest.lines().any(|l| {
        let t = l.trim();
        let t = t
            .strip_prefix("---")
            .or_else(|| t.strip_prefix("..."))
            .map_or(t, str::trim);
        !t.is_empty() && !t.starts_with('#')
    })
}

/// No content at all, or only comments: kube-apiserver refuses both (an empty file outright,
/// a comments-only one as a null object without a kind).
fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

fn check_type(api_version: Option<&str>, kind: Option<&str>) -> Result<(), String> {
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return Err(format!(
            "apiVersion and kind are required (apiVersion: {}, kind: {})",
            ACCEPTED_TYPES[0].0, ACCEPTED_TYPES[0].1
        ));
    };
    if ACCEPTED_TYPES.contains(&(api_version, kind)) {
        return Ok(());
    }
    Err(format!(
        "unsupported apiVersion {api_version:?} / kind {kind:?}: expected apiVersion {} with kind {} (or the legacy apiVersion {} with kind {})",
        ACCEPTED_TYPES[0].0, ACCEPTED_TYPES[0].1, ACCEPTED_TYPES[1].0, ACCEPTED_TYPES[1].1
    ))
}

/// The YAML/JSON decoder's message with its location, without any source snippet, and with
/// anything that might be key material withheld: the decoder quotes mapping keys and scalar
/// values in some messages (`unknown field `<text>``, `invalid type: string "<text>"`), and a
/// misindented secret can end up exactly there. Advice aimed at the library's API is dropped.
fn yaml_error_message(e: &serde_saphyr::Error) -> String {
    let message = e
        .to_string()
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .replace(
            ". If you just use !!binary for documentation/annotation, set ignore_binary_tag_for_string in Options",
            "",
        );
    withhold_long_tokens(&message)
}

/// Replace every run of 16 or more base64/base64url characters with a placeholder. Real field
/// names and the decoder's own words are shorter; base64 of a 16-byte key is 24 characters.
fn withhold_long_tokens(message: &str) -> String {
    const MIN_WITHHELD: usize = 16;
    let is_token = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_');
    let mut out = String::with_capacity(message.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.chars().count() >= MIN_WITHHELD {
            out.push_str(&format!("<{} characters withheld>", token.chars().count()));
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in message.chars() {
        if is_token(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// The parts of a URL that validation and dialing need, parsed with Go `net/url.Parse`'s rules
/// for what is an error (control characters, bad escapes, a bad host, a missing scheme).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointUrl {
    /// Lower-cased, as Go stores it.
    pub scheme: String,
    pub host: String,
    /// Percent-decoded.
    pub path: String,
}

impl EndpointUrl {
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let fail = |reason: &str| format!("parse {raw:?}: {reason}");
        if raw.chars().any(|c| c.is_ascii_control()) {
            return Err(fail("net/url: invalid control character in URL"));
        }
        // Fragment and query are not part of the socket path.
        let no_fragment = raw.split_once('#').map_or(raw, |(a, _)| a);
        let (scheme, rest) = split_scheme(no_fragment).map_err(&fail)?;
        let rest = rest.split_once('?').map_or(rest, |(a, _)| a);
        let (host, path) = if let Some(after) = rest.strip_prefix("//") {
            match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        } else if scheme.is_empty() || rest.starts_with('/') {
            if scheme.is_empty() {
                let first_segment = rest.split('/').next().unwrap_or("");
                if first_segment.contains(':') {
                    return Err(fail("first path segment in URL cannot contain colon"));
                }
            }
            ("", rest)
        } else {
            // Opaque form (`unix:foo`): no host, no path.
            ("", "")
        };
        if host.contains('[') != host.contains(']') {
            return Err(fail("missing ']' in host"));
        }
        let path = percent_decode(path).ok_or_else(|| fail("invalid URL escape"))?;
        Ok(EndpointUrl {
            scheme,
            host: host.to_owned(),
            path,
        })
    }
}

/// Go `getScheme`: `[A-Za-z][A-Za-z0-9+.-]*:`; a leading `:` is "missing protocol scheme";
/// anything else means there is no scheme.
fn split_scheme(raw: &str) -> Result<(String, &str), &'static str> {
    for (i, c) in raw.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err("missing protocol scheme"),
            ':' => return Ok((raw[..i].to_ascii_lowercase(), &raw[i + 1..])),
            _ => return Ok((String::new(), raw)),
        }
    }
    Ok((String::new(), raw))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for KmsApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KmsApiVersion::V1 => "v1",
            KmsApiVersion::V2 => "v2",
        })
    }
}
