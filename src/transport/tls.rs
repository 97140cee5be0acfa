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
use std::path::{Path, PathBuf};
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

/// The end of one certificate we present, for the gauge and the warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// Whose: `listener`, `carrier_link` or `flow_engine` (the `hop` label).
    pub hop: &'static str,
    /// The listener's or the next hop's configured address (the `addr` label).
    pub addr: SocketAddr,
    /// The certificate file, as configured.
    pub file: PathBuf,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

/// Every TLS config one `Config` asks for, loaded and checked.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// Per configured `[[listen]]` address with `transport = "tls"` (not by
    /// position: a reload may reorder the listeners).
    servers: HashMap<SocketAddr, Arc<ServerConfig>>,
    /// When each certificate of ours ends: listeners' and the client
    /// certificates we present to next hops.
    expiry: Vec<Expiry>,
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
                Ok((s, not_after)) => {
                    out.servers.insert(l.addr, Arc::new(s));
                    let file = l.cert_file.clone().unwrap_or_default();
                    out.expiry.push(Expiry { hop: "listener", addr: l.addr, file, not_after });
                }
                Err(e) => errors.extend(e),
            }
        }
        let links = cfg.carrier.iter().enumerate().flat_map(|(i, c)| {
            c.link
                .iter()
                .enumerate()
                .map(move |(j, l)| (format!("carrier[{i}].link[{j}]"), "carrier_link", l.transport, l.addr, l.tls()))
        });
        let flows = cfg
            .flow_engine
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("flow_engine[{i}]"), "flow_engine", f.transport, f.addr, f.tls()));
        for (at, kind, transport, addr, hop) in links.chain(flows) {
            if transport != Transport::Tls {
                continue;
            }
            match client(cfg, &at, addr, hop) {
                Ok((c, not_after)) => {
                    out.clients.insert(addr, c);
                    if let (Some(not_after), Some(file)) = (not_after, hop.client_cert_file) {
                        out.expiry.push(Expiry { hop: kind, addr, file: file.to_owned(), not_after });
                    }
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

    /// The server config of the `[[listen]]` configured at `addr`.
    pub fn server(&self, addr: SocketAddr) -> Option<Arc<ServerConfig>> {
        self.servers.get(&addr).cloned()
    }

    /// Exports the end of each certificate we present (listeners' and
    /// client certificates to next hops) as
    /// `sipedge_tls_cert_expiry_timestamp_seconds{hop, addr}` and warns about
    /// those that expire soon. Called at start and after each reload that
    /// swapped the certificates in.
    pub fn report_expiry(&self) {
        // Described here, beside its only writer; describing twice is harmless.
        metrics::describe_gauge!(
            "sipedge_tls_cert_expiry_timestamp_seconds",
            "notAfter of a certificate the edge presents (TLS listener, or client certificate to a next hop), unix seconds"
        );
        for e in &self.expiry {
            metrics::gauge!("sipedge_tls_cert_expiry_timestamp_seconds", "hop" => e.hop, "addr" => e.addr.to_string())
                .set(e.not_after as f64);
        }
        self.warn_expiring();
    }

    /// Warns about each certificate of ours that ends within
    /// [`EXPIRY_WARNING`]: at start, after a reload, and in `sipedge check`.
    pub fn warn_expiring(&self) {
        let now = unix_now();
        for e in self.expiring(now) {
            tracing::warn!(
                hop = e.hop,
                addr = %e.addr,
                file = %e.file.display(),
                until = %rfc3339(e.not_after),
                days_left = e.not_after.saturating_sub(now) / 86_400,
                "TLS certificate expires soon"
            );
        }
    }

    /// The certificates that end within [`EXPIRY_WARNING`] of `now`.
    pub fn expiring(&self, now: i64) -> impl Iterator<Item = &Expiry> {
        let window = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
        self.expiry.iter().filter(move |e| e.not_after.saturating_sub(now) < window)
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
///
/// Key exchange in the order X25519, P-256, P-384: ring's default puts P-384
/// first, and ring's P-384 has no assembly, so a handshake we start costs 2.8×
/// more CPU with it (docs/PERFORMANCE.md "TLS"). Our client sends its key share
/// for the first group; as a server we keep the client's order (no extra round
/// trip), so this decides only when the client offers several shares.
#[allow(deprecated)] // ring's provider: see above
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = rustls::crypto::ring::default_provider();
        p.kx_groups = vec![X25519, SECP256R1, SECP384R1];
        Arc::new(p)
    })
    .clone()
}

/// A certificate of ours this close to its end gets a warning at each load.
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The leaf certificate's notAfter (unix seconds), or an error naming the
/// file and the dates when it is not valid now: a handshake with it would
/// fail at every carrier, so it is refused at `check`, start and reload.
fn validity(at: &str, path: &Path, leaf: &CertificateDer<'_>, now: i64) -> Result<i64, ConfigError> {
    let bad = |why: String| ConfigError::new(at, format!("'{}': {why}", path.display()));
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| bad(format!("the first certificate does not parse as X.509: {e}")))?;
    let v = cert.validity();
    let (from, until) = (v.not_before.timestamp(), v.not_after.timestamp());
    if now > until {
        return Err(bad(format!("the certificate expired at {} (valid from {})", rfc3339(until), rfc3339(from))));
    }
    if now < from {
        return Err(bad(format!("the certificate is not valid before {} (until {})", rfc3339(from), rfc3339(until))));
    }
    Ok(until)
}

