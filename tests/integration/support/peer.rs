//! A scripted SIP peer on its own loopback address (UDP or TCP).

use bytes::Bytes;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sipedge::sip::framing::{next_frame, Frame};
use sipedge::sip::{build, HeaderName, Msg};

/// A UDP socket or a TCP connection to the edge.
pub enum Peer {
    /// Datagrams.
    Udp { sock: UdpSocket, edge: SocketAddr },
    /// One stream to the edge.
    Tcp { stream: TcpStream, buf: Vec<u8>, local: SocketAddr },
    /// One TLS connection to the edge (see `support::tls`).
    Tls { stream: Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>, buf: Vec<u8>, local: SocketAddr },
}

impl Peer {
    /// A UDP peer bound on `local`, talking to `edge`.
    pub fn udp(local: SocketAddr, edge: SocketAddr) -> Peer {
        let sock = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
        Peer::Udp { sock, edge }
    }

    /// A TCP peer connected from `local_ip` to `edge`.
    pub fn tcp(local_ip: std::net::IpAddr, edge: SocketAddr) -> Peer {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::new(local_ip, 0).into()).unwrap();
        s.connect(&edge.into()).unwrap();
        let stream: TcpStream = s.into();
        let local = stream.local_addr().unwrap();
        Peer::Tcp { stream, buf: Vec::new(), local }
    }

    /// Our address as written in Via/Contact.
    pub fn local(&self) -> SocketAddr {
        match self {
            Peer::Udp { sock, .. } => sock.local_addr().unwrap(),
            Peer::Tcp { local, .. } | Peer::Tls { local, .. } => *local,
        }
    }

    /// "UDP" or "TCP" for Via.
    pub fn via_transport(&self) -> &'static str {
        match self {
            Peer::Udp { .. } => "UDP",
            Peer::Tcp { .. } => "TCP",
            Peer::Tls { .. } => "TLS",
        }
    }

    /// Sends text (LF → CRLF; Content-Length fixed up from the body).
    pub fn send(&mut self, text: &str) {
        let bytes = wire(text);
        self.send_bytes(&bytes);
    }

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, b: &[u8]) {
        match self {
            Peer::Udp { sock, edge } => {
                sock.send_to(b, *edge).unwrap();
            }
            Peer::Tcp { stream, .. } => stream.write_all(b).unwrap(),
            Peer::Tls { stream, .. } => {
                stream.write_all(b).unwrap();
                stream.flush().unwrap();
            }
        }
    }

    /// Sends a UDP datagram to a specific address (UDP peers answering the edge).
    pub fn send_to(&mut self, b: &[u8], to: SocketAddr) {
        if let Peer::Udp { sock, .. } = self {
            sock.send_to(b, to).unwrap();
        }
    }

    /// The next UDP datagram within `timeout`, unparsed (answers that cannot
    /// be parsed on purpose, like a 400 to a request without Call-ID).
    pub fn recv_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        match self {
            Peer::Udp { sock, .. } => {
                // Health probes (OPTIONS from the edge) are not what a test waits for.
                let end = Instant::now() + timeout;
                loop {
                    let left = end.checked_duration_since(Instant::now())?;
                    let mut buf = vec![0u8; 65536];
                    sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
                    let (n, _) = sock.recv_from(&mut buf).ok()?;
                    buf.truncate(n);
                    if !buf.starts_with(b"OPTIONS ") {
                        return Some(buf);
                    }
                }
            }
            Peer::Tcp { .. } | Peer::Tls { .. } => None,
        }
    }

    /// The next message within `timeout`, with where it came from.
    pub fn recv(&mut self, timeout: Duration) -> Option<(Msg, SocketAddr)> {
        let end = Instant::now() + timeout;
        match self {
            Peer::Udp { sock, .. } => {
                let mut buf = vec![0u8; 65536];
                let left = end.checked_duration_since(Instant::now())?;
                sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
                let (n, from) = sock.recv_from(&mut buf).ok()?;
                let m = Msg::parse(Bytes::copy_from_slice(&buf[..n])).expect("edge sent unparseable bytes");
                Some((m, from))
            }
            Peer::Tcp { stream, buf, .. } => loop {
                if let Frame::Complete(n) = next_frame(buf, 1 << 20) {
                    let b: Vec<u8> = buf.drain(..n).collect();
                    let m = Msg::parse(Bytes::from(b)).expect("edge sent unparseable bytes");
                    let from = stream.peer_addr().unwrap();
                    return Some((m, from));
                }
                if let Frame::KeepAlive(n) = next_frame(buf, 1 << 20) {
                    buf.drain(..n);
                    continue;
                }
                let left = end.checked_duration_since(Instant::now())?;
                stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
                let mut tmp = [0u8; 8192];
                match stream.read(&mut tmp) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            },
            Peer::Tls { stream, buf, .. } => loop {
                match next_frame(buf, 1 << 20) {
                    Frame::Complete(n) => {
                        let b: Vec<u8> = buf.drain(..n).collect();
                        let m = Msg::parse(Bytes::from(b)).expect("edge sent unparseable bytes");
                        return Some((m, stream.sock.peer_addr().unwrap()));
                    }
                    Frame::KeepAlive(n) => {
                        buf.drain(..n);
                        continue;
                    }
                    _ => {}
                }
                let left = end.checked_duration_since(Instant::now())?;
                stream.sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
                let mut tmp = [0u8; 8192];
                match stream.read(&mut tmp) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            },
        }
    }

    /// Waits for a message matching `pred`, skipping others (e.g. 100 Trying, OPTIONS probes).
    pub fn expect(&mut self, timeout: Duration, what: &str, pred: impl Fn(&Msg) -> bool) -> (Msg, SocketAddr) {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some((m, from)) if pred(&m) => return (m, from),
                Some((m, _)) => seen.push(describe(&m)),
                None => break,
            }
        }
        panic!("expected {what} at {}; saw {:?}", self.local(), seen);
    }

    /// Waits for a response with `code` (skipping others).
    pub fn expect_status(&mut self, code: u16, timeout: Duration) -> Msg {
        self.expect(timeout, &format!("a {code}"), |m| m.status() == Some(code)).0
    }

    /// Waits for a request of `method`; answers OPTIONS probes with 200 while waiting.
    pub fn expect_request(&mut self, method: &str, timeout: Duration) -> (Msg, SocketAddr) {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some((m, from)) if m.method_str() == method => return (m, from),
                Some((m, from)) if m.method_str() == "OPTIONS" => {
                    let ok = build::response(&m, 200, "OK", None, &[]);
                    self.reply(&ok, from);
                }
                Some((m, _)) => seen.push(describe(&m)),
                None => break,
            }
        }
        panic!("expected {method} at {}; saw {:?}", self.local(), seen);
    }

    /// Nothing but OPTIONS probes arrives within `timeout`.
    pub fn expect_silence(&mut self, timeout: Duration) {
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some((m, from)) if m.method_str() == "OPTIONS" => {
                    let ok = build::response(&m, 200, "OK", None, &[]);
                    self.reply(&ok, from);
                }
                Some((m, _)) => panic!("expected silence at {}, got {}", self.local(), describe(&m)),
                None => return,
            }
        }
    }

    /// Sends an answer back to where the request came from.
    pub fn reply(&mut self, b: &[u8], to: SocketAddr) {
        match self {
            Peer::Udp { sock, .. } => {
                sock.send_to(b, to).unwrap();
            }
            Peer::Tcp { stream, .. } => stream.write_all(b).unwrap(),
            Peer::Tls { stream, .. } => {
                stream.write_all(b).unwrap();
                stream.flush().unwrap();
            }
        }
    }

    /// Answers `req` like a UAS: copies Record-Route, adds a Contact and a to-tag.
    pub fn answer(&mut self, req: &Msg, code: u16, from: SocketAddr) {
        let b = uas_answer(req, code, self.local());
        self.reply(&b, from);
    }
}

