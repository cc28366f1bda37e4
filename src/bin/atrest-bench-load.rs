//! atrest-bench-load: fills a real etcd with a realistic Kubernetes keyspace for `scripts/bench`.
//!
//! It writes N Secrets (`/registry/secrets/<ns>/<name>`) whose plaintext is a protobuf
//! `k8s\0` envelope around a `v1.Secret` of about `--value-size` bytes, encrypted exactly as
//! kube-apiserver's providers write them (`k8s:enc:<provider>:v1:<key>:` + payload, AAD = the
//! full etcd key), with a deterministic mix of providers/keys so that a benchmark knows how many
//! objects each status must have. Values are written in large etcd transactions, several in
//! flight, because the loader must be much faster than what it prepares for.
//!
//! The encoders are written here on purpose (RustCrypto, the same crates as the codec) rather
//! than through `atrest::codec`: the values the benchmark loads are then an independent check
//! of atrest's reader (`scan --verify` must find every one of them decryptable).
//!
//! This is a benchmark tool: key material comes from files holding base64 (like
//! EncryptionConfiguration `secret:` fields); nothing sensitive is printed.

use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use clap::Parser;
use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions, Txn, TxnOp,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
#[command(
    name = "atrest-bench-load",
    about = "Load a realistic encrypted Secret keyspace into etcd (benchmark helper)"
)]
struct Args {
    /// etcd endpoint, e.g. https://127.0.0.1:2379.
    #[arg(long, env = "ETCDCTL_ENDPOINTS")]
    endpoints: String,
    #[arg(long, env = "ETCDCTL_CACERT")]
    cacert: PathBuf,
    #[arg(long, env = "ETCDCTL_CERT")]
    cert: PathBuf,
    #[arg(long, env = "ETCDCTL_KEY")]
    key: PathBuf,
    /// Number of objects to write.
    #[arg(long, default_value_t = 100_000)]
    objects: u64,
    /// Index of the first object (to append to an existing keyspace).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Objects are spread round-robin over this many namespaces.
    #[arg(long, default_value_t = 100)]
    namespaces: u64,
    /// Approximate plaintext size of each Secret (bytes, envelope included).
    #[arg(long, default_value_t = 2048)]
    value_size: usize,
    /// etcd storage prefix.
    #[arg(long, default_value = "/registry")]
    prefix: String,
    /// Provider mix, comma-separated `PROVIDER:KEYNAME:KEYFILE:WEIGHT` (PROVIDER = aescbc |
    /// aesgcm | secretbox; KEYFILE holds the base64 key) or `identity:WEIGHT`. Object i gets
    /// the entry selected deterministically by `i mod sum(weights)`.
    #[arg(long, default_value = "identity:1")]
    mix: String,
    /// Puts per transaction (etcd's default --max-txn-ops is 128).
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Transactions in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Write nothing: instead stream every key under `--prefix` with paginated ranges of this
    /// many keys pinned to one revision (what a paginated client minimally costs), and report it.
    #[arg(long, value_name = "PAGE_KEYS")]
    read_pages: Option<i64>,
}

/// One provider/key a value can be written with.
enum Encoder {
    Identity,
    AesCbc {
        prefix: Vec<u8>,
        key: Zeroizing<Vec<u8>>,
    },
    AesGcm {
        prefix: Vec<u8>,
        key: Zeroizing<Vec<u8>>,
    },
    Secretbox {
        prefix: Vec<u8>,
        key: Zeroizing<Vec<u8>>,
    },
}

struct MixEntry {
    label: String,
    encoder: Encoder,
    weight: u64,
}

