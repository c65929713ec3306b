//! TLS for the ISO 8583 listeners and the admin port (rustls with the `ring` provider),
//! and the acquirer binding of mutual TLS: a verified client certificate speaks for
//! exactly one acquirer id, chosen by its subject CN (`[listeners.tls.acquirers]`).
//!
//! Errors name the setting and the reason, never key material: a PEM parse error of
//! the private key is reported without the parser's text, which may quote the input.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroize;

use crate::config::{resolve_secret, ListenerTlsConfig, TlsIdentityConfig};

/// The admin port has no configuration for it: an operator's browser or a scraper
/// finishes a handshake in milliseconds.
const ADMIN_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting}: {reason}")]
    Load { setting: String, reason: String },
    #[error("handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("handshake timed out")]
    Timeout,
    #[error("client certificate has no single subject CN")]
    NoCommonName,
    #[error("client certificate CN {0:?} is bound to no acquirer")]
    UnknownClient(String),
}

impl TlsError {
    /// The `reason` label of `multiguna_tls_handshake_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            TlsError::Load { .. } => "config",
            TlsError::Handshake(_) => "handshake",
            TlsError::Timeout => "timeout",
            TlsError::NoCommonName => "no_common_name",
            TlsError::UnknownClient(_) => "unknown_client",
        }
    }
}

fn load_error(setting: &str, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Load {
        setting: setting.to_string(),
        reason: reason.to_string(),
    }
}

/// One TLS server side: the acceptor, the handshake timeout and, for mutual TLS, which
/// acquirer each client certificate CN speaks for.
pub struct TlsEndpoint {
    acceptor: TlsAcceptor,
    /// Client certificate CN -> acquirer id; empty when no client certificate is asked.
    acquirers: HashMap<String, Arc<str>>,
    handshake_timeout: Duration,
}

impl TlsEndpoint {
    /// `[listeners.tls]` of listener `name`; mutual TLS when `client_ca` is set.
    pub fn for_listener(name: &str, config: &ListenerTlsConfig) -> Result<TlsEndpoint, TlsError> {
        let setting = format!("listeners.{name}.tls");
        let server = server_config(&setting, &config.identity, config.client_ca.as_deref())?;
        Ok(TlsEndpoint {
            acceptor: TlsAcceptor::from(server),
            acquirers: config
                .acquirers
                .iter()
                .map(|(cn, id)| (cn.clone(), Arc::from(id.as_str())))
                .collect(),
            handshake_timeout: Duration::from_secs(config.handshake_timeout_s),
        })
    }

    /// `[admin.tls]`: server authentication only.
    pub fn for_admin(config: &TlsIdentityConfig) -> Result<TlsEndpoint, TlsError> {
        Ok(TlsEndpoint {
            acceptor: TlsAcceptor::from(server_config("admin.tls", config, None)?),
            acquirers: HashMap::new(),
            handshake_timeout: ADMIN_HANDSHAKE_TIMEOUT,
        })
    }

    /// The handshake, bounded in time, then for mutual TLS the acquirer the client
    /// certificate is bound to. An error means: close this connection, nothing else.
    pub async fn accept<S>(&self, stream: S) -> Result<(TlsStream<S>, Option<Arc<str>>), TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream))
            .await
            .map_err(|_| TlsError::Timeout)?
            .map_err(TlsError::Handshake)?;
        if self.acquirers.is_empty() {
            return Ok((stream, None));
        }
        let acquirer = self.bound_acquirer(&stream)?;
        Ok((stream, Some(acquirer)))
    }

    fn bound_acquirer<S>(&self, stream: &TlsStream<S>) -> Result<Arc<str>, TlsError> {
        // The verifier has checked the chain up to client_ca; the first certificate is
        // the client's own. Without one the handshake would already have failed.
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or(TlsError::NoCommonName)?;
        let cn = subject_common_name(leaf).ok_or(TlsError::NoCommonName)?;
        self.acquirers
            .get(&cn)
            .cloned()
            .ok_or(TlsError::UnknownClient(cn))
    }
}

/// One provider, named here, so nothing depends on which is the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(
    setting: &str,
    identity: &TlsIdentityConfig,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&format!("{setting}.cert"), &identity.cert)?;
    let key = load_key(&format!("{setting}.key"), &identity.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| load_error(setting, e))?;
    let builder = match client_ca {
        Some(path) => {
            let verifier = client_verifier(&format!("{setting}.client_ca"), path)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| load_error(setting, e))?;
    Ok(Arc::new(config))
}

