//! The wire shape of the EncryptionConfiguration file, decoded strictly (unknown and duplicate
//! fields are errors, like upstream's `serializer.EnableStrict`). Field names follow
//! `kubernetes/apiserver pkg/apis/apiserver/v1/types_encryption.go`. Nothing here is validated
//! beyond types: `validation.rs` turns these into the public, validated types.
//!
//! Secrets are read through [`RawSecret`], whose deserializer never quotes the offending value
//! in an error (serde's default "invalid type: integer `123`" would leak key material).

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use zeroize::Zeroizing;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    // Decoded so strict mode accepts them; their values are checked earlier (`TypeMeta`).
    #[serde(rename = "apiVersion")]
    #[allow(dead_code)]
    pub api_version: Option<String>,
    #[allow(dead_code)]
    pub kind: Option<String>,
    #[serde(default)]
    pub resources: Option<Vec<RawResource>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResource {
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    #[serde(default)]
    pub providers: Option<Vec<RawProvider>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    #[serde(default)]
    pub aesgcm: Option<RawKeys>,
    #[serde(default)]
    pub aescbc: Option<RawKeys>,
    #[serde(default)]
    pub secretbox: Option<RawKeys>,
    #[serde(default)]
    pub identity: Option<RawIdentity>,
    #[serde(default)]
    pub kms: Option<RawKms>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeys {
    #[serde(default)]
    pub keys: Option<Vec<RawKey>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub secret: Option<RawSecret>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKms {
    #[serde(rename = "apiVersion", default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cachesize: Option<i32>,
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A Go `time.Duration` string (`metav1.Duration`), e.g. `3s`, `1m30s`, `500ms`.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// The base64 text of a key as written in the file; zeroized on drop, never printed.
pub(crate) struct RawSecret(pub Zeroizing<String>);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawSecret(<{} chars>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_string(SecretVisitor)
    }
}

struct SecretVisitor;

/// The one message used for every wrongly typed secret: names the type, never the value.
fn not_a_string<E: de::Error>(what: &str) -> E {
    E::custom(format!("secret must be a base64 string, got {what}"))
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = RawSecret;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecret, E> {
        Ok(RawSecret(Zeroizing::new(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawSecret, E> {
        Ok(RawSecret(Zeroizing::new(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawSecret, E> {
        Err(not_a_string("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawSecret, E> {
        Err(not_a_string("a number"))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<RawSecret, E> {
        Err(not_a_string("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawSecret, E> {
        Err(not_a_string("a number"))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<RawSecret, E> {
        Err(not_a_string("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawSecret, E> {
        Err(not_a_string("a number"))
    }
    fn visit_char<E: de::Error>(self, _: char) -> Result<RawSecret, E> {
        Err(not_a_string("a character"))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<RawSecret, E> {
        Err(not_a_string("binary data"))
    }
    fn visit_none<E: de::Error>(self) -> Result<RawSecret, E> {
        Err(not_a_string("null"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawSecret, E> {
        Err(not_a_string("null"))
    }
    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<RawSecret, D::Error> {
        Err(not_a_string("an optional value"))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<RawSecret, D::Error> {
        Err(not_a_string("a structure"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<RawSecret, A::Error> {
        Err(not_a_string("a list"))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<RawSecret, A::Error> {
        Err(not_a_string("a mapping"))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<RawSecret, A::Error> {
        Err(not_a_string("a tagged value"))
    }
}

/// Go's `time.ParseDuration`, returning signed nanoseconds (negative and zero durations parse;
/// validation rejects them with upstream's message). None = not a Go duration.
pub(crate) fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        // Integer part, optional fraction.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let int_val: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut value = int_val.checked_mul(unit)?;
        if !frac_part.is_empty() {
            // Scale the fraction to the unit, truncating like Go does.
            let digits = frac_part.len().min(30);
            let frac: i128 = frac_part[..digits].parse().ok()?;
            let scale = 10i128.checked_pow(u32::try_from(digits).ok()?)?;
            value = value.checked_add(frac.checked_mul(unit)? / scale)?;
        }
        total = total.checked_add(value)?;
        // Go rejects durations beyond i64 nanoseconds.
        if total > i128::from(i64::MAX) {
            return None;
        }
    }
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration;

    #[test]
    fn go_durations() {
        let s = 1_000_000_000i128;
        assert_eq!(parse_go_duration("3s"), Some(3 * s));
        assert_eq!(parse_go_duration("1m30s"), Some(90 * s));
        assert_eq!(parse_go_duration("500ms"), Some(s / 2));
        assert_eq!(parse_go_duration("1.5s"), Some(3 * s / 2));
        assert_eq!(parse_go_duration("1h"), Some(3600 * s));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("0s"), Some(0));
        assert_eq!(parse_go_duration("-1s"), Some(-s));
        assert_eq!(parse_go_duration("10us"), Some(10_000));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("3"), None);
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration("3x"), None);
        assert_eq!(parse_go_duration("."), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("99999999999999999999h"), None);
    }
}
