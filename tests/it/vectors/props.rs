//! Property tests: random keys and plaintexts round trip through every local provider and the
//! KMS v2 seed scheme; arbitrary bytes never panic the classifier, any decryptor, or a chain
//! holding every provider (they yield a typed error instead).

use super::fake_kms::{FakeConnector, FakeKms};
use super::kms_config;
use atrest::codec::aescbc::AesCbcCipher;
use atrest::codec::aesgcm::AesGcmCipher;
use atrest::codec::chain::Chain;
use atrest::codec::secretbox::SecretboxCipher;
use atrest::codec::{Cipher, ProviderKind, classify_value, kmsv1, kmsv2};
use atrest::config::{NamedKey, ProviderConfig};
use atrest::secret::SecretBytes;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn key_of(len: usize, seed: &[u8]) -> SecretBytes {
    SecretBytes::new(
        (0..len)
            .map(|i| seed[i % seed.len()].wrapping_add(i as u8))
            .collect(),
    )
}

fn every_provider_chain() -> Chain {
    let k = |n: usize| {
        vec![NamedKey {
            name: "k".into(),
            secret: SecretBytes::new(vec![5u8; n]),
        }]
    };
    let v1 = FakeKms::new("kv1", false, vec![1u8; 32], "", BTreeMap::new());
    let v2 = FakeKms::new("kv2", true, vec![2u8; 32], "id", BTreeMap::new());
    let connector = FakeConnector::with([v1, v2]);
    let providers = [
        ProviderConfig::Kms(kms_config("kv2", true)),
        ProviderConfig::Kms(kms_config("kv1", false)),
        ProviderConfig::AesGcm { keys: k(16) },
        ProviderConfig::AesCbc { keys: k(24) },
        ProviderConfig::Secretbox { keys: k(32) },
        ProviderConfig::Identity,
    ];
    let refs: Vec<&ProviderConfig> = providers.iter().collect();
    Chain::from_providers(&refs, &connector).expect("chain")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn local_providers_round_trip(
        pt in proptest::collection::vec(any::<u8>(), 0..2048),
        seed in proptest::collection::vec(any::<u8>(), 1..32),
        size in prop::sample::select(vec![16usize, 24, 32]),
        etcd_key in "/registry/[a-z]{1,10}/[a-z0-9-]{1,20}",
    ) {
        let key = key_of(size, &seed);
        let ciphers: Vec<Box<dyn Cipher>> = vec![
            Box::new(AesCbcCipher::new(&key).expect("cbc")),
            Box::new(AesGcmCipher::new(&key).expect("gcm")),
        ];
        for c in ciphers.iter() {
            let out = c.encrypt(&pt, etcd_key.as_bytes()).expect("encrypt");
            let back = c.decrypt(&out, etcd_key.as_bytes()).expect("decrypt");
            prop_assert!(back.plaintext.expose() == pt.as_slice());
        }
        let sb = SecretboxCipher::new(&key_of(32, &seed)).expect("secretbox");
        let out = sb.encrypt(&pt, b"").expect("encrypt");
        prop_assert!(sb.decrypt(&out, b"").expect("decrypt").plaintext.expose() == pt.as_slice());
    }

    #[test]
    fn kms_v2_seed_scheme_round_trips(
        pt in proptest::collection::vec(any::<u8>(), 0..2048),
        seed in proptest::collection::vec(any::<u8>(), 32..64),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let sealed = kmsv2::seal_hkdf(&seed, &pt, &aad).expect("seal");
        prop_assert_eq!(sealed.len(), 32 + 12 + pt.len() + 16);
        let back = kmsv2::open_hkdf(&seed, &sealed, &aad).expect("open");
        prop_assert!(back.expose() == pt.as_slice());
        let mut other = aad.clone();
        other.push(0);
        prop_assert!(kmsv2::open_hkdf(&seed, &sealed, &other).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        which in 0usize..8,
    ) {
        // Aim some inputs at each decryptor by giving them a matching prefix.
        let prefixes: [&[u8]; 8] = [
            b"", b"k8s:enc:aescbc:v1:k:", b"k8s:enc:aesgcm:v1:k:", b"k8s:enc:secretbox:v1:k:",
            b"k8s:enc:kms:v1:kv1:", b"k8s:enc:kms:v2:kv2:", b"k8s:enc:", b"k8s\x00",
        ];
        let mut value = prefixes[which].to_vec();
        value.extend_from_slice(&bytes);
        let _ = classify_value(&value);
        let _ = classify_value(&bytes);
        let _ = kmsv1::split_envelope(&bytes);
        let _ = kmsv2::parse_object(&bytes);
        let _ = kmsv2::open_hkdf(&[7u8; 32], &bytes, b"k");
        for n in [16usize, 24, 32] {
            let k = SecretBytes::new(vec![1u8; n]);
            let _ = AesCbcCipher::new(&k).expect("cbc").decrypt(&bytes, b"k");
            let _ = AesGcmCipher::new(&k).expect("gcm").decrypt(&bytes, b"k");
        }
        let _ = SecretboxCipher::new(&SecretBytes::new(vec![1u8; 32])).expect("sb").decrypt(&bytes, b"");
        let chain = every_provider_chain();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let res = rt.block_on(chain.read(b"/registry/secrets/a/b", &value));
        let _ = chain.identify(&value);
        if !value.starts_with(b"k8s:enc:") {
            // Plaintext always reads through the trailing identity entry.
            let out = res.expect("plaintext reads via identity");
            prop_assert_eq!(out.provider, ProviderKind::Identity);
            prop_assert!(out.stale);
        }
    }
}
