//! Telling the running edge that the registry changed: `POST
//! /registry/reload` on the admin listener named in the configuration, so
//! that a change is enforced (a suspended partner refused, its connections
//! closed) before the command that made it returns.
//!
//! Owns that one request. It never fails the command: the change is
//! already committed, and an edge that is not running, or not reachable,
//! applies it at its next `[store] poll_interval`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Asks the edge at `admin` to reload its registry now; waits at most a
/// few seconds. Says on stderr when an edge answered but could not.
pub async fn registry_changed(admin: SocketAddr) {
    if admin.port() == 0 {
        return; // an ephemeral admin port cannot be found from the configuration
    }
    let target = if admin.ip().is_unspecified() {
        match admin {
            SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], admin.port())),
            SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, admin.port())),
        }
    } else {
        admin
    };
    let Ok(Ok(mut tcp)) =
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(target)).await
    else {
        return; // no edge running here: it loads the registry when it starts
    };
    let request = format!(
        "POST /registry/reload HTTP/1.1\r\nHost: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        tcp.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(answer)) if answer.starts_with(b"HTTP/1.1 200") => {}
        Ok(Ok(answer)) => {
            let line = String::from_utf8_lossy(&answer);
            let line = line.lines().next().unwrap_or("");
            eprintln!(
                "note: the edge at {target} could not reload its registry ({line}); it applies the change at its next poll"
            );
        }
        Ok(Err(e)) => eprintln!(
            "note: the edge at {target} did not confirm the change ({e}); it applies it at its next poll"
        ),
        Err(_) => eprintln!(
            "note: the edge at {target} did not confirm the change in time; it applies it at its next poll"
        ),
    }
}
