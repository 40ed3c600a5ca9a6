//! TLS for the native protocol: a server's certificate (reloadable while it serves) and what a
//! client trusts, built on rustls (TLS 1.2 and 1.3, 1.3 preferred; no OpenSSL).
//!
//! A server given a certificate speaks only TLS on its port: a plaintext client's first bytes
//! fail the handshake and that connection alone is closed. A client verifies the server's
//! certificate against the CA it was given and the name it dialled (or the name it was told);
//! [`ClientTls::insecure_skip_verify`] exists for tests and says so in its name.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mqcore::{Error, ErrorCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What a TLS session runs over: the TCP socket with a read buffer beneath TLS. rustls asks for
/// at most 4 KiB per read, so without it a stream of small messages costs a system call every
/// few of them; with it, one read takes what the socket holds (up to 64 KiB). Writes go straight
/// through.
pub type Transport = tokio::io::BufReader<tokio::net::TcpStream>;

/// Puts a connected socket under [`Transport`]'s read buffer.
pub(crate) fn transport(stream: tokio::net::TcpStream) -> Transport {
    tokio::io::BufReader::with_capacity(64 * 1024, stream)
}

/// The ALPN name of the native protocol, offered by clients and required by servers.
pub const ALPN: &[u8] = b"mqemu/1";

fn bad_file(what: &str, path: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::InvalidParameter,
        format!("TLS {what} {}: {why}", path.display()),
    )
}

/// ring, which builds with a C compiler alone (aws-lc-rs, rustls's default, needs CMake); its
/// key exchanges are classical ones (X25519, P-256, P-384), without the post-quantum hybrid.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates in a PEM file, at least one.
fn certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad_file(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_file(what, path, e))?;
    if certs.is_empty() {
        return Err(bad_file(what, path, "no certificate in it"));
    }
    Ok(certs)
}

/// The CA certificates in a PEM file, as trust roots.
fn roots(what: &str, path: &Path) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(what, path)? {
        roots.add(cert).map_err(|e| bad_file(what, path, e))?;
    }
    Ok(roots)
}

/// The names a client certificate claims: its subject's common names, then its DNS and e-mail
/// alternative names. Empty for a certificate that does not parse (it was verified, so that
/// does not happen, but it then names no user).
pub(crate) fn names_of(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, x)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = x
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d)
                | x509_parser::extensions::GeneralName::RFC822Name(d) => {
                    names.push((*d).to_owned())
                }
                _ => {}
            }
        }
    }
    names
}

/// Where a server's certificate chain and key are (PEM files), read again on
/// [`ServerTls::reload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates whose client certificates log in as the user that names them
    /// ([`crate::User::certificate`]); connections without one still log in by token.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let chain = certificates("certificate", &self.cert)?;
        let key =
            PrivateKeyDer::from_pem_file(&self.key).map_err(|e| bad_file("key", &self.key, e))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::new(ErrorCode::InvalidParameter, e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = roots("client CA file", ca)?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad_file("client CA file", ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| bad_file("certificate and key", &self.cert, e))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Arc::new(config))
    }
}

