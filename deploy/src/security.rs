//! How the roles' links are secured: TLS 1.3 with certificates bound to roles, or
//! plaintext TCP behind an explicit `--insecure`.
//!
//! Each role has its own CA ([`crate::keys`]), and each end trusts, per link, only
//! the CA of the role it expects: the issuer is the role.
//!
//! * The client verifies the server against `server-ca.pem` and the dealer against
//!   `dealer-ca.pem` (their names must also match the addresses it dials). It is
//!   anonymous unless it holds a client certificate, which it shows servers only.
//! * The server presents its certificate to clients, and the same one to the dealer
//!   as a TLS client certificate: that is how the dealer knows a registration comes
//!   from a server, and which one. It verifies the dealer against `dealer-ca.pem`.
//! * The dealer accepts connections with or without a client certificate; one that
//!   is presented must chain to `server-ca.pem`. Only such a peer may register models.
//!
//! Each role also checks its own certificate when it loads it, so a dealer started
//! with a server's key stops with a message instead of being refused by every peer.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptpeft_types::NetworkProfile;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use cryptpeft_private_eval::transport::{self, FramedChannel, TransportConfig, TransportError};

use crate::tls::{Link, TlsStream};

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
    /// The certificate and key file stem in a keys directory, and the role's CA's.
    fn stem(self) -> &'static str {
        match self {
            Role::Dealer => "dealer",
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.stem())
    }
}

/// Whom a role dials: the dealer (client, server) or a server (client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Dealer,
    Server,
}

impl Peer {
    fn role(self) -> Role {
        match self {
            Peer::Dealer => Role::Dealer,
            Peer::Server => Role::Server,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("reading {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(
        "{path}: keys from before certificates were bound to roles (one ca.pem for every \
         role, so any server's key could act as the dealer); they are refused. Make new ones \
         with `cryptpeft keys --out NEW_DIR --host ...` and give each machine its files"
    )]
    Unbound { path: PathBuf },
}

/// The role CAs a role trusts (PEM certificates, each a list of DER ones).
#[derive(Clone)]
pub struct Trust {
    pub dealer_ca: Vec<CertificateDer<'static>>,
    pub server_ca: Vec<CertificateDer<'static>>,
    /// Only servers need it, to verify clients that present a certificate.
    pub client_ca: Option<Vec<CertificateDer<'static>>>,
}

impl Trust {
    fn of(&self, role: Role) -> Option<&[CertificateDer<'static>]> {
        match role {
            Role::Dealer => Some(&self.dealer_ca),
            Role::Server => Some(&self.server_ca),
            Role::Client => self.client_ca.as_deref(),
        }
    }
}

/// A role's TLS settings, built once.
pub struct Tls {
    /// Dialling the dealer: trusts `dealer-ca.pem` only.
    to_dealer: Arc<ClientConfig>,
    /// Dialling a server: trusts `server-ca.pem` only.
    to_server: Arc<ClientConfig>,
    server: Option<Arc<ServerConfig>>,
}

/// Whether links are encrypted and authenticated.
#[derive(Clone, Default)]
pub enum Security {
    /// No choice made: every connection is refused, saying so. What a library
    /// user gets by default, so that forgetting the keys never means plaintext.
    #[default]
    Unset,
    /// Plaintext TCP: anyone on the network reads and alters everything. For
    /// benchmarks and tests only.
    Insecure,
    Tls(Arc<Tls>),
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Security::Unset => "Unset",
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

fn roots(ca: &[CertificateDer<'static>], what: &str) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots
            .add(c.clone())
            .map_err(|e| format!("{what}-ca.pem: {e}"))?;
    }
    Ok(Arc::new(roots))
}

/// Checks that `chain` is a certificate of `role`: issued by the role's CA, for the
/// role's use (a dealer's and a server's for TLS servers, a client's for clients).
fn check_own(chain: &[CertificateDer<'static>], role: Role, trust: &Trust) -> Result<(), String> {
    let stem = role.stem();
    let ca = trust
        .of(role)
        .ok_or_else(|| format!("{stem}.pem: no {stem}-ca.pem to check it against"))?;
    let anchors = ca
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{stem}-ca.pem: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{stem}.pem: no certificate"))?;
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("{stem}.pem: {e}"))?;
    let usage = match role {
        Role::Client => webpki::KeyUsage::client_auth(),
        _ => webpki::KeyUsage::server_auth(),
    };
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &chain[1..],
        UnixTime::now(),
        usage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| {
        format!(
            "{stem}.pem is not a {stem} certificate of this deployment ({e}): a {stem} \
             takes the {stem}.pem and {stem}.key that `cryptpeft keys` issued with {stem}-ca.pem"
        )
    })
}

impl Tls {
    /// Builds a role's settings from the role CAs and the role's own certificate chain
    /// and key (none for an anonymous client). With `known_clients`, a server admits
    /// only clients with a certificate from `client-ca.pem`.
    pub fn new(
        trust: Trust,
        own: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        role: Role,
    ) -> Result<Self, String> {
        Self::with_options(trust, own, role, false)
    }

