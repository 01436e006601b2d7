//! The H.323 side of BFCP (RFC 8855 over TCP, RFC 8856 `TCP/BFCP`) for a
//! room's H.239 presentation: the gateway speaks as the floor control
//! client for the room (`a=floorctrl:c-only`, `a=setup:active`) towards the
//! relay, which carries the messages to the connector (the floor control
//! server). While the room holds the H.239 token: FloorRequest for the
//! floor the answer named; when it gives the token up (or the call ends):
//! FloorRelease of the request the server's FloorRequestStatus named.
//!
//! Owns the client's messages and its one connection; never decides who
//! presents (the server does; the room's token is acknowledged regardless,
//! D206) and never blocks the call: the connection is its own task, every
//! step bounded by a timeout, ended by the call dropping its handle.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tracing::debug;

/// RFC 8855 primitives.
const FLOOR_REQUEST: u8 = 1;
const FLOOR_RELEASE: u8 = 2;
const FLOOR_REQUEST_STATUS: u8 = 4;
const FLOOR_QUERY: u8 = 7;
const FLOOR_STATUS: u8 = 8;
/// RFC 8855 attributes.
const FLOOR_ID: u8 = 2;
const FLOOR_REQUEST_ID: u8 = 3;
const REQUEST_STATUS: u8 = 5;
const FLOOR_REQUEST_INFORMATION: u8 = 15;
const OVERALL_REQUEST_STATUS: u8 = 16;
const FLOOR_REQUEST_STATUS_ATTR: u8 = 17;
/// RFC 8855 §5.2.5 request states that end the room's floor.
pub const DENIED: u8 = 4;
pub const REVOKED: u8 = 7;
/// RFC 8855 §5.2.5 states in which a floor is held (pending, accepted,
/// granted) and in which it ends (cancelled, released, revoked).
const HELD: [u8; 3] = [1, 2, 3];
pub const RELEASED: u8 = 6;
const ENDS: [u8; 3] = [5, RELEASED, REVOKED];
/// The longest a step (connect, an answer) may take.
const STEP: Duration = Duration::from_secs(5);
/// How often, and how long apart, the FloorRequest is sent before the
/// server answers.
const REQUEST_TRIES: usize = 10;
const RESEND: Duration = Duration::from_secs(1);
/// How long one read waits while the floor is held (then again).
const HOLD_READ: Duration = Duration::from_secs(60);
/// The largest message read (the relay's bound too).
const MAX_MESSAGE: usize = 16 * 1024;

/// What the SDP answer said about the floor: the relay's BFCP address and
/// the server's conference, user and floor identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    pub relay: SocketAddr,
    pub confid: u32,
    pub userid: u16,
    pub floorid: u16,
}

/// The `TCP/BFCP` m= section of our offer: at `ip` (the gateway's own
/// address: the connection comes from it), port 9 (we connect), or port 0
/// (off).
pub fn offer_section(ip: IpAddr, on: bool) -> String {
    if !on {
        return "m=application 0 TCP/BFCP *\r\n".into();
    }
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "m=application 9 TCP/BFCP *\r\nc=IN {fam} {ip}\r\na=setup:active\r\na=connection:new\r\na=floorctrl:c-only\r\n"
    )
}

/// Our answer's section for the meeting's BFCP stream (the `index`th m=
/// section of `offer`) when the meeting presents to the room: over
/// `TCP/BFCP` the room is a floor participant (client, active, port 9:
/// it connects only when it asks for the floor); other BFCP is refused.
pub fn answer_section(offer: &[u8], index: usize, ip: IpAddr) -> String {
    let text = String::from_utf8_lossy(offer);
    let proto = text
        .lines()
        .filter(|l| l.starts_with("m="))
        .nth(index)
        .and_then(|m| m.split_whitespace().nth(2))
        .unwrap_or("TCP/BFCP")
        .to_string();
    if proto.eq_ignore_ascii_case("TCP/BFCP") {
        offer_section(ip, true)
    } else {
        format!("m=application 0 {proto} *\r\n")
    }
}

