//! TLS on the ISO listener and the admin port, over real sockets to the real binary:
//! mutual TLS binds a link to one acquirer (another F32 is `03` and posts nothing),
//! and clients without a good certificate, or without TLS at all, get no ISO answer.
//! Every certificate is made here, by a test CA that lives as long as the test.

mod admin_http;
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use multiguna::config::Framing;
use multiguna::iso8583::Message;
use multiguna::net::framing::FrameCodec;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::codec::Framed;

/// The CN the switch maps to acquirer 360001 (ATM).
const BOUND_CN: &str = "atm-bersama";
/// Signed by the same CA, mapped to no acquirer.
const ROGUE_CN: &str = "rogue";
const WAIT: Duration = Duration::from_secs(10);

/// A certificate and its private key, as a TLS client presents them.
struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// The test CA, and the switch's server certificate written to the test's folder.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    ca_path: String,
    server_cert_path: String,
    server_key_path: String,
}

impl Pki {
    fn new(db: &TestDb) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "multiguna test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&ca_key).expect("CA cert");
        let server_key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        params.distinguished_name.push(DnType::CommonName, "switch");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server cert");
        Pki {
            ca_path: db.write("ca.pem", &ca.pem()),
            server_cert_path: db.write("server.pem", &server.pem()),
            server_key_path: db.write("server.key", &server_key.serialize_pem()),
            ca,
            ca_key,
        }
    }

    /// A client certificate with subject CN `cn`, signed by the test CA.
    fn client(&self, cn: &str) -> Identity {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("client cert");
        Identity {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    /// The ISO listener under mutual TLS, `atm-bersama` bound to the ATM acquirer.
    fn listener_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "MULTIGUNA__LISTENERS__0__TLS__CERT",
                self.server_cert_path.clone(),
            ),
            (
                "MULTIGUNA__LISTENERS__0__TLS__KEY",
                self.server_key_path.clone(),
            ),
            (
                "MULTIGUNA__LISTENERS__0__TLS__CLIENT_CA",
                self.ca_path.clone(),
            ),
            (
                "MULTIGUNA__LISTENERS__0__TLS__ACQUIRERS__ATM-BERSAMA",
                ATM.into(),
            ),
        ]
    }

    fn admin_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MULTIGUNA__ADMIN__TLS__CERT", self.server_cert_path.clone()),
            ("MULTIGUNA__ADMIN__TLS__KEY", self.server_key_path.clone()),
        ]
    }

    /// A TLS client that trusts the test CA and presents `identity`, if any.
    fn connector(&self, identity: Option<&Identity>) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("CA as root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some(id) => builder
                .with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key())
                .expect("client auth"),
            None => builder.with_no_client_auth(),
        };
        TlsConnector::from(Arc::new(config))
    }
}