    pub fn with_options(
        trust: Trust,
        own: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        role: Role,
        known_clients: bool,
    ) -> Result<Self, String> {
        if let Some((chain, _)) = &own {
            check_own(chain, role, &trust)?;
        } else if role != Role::Client {
            return Err(format!("a {role} needs its certificate and key"));
        }
        let versions = &[&rustls::version::TLS13];
        // Dialling a peer of `peer`'s role, showing `cert` if this role shows it one.
        let dial = |peer: Role, shows: bool| -> Result<Arc<ClientConfig>, String> {
            let ca = trust.of(peer).ok_or("no CA for the peer")?;
            let builder = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots(ca, peer.stem())?);
            let config = match (&own, shows) {
                (Some((chain, key)), true) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(|e| format!("certificate and key: {e}"))?,
                _ => builder.with_no_client_auth(),
            };
            Ok(Arc::new(config))
        };
        let to_dealer = dial(Role::Dealer, role == Role::Server)?;
        let to_server = dial(Role::Server, role == Role::Client)?;
        let server = match (own, role) {
            (Some((chain, key)), Role::Dealer | Role::Server) => {
                let builder = ServerConfig::builder_with_provider(provider())
                    .with_protocol_versions(versions)
                    .map_err(|e| e.to_string())?;
                // The dealer verifies servers; a server, clients that show a certificate.
                let (peer, required) = match role {
                    Role::Dealer => (Some(Role::Server), false),
                    _ => (
                        trust.client_ca.as_ref().map(|_| Role::Client),
                        known_clients,
                    ),
                };
                let builder = match peer {
                    Some(peer) => {
                        let ca = trust.of(peer).expect("checked above");
                        let v = WebPkiClientVerifier::builder_with_provider(
                            roots(ca, peer.stem())?,
                            provider(),
                        );
                        let v = match required {
                            true => v,
                            false => v.allow_unauthenticated(),
                        };
                        builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
                    }
                    None if known_clients => {
                        return Err("--known-clients needs client-ca.pem".into())
                    }
                    None => builder.with_no_client_auth(),
                };
                let mut config = builder
                    .with_single_cert(chain, key)
                    .map_err(|e| format!("certificate and key: {e}"))?;
                // Every connection handshakes afresh: no resumption tickets to send.
                config.send_tls13_tickets = 0;
                Some(Arc::new(config))
            }
            _ => None,
        };
        Ok(Tls {
            to_dealer,
            to_server,
            server,
        })
    }
}

/// Largest frame read from a peer before it is authenticated and its session known.
pub use cryptpeft_private_eval::transport::PRE_AUTH_FRAME;

impl Security {
    /// Loads a role's files from a directory made by `cryptpeft keys`: the role CAs
    /// (`dealer-ca.pem`, `server-ca.pem`, `client-ca.pem` if there), and the role's
    /// `dealer.pem`/`.key` or `server.pem`/`.key` (a client's `client.pem`/`.key`
    /// if it has them). Keys from before roles were bound are refused.
    pub fn from_dir(dir: &Path, role: Role) -> Result<Self, SecurityError> {
        Self::from_dir_with(dir, role, false)
    }