/// A UAS's answer to `req`.
pub fn uas_answer(req: &Msg, code: u16, local: SocketAddr) -> Bytes {
    let rr: Vec<String> = req.headers(HeaderName::RecordRoute).map(str::to_owned).collect();
    let contact = format!("<sip:uas@{local}>");
    let mut extra: Vec<(&str, &str)> = rr.iter().map(|v| ("Record-Route", v.as_str())).collect();
    extra.push(("Contact", &contact));
    let reason = match code {
        180 => "Ringing",
        200 => "OK",
        486 => "Busy Here",
        487 => "Request Terminated",
        503 => "Service Unavailable",
        _ => "Answer",
    };
    build::response(req, code, reason, if code > 100 { Some("uas1") } else { None }, &extra)
}

/// "INVITE" / "200 INVITE" for messages in panics.
pub fn describe(m: &Msg) -> String {
    match m.status() {
        Some(s) => format!("{s} {}", m.cseq().method.as_str()),
        None => m.method_str().to_string(),
    }
}

/// LF → CRLF, and Content-Length set to the body's length.
pub fn wire(text: &str) -> Vec<u8> {
    let t = text.replace("\r\n", "\n");
    let (head, body) = t.split_once("\n\n").unwrap_or((&t, ""));
    let body = body.replace('\n', "\r\n");
    let mut head: Vec<String> =
        head.lines().filter(|l| !l.to_ascii_lowercase().starts_with("content-length")).map(str::to_owned).collect();
    head.push(format!("Content-Length: {}", body.len()));
    format!("{}\r\n\r\n{}", head.join("\r\n"), body).into_bytes()
}