/// A server's TLS: the configuration every new connection is accepted with, replaced by
/// [`ServerTls::reload`] (a renewed certificate) without touching open connections. Clones share
/// it.
#[derive(Clone)]
pub struct ServerTls {
    files: TlsFiles,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the certificate and key; a missing or unreadable file, or a key that does not
    /// match, is MQ_ERROR_INVALID_PARAMETER naming it.
    pub fn load(files: TlsFiles) -> Result<ServerTls, Error> {
        let config = files.server_config()?;
        Ok(ServerTls {
            files,
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Reads the files again; new connections get the new certificate, open ones keep theirs.
    /// On an error the old configuration stays.
    pub fn reload(&self) -> Result<(), Error> {
        let config = self.files.server_config()?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// The acceptor for another protocol on the same certificate (HTTPS: `http/1.1`).
    #[cfg(feature = "http")]
    pub(crate) fn acceptor_for(&self, alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
        let mut config = (**self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
        .clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// What a client trusts, and the name it checks the server's certificate against.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
    /// The same trust for HTTPS (SRMP to `DIRECT=HTTPS://` names), which goes through ureq.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    https: ureq::tls::TlsConfig,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the CA certificates in the PEM file `ca`.
    pub fn with_ca(ca: &Path) -> Result<ClientTls, Error> {
        ClientTls::with_ca_and_certificate(ca, None)
    }

    /// Trusts `ca` and, with `identity` (a certificate chain and its key, PEM files), presents
    /// that certificate: a server with a client CA logs the connection in as the user it names.
    pub fn with_ca_and_certificate(
        ca: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, Error> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::new(ErrorCode::InvalidParameter, e.to_string()))?
            .with_root_certificates(roots("CA file", ca)?);
        let ca_certs: Vec<ureq::tls::Certificate<'static>> = certificates("CA file", ca)?
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let https = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&ca_certs));
        let (config, https) = match identity {
            None => (builder.with_no_client_auth(), https),
            Some((cert, key)) => {
                let chain = certificates("client certificate", cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad_file("client key", key, e))?;
                let https_chain: Vec<ureq::tls::Certificate<'static>> = chain
                    .iter()
                    .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                    .collect();
                let https_key = std::fs::read(key)
                    .map_err(|e| bad_file("client key", key, e))
                    .and_then(|pem| {
                        ureq::tls::PrivateKey::from_pem(&pem)
                            .map_err(|e| bad_file("client key", key, e))
                    })?;
                let config = builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| bad_file("client certificate and key", cert, e))?;
                let identity = ureq::tls::ClientCert::new_with_certs(&https_chain, https_key);
                (config, https.client_cert(Some(identity)))
            }
        };
        Ok(ClientTls::from_config(config, https))
    }

    /// Trusts any certificate: the connection is encrypted but the server is not authenticated,
    /// so anyone in the middle can read it. For tests only.
    pub fn insecure_skip_verify() -> ClientTls {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider())))
            .with_no_client_auth();
        let https = ureq::tls::TlsConfig::builder().disable_verification(true);
        ClientTls::from_config(config, https)
    }

    fn from_config(
        mut config: rustls::ClientConfig,
        https: ureq::tls::TlsConfigBuilder,
    ) -> ClientTls {
        config.alpn_protocols = vec![ALPN.to_vec()];
        ClientTls {
            config: Arc::new(config),
            server_name: None,
            https: https
                .provider(ureq::tls::TlsProvider::Rustls)
                .unversioned_rustls_crypto_provider(provider())
                .build(),
        }
    }

    /// The same trust as ureq's TLS settings, for HTTPS destinations.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn https(&self) -> ureq::tls::TlsConfig {
        self.https.clone()
    }

    /// Checks the server's certificate against `name` unless a name was set already: a
    /// transfer link names the computer its format names give, a cluster client the virtual
    /// server it asked for.
    pub fn or_server_name(&self, name: &str) -> ClientTls {
        let mut t = self.clone();
        if t.server_name.is_none() {
            t.server_name = Some(name.to_owned());
        }
        t
    }

    /// Checks the server's certificate against `name` instead of the host dialled.
    pub fn server_name(mut self, name: impl Into<String>) -> ClientTls {
        self.server_name = Some(name.into());
        self
    }

    /// Wraps a connected stream to `addr` (`host:port`), verifying the server.
    pub(crate) async fn connect(
        &self,
        addr: &str,
        stream: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<Transport>, Error> {
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => host_of(addr).to_owned(),
        };
        let name = ServerName::try_from(host.clone()).map_err(|e| {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("TLS server name {host:?}: {e}"),
            )
        })?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, transport(stream))
            .await
            .map_err(|e| {
                Error::new(
                    ErrorCode::RemoteMachineNotAvailable,
                    format!("TLS with the queue server at {addr}: {e}"),
                )
            })
    }
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The verifier of [`ClientTls::insecure_skip_verify`]: signatures are checked (the handshake
/// stays sound), the certificate's issuer and name are not.
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_name_checked_is_the_host_dialled() {
        assert_eq!(host_of("127.0.0.1:18010"), "127.0.0.1");
        assert_eq!(host_of("[::1]:18010"), "::1");
        assert_eq!(host_of("orders.example:18010"), "orders.example");
    }
}