impl Encoder {
    /// The stored value for `plaintext` under `etcd_key` (the AAD), as kube-apiserver writes it.
    fn encode(&self, etcd_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        match self {
            Encoder::Identity => Ok(plaintext.to_vec()),
            Encoder::AesCbc { prefix, key } => {
                let mut iv = [0u8; 16];
                getrandom::fill(&mut iv).map_err(|e| anyhow!("OS RNG: {e}"))?;
                let mut out = Vec::with_capacity(prefix.len() + 16 + plaintext.len() + 16);
                out.extend_from_slice(prefix);
                out.extend_from_slice(&iv);
                let body = match key.len() {
                    16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
                        .map_err(|_| anyhow!("aescbc key/iv length"))?
                        .encrypt_padded_vec::<Pkcs7>(plaintext),
                    24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, &iv)
                        .map_err(|_| anyhow!("aescbc key/iv length"))?
                        .encrypt_padded_vec::<Pkcs7>(plaintext),
                    32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
                        .map_err(|_| anyhow!("aescbc key/iv length"))?
                        .encrypt_padded_vec::<Pkcs7>(plaintext),
                    n => bail!("aescbc key must be 16, 24 or 32 bytes, got {n}"),
                };
                out.extend_from_slice(&body);
                Ok(out)
            }
            Encoder::AesGcm { prefix, key } => {
                let mut nonce = [0u8; 12];
                getrandom::fill(&mut nonce).map_err(|e| anyhow!("OS RNG: {e}"))?;
                let payload = Payload {
                    msg: plaintext,
                    aad: etcd_key,
                };
                let sealed = match key.len() {
                    16 => aes_gcm::Aes128Gcm::new_from_slice(key)
                        .map_err(|_| anyhow!("aesgcm key length"))?
                        .encrypt(&nonce.into(), payload),
                    32 => aes_gcm::Aes256Gcm::new_from_slice(key)
                        .map_err(|_| anyhow!("aesgcm key length"))?
                        .encrypt(&nonce.into(), payload),
                    n => bail!("aesgcm key must be 16 or 32 bytes for the loader, got {n}"),
                }
                .map_err(|_| anyhow!("aesgcm encryption failed"))?;
                let mut out = Vec::with_capacity(prefix.len() + 12 + sealed.len());
                out.extend_from_slice(prefix);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                Ok(out)
            }
            Encoder::Secretbox { prefix, key } => {
                use crypto_secretbox::aead::{Aead as _, KeyInit as _};
                let mut nonce = [0u8; 24];
                getrandom::fill(&mut nonce).map_err(|e| anyhow!("OS RNG: {e}"))?;
                let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(key)
                    .map_err(|_| anyhow!("secretbox key must be 32 bytes"))?;
                // crypto_secretbox already emits the NaCl layout: tag(16) || ciphertext.
                let sealed = cipher
                    .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), plaintext)
                    .map_err(|_| anyhow!("secretbox encryption failed"))?;
                let mut out = Vec::with_capacity(prefix.len() + 24 + sealed.len());
                out.extend_from_slice(prefix);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                Ok(out)
            }
        }
    }
}

/// Parse `--mix`.
fn parse_mix(spec: &str) -> Result<Vec<MixEntry>> {
    let mut entries = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let fields: Vec<&str> = part.split(':').collect();
        let entry = match fields.as_slice() {
            ["identity", w] => MixEntry {
                label: "identity".into(),
                encoder: Encoder::Identity,
                weight: w
                    .parse()
                    .with_context(|| format!("weight in --mix entry {part:?}"))?,
            },
            [provider, name, keyfile, w] => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(keyfile)
                        .with_context(|| format!("reading key file {keyfile}"))?,
                );
                let key = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .with_context(|| format!("key file {keyfile} is not base64"))?,
                );
                let prefix = format!("k8s:enc:{provider}:v1:{name}:").into_bytes();
                let encoder = match *provider {
                    "aescbc" => Encoder::AesCbc { prefix, key },
                    "aesgcm" => Encoder::AesGcm { prefix, key },
                    "secretbox" => Encoder::Secretbox { prefix, key },
                    other => bail!(
                        "unsupported provider {other:?} in --mix (aescbc, aesgcm, secretbox, identity)"
                    ),
                };
                MixEntry {
                    label: format!("{provider}:{name}"),
                    encoder,
                    weight: w
                        .parse()
                        .with_context(|| format!("weight in --mix entry {part:?}"))?,
                }
            }
            _ => bail!(
                "bad --mix entry {part:?}: use PROVIDER:KEYNAME:KEYFILE:WEIGHT or identity:WEIGHT"
            ),
        };
        entries.push(entry);
    }
    if entries.is_empty() || entries.iter().all(|e| e.weight == 0) {
        bail!("--mix needs at least one entry with a non-zero weight");
    }
    Ok(entries)
}

/// Index of the mix entry for object `i`: weighted round-robin, so exact counts are known.
fn pick(mix: &[MixEntry], i: u64) -> usize {
    let total: u64 = mix.iter().map(|e| e.weight).sum();
    let mut r = i % total;
    for (idx, e) in mix.iter().enumerate() {
        if r < e.weight {
            return idx;
        }
        r -= e.weight;
    }
    mix.len() - 1
}

