//! SIP over TLS: what only TLS needs on top of the TCP connection machinery
//! in `tcp.rs` — loading certificates and keys into rustls configs, the
//! acceptor per `[[listen]]` and the connector per next hop, and swapping
//! them on reload. Framing, limits and the connection registry are TCP's.
//!
//! Everything is loaded up front into one [`TlsSettings`] value: `sipedge
//! check` builds it to report bad files, start builds it before binding, and
//! a reload builds a new one and swaps it in only when every file loaded
//! (a bad new certificate keeps the old one and fails the reload). Open
//! connections keep the config they were made with; new ones get the new.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{Config, ConfigError, ConfigErrors, HopTls};
use crate::sip::Transport;

/// How we reach one TLS next hop.
#[derive(Clone, Debug)]
pub struct Client {
    /// Trust anchors and protocol settings.
    pub config: Arc<ClientConfig>,
    /// The name the hop's certificate must carry (`server_name`, else its IP).
    pub name: ServerName<'static>,
}

/// Every TLS config one `Config` asks for, loaded and checked.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// Per `[[listen]]` index with `transport = "tls"`.
    servers: HashMap<usize, Arc<ServerConfig>>,
    /// Per TLS next-hop address (carrier links and flow engines).
    clients: HashMap<SocketAddr, Client>,
}