/// The floor of the `index`th m= section of an answer, if it is a
/// `TCP/BFCP` stream that is on and names a conference, user and floor.
pub fn floor_at(sdp: &[u8], index: usize) -> Option<Floor> {
    let text = String::from_utf8_lossy(sdp);
    let mut session_c: Option<IpAddr> = None;
    let mut n: Option<usize> = None;
    let (mut port, mut c, mut confid, mut userid, mut floorid) = (0u16, None, None, None, None);
    let mut bfcp = false;
    for line in text.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            n = Some(n.map_or(0, |x| x + 1));
            if n == Some(index) {
                let f: Vec<&str> = m.split_whitespace().collect();
                port = f.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
                bfcp = f.get(2).is_some_and(|p| p.eq_ignore_ascii_case("TCP/BFCP"));
            }
            continue;
        }
        let here = n == Some(index);
        if let Some(v) = line.strip_prefix("c=") {
            let ip = v.split_whitespace().nth(2).and_then(|a| a.parse().ok());
            match n {
                None => session_c = ip,
                Some(_) if here => c = ip,
                _ => {}
            }
        } else if here && let Some(v) = line.strip_prefix("a=confid:") {
            confid = v.trim().parse().ok();
        } else if here && let Some(v) = line.strip_prefix("a=userid:") {
            userid = v.trim().parse().ok();
        } else if here && let Some(v) = line.strip_prefix("a=floorid:") {
            floorid = v.split_whitespace().next().and_then(|f| f.parse().ok());
        }
    }
    let ip = c.or(session_c)?;
    (bfcp && port != 0).then_some(())?;
    Some(Floor {
        relay: SocketAddr::new(ip, port),
        confid: confid?,
        userid: userid?,
        floorid: floorid?,
    })
}

/// One BFCP message (version 1) with one 16-bit attribute.
pub fn message(f: &Floor, primitive: u8, tid: u16, attr: u8, value: u16) -> Vec<u8> {
    let mut m = vec![0x20, primitive, 0, 1];
    m.extend_from_slice(&f.confid.to_be_bytes());
    m.extend_from_slice(&tid.to_be_bytes());
    m.extend_from_slice(&f.userid.to_be_bytes());
    // Attribute: type (7 bits) and the M(andatory) bit, length 4.
    m.extend_from_slice(&[(attr << 1) | 1, 4]);
    m.extend_from_slice(&value.to_be_bytes());
    m
}

/// The floor request ID of a FloorRequestStatus (its
/// FLOOR-REQUEST-INFORMATION's first field), if `m` is one.
pub fn request_id(m: &[u8]) -> Option<u16> {
    if m.len() < 12 || m[0] >> 5 == 0 || m[1] != FLOOR_REQUEST_STATUS {
        return None;
    }
    let mut at = 12;
    while at + 4 <= m.len() {
        let (kind, len) = (m[at] >> 1, usize::from(m[at + 1]));
        if kind == FLOOR_REQUEST_INFORMATION {
            return Some(u16::from_be_bytes([m[at + 2], m[at + 3]]));
        }
        if len < 2 {
            return None;
        }
        at += len.div_ceil(4) * 4;
    }
    None
}

/// The REQUEST-STATUS of a FloorRequestStatus (its first, whether in
/// OVERALL-REQUEST-STATUS or FLOOR-REQUEST-STATUS), if `m` is one.
pub fn request_status(m: &[u8]) -> Option<u8> {
    status_in(m, FLOOR_REQUEST_STATUS)
}

/// The first REQUEST-STATUS of a message of `primitive`.
fn status_in(m: &[u8], primitive: u8) -> Option<u8> {
    if m.len() < 12 || m[0] >> 5 == 0 || m[1] != primitive {
        return None;
    }
    let mut at = 12;
    while at + 4 <= m.len() {
        let (kind, len) = (m[at] >> 1, usize::from(m[at + 1]));
        match kind {
            REQUEST_STATUS => return Some(m[at + 2]),
            // Grouped: their own 16-bit value, then their attributes.
            FLOOR_REQUEST_INFORMATION | OVERALL_REQUEST_STATUS | FLOOR_REQUEST_STATUS_ATTR => {
                at += 4
            }
            _ if len < 2 => return None,
            _ => at += len.div_ceil(4) * 4,
        }
    }
    None
}

/// Whether `m` is a FloorRequestStatus that ends the floor (denied or
/// revoked), and which.
fn floor_ended(m: &[u8]) -> Option<u8> {
    request_status(m).filter(|s| matches!(*s, DENIED | REVOKED))
}

/// What one read gave.
enum Read {
    Message(Vec<u8>),
    /// Nothing within the wait.
    Silent,
    /// Closed, broken or too long.
    Closed,
}

/// Reads one whole BFCP message (its length from the common header),
/// waiting `within` for its start.
async fn read_message(s: &mut TcpStream, within: Duration) -> Read {
    let mut head = [0u8; 12];
    match tokio::time::timeout(within, s.read_exact(&mut head)).await {
        Err(_) => return Read::Silent,
        Ok(Err(_)) => return Read::Closed,
        Ok(Ok(_)) => {}
    }
    let len = usize::from(u16::from_be_bytes([head[2], head[3]])) * 4;
    if len > MAX_MESSAGE {
        return Read::Closed;
    }
    let mut m = head.to_vec();
    m.resize(12 + len, 0);
    match tokio::time::timeout(STEP, s.read_exact(&mut m[12..])).await {
        Ok(Ok(_)) => Read::Message(m),
        _ => Read::Closed,
    }
}