/// An INVITE from `from` (Via transport `t`) for `number` to the edge.
pub fn invite(from: SocketAddr, t: &str, edge: SocketAddr, number: &str, call_id: &str, branch: &str) -> String {
    format!(
        "INVITE sip:{number}@{edge} SIP/2.0\n\
         Via: SIP/2.0/{t} {from};branch=z9hG4bK{branch}\n\
         From: <sip:+13125550199@{from}>;tag=f{branch}\n\
         To: <sip:{number}@{edge}>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:caller@{from}>\n\
         Max-Forwards: 70\n\
         Content-Type: application/sdp\n\n\
         v=0\n"
    )
}

/// An in-dialog request from the caller that follows the 2xx's Record-Route,
/// reversed as the caller's route set is (RFC 3261 §12.1.2).
pub fn in_dialog(method: &str, ok: &Msg, from: SocketAddr, t: &str, cseq: u32, branch: &str) -> String {
    let mut routes: Vec<String> = ok.record_routes().map(|r| format!("Route: <{r}>\n")).collect();
    routes.reverse();
    format!(
        "{method} {} SIP/2.0\nVia: SIP/2.0/{t} {from};branch=z9hG4bK{branch}\n{}From: {}\nTo: {}\nCall-ID: {}\nCSeq: {cseq} {method}\nMax-Forwards: 70\n\n",
        ok.contact_uri().unwrap(),
        routes.concat(),
        ok.header(HeaderName::From).unwrap(),
        ok.header(HeaderName::To).unwrap(),
        ok.call_id()
    )
}

/// A CANCEL for an INVITE built by `invite`.
pub fn cancel(invite_text: &str) -> String {
    let head = invite_text.split("Content-Type").next().unwrap();
    head.replacen("INVITE sip:", "CANCEL sip:", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL") + "\n"
}

/// The callee's BYE, over UDP from `local`, for the INVITE it received: its
/// route set is that INVITE's Record-Route in order (RFC 3261 §12.1.1).
pub fn callee_bye(inv: &Msg, local: SocketAddr, branch: &str) -> Vec<u8> {
    let route = inv.record_routes().map(|r| format!("<{r}>")).collect::<Vec<_>>().join(", ");
    let from = format!("{};tag=uas1", inv.header(HeaderName::To).unwrap());
    build::request(
        sipedge::sip::Method::Bye,
        inv.contact_uri().unwrap(),
        &format!("SIP/2.0/UDP {local};branch={branch}"),
        &from,
        inv.header(HeaderName::From).unwrap(),
        inv.call_id(),
        1,
        &[("Route", route.as_str())],
    )
    .to_vec()
}