/// Unix seconds as `2021-01-01T00:00:00Z` (before 1970: the epoch).
fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn server_config(
    cfg: &Config,
    at: &str,
    l: &crate::config::ListenConfig,
) -> Result<(ServerConfig, i64), Vec<ConfigError>> {
    // Validation already reported a missing key; nothing to load then.
    let (Some(cert_path), Some(key_path)) = (&l.cert_file, &l.key_file) else { return Err(Vec::new()) };
    let cert_at = format!("{at}.cert_file");
    let certs = read_certs(cfg, &cert_at, cert_path).and_then(|c| {
        let leaf = c.first().ok_or_else(|| ConfigError::new(&cert_at, "no certificate"))?;
        let until = validity(&cert_at, cert_path, leaf, unix_now())?;
        Ok((c, until))
    });
    let key = read_key(cfg, &format!("{at}.key_file"), key_path);
    let roots = l.client_ca_file.as_ref().map(|p| read_roots(cfg, &format!("{at}.client_ca_file"), p));
    let ((certs, not_after), key) = match (certs, key) {
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
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        let files = format!("'{}' and '{}'", cert_path.display(), key_path.display());
        vec![ConfigError::new(
            format!("{at}.key_file"),
            format!("{files} do not make a usable certificate and key: {e}"),
        )]
    })?;
    Ok((config, not_after))
}

/// The client config of one TLS next hop, and the notAfter of the client
/// certificate we present to it, if any.
fn client(
    cfg: &Config,
    at: &str,
    addr: SocketAddr,
    hop: HopTls<'_>,
) -> Result<(Client, Option<i64>), Vec<ConfigError>> {
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
    let (config, not_after) = match (hop.client_cert_file, hop.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            // An expired one would be refused by every hop that asks for it.
            let cert_at = format!("{at}.client_cert_file");
            let certs = read_certs(cfg, &cert_at, cert_path).and_then(|c| {
                let leaf = c.first().ok_or_else(|| ConfigError::new(&cert_at, "no certificate"))?;
                let until = validity(&cert_at, cert_path, leaf, unix_now())?;
                Ok((c, until))
            });
            let key = read_key(cfg, &format!("{at}.client_key_file"), key_path);
            let ((certs, until), key) = match (certs, key) {
                (Ok(c), Ok(k)) => (c, k),
                (c, k) => return Err([c.err(), k.err()].into_iter().flatten().collect()),
            };
            let config = builder.with_client_auth_cert(certs, key).map_err(|e| {
                let files = format!("'{}' and '{}'", cert_path.display(), key_path.display());
                vec![ConfigError::new(
                    format!("{at}.client_key_file"),
                    format!("{files} do not make a usable certificate and key: {e}"),
                )]
            })?;
            (config, Some(until))
        }
        _ => (builder.with_no_client_auth(), None),
    };
    Ok((Client { config: Arc::new(config), name }, not_after))
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