fn start(db: &TestDb, env: &[(&'static str, String)]) -> Switch {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Switch::start_with(db, &env)
}

type IsoOverTls = Framed<tokio_rustls::client::TlsStream<TcpStream>, FrameCodec>;

async fn connect_tls(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    connector.connect(name, tcp).await
}

async fn iso_over_tls(addr: SocketAddr, connector: &TlsConnector) -> IsoOverTls {
    let stream = connect_tls(addr, connector).await.expect("TLS handshake");
    Framed::new(stream, FrameCodec::new(Framing::Len2, 4096))
}

/// One request and its response code; `None` when the switch closed instead.
async fn exchange(link: &mut IsoOverTls, frame: Vec<u8>) -> Option<String> {
    if link.send(Bytes::from(frame)).await.is_err() {
        return None;
    }
    let answer = tokio::time::timeout(WAIT, link.next())
        .await
        .expect("an answer or a close within the wait");
    let bytes = answer?.ok()?;
    let message = Message::parse(&bytes).expect("a parseable answer");
    message.field_str(39).map(str::to_string)
}

fn transfers(db: &TestDb) -> i64 {
    db.scalar("SELECT COUNT(*) FROM transfers")
}

fn tls_failures(admin: SocketAddr, reason: &str) -> f64 {
    let text = admin_http::http(admin, "GET", "/metrics", None, None).body;
    let label = format!("reason=\"{reason}\"");
    admin_http::metric_sum(&text, "multiguna_tls_handshake_failures_total", |l| {
        l.contains(&label)
    })
}

#[test]
fn a_bound_link_is_served_for_its_acquirer_and_gets_03_for_another_without_a_ledger_row() {
    let db = sqlite_db();
    let cards = db.province(1);
    let pki = Pki::new(&db);
    let switch = start(&db, &pki.listener_env());
    let connector = pki.connector(Some(&pki.client(BOUND_CN)));
    let before = transfers(&db);
    runtime().block_on(async {
        let mut link = iso_over_tls(switch.addr, &connector).await;
        let own = request(&cards[0], ATM, "6011", "310000", 0);
        assert_eq!(
            exchange(&mut link, own.build().to_bytes()).await.as_deref(),
            Some("00")
        );
        // Acquirer 360002 may ask for a minimarket balance on a link of its own; on the
        // ATM link's connection it is refused at the edge.
        let foreign = request(&cards[0], SHOP, "5411", "310000", 0);
        let stan = format!("{:06}", foreign.stan);
        assert_eq!(
            exchange(&mut link, foreign.build().to_bytes())
                .await
                .as_deref(),
            Some("03")
        );
        // The connection stays open for the link's own traffic.
        let again = request(&cards[0], ATM, "5411", "310000", 0);
        assert_eq!(
            exchange(&mut link, again.build().to_bytes())
                .await
                .as_deref(),
            Some("00")
        );
        assert_eq!(
            db.scalar(&format!(
                "SELECT COUNT(*) FROM transfers WHERE stan = '{stan}'"
            )),
            0,
            "the 03 reached no ledger"
        );
    });
    assert_eq!(
        transfers(&db),
        before + 2,
        "only the two 00s are in the ledger"
    );
}

#[test]
fn a_client_without_a_certificate_is_refused_at_the_handshake() {
    let db = sqlite_db();
    let cards = db.province(1);
    let pki = Pki::new(&db);
    let switch = start(&db, &pki.listener_env());
    let connector = pki.connector(None);
    let before = transfers(&db);
    runtime().block_on(async {
        // Under TLS 1.3 the client may finish its side before the server has read the
        // (empty) certificate; the refusal then arrives as the first read.
        let Ok(stream) = connect_tls(switch.addr, &connector).await else {
            return;
        };
        let mut link = Framed::new(stream, FrameCodec::new(Framing::Len2, 4096));
        let spec = request(&cards[0], ATM, "6011", "310000", 0);
        assert_eq!(exchange(&mut link, spec.build().to_bytes()).await, None);
    });
    assert_eq!(transfers(&db), before);
    wait_until("the handshake failure metric", || {
        tls_failures(switch.admin, "handshake") >= 1.0
    });
}

#[test]
fn a_client_certificate_bound_to_no_acquirer_is_closed() {
    let db = sqlite_db();
    let cards = db.province(1);
    let pki = Pki::new(&db);
    let switch = start(&db, &pki.listener_env());
    let connector = pki.connector(Some(&pki.client(ROGUE_CN)));
    let before = transfers(&db);
    runtime().block_on(async {
        let Ok(stream) = connect_tls(switch.addr, &connector).await else {
            return;
        };
        let mut link = Framed::new(stream, FrameCodec::new(Framing::Len2, 4096));
        let spec = request(&cards[0], ATM, "6011", "310000", 0);
        assert_eq!(exchange(&mut link, spec.build().to_bytes()).await, None);
    });
    assert_eq!(transfers(&db), before);
    wait_until("the unknown client metric", || {
        tls_failures(switch.admin, "unknown_client") >= 1.0
    });
}

#[test]
fn plain_tcp_on_a_tls_port_gets_no_iso_answer_and_is_closed() {
    let db = sqlite_db();
    let cards = db.province(1);
    let pki = Pki::new(&db);
    let switch = start(&db, &pki.listener_env());
    let before = transfers(&db);
    let received = runtime().block_on(async {
        let mut raw = TcpStream::connect(switch.addr).await.expect("connect");
        let body = request(&cards[0], ATM, "6011", "310000", 0)
            .build()
            .to_bytes();
        let len = u16::try_from(body.len()).expect("short frame");
        raw.write_all(&len.to_be_bytes()).await.expect("write");
        raw.write_all(&body).await.expect("write");
        let mut received = Vec::new();
        let read = tokio::time::timeout(WAIT, raw.read_to_end(&mut received)).await;
        assert!(read.is_ok(), "the switch closed the connection");
        received
    });
    // At most a TLS alert record (content type 21) comes back, never an ISO message.
    assert!(
        received.is_empty() || received[0] == 21,
        "no ISO answer on a TLS port: {received:?}"
    );
    assert_eq!(transfers(&db), before);
}

#[test]
fn the_admin_port_over_tls_answers_healthz() {
    let db = sqlite_db();
    let pki = Pki::new(&db);
    let switch = start(&db, &pki.admin_env());
    let connector = pki.connector(None);
    let answer = runtime().block_on(async {
        let mut stream = connect_tls(switch.admin, &connector)
            .await
            .expect("TLS handshake with the admin port");
        let head = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
            .await
            .expect("answered in time")
            .expect("read");
        String::from_utf8_lossy(&answer).to_string()
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "healthz: {answer}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = runtime().block_on(async {
        let mut raw = TcpStream::connect(switch.admin).await.expect("connect");
        let head = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        raw.write_all(head.as_bytes()).await.expect("write");
        let mut received = Vec::new();
        let _ = tokio::time::timeout(WAIT, raw.read_to_end(&mut received)).await;
        received
    });
    assert!(
        !plain.starts_with(b"HTTP/"),
        "plain HTTP on the TLS admin port"
    );
}
