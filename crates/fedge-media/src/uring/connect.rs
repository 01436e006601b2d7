//! Connected siblings for the io_uring loop's relay sockets (issue 18,
//! goal 1, D258): once a relay socket has sent `AFTER` datagrams in a row
//! to one peer (the side is latched), a second socket is bound to the same
//! port with `SO_REUSEPORT` and connected to that peer. The kernel then
//! delivers that peer's datagrams to the sibling (a connected socket wins
//! for its own four-tuple) and sends to it without a route lookup each;
//! every other source (a stranger, a NAT rebinding, another ICE candidate)
//! still reaches the relay socket, so the stream decides on them as before.
//!
//! Owns when a sibling is made or re-pointed and the socket calls that make
//! it. It never decides anything about a packet (the sibling's datagrams go
//! to the same stream and side as the relay socket's), never binds a port
//! the relay does not hold already (the relay socket joins the group only
//! after its own exclusive bind), and never lets siblings take the last
//! quarter of the open-files limit, which new calls' ports need.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::SockaddrStorage;
use tracing::debug;

use super::{Entry, Uring};

/// Sends in a row from one relay socket to one peer before that peer gets
/// a connected sibling socket.
pub(super) const AFTER: u32 = 16;

impl Uring {
    /// Gives relay socket `slot` a sibling connected to `to` (or points its
    /// sibling there): bound to the same port with `SO_REUSEPORT`, it takes
    /// that peer's datagrams (the kernel prefers a connected socket for its
    /// own four-tuple) and sends to it without a route lookup per packet;
    /// everyone else's datagrams still reach the relay socket.
    pub(super) fn connect(&mut self, slot: usize, to: SocketAddr) {
        let Some(Some(r)) = self.table.slots.get(slot) else {
            return;
        };
        if r.closing || r.sibling.is_some() {
            return;
        }
        if let Some((sib, _)) = r.conn.get() {
            if let Some(Some(s)) = self.table.slots.get(sib)
                && let Some((sock, _)) = &s.sibling
                && sock.connect(to).is_ok()
            {
                r.conn.set(Some((sib, to)));
            }
            return;
        }
        let sock = match sibling(r.stream.end(r.side).socket(r.c), to) {
            // Linux gives the lowest free descriptor: a high one says the
            // process holds that many already.
            Ok(s) if s.as_raw_fd() <= self.sibling_fds => s,
            Ok(_) => {
                debug!(
                    "media: no connected socket (open files near the limit); sends name their peer"
                );
                return;
            }
            Err(e) => {
                debug!(error = %e, "media: no connected socket; sends name their peer");
                return;
            }
        };
        let fd = sock.as_raw_fd();
        let e = Entry::new(
            r.stream.clone(),
            r.id,
            (r.side, r.c),
            r.peers,
            Some((sock, slot)),
        );
        let id = e.id;
        let sib = self.take_slot();
        self.install(sib, fd, e);
        if let Some(slots) = self.table.streams.get_mut(&id) {
            slots.push(sib);
        }
        if let Some(Some(r)) = self.table.slots.get(slot) {
            r.conn.set(Some((sib, to)));
        }
    }
}

/// A socket on `relay`'s port connected to `to`: `relay` is put in a
/// `SO_REUSEPORT` group first (it was bound alone, so the port was ours),
/// and the sibling joins it.
fn sibling(relay: &std::net::UdpSocket, to: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, bind, setsockopt, socket, sockopt};
    setsockopt(relay, sockopt::ReusePort, &true)?;
    let local = relay.local_addr()?;
    let family = if local.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    let sock = std::net::UdpSocket::from(fd);
    bind(sock.as_raw_fd(), &SockaddrStorage::from(local))?;
    sock.connect(to)?;
    Ok(sock)
}