/// A connection from `local` to the relay's BFCP port: the relay takes it
/// once the other side's answer is in, so a few tries.
async fn connect(local: IpAddr, relay: SocketAddr) -> Option<TcpStream> {
    for _ in 0..10 {
        let s = match local {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .ok()?;
        s.bind(SocketAddr::new(local, 0)).ok()?;
        if let Ok(Ok(c)) = tokio::time::timeout(STEP, s.connect(relay)).await {
            let _ = c.set_nodelay(true);
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    debug!(%relay, "BFCP: the relay did not take our connection");
    None
}

/// The watcher of the meeting's floor while the meeting presents to the
/// room (D224): connects from `local` to the relay, sends FloorQuery for
/// the floor (again each second until a FloorStatus, at most 10 times),
/// and tells `released` when a FloorStatus says the floor's request ended
/// (cancelled, released, revoked) or, once it was held, that it is free.
/// Ends with that, on `stop` (fired or dropped), or on any failure.
pub async fn watcher(
    local: IpAddr,
    f: Floor,
    stop: oneshot::Receiver<()>,
    released: oneshot::Sender<u8>,
) {
    let Some(mut s) = connect(local, f.relay).await else {
        return;
    };
    let query = message(&f, FLOOR_QUERY, 1, FLOOR_ID, f.floorid);
    let (mut answered, mut held, mut tries) = (false, false, 0);
    tokio::pin!(stop);
    loop {
        if !answered {
            tries += 1;
            let sent = tokio::time::timeout(STEP, s.write_all(&query)).await;
            if tries > REQUEST_TRIES || !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        let wait = if answered { HOLD_READ } else { RESEND };
        tokio::select! {
            _ = &mut stop => break,
            m = read_message(&mut s, wait) => match m {
                Read::Message(m) if m.get(1) == Some(&FLOOR_STATUS) => {
                    answered = true;
                    match status_in(&m, FLOOR_STATUS) {
                        Some(st) if HELD.contains(&st) => held = true,
                        Some(st) if ENDS.contains(&st) => {
                            let _ = released.send(st);
                            break;
                        }
                        None if held => {
                            let _ = released.send(RELEASED);
                            break;
                        }
                        _ => {}
                    }
                }
                Read::Message(_) | Read::Silent => {}
                Read::Closed => break,
            },
        }
    }
    let _ = s.shutdown().await;
}

/// The client for one presentation: connects from `local` to the relay,
/// requests the floor, and releases it when `release` fires (or its
/// sender is dropped). A FloorRequestStatus denying or revoking the
/// floor is told on `ended` (and ends the task: nothing to release).
/// Every failure just ends the task (logged).
pub async fn client(
    local: IpAddr,
    f: Floor,
    release: oneshot::Receiver<()>,
    ended: oneshot::Sender<u8>,
) {
    let Some(mut s) = connect(local, f.relay).await else {
        return;
    };
    // The FloorRequest, again (same transaction) each second until the
    // server's FloorRequestStatus: the relay drops what arrives before
    // the connector's own connection is up (D206).
    let req = message(&f, FLOOR_REQUEST, 1, FLOOR_ID, f.floorid);
    let mut id = None;
    let mut released = false;
    tokio::pin!(release);
    for _ in 0..REQUEST_TRIES {
        if !matches!(
            tokio::time::timeout(STEP, s.write_all(&req)).await,
            Ok(Ok(()))
        ) {
            return;
        }
        tokio::select! {
            _ = &mut release => {
                released = true;
                break;
            }
            m = read_message(&mut s, RESEND) => match m {
                Read::Message(m) => {
                    if let Some(st) = floor_ended(&m) {
                        let _ = ended.send(st);
                        return;
                    }
                    id = request_id(&m);
                    if id.is_some() {
                        break;
                    }
                }
                Read::Silent => {}
                Read::Closed => {
                    debug!(relay = %f.relay, "BFCP: the connection closed before the floor was granted");
                    return;
                }
            },
        }
    }
    debug!(relay = %f.relay, request = ?id, "BFCP: floor requested");
    // Held until the release (or the call's end), unless the server
    // denies or revokes it first.
    while !released {
        tokio::select! {
            _ = &mut release => released = true,
            m = read_message(&mut s, HOLD_READ) => match m {
                Read::Message(m) => {
                    if let Some(st) = floor_ended(&m) {
                        debug!(relay = %f.relay, status = st, "BFCP: the floor was taken back");
                        let _ = ended.send(st);
                        let _ = s.shutdown().await;
                        return;
                    }
                }
                Read::Silent => {}
                Read::Closed => {
                    // Nothing more to hear; the release is the call's.
                    let _ = (&mut release).await;
                    return;
                }
            },
        }
    }
    if let Some(id) = id {
        let rel = message(&f, FLOOR_RELEASE, 2, FLOOR_REQUEST_ID, id);
        if matches!(
            tokio::time::timeout(STEP, s.write_all(&rel)).await,
            Ok(Ok(()))
        ) {
            // The server's answer (or a second), so the release is through
            // the relay before our connection (and so the connector's) ends.
            let _ = read_message(&mut s, RESEND).await;
        }
    }
    let _ = s.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_the_answer() {
        let answer = "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 97\r\na=content:slides\r\nm=application 40010 TCP/BFCP *\r\na=setup:passive\r\na=floorctrl:s-only\r\na=confid:4321\r\na=userid:7\r\na=floorid:2 mstrm:3\r\n";
        let f = floor_at(answer.as_bytes(), 2).unwrap();
        assert_eq!(
            f,
            Floor {
                relay: "127.0.0.2:40010".parse().unwrap(),
                confid: 4321,
                userid: 7,
                floorid: 2
            }
        );
        assert_eq!(floor_at(answer.as_bytes(), 1), None);
        assert_eq!(
            floor_at(&answer.replace("40010", "0").into_bytes(), 2),
            None
        );
        let m = message(&f, FLOOR_REQUEST, 1, FLOOR_ID, 2);
        assert_eq!(m, [0x20, 1, 0, 1, 0, 0, 0x10, 0xe1, 0, 1, 0, 7, 5, 4, 0, 2]);
        // A FloorRequestStatus with FLOOR-REQUEST-INFORMATION (id 9).
        let mut st = vec![0x20, 4, 0, 2, 0, 0, 0x10, 0xe1, 0, 1, 0, 7];
        st.extend_from_slice(&[15 << 1 | 1, 8, 0, 9, 0, 0, 0, 0]);
        assert_eq!(request_id(&st), Some(9));
        assert_eq!(request_id(&m), None);
        assert_eq!(request_id(&st[..6]), None);
        let off = offer_section("127.0.0.2".parse().unwrap(), false);
        assert_eq!(off, "m=application 0 TCP/BFCP *\r\n");
    }

    #[test]
    fn the_request_status_is_read_and_the_meetings_bfcp_answered() {
        // FloorRequestStatus: FLOOR-REQUEST-INFORMATION 9 with
        // OVERALL-REQUEST-STATUS 9, REQUEST-STATUS revoked.
        let mut st = vec![0x20, 4, 0, 3, 0, 0, 0x10, 0xe1, 0, 1, 0, 7];
        st.extend_from_slice(&[15 << 1 | 1, 12, 0, 9, 16 << 1 | 1, 8, 0, 9]);
        st.extend_from_slice(&[5 << 1 | 1, 4, REVOKED, 0]);
        assert_eq!(request_status(&st), Some(REVOKED));
        assert_eq!(floor_ended(&st), Some(REVOKED));
        st[22] = 3; // granted
        assert_eq!(floor_ended(&st), None);
        st[22] = DENIED;
        assert_eq!(floor_ended(&st), Some(DENIED));
        // Not a FloorRequestStatus; no status in it.
        st[1] = 1;
        assert_eq!(request_status(&st), None);
        let bare = [
            0x20,
            4,
            0,
            2,
            0,
            0,
            0x10,
            0xe1,
            0,
            1,
            0,
            7,
            15 << 1 | 1,
            8,
            0,
            9,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(request_status(&bare), None);
        let offer = b"v=0\r\nm=audio 1 RTP/AVP 0\r\nm=application 40006 TCP/BFCP *\r\nm=application 40008 UDP/BFCP *\r\n";
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(answer_section(offer, 1, ip).contains("a=floorctrl:c-only\r\n"));
        assert_eq!(
            answer_section(offer, 2, ip),
            "m=application 0 UDP/BFCP *\r\n"
        );
    }

    #[test]
    fn a_floor_status_says_whether_the_floor_is_held() {
        // FloorStatus: FLOOR-ID 2, FLOOR-REQUEST-INFORMATION 9 with
        // OVERALL-REQUEST-STATUS 9, REQUEST-STATUS granted.
        let mut st = vec![0x20, FLOOR_STATUS, 0, 4, 0, 0, 0x10, 0xe1, 0, 1, 0, 7];
        st.extend_from_slice(&[2 << 1 | 1, 4, 0, 2]);
        st.extend_from_slice(&[15 << 1 | 1, 12, 0, 9, 16 << 1 | 1, 8, 0, 9]);
        st.extend_from_slice(&[5 << 1 | 1, 4, 3, 0]);
        assert_eq!(status_in(&st, FLOOR_STATUS), Some(3));
        assert_eq!(request_status(&st), None);
        st[26] = RELEASED;
        assert_eq!(status_in(&st, FLOOR_STATUS), Some(RELEASED));
        // The floor free: no request information.
        assert_eq!(status_in(&st[..16], FLOOR_STATUS), None);
    }
}