/// splitmix64: fast deterministic filler, so the data is incompressible but reproducible.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field.
fn put_bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// The `k8s\0` protobuf envelope of a v1.Secret with one data entry of `data_len` bytes.
fn secret_plaintext(ns: &str, name: &str, i: u64, data_len: usize) -> Vec<u8> {
    let mut rng = i ^ 0xA5A5_5A5A_0123_4567;
    let uid = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        splitmix(&mut rng) as u32,
        splitmix(&mut rng) as u16,
        splitmix(&mut rng) & 0xfff,
        splitmix(&mut rng) & 0xfff,
        splitmix(&mut rng) & 0xffff_ffff_ffff
    );
    let mut meta = Vec::with_capacity(160);
    put_bytes(&mut meta, 1, name.as_bytes());
    put_bytes(&mut meta, 3, ns.as_bytes());
    put_bytes(&mut meta, 5, uid.as_bytes());
    let mut ts = Vec::new();
    put_varint(&mut ts, 8); // Time.seconds
    put_varint(&mut ts, 1_760_000_000 + i);
    put_bytes(&mut meta, 8, &ts);
    let mut label = Vec::new();
    put_bytes(&mut label, 1, b"app.kubernetes.io/name");
    put_bytes(&mut label, 2, b"bench");
    put_bytes(&mut meta, 11, &label);

    // Secret data: printable filler (like PEM/base64 payloads), deterministic per object.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut data = Vec::with_capacity(data_len);
    while data.len() < data_len {
        let mut w = splitmix(&mut rng);
        for _ in 0..8 {
            if data.len() == data_len {
                break;
            }
            data.push(ALPHABET[(w & 63) as usize]);
            w >>= 8;
        }
    }
    let mut entry = Vec::with_capacity(data_len + 16);
    put_bytes(&mut entry, 1, b"tls.key");
    put_bytes(&mut entry, 2, &data);

    let mut secret = Vec::with_capacity(data_len + 256);
    put_bytes(&mut secret, 1, &meta);
    put_bytes(&mut secret, 2, &entry);
    put_bytes(&mut secret, 3, b"Opaque");

    let mut type_meta = Vec::new();
    put_bytes(&mut type_meta, 1, b"v1");
    put_bytes(&mut type_meta, 2, b"Secret");

    let mut out = Vec::with_capacity(secret.len() + 32);
    out.extend_from_slice(b"k8s\0");
    put_bytes(&mut out, 1, &type_meta);
    put_bytes(&mut out, 2, &secret);
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    out
}

/// Data length that makes the whole plaintext about `target` bytes.
fn data_len_for(target: usize) -> usize {
    let probe = 1024;
    let overhead = secret_plaintext("bench-ns-000", "secret-0000000", 0, probe).len() - probe;
    target.saturating_sub(overhead).max(1)
}

struct Totals {
    key_bytes: u64,
    value_bytes: u64,
    plaintext_bytes: u64,
    per_entry: Vec<u64>,
}

async fn connect(args: &Args) -> Result<Client> {
    let ca = std::fs::read(&args.cacert)
        .with_context(|| format!("reading --cacert {}", args.cacert.display()))?;
    let cert = std::fs::read(&args.cert)
        .with_context(|| format!("reading --cert {}", args.cert.display()))?;
    let key = Zeroizing::new(
        std::fs::read(&args.key)
            .with_context(|| format!("reading --key {}", args.key.display()))?,
    );
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key.as_slice()));
    let endpoints: Vec<String> = args.endpoints.split(',').map(str::to_owned).collect();
    Client::connect(endpoints, Some(ConnectOptions::new().with_tls(tls)))
        .await
        .with_context(|| format!("connecting to etcd at {}", args.endpoints))
}

/// Write objects `[from, to)` in transactions of `batch` puts (split at ~1 MiB).
async fn write_range(
    client: Client,
    args: Arc<Args>,
    mix: Arc<Vec<MixEntry>>,
    data_len: usize,
    ranges: Vec<(u64, u64)>,
) -> Result<Totals> {
    let mut kv = client.kv_client();
    let mut totals = Totals {
        key_bytes: 0,
        value_bytes: 0,
        plaintext_bytes: 0,
        per_entry: vec![0; mix.len()],
    };
    for (from, to) in ranges {
        let mut ops = Vec::with_capacity(args.batch);
        let mut bytes = 0usize;
        for i in from..to {
            let ns = format!("bench-ns-{:03}", i % args.namespaces.max(1));
            let name = format!("secret-{i:07}");
            let key = format!("{}/secrets/{ns}/{name}", args.prefix.trim_end_matches('/'));
            let plaintext = secret_plaintext(&ns, &name, i, data_len);
            let idx = pick(&mix, i);
            let value = mix[idx].encoder.encode(key.as_bytes(), &plaintext)?;
            totals.key_bytes += key.len() as u64;
            totals.value_bytes += value.len() as u64;
            totals.plaintext_bytes += plaintext.len() as u64;
            totals.per_entry[idx] += 1;
            bytes += key.len() + value.len();
            ops.push(TxnOp::put(key, value, None));
            if bytes > 1 << 20 {
                let batch = std::mem::take(&mut ops);
                kv.txn(Txn::new().and_then(batch))
                    .await
                    .context("etcd txn")?;
                bytes = 0;
            }
        }
        if !ops.is_empty() {
            kv.txn(Txn::new().and_then(ops)).await.context("etcd txn")?;
        }
    }
    Ok(totals)
}

