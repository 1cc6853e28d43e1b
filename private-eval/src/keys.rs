//! A deployment's certificates (rcgen): one CA, and a certificate for the dealer
//! and one for the server, each naming the hosts it is reached at. What
//! `cryptpeft keys` writes; the tests and the demo make theirs in memory.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::security::{Role, Security, Tls};

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Everything `cryptpeft keys` makes.
pub struct Deployment {
    pub ca: Pair,
    pub dealer: Pair,
    /// One certificate per server machine; each registers its own models.
    pub servers: Vec<Pair>,
}

impl Deployment {
    /// A fresh CA, a dealer certificate and `servers` server certificates, all valid
    /// for `hosts` (names or IP addresses the clients dial).
    pub fn generate(hosts: &[String], servers: usize) -> Result<Self, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "cryptpeft deployment CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let leaf = |name: &str, ekus: Vec<ExtendedKeyUsagePurpose>| -> Result<Pair, rcgen::Error> {
            let mut params = CertificateParams::new(hosts.to_vec())?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = ekus;
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            Ok(Pair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        };
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        Ok(Deployment {
            dealer: leaf("cryptpeft dealer", vec![ServerAuth])?,
            // A server is also the dealer's TLS client: that is how it proves itself.
            servers: (1..=servers.max(1))
                .map(|i| {
                    leaf(
                        &format!("cryptpeft server {i}"),
                        vec![ServerAuth, ClientAuth],
                    )
                })
                .collect::<Result<_, _>>()?,
            ca: Pair {
                cert_pem: ca.pem(),
                key_pem: ca_key_pem,
            },
        })
    }

    /// Writes `ca.pem`, `ca.key`, `dealer.pem`, `dealer.key`, `server.pem`,
    /// `server.key` (then `server-2.pem`, ... for more servers) into `dir`; private
    /// keys are readable by the owner only.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let servers = self.servers.iter().enumerate().map(|(i, p)| match i {
            0 => ("server".to_string(), p),
            _ => (format!("server-{}", i + 1), p),
        });
        let all = [
            ("ca".to_string(), &self.ca),
            ("dealer".to_string(), &self.dealer),
        ];
        for (stem, pair) in all.into_iter().chain(servers) {
            std::fs::write(dir.join(format!("{stem}.pem")), &pair.cert_pem)?;
            write_private(&dir.join(format!("{stem}.key")), &pair.key_pem)?;
        }
        Ok(())
    }

    /// The settings of one role, straight from memory (the first server's for
    /// `Role::Server`).
    pub fn security(&self, role: Role) -> Security {
        self.security_of(role, 0)
    }

    /// The settings of server `i` (or of the dealer or a client).
    pub fn security_of(&self, role: Role, i: usize) -> Security {
        let own = match role {
            Role::Dealer => Some(&self.dealer),
            Role::Server => Some(&self.servers[i]),
            Role::Client => None,
        };
        let pem = |p: &Pair| {
            let chain = CertificateDer::pem_slice_iter(p.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("generated PEM");
            let key = PrivateKeyDer::from_pem_slice(p.key_pem.as_bytes()).expect("generated PEM");
            (chain, key)
        };
        let (ca, _) = pem(&self.ca);
        let tls = Tls::new(ca, own.map(pem), role).expect("generated certificates are valid");
        Security::Tls(std::sync::Arc::new(tls))
    }
}

fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(pem.as_bytes())
}