fn load_certs(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| load_error(setting, format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_error(setting, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(load_error(
            setting,
            format!("{}: no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// A bare path is a key file, as `file:PATH` is; `env:NAME` holds the PEM text itself.
fn load_key(setting: &str, spec: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut pem = if spec.starts_with("file:") || spec.starts_with("env:") {
        spec.to_string()
    } else {
        format!("file:{spec}")
    };
    resolve_secret(setting, &mut pem).map_err(|e| load_error(setting, e))?;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| load_error(setting, "no PEM private key (PKCS#8, PKCS#1 or SEC1)"));
    pem.zeroize();
    key
}

fn client_verifier(
    setting: &str,
    path: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(setting, path)? {
        roots.add(cert).map_err(|e| load_error(setting, e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| load_error(setting, e))
}

const DER_SEQUENCE: u8 = 0x30;
const DER_SET: u8 = 0x31;
const DER_OID: u8 = 0x06;
/// `[0] EXPLICIT Version`, absent in v1 certificates.
const DER_VERSION: u8 = 0xA0;
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The subject CN of an X.509 certificate (DER), when it has exactly one. webpki does
/// not expose the subject, and this walk is all that is needed of a full X.509 parser:
/// Certificate > TBSCertificate > (version) serial, signature, issuer, validity, subject.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    let certificate = der_expect(cert, DER_SEQUENCE)?.0;
    let tbs = der_expect(certificate, DER_SEQUENCE)?.0;
    let mut rest = match der_element(tbs)? {
        (DER_VERSION, _, after) => after,
        _ => tbs,
    };
    // serial number, signature algorithm, issuer, validity
    for _ in 0..4 {
        rest = der_element(rest)?.2;
    }
    let subject = der_expect(rest, DER_SEQUENCE)?.0;
    common_name(subject)
}

/// Name ::= SEQUENCE OF SET OF (OID, value). Two CNs are ambiguous: none is returned,
/// so such a certificate binds to no acquirer.
fn common_name(mut name: &[u8]) -> Option<String> {
    let mut found = None;
    while !name.is_empty() {
        let (rdn, rest) = der_expect(name, DER_SET)?;
        name = rest;
        let mut attributes = rdn;
        while !attributes.is_empty() {
            let (attribute, rest) = der_expect(attributes, DER_SEQUENCE)?;
            attributes = rest;
            let (oid, value) = der_expect(attribute, DER_OID)?;
            if oid == OID_COMMON_NAME {
                if found.is_some() {
                    return None;
                }
                found = Some(directory_string(value)?);
            }
        }
    }
    found
}

/// UTF8String, PrintableString, T61String or IA5String: the forms CAs write CNs in.
/// BMPString (UTF-16) is refused rather than guessed at.
fn directory_string(value: &[u8]) -> Option<String> {
    match der_element(value)? {
        (0x0C | 0x13 | 0x14 | 0x16, text, _) => String::from_utf8(text.to_vec()).ok(),
        _ => None,
    }
}

/// The contents of the element at the start of `input` when its tag is `tag`, and what
/// follows it.
fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match der_element(input)? {
        (found, content, rest) if found == tag => Some((content, rest)),
        _ => None,
    }
}

/// One DER element: tag, contents, rest. Single-byte tags only (all that the path to the
/// subject uses); an indefinite or over-long length is not DER and ends the walk.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert_with(dn: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in dn {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_cn_is_read_among_other_attributes() {
        let der = cert_with(&[
            (DnType::CountryName, "ID"),
            (DnType::OrganizationName, "ATM Bersama"),
            (DnType::CommonName, "atm-bersama"),
        ]);
        assert_eq!(subject_common_name(&der).as_deref(), Some("atm-bersama"));
    }

    #[test]
    fn a_certificate_without_cn_has_none() {
        let der = cert_with(&[(DnType::OrganizationName, "Rogue")]);
        assert_eq!(subject_common_name(&der), None);
    }

    #[test]
    fn truncated_or_garbage_der_has_none_and_never_panics() {
        let der = cert_with(&[(DnType::CommonName, "atm-bersama")]);
        for cut in 0..der.len() {
            assert_eq!(subject_common_name(&der[..cut]), None);
        }
        assert_eq!(subject_common_name(b"\x30\x84\xff\xff\xff\xff"), None);
        assert_eq!(subject_common_name(b""), None);
    }

    #[test]
    fn der_lengths_short_and_long_form() {
        assert_eq!(
            der_element(b"\x04\x01a.."),
            Some((4, &b"a"[..], &b".."[..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(der_element(&long).map(|e| e.1.len()), Some(0x80));
        assert_eq!(der_element(b"\x04\x80"), None);
    }
}
