//! Certificates made in the test (rcgen) and a TLS client peer on blocking
//! rustls, for the TLS tests.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{Block, Peer};

/// A test CA that signs server and client certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A certificate and key written as PEM files.
pub struct Issued {
    /// The certificate (PEM).
    pub cert_file: PathBuf,
    /// Its key (PEM, PKCS#8).
    pub key_file: PathBuf,
}

impl Ca {
    /// A new self-signed CA.
    pub fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// Writes the CA certificate to `dir/<file>`.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }

    /// A leaf for `names` (IP strings become IP SANs), written as `dir/<stem>.crt|.key`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_file = dir.join(format!("{stem}.crt"));
        let key_file = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Issued { cert_file, key_file }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)] // ring's provider, as the edge uses (src/transport/tls.rs)
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client settings trusting `ca_file`, presenting `client` if given.
pub fn client_config(ca_file: &Path, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        None => b.with_no_client_auth(),
        Some(i) => {
            let certs = CertificateDer::pem_file_iter(&i.cert_file).unwrap().map(Result::unwrap).collect();
            b.with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(&i.key_file).unwrap()).unwrap()
        }
    })
}

/// Server settings for a TLS peer the edge connects to; with `client_ca`, it
/// requires a client certificate from that CA (mutual TLS).
pub fn server_config(i: &Issued, client_ca: Option<&Path>) -> Arc<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(&i.cert_file).unwrap().map(Result::unwrap).collect();
    let b = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
    let b = match client_ca {
        None => b.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            b.with_client_cert_verifier(v)
        }
    };
    let cfg = b.with_single_cert(certs, PrivateKeyDer::from_pem_file(&i.key_file).unwrap()).unwrap();
    Arc::new(cfg)
}

/// A TLS connection from `local_ip` to the edge at `edge`, handshake done;
/// the handshake's error if the edge refused it.
pub fn connect(local_ip: IpAddr, edge: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Result<Peer, rustls::Error> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(local_ip, 0).into()).unwrap();
    s.connect(&edge.into()).unwrap();
    let mut sock: TcpStream = s.into();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let local = sock.local_addr().unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, ServerName::IpAddress(edge.ip().into())).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(rustls::Error::General(e.to_string()));
        }
    }
    // TLS 1.3: a refused client certificate shows on the first read.
    let mut stream = rustls::StreamOwned::new(conn, sock);
    stream.conn.complete_io(&mut stream.sock).ok();
    Ok(Peer::Tls { stream: Box::new(stream), buf: Vec::new(), local })
}

/// The config of an edge with a TLS listener on `b.1:5061` presenting `cert`
/// (more listener keys in `listen_extra`, `[tcp]` keys in `tcp`), carrier-a
/// at `b.2:5061` over TLS trusted through `ca_file`, and a UDP flow engine at
/// `b.10:5060`.
pub fn carrier_edge_toml(b: Block, cert: &Issued, ca_file: &Path, listen_extra: &str, tcp: &str) -> String {
    format!(
        "[[listen]]\ntransport = \"tls\"\naddr = \"{}\"\ncert_file = {:?}\nkey_file = {:?}\n{listen_extra}\n\
         [tcp]\n{tcp}\n\
         [health]\noptions_interval_ms = 60000\n\
         [[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\ntransport = \"tls\"\nca_file = {:?}\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\n",
        b.addr(1, 5061),
        cert.cert_file.display().to_string(),
        cert.key_file.display().to_string(),
        b.addr(2, 5061),
        ca_file.display().to_string(),
        b.addr(10, 5060),
    )
}