#[cfg(test)]
mod tests {
    use super::*;

    type Ymd = (i32, u8, u8);

    /// A self-signed certificate valid over `from..until`, written as
    /// `dir/<stem>.crt` beside its key `dir/<stem>.key`.
    fn cert_valid(dir: &Path, stem: &str, from: Ymd, until: Ymd) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["edge.test".to_owned()]).unwrap();
        p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        p.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    }

    /// A listener certificate valid over `from..until` and the config that names it.
    fn listener_valid(dir: &Path, from: Ymd, until: Ymd) -> Config {
        cert_valid(dir, "edge", from, until);
        let toml = format!(
            "[[listen]]\naddr = \"127.0.0.1:0\"\ntransport = \"tls\"\ncert_file = \"{0}/edge.crt\"\nkey_file = \"{0}/edge.key\"\n",
            dir.display()
        );
        Config::from_toml_str(&toml).unwrap()
    }

    /// A TLS carrier link (192.0.2.10:5061) and a TLS flow engine
    /// (192.0.2.20:5061), each presenting a client certificate valid over its range.
    fn hops_valid(dir: &Path, link: (Ymd, Ymd), flow: (Ymd, Ymd)) -> Config {
        cert_valid(dir, "link", link.0, link.1);
        cert_valid(dir, "flow", flow.0, flow.1);
        let toml = format!(
            "[[listen]]\naddr = \"127.0.0.1:0\"\n[[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"192.0.2.10:5061\"\ntransport = \"tls\"\n\
             client_cert_file = \"{0}/link.crt\"\nclient_key_file = \"{0}/link.key\"\n\
             [[flow_engine]]\naz = \"az1\"\naddr = \"192.0.2.20:5061\"\ntransport = \"tls\"\n\
             client_cert_file = \"{0}/flow.crt\"\nclient_key_file = \"{0}/flow.key\"\n",
            dir.display()
        );
        Config::from_toml_str(&toml).unwrap()
    }

    const GOOD: (Ymd, Ymd) = ((2020, 1, 1), (2100, 1, 1));
    /// 2100-01-01T00:00:00Z
    const END_2100: i64 = 4_102_444_800;

    #[test]
    fn an_expired_or_not_yet_valid_client_certificate_is_refused_naming_hop_file_and_dates() {
        let dir = tempfile::tempdir().unwrap();
        let expired = ((2020, 1, 1), (2021, 1, 1));
        let future = ((2100, 1, 1), (2101, 1, 1));
        let e = TlsSettings::load(&hops_valid(dir.path(), expired, GOOD)).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].field, "carrier[0].link[0].client_cert_file", "{e}");
        assert!(e.0[0].problem.contains("link.crt") && e.0[0].problem.contains("expired at 2021-01-01"), "{e}");
        assert!(e.0[0].problem.contains("valid from 2020-01-01"), "{e}");
        let e = TlsSettings::load(&hops_valid(dir.path(), GOOD, future)).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].field, "flow_engine[0].client_cert_file", "{e}");
        assert!(e.0[0].problem.contains("flow.crt") && e.0[0].problem.contains("not valid before 2100-01-01"), "{e}");
        // Both bad: both named, nothing loaded.
        let e = TlsSettings::load(&hops_valid(dir.path(), future, expired)).unwrap_err();
        let fields: Vec<&str> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["carrier[0].link[0].client_cert_file", "flow_engine[0].client_cert_file"], "{e}");
    }

    #[test]
    fn client_certificates_have_their_expiry_kept_per_hop_and_warned_within_14_days() {
        let dir = tempfile::tempdir().unwrap();
        let s = TlsSettings::load(&hops_valid(dir.path(), GOOD, ((2020, 1, 1), (2099, 1, 1)))).unwrap();
        let kept: Vec<(&str, String, i64)> =
            s.expiry.iter().map(|e| (e.hop, e.addr.to_string(), e.not_after)).collect();
        assert_eq!(
            kept,
            [
                ("carrier_link", "192.0.2.10:5061".to_owned(), END_2100),
                ("flow_engine", "192.0.2.20:5061".to_owned(), 4_070_908_800), // 2099-01-01
            ]
        );
        assert!(s.client("192.0.2.10:5061".parse().unwrap()).is_some());
        let soon = |now: i64| s.expiring(now).map(|e| e.hop).collect::<Vec<_>>();
        assert_eq!(soon(END_2100 - 15 * 86_400), ["flow_engine"]);
        assert_eq!(soon(END_2100 - 13 * 86_400), ["carrier_link", "flow_engine"]);
        assert!(soon(4_070_908_800 - 15 * 86_400).is_empty());
        s.report_expiry();
    }

    #[test]
    fn an_expired_or_not_yet_valid_certificate_is_refused_naming_file_and_dates() {
        let dir = tempfile::tempdir().unwrap();
        for (from, until, want) in [
            ((2020, 1, 1), (2021, 1, 1), "expired at 2021-01-01"),
            ((2100, 1, 1), (2101, 1, 1), "not valid before 2100-01-01"),
        ] {
            let cfg = listener_valid(dir.path(), from, until);
            let e = TlsSettings::load(&cfg).unwrap_err();
            let first = &e.0[0];
            assert_eq!(first.field, "listen[0].cert_file", "{e}");
            assert!(first.problem.contains("edge.crt") && first.problem.contains(want), "{first}");
        }
    }

    #[test]
    fn a_valid_certificate_loads_and_its_expiry_is_kept_per_listener() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = listener_valid(dir.path(), (2020, 1, 1), (2100, 1, 1));
        let s = TlsSettings::load(&cfg).unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(s.server(addr).is_some());
        let want = Expiry { hop: "listener", addr, file: dir.path().join("edge.crt"), not_after: END_2100 };
        assert_eq!(s.expiry, [want]);
        assert_eq!(s.expiring(END_2100 - 13 * 86_400).count(), 1);
        assert_eq!(s.expiring(END_2100 - 15 * 86_400).count(), 0);
        s.report_expiry();
    }

    /// Runs a handshake between two in-memory connections.
    fn handshake(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
        fn pass<A, B>(from: &mut rustls::ConnectionCommon<A>, to: &mut rustls::ConnectionCommon<B>) {
            let mut wire = Vec::new();
            while from.wants_write() {
                from.write_tls(&mut wire).unwrap();
            }
            let mut rest = &wire[..];
            while !rest.is_empty() {
                to.read_tls(&mut rest).unwrap();
                to.process_new_packets().unwrap();
            }
        }
        for _ in 0..8 {
            pass(&mut **client, &mut **server);
            pass(&mut **server, &mut **client);
            if !client.is_handshaking() && !server.is_handshaking() {
                return;
            }
        }
        panic!("no handshake in 8 flights");
    }

    #[test]
    fn our_client_and_server_agree_on_x25519_not_ring_s_p384_default() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["edge.test".to_owned()]).unwrap();
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("edge.crt"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("edge.key"), key.serialize_pem()).unwrap();
        let toml = format!(
            "[[listen]]\naddr = \"127.0.0.1:5061\"\ntransport = \"tls\"\ncert_file = \"{0}/edge.crt\"\nkey_file = \"{0}/edge.key\"\n\
             [[flow_engine]]\naz = \"az1\"\naddr = \"192.0.2.20:5061\"\ntransport = \"tls\"\nserver_name = \"edge.test\"\nca_file = \"{0}/ca.crt\"\n",
            dir.path().display()
        );
        let s = TlsSettings::load(&Config::from_toml_str(&toml).unwrap()).unwrap();
        let out = s.client("192.0.2.20:5061".parse().unwrap()).unwrap();
        let mut client = rustls::ClientConnection::new(out.config.clone(), out.name.clone()).unwrap();
        let mut server = rustls::ServerConnection::new(s.server("127.0.0.1:5061".parse().unwrap()).unwrap()).unwrap();
        handshake(&mut client, &mut server);
        for group in [client.negotiated_key_exchange_group(), server.negotiated_key_exchange_group()] {
            assert_eq!(group.map(|g| g.name()), Some(rustls::NamedGroup::X25519));
        }
    }
}
