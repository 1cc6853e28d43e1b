//! A deployment's certificates (rcgen): one CA per role, so that a certificate says
//! by its issuer which role its holder plays. A peer trusts, for each link, only the
//! CA of the role it expects at the other end: a server's key cannot pose as the
//! dealer (its certificate does not chain to `dealer-ca.pem`), nor the dealer's as a
//! server, nor a client's as either. Standard tooling checks the same thing
//! (`openssl verify -CAfile dealer-ca.pem dealer.pem`). What `cryptpeft keys` writes;
//! the tests and the demo make theirs in memory.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::security::{Role, Security, Tls, Trust};

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Everything `cryptpeft keys` makes.
pub struct Deployment {
    /// The issuers, one per role; their keys stay offline.
    pub dealer_ca: Pair,
    pub server_ca: Pair,
    pub client_ca: Pair,
    pub dealer: Pair,
    /// One certificate per server machine; each registers its own models.
    pub servers: Vec<Pair>,
    /// Client certificates, for servers that admit only known clients.
    pub clients: Vec<Pair>,
}

/// A role's CA: it signs that role's certificates and nothing else.
fn role_ca(role: &str) -> Result<(CertifiedIssuer<'static, KeyPair>, Pair), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, format!("cryptpeft {role} CA"));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let key_pem = key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(params, key)?;
    let pair = Pair {
        cert_pem: ca.pem(),
        key_pem,
    };
    Ok((ca, pair))
}

/// A leaf certificate for `names` (none for a client), signed by its role's CA.
fn leaf(
    ca: &CertifiedIssuer<'_, KeyPair>,
    cn: &str,
    names: &[String],
    ekus: Vec<ExtendedKeyUsagePurpose>,
) -> Result<Pair, rcgen::Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = ekus;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl Deployment {
    /// Fresh role CAs, a dealer certificate, `servers` server certificates (valid for
    /// `hosts`, the names or IP addresses clients dial) and `clients` client certificates.
    pub fn generate(hosts: &[String], servers: usize) -> Result<Self, rcgen::Error> {
        Self::generate_with_clients(hosts, servers, 0)
    }

    pub fn generate_with_clients(
        hosts: &[String],
        servers: usize,
        clients: usize,
    ) -> Result<Self, rcgen::Error> {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let (dealer_ca, dealer_ca_pair) = role_ca("dealer")?;
        let (server_ca, server_ca_pair) = role_ca("server")?;
        let (client_ca, client_ca_pair) = role_ca("client")?;
        Ok(Deployment {
            dealer: leaf(&dealer_ca, "cryptpeft dealer", hosts, vec![ServerAuth])?,
            // A server is also the dealer's TLS client: that is how it proves itself.
            servers: (1..=servers.max(1))
                .map(|i| {
                    let cn = format!("cryptpeft server {i}");
                    leaf(&server_ca, &cn, hosts, vec![ServerAuth, ClientAuth])
                })
                .collect::<Result<_, _>>()?,
            clients: (1..=clients)
                .map(|i| {
                    leaf(
                        &client_ca,
                        &format!("cryptpeft client {i}"),
                        &[],
                        vec![ClientAuth],
                    )
                })
                .collect::<Result<_, _>>()?,
            dealer_ca: dealer_ca_pair,
            server_ca: server_ca_pair,
            client_ca: client_ca_pair,
        })
    }

    /// Writes `dealer-ca.pem`, `server-ca.pem`, `client-ca.pem` (and their `.key`s),
    /// `dealer.pem`/`.key`, `server.pem`/`.key` (then `server-2.*`, ...), and
    /// `client.pem`/`.key` (then `client-2.*`, ...) into `dir`; private keys are
    /// readable by the owner only.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        fn numbered<'a>(stem: &str, pairs: &'a [Pair]) -> Vec<(String, &'a Pair)> {
            let name = |i: usize| match i {
                0 => stem.to_string(),
                _ => format!("{stem}-{}", i + 1),
            };
            pairs
                .iter()
                .enumerate()
                .map(|(i, p)| (name(i), p))
                .collect()
        }
        let cas = [
            ("dealer-ca".to_string(), &self.dealer_ca),
            ("server-ca".to_string(), &self.server_ca),
            ("client-ca".to_string(), &self.client_ca),
            ("dealer".to_string(), &self.dealer),
        ];
        let leaves = numbered("server", &self.servers)
            .into_iter()
            .chain(numbered("client", &self.clients));
        for (stem, pair) in cas.into_iter().chain(leaves) {
            std::fs::write(dir.join(format!("{stem}.pem")), &pair.cert_pem)?;
            write_private(&dir.join(format!("{stem}.key")), &pair.key_pem)?;
        }
        Ok(())
    }

    /// The settings of one role, straight from memory (the first server's for
    /// `Role::Server`; an anonymous client for `Role::Client`).
    pub fn security(&self, role: Role) -> Security {
        self.security_of(role, 0)
    }

    /// The settings of server `i` (or of the dealer, or of a client: anonymous,
    /// holding no certificate).
    pub fn security_of(&self, role: Role, i: usize) -> Security {
        let own = match role {
            Role::Dealer => Some(&self.dealer),
            Role::Server => Some(&self.servers[i]),
            Role::Client => None,
        };
        self.security_with(role, own)
    }

    /// The settings of client `i`, presenting its certificate to servers.
    pub fn known_client(&self, i: usize) -> Security {
        self.security_with(Role::Client, Some(&self.clients[i]))
    }

    /// The settings of `role` holding `own` (any pair: tests pose as other roles).
    pub fn security_with(&self, role: Role, own: Option<&Pair>) -> Security {
        let tls =
            Tls::new(self.trust(), own.map(pem), role).expect("generated certificates are valid");
        Security::Tls(std::sync::Arc::new(tls))
    }

    /// What every role trusts: the three role CAs.
    pub fn trust(&self) -> Trust {
        Trust {
            dealer_ca: pem(&self.dealer_ca).0,
            server_ca: pem(&self.server_ca).0,
            client_ca: Some(pem(&self.client_ca).0),
        }
    }
}

fn pem(p: &Pair) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = CertificateDer::pem_slice_iter(p.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("generated PEM");
    let key = PrivateKeyDer::from_pem_slice(p.key_pem.as_bytes()).expect("generated PEM");
    (chain, key)
}

/// Writes a private key readable by its owner only, also over an existing file
/// (whose mode `open` would keep).
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_private_even_over_an_existing_file() {
        let dir = std::env::temp_dir().join(format!("cryptpeft-keymode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dealer.key");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