    /// [`from_dir`](Security::from_dir); with `known_clients` a server admits only
    /// clients with a certificate from `client-ca.pem`.
    pub fn from_dir_with(
        dir: &Path,
        role: Role,
        known_clients: bool,
    ) -> Result<Self, SecurityError> {
        if dir.join("ca.pem").exists() && !dir.join("dealer-ca.pem").exists() {
            return Err(SecurityError::Unbound { path: dir.into() });
        }
        let client_ca = dir.join("client-ca.pem");
        let trust = Trust {
            dealer_ca: read_certs(&dir.join("dealer-ca.pem"))?,
            server_ca: read_certs(&dir.join("server-ca.pem"))?,
            client_ca: match client_ca.exists() {
                true => Some(read_certs(&client_ca)?),
                false => None,
            },
        };
        let stem = role.stem();
        let cert = dir.join(format!("{stem}.pem"));
        let own = match role == Role::Client && !cert.exists() {
            true => None,
            false => {
                let chain = read_certs(&cert)?;
                let key = read_key(&dir.join(format!("{stem}.key")))?;
                Some((chain, key))
            }
        };
        let tls = Tls::with_options(trust, own, role, known_clients).map_err(|reason| {
            SecurityError::Config {
                path: dir.into(),
                reason,
            }
        })?;
        Ok(Security::Tls(Arc::new(tls)))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Security::Tls(_))
    }

    fn unset(addr: &str) -> TransportError {
        handshake_error(
            addr,
            None,
            std::io::Error::other(
                "no link security chosen: load the role's keys (Security::from_dir) or, \
                 for benchmarks on a trusted machine, choose Security::Insecure",
            ),
        )
    }

    /// Dials `addr`, where a `peer` listens, and, under TLS, verifies that its
    /// certificate is of that role and names the host in `addr`.
    pub fn connect(
        &self,
        addr: &str,
        peer: Peer,
        session: u64,
        profile: NetworkProfile,
        config: TransportConfig,
        wait: Duration,
    ) -> Result<FramedChannel<Link>, TransportError> {
        let link = match self {
            Security::Unset => return Err(Self::unset(addr)),
            Security::Insecure => Link::Plain(transport::dial(addr, wait)?),
            Security::Tls(tls) => {
                let sock = transport::dial(addr, wait)?;
                let name = server_name(addr)?;
                let client = match peer {
                    Peer::Dealer => &tls.to_dealer,
                    Peer::Server => &tls.to_server,
                };
                let conn = ClientConnection::new(client.clone(), name)
                    .map_err(|e| handshake_error(addr, Some(peer), std::io::Error::other(e)))?;
                let deadline = Instant::now() + config.handshake_deadline.max(config.read_timeout);
                let (stream, _) = TlsStream::handshake(sock, conn, &profile, deadline)
                    .map_err(|e| handshake_error(addr, Some(peer), e))?;
                Link::Tls(stream)
            }
        };
        FramedChannel::new(link, session, profile, config)
    }

    /// Wraps an accepted connection; under TLS, runs the handshake and returns the
    /// fingerprint of the client certificate the peer presented, if any (verified
    /// against the CA of the role this end admits). The handshake and the first
    /// frame must complete within the handshake deadline, and until the role raises
    /// them ([`Channel::limit`](cryptpeft_private_eval::transport::Channel::limit)) frames are
    /// limited to [`PRE_AUTH_FRAME`] bytes.
    pub fn accept(
        &self,
        sock: TcpStream,
        peer: &str,
        profile: NetworkProfile,
        config: TransportConfig,
    ) -> Result<(FramedChannel<Link>, Option<Fingerprint>), TransportError> {
        use cryptpeft_private_eval::transport::Channel;
        let deadline = Instant::now() + config.handshake_deadline;
        sock.set_nodelay(true)
            .map_err(|e| TransportError::io("setting TCP_NODELAY", e))?;
        let (link, who) = match self {
            Security::Unset => return Err(Self::unset(peer)),
            Security::Insecure => (Link::Plain(sock), None),
            Security::Tls(tls) => {
                let server = tls.server.clone().ok_or_else(|| {
                    handshake_error(
                        peer,
                        None,
                        std::io::Error::other("this role has no certificate"),
                    )
                })?;
                let conn = ServerConnection::new(server)
                    .map_err(|e| handshake_error(peer, None, std::io::Error::other(e)))?;
                let (stream, cert) = TlsStream::handshake(sock, conn, &profile, deadline)
                    .map_err(|e| handshake_error(peer, None, e))?;
                (Link::Tls(stream), cert.map(|c| fingerprint(&c)))
            }
        };
        let mut chan = FramedChannel::new(link, 0, profile, config)?;
        chan.limit_all(PRE_AUTH_FRAME);
        chan.expect_by(deadline);
        Ok((chan, who))
    }
}

/// SHA-256 of a certificate's DER encoding.
pub fn fingerprint(cert: &CertificateDer<'_>) -> Fingerprint {
    let d = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// A failed handshake, said so that a certificate of the wrong role reads as one.
/// `role`: the role the peer at `peer` was expected to play, when we dialled it.
fn handshake_error(peer: &str, role: Option<Peer>, source: std::io::Error) -> TransportError {
    use std::io::ErrorKind::*;
    let refused = source
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            )
        });
    if let (true, Some(role)) = (refused, role) {
        let role = role.role();
        return TransportError::Handshake {
            peer: peer.to_string(),
            source: std::io::Error::new(
                InvalidData,
                format!(
                    "its certificate is not issued by {role}-ca.pem, so it is not this \
                     deployment's {role} (another role's key, or another deployment's)"
                ),
            ),
        };
    }
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
            None,
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
