//! Test PKI made with rcgen: a CA, a server certificate (IP SAN 127.0.0.1 and DNS localhost,
//! or without the IP SAN to test the mismatch error) and a client certificate, written as PEM
//! files into a directory. Everything is generated per test: nothing is committed.
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// What the generated server certificate looks like.
#[derive(Clone, Debug)]
pub struct CertOptions {
    /// Put `127.0.0.1` in the server certificate's SANs (false: only DNS `localhost`).
    pub server_ip_san: bool,
    /// Make the server certificate one that expired yesterday.
    pub server_expired: bool,
}

impl Default for CertOptions {
    fn default() -> Self {
        CertOptions {
            server_ip_san: true,
            server_expired: false,
        }
    }
}

/// A CA with one server and one client certificate, as PEM files in `dir`.
pub struct Certs {
    pub dir: PathBuf,
    /// CA certificate (what `--cacert` / `--trusted-ca-file` take).
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate (`--cert`).
    pub client_cert: PathBuf,
    /// Client private key (`--key`, PKCS#8 ECDSA P-256).
    pub client_key: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Certs {
    /// A fresh CA, server and client certificate in `dir` (created if missing).
    pub fn generate(dir: &Path) -> Certs {
        Certs::generate_with(dir, &CertOptions::default())
    }

    pub fn generate_with(dir: &Path, opts: &CertOptions) -> Certs {
        std::fs::create_dir_all(dir).expect("create cert dir");
        let (ca_pem, issuer) = new_ca("atrest test CA");
        let ca = write(dir, "ca.pem", &ca_pem);

        let mut server_sans = vec!["localhost".to_string()];
        if opts.server_ip_san {
            server_sans.push("127.0.0.1".to_string());
        }
        let (server_cert_pem, server_key_pem) = new_leaf(
            &issuer,
            "etcd-server",
            server_sans,
            opts.server_expired,
            // etcd 3.4's gRPC gateway dials itself with the server certificate, so it is also
            // a client certificate (kubeadm's etcd server certs are too).
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let server_cert = write(dir, "server.pem", &server_cert_pem);
        let server_key = write(dir, "server-key.pem", &server_key_pem);

        let certs = Certs {
            dir: dir.to_path_buf(),
            ca,
            server_cert,
            server_key,
            client_cert: PathBuf::new(),
            client_key: PathBuf::new(),
            issuer,
        };
        let (client_cert, client_key) = certs.issue_client("client", "atrest-client");
        Certs {
            client_cert,
            client_key,
            ..certs
        }
    }

    /// Another client certificate signed by this CA, written as `<file_stem>.pem` and
    /// `<file_stem>-key.pem`; `common_name` is what etcd maps to a user when auth is on.
    pub fn issue_client(&self, file_stem: &str, common_name: &str) -> (PathBuf, PathBuf) {
        let (cert_pem, key_pem) = new_leaf(
            &self.issuer,
            common_name,
            vec![common_name.to_string()],
            false,
            &[ExtendedKeyUsagePurpose::ClientAuth],
        );
        (
            write(&self.dir, &format!("{file_stem}.pem"), &cert_pem),
            write(&self.dir, &format!("{file_stem}-key.pem"), &key_pem),
        )
    }

    /// A complete, unrelated PKI (its own CA) in `dir`: use its `ca` as a *wrong CA*, or its
    /// client certificate as one etcd does not trust.
    pub fn unrelated(dir: &Path) -> Certs {
        Certs::generate(dir)
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-sign CA");
    (cert.pem(), Issuer::new(params, key))
}

fn new_leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    sans: Vec<String>,
    expired: bool,
    ekus: &[ExtendedKeyUsagePurpose],
) -> (String, String) {
    let mut params = CertificateParams::new(sans).expect("leaf params");
    if expired {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = ekus.to_vec();
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