impl TlsSettings {
    /// Reads every certificate, key and CA file the config names. Each problem
    /// is named by its key and file (`listen[2].key_file: 'edge.key': ...`).
    pub fn load(cfg: &Config) -> Result<TlsSettings, ConfigErrors> {
        let mut errors = Vec::new();
        let mut out = TlsSettings::default();
        for (i, l) in cfg.listen.iter().enumerate() {
            if l.transport != Transport::Tls {
                continue;
            }
            let at = format!("listen[{i}]");
            match server_config(cfg, &at, l) {
                Ok(s) => {
                    out.servers.insert(i, Arc::new(s));
                }
                Err(e) => errors.extend(e),
            }
        }
        let links = cfg.carrier.iter().enumerate().flat_map(|(i, c)| {
            c.link
                .iter()
                .enumerate()
                .map(move |(j, l)| (format!("carrier[{i}].link[{j}]"), l.transport, l.addr, l.tls()))
        });
        let flows = cfg
            .flow_engine
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("flow_engine[{i}]"), f.transport, f.addr, f.tls()));
        for (at, transport, addr, hop) in links.chain(flows) {
            if transport != Transport::Tls {
                continue;
            }
            match client(cfg, &at, addr, hop) {
                Ok(c) => {
                    out.clients.insert(addr, c);
                }
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The server config of `[[listen]]` number `index`.
    pub fn server(&self, index: usize) -> Option<Arc<ServerConfig>> {
        self.servers.get(&index).cloned()
    }

    /// How to reach the TLS next hop at `addr`.
    pub fn client(&self, addr: SocketAddr) -> Option<&Client> {
        self.clients.get(&addr)
    }
}

/// The TLS settings in force, swapped whole on reload.
#[derive(Default)]
pub struct Tls {
    settings: ArcSwap<TlsSettings>,
}

impl Tls {
    /// The settings new connections use.
    pub fn current(&self) -> Arc<TlsSettings> {
        self.settings.load_full()
    }

    /// New connections from now on use `s`; open ones keep theirs.
    pub fn store(&self, s: TlsSettings) {
        self.settings.store(Arc::new(s));
    }
}

/// The *ring* provider: it builds in a fraction of aws-lc-rs's time (no C
/// toolchain, no cmake). rustls deprecated it for lacking post-quantum key
/// exchange, which SIP trunks do not negotiate today; moving to aws-lc-rs is
/// the Cargo feature and this one line.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

fn server_config(cfg: &Config, at: &str, l: &crate::config::ListenConfig) -> Result<ServerConfig, Vec<ConfigError>> {
    // Validation already reported a missing key; nothing to load then.
    let (Some(cert_path), Some(key_path)) = (&l.cert_file, &l.key_file) else { return Err(Vec::new()) };
    let certs = read_certs(cfg, &format!("{at}.cert_file"), cert_path);
    let key = read_key(cfg, &format!("{at}.key_file"), key_path);
    let roots = l.client_ca_file.as_ref().map(|p| read_roots(cfg, &format!("{at}.client_ca_file"), p));
    let (certs, key) = match (certs, key) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => {
            let mut e: Vec<_> = [c.err(), k.err()].into_iter().flatten().collect();
            e.extend(roots.and_then(Result::err));
            return Err(e);
        }
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![ConfigError::new(at, format!("TLS: {e}"))])?;
    let builder = match roots {
        None => builder.with_no_client_auth(),
        Some(Err(e)) => return Err(vec![e]),
        Some(Ok(roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| vec![ConfigError::new(format!("{at}.client_ca_file"), format!("unusable CA: {e}"))])?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| {
        let files = format!("'{}' and '{}'", cert_path.display(), key_path.display());
        vec![ConfigError::new(
            format!("{at}.key_file"),
            format!("{files} do not make a usable certificate and key: {e}"),
        )]
    })
}

fn client(cfg: &Config, at: &str, addr: SocketAddr, hop: HopTls<'_>) -> Result<Client, Vec<ConfigError>> {
    let roots = match hop.ca_file {
        Some(p) => read_roots(cfg, &format!("{at}.ca_file"), p).map_err(|e| vec![e])?,
        None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let name = match hop.server_name {
        Some(n) => ServerName::try_from(n.to_owned()).map_err(|_| {
            vec![ConfigError::new(format!("{at}.server_name"), format!("'{n}' is not a DNS name or IP address"))]
        })?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| vec![ConfigError::new(format!("{at}.ca_file"), format!("unusable CA: {e}"))])?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![ConfigError::new(at, format!("TLS: {e}"))])?
        .with_webpki_verifier(verifier);
    // Validation already reported a certificate without its key (or the reverse).
    let config = match (hop.client_cert_file, hop.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let certs = read_certs(cfg, &format!("{at}.client_cert_file"), cert_path);
            let key = read_key(cfg, &format!("{at}.client_key_file"), key_path);
            let (certs, key) = match (certs, key) {
                (Ok(c), Ok(k)) => (c, k),
                (c, k) => return Err([c.err(), k.err()].into_iter().flatten().collect()),
            };
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                let files = format!("'{}' and '{}'", cert_path.display(), key_path.display());
                vec![ConfigError::new(
                    format!("{at}.client_key_file"),
                    format!("{files} do not make a usable certificate and key: {e}"),
                )]
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Client { config: Arc::new(config), name })
}

fn read_certs(cfg: &Config, at: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let full = cfg.resolve(path);
    let bad = |why: String| ConfigError::new(at, format!("'{}': {why}", path.display()));
    let iter = CertificateDer::pem_file_iter(&full).map_err(|e| bad(pem_problem(&e)))?;
    let certs = iter.collect::<Result<Vec<_>, _>>().map_err(|e| bad(pem_problem(&e)))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

fn read_key(cfg: &Config, at: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let full = cfg.resolve(path);
    PrivateKeyDer::from_pem_file(&full).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY in the file".to_owned(),
            e => pem_problem(&e),
        };
        ConfigError::new(at, format!("'{}': {why}", path.display()))
    })
}

fn read_roots(cfg: &Config, at: &str, path: &Path) -> Result<RootCertStore, ConfigError> {
    let certs = read_certs(cfg, at, path)?;
    let mut roots = RootCertStore::empty();
    let (_, bad) = roots.add_parsable_certificates(certs);
    if roots.is_empty() || bad > 0 {
        return Err(ConfigError::new(at, format!("'{}': {bad} certificate(s) are not usable as a CA", path.display())));
    }
    Ok(roots)
}

fn pem_problem(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => format!("cannot read: {io}"),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".to_owned(),
        e => format!("not valid PEM: {e}"),
    }
}