/// The paginated-read baseline: ranges of `limit` keys at the first page's revision, each next
/// page starting at the last key + `\0`, values counted and dropped.
async fn read_pages(client: Client, prefix: &str, limit: i64) -> Result<()> {
    let mut kv = client.kv_client().max_decoding_message_size(256 << 20);
    let prefix = format!("{}/", prefix.trim_end_matches('/'));
    let mut end = prefix.clone().into_bytes();
    if let Some(last) = end.last_mut() {
        *last += 1; // '/' + 1 = '0': the end of the prefix range
    }
    let started = Instant::now();
    let mut start = prefix.into_bytes();
    let (mut keys, mut bytes, mut pages, mut revision) = (0u64, 0u64, 0u64, 0i64);
    loop {
        let mut opts = GetOptions::new()
            .with_range(end.clone())
            .with_limit(limit.max(1));
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let resp = kv
            .get(start.clone(), Some(opts))
            .await
            .context("etcd range")?;
        if revision == 0 {
            revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        }
        pages += 1;
        for kvp in resp.kvs() {
            keys += 1;
            bytes += (kvp.key().len() + kvp.value().len()) as u64;
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => break,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let report = serde_json::json!({
        "mode": "read-pages",
        "page_keys": limit,
        "pages": pages,
        "revision": revision,
        "keys": keys,
        "bytes": bytes,
        "elapsed_s": elapsed,
        "objects_per_s": if elapsed > 0.0 { keys as f64 / elapsed } else { 0.0 },
    });
    println!("{report}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let mix = Arc::new(parse_mix(&args.mix)?);
    let batch = args.batch.clamp(1, 10_000) as u64;
    let concurrency = args.concurrency.clamp(1, 64);
    let data_len = data_len_for(args.value_size);
    let client = connect(&args).await?;
    if let Some(limit) = args.read_pages {
        return read_pages(client, &args.prefix, limit).await;
    }
    let started = Instant::now();

    // Batches are dealt round-robin to the workers so the keyspace fills evenly.
    let mut plans: Vec<Vec<(u64, u64)>> = vec![Vec::new(); concurrency];
    let end = args.start + args.objects;
    let mut from = args.start;
    let mut n = 0usize;
    while from < end {
        let to = (from + batch).min(end);
        plans[n % concurrency].push((from, to));
        from = to;
        n += 1;
    }
    let mut set = tokio::task::JoinSet::new();
    for plan in plans {
        set.spawn(write_range(
            client.clone(),
            args.clone(),
            mix.clone(),
            data_len,
            plan,
        ));
    }
    let mut totals = Totals {
        key_bytes: 0,
        value_bytes: 0,
        plaintext_bytes: 0,
        per_entry: vec![0; mix.len()],
    };
    while let Some(res) = set.join_next().await {
        let t = res.context("loader worker panicked")??;
        totals.key_bytes += t.key_bytes;
        totals.value_bytes += t.value_bytes;
        totals.plaintext_bytes += t.plaintext_bytes;
        for (a, b) in totals.per_entry.iter_mut().zip(t.per_entry) {
            *a += b;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_entry: serde_json::Map<String, serde_json::Value> = mix
        .iter()
        .zip(&totals.per_entry)
        .map(|(e, c)| (e.label.clone(), serde_json::Value::from(*c)))
        .collect();
    let report = serde_json::json!({
        "objects": args.objects,
        "key_bytes": totals.key_bytes,
        "value_bytes": totals.value_bytes,
        "plaintext_bytes": totals.plaintext_bytes,
        "per_entry": per_entry,
        "elapsed_s": elapsed,
        "objects_per_s": if elapsed > 0.0 { args.objects as f64 / elapsed } else { 0.0 },
    });
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_has_envelope_and_target_size() {
        let len = data_len_for(2048);
        let p = secret_plaintext("bench-ns-001", "secret-0000001", 1, len);
        assert!(p.starts_with(b"k8s\0\x0a\x0c\x0a\x02v1\x12\x06Secret"));
        assert!((2040..=2056).contains(&p.len()), "len {}", p.len());
    }

    #[test]
    fn mix_is_exact() {
        let mix = parse_mix("identity:1,identity:3").unwrap();
        let counts = (0..400).fold([0u32; 2], |mut c, i| {
            c[pick(&mix, i)] += 1;
            c
        });
        assert_eq!(counts, [100, 300]);
    }
}
