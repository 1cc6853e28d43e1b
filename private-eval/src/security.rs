//! How the roles' links are secured: TLS 1.3 with certificates from one
//! deployment CA, or plaintext TCP behind an explicit `--insecure`.
//!
//! * The client verifies the server's and the dealer's certificates (their names
//!   must match the addresses it dials) and presents none: clients are anonymous.
//! * The server presents its certificate to clients, and the same one to the dealer
//!   as a TLS client certificate: that is how the dealer knows a registration comes
//!   from a server, and which one.
//! * The dealer accepts connections with or without a client certificate; one that
//!   is presented must chain to the CA. Only such a peer may register models.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cryptpeft_types::NetworkProfile;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::transport::{self, FramedChannel, Link, TlsStream, TransportConfig, TransportError};

/// SHA-256 of a peer's verified end-entity certificate: who it is.
pub type Fingerprint = [u8; 32];

/// The three roles, each with its own files in a keys directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Dealer,
    Server,
    Client,
}

impl Role {
    /// The certificate and key file stems in a keys directory (the client has none).
    fn stem(self) -> Option<&'static str> {
        match self {
            Role::Dealer => Some("dealer"),
            Role::Server => Some("server"),
            Role::Client => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("reading {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
}

/// A role's TLS settings, built once.
pub struct Tls {
    client: Arc<ClientConfig>,
    server: Option<Arc<ServerConfig>>,
}

/// Whether links are encrypted and authenticated.
#[derive(Clone)]
pub enum Security {
    /// Plaintext TCP: anyone on the network reads and alters everything. For
    /// benchmarks and tests only.
    Insecure,
    Tls(Arc<Tls>),
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Security::Insecure => "Insecure",
            Security::Tls(_) => "Tls",
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| SecurityError::File {
            path: path.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(SecurityError::File {
            path: path.into(),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| SecurityError::File {
        path: path.into(),
        reason: e.to_string(),
    })
}

impl Tls {
    /// Builds a role's settings from the CA's certificate and the role's own
    /// certificate chain and key (none for the client).
    pub fn new(
        ca: Vec<CertificateDer<'static>>,
        own: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        role: Role,
    ) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c).map_err(|e| format!("CA certificate: {e}"))?;
        }
        let roots = Arc::new(roots);
        let versions = &[&rustls::version::TLS13];
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone());
        let client = match (&own, role) {
            (Some((chain, key)), Role::Server) => client
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("certificate and key: {e}"))?,
            _ => client.with_no_client_auth(),
        };
        let server = match own {
            None => None,
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(provider())
                    .with_protocol_versions(versions)
                    .map_err(|e| e.to_string())?;
                let builder = if role == Role::Dealer {
                    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| e.to_string())?;
                    builder.with_client_cert_verifier(verifier)
                } else {
                    builder.with_no_client_auth()
                };
                let mut config = builder
                    .with_single_cert(chain, key)
                    .map_err(|e| format!("certificate and key: {e}"))?;
                // Every connection handshakes afresh: no resumption tickets to send.
                config.send_tls13_tickets = 0;
                Some(Arc::new(config))
            }
        };
        Ok(Tls {
            client: Arc::new(client),
            server,
        })
    }
}

impl Security {
    /// Loads a role's files from a directory made by `cryptpeft keys`: `ca.pem`,
    /// and `dealer.pem`/`dealer.key` or `server.pem`/`server.key`.
    pub fn from_dir(dir: &Path, role: Role) -> Result<Self, SecurityError> {
        let ca_path = dir.join("ca.pem");
        let ca = read_certs(&ca_path)?;
        let own = match role.stem() {
            None => None,
            Some(stem) => {
                let chain = read_certs(&dir.join(format!("{stem}.pem")))?;
                let key = read_key(&dir.join(format!("{stem}.key")))?;
                Some((chain, key))
            }
        };
        let tls = Tls::new(ca, own, role).map_err(|reason| SecurityError::Config {
            path: dir.into(),
            reason,
        })?;
        Ok(Security::Tls(Arc::new(tls)))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Security::Tls(_))
    }

    /// Dials `addr` and, under TLS, verifies that the peer's certificate names
    /// the host in `addr`.
    pub fn connect(
        &self,
        addr: &str,
        session: u64,
        profile: NetworkProfile,
        config: TransportConfig,
        wait: Duration,
    ) -> Result<FramedChannel<Link>, TransportError> {
        let sock = transport::dial(addr, wait)?;
        let link = match self {
            Security::Insecure => Link::Plain(sock),
            Security::Tls(tls) => {
                let name = server_name(addr)?;
                let conn = ClientConnection::new(tls.client.clone(), name)
                    .map_err(|e| handshake_error(addr, std::io::Error::other(e)))?;
                set_timeouts(&sock, config.read_timeout, addr)?;
                let (stream, _) = TlsStream::handshake(sock, conn, &profile)
                    .map_err(|e| handshake_error(addr, e))?;
                Link::Tls(stream)
            }
        };
        FramedChannel::new(link, session, profile, config)
    }

    /// Wraps an accepted connection; under TLS, runs the handshake (bounded by
    /// the transport timeout) and returns the fingerprint of the client
    /// certificate the peer presented, if any (verified against the CA).
    pub fn accept(
        &self,
        sock: TcpStream,
        peer: &str,
        profile: NetworkProfile,
        config: TransportConfig,
    ) -> Result<(FramedChannel<Link>, Option<Fingerprint>), TransportError> {
        sock.set_nodelay(true)
            .map_err(|e| TransportError::io("setting TCP_NODELAY", e))?;
        let (link, who) = match self {
            Security::Insecure => (Link::Plain(sock), None),
            Security::Tls(tls) => {
                let server = tls.server.clone().ok_or_else(|| {
                    handshake_error(peer, std::io::Error::other("this role has no certificate"))
                })?;
                let conn = ServerConnection::new(server)
                    .map_err(|e| handshake_error(peer, std::io::Error::other(e)))?;
                set_timeouts(&sock, config.read_timeout, peer)?;
                let (stream, cert) = TlsStream::handshake(sock, conn, &profile)
                    .map_err(|e| handshake_error(peer, e))?;
                (Link::Tls(stream), cert.map(|c| fingerprint(&c)))
            }
        };
        Ok((FramedChannel::new(link, 0, profile, config)?, who))
    }
}

/// SHA-256 of a certificate's DER encoding.
pub fn fingerprint(cert: &CertificateDer<'_>) -> Fingerprint {
    let d = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn set_timeouts(sock: &TcpStream, t: Duration, peer: &str) -> Result<(), TransportError> {
    let e = |e| TransportError::io(format!("configuring the socket to {peer}"), e);
    sock.set_read_timeout(Some(t)).map_err(e)?;
    sock.set_write_timeout(Some(t)).map_err(e)
}

fn handshake_error(peer: &str, source: std::io::Error) -> TransportError {
    use std::io::ErrorKind::*;
    match source.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof => {
            TransportError::PeerClosed {
                during: format!("in the TLS handshake with {peer}"),
            }
        }
        _ => TransportError::Handshake {
            peer: peer.to_string(),
            source,
        },
    }
}

/// The host part of `host:port` (IPv6 in brackets) as a name to verify.
fn server_name(addr: &str) -> Result<ServerName<'static>, TransportError> {
    let bad = |why: &str| {
        handshake_error(
            addr,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string()),
        )
    };
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .ok_or_else(|| bad("the address has no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| bad("the host is not a valid name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_from_addresses() {
        assert!(matches!(
            server_name("127.0.0.1:4000").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:4000").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("dealer.example:1").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("noport").is_err());
    }
}
