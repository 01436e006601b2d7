//! Fuzz target: SDP read and rewritten for the relay. Any text may fail
//! to read, but what `rewrite` writes must read again as SDP with the same
//! streams, and every stream the relay carries must point at the relay:
//! its port, its address (or the 0.0.0.0 of an old-style hold), its RTCP
//! address, and the relay's own ICE credentials and candidates.

#![no_main]

use std::net::IpAddr;

use fedge_media::sdp::{IceCredentials, Rewrite, StreamPorts, describe, rewrite};
use libfuzzer_sys::fuzz_target;

fn check(sdp: &[u8], address: IpAddr, alternate: bool) {
    let Ok(before) = describe(sdp) else {
        assert!(rewrite(sdp, &dummy(address, &[])).is_err());
        return;
    };
    let ports: Vec<Option<StreamPorts>> = (0..before.streams.len())
        .map(|i| {
            let n = u16::try_from(i).unwrap_or(u16::MAX / 4);
            (!alternate || i % 2 == 0).then_some(StreamPorts {
                rtp: 40000u16.wrapping_add(n.wrapping_mul(4)),
                rtcp: 40001u16.wrapping_add(n.wrapping_mul(4)),
                tcp: i % 3 == 1,
                active: i % 5 == 2,
            })
        })
        .collect();
    let ice = IceCredentials {
        ufrag: "RLAY".into(),
        pwd: "relaypasswordrelaypassword".into(),
    };
    let rw = Rewrite {
        address,
        ports: &ports,
        ice: &ice,
    };
    let out = rewrite(sdp, &rw).expect("an SDP that reads can be rewritten");
    let after = describe(&out).unwrap_or_else(|e| {
        panic!(
            "rewritten SDP does not read ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(after.streams.len(), before.streams.len(), "stream count");
    let text = String::from_utf8(out).expect("rewritten SDP is text");
    for (i, (b, a)) in before.streams.iter().zip(&after.streams).enumerate() {
        assert_eq!((&a.media, &a.proto), (&b.media, &b.proto), "stream {i}");
        let Some(p) = ports[i].filter(|_| b.relayed && b.port != 0) else {
            assert_eq!(a.port, b.port, "stream {i} is not relayed: port kept");
            continue;
        };
        assert_eq!(a.port, p.rtp, "stream {i}: port from the relay");
        let at_relay = |x: Option<IpAddr>| x.is_none_or(|x| x == address || x.is_unspecified());
        assert!(at_relay(a.address), "stream {i}: address {:?}", a.address);
        assert!(
            at_relay(a.rtcp_address),
            "stream {i}: RTCP address {:?}",
            a.rtcp_address
        );
        if let Some(u) = &a.ice_ufrag {
            assert_eq!(u, "RLAY", "stream {i}: the relay's ICE");
        }
    }
    // No candidate in a relayed section names anything but the relay.
    let mut section: Option<usize> = None;
    for line in text.split('\n') {
        if line.starts_with("m=") {
            section = Some(section.map_or(0, |s| s + 1));
        }
        let relayed = section.is_some_and(|s| {
            ports[s].is_some() && before.streams[s].relayed && before.streams[s].port != 0
        });
        if relayed && line.starts_with("a=candidate:") {
            assert!(
                line.contains(&format!(" {address} ")),
                "a peer candidate survived: {line}"
            );
        }
    }
}

fn dummy<'a>(address: IpAddr, ports: &'a [Option<StreamPorts>]) -> Rewrite<'a> {
    static ICE: std::sync::OnceLock<IceCredentials> = std::sync::OnceLock::new();
    Rewrite {
        address,
        ports,
        ice: ICE.get_or_init(|| IceCredentials {
            ufrag: "x".into(),
            pwd: "y".into(),
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, IpAddr::from([203, 0, 113, 5]), false);
    check(data, "2001:db8::5".parse().expect("an IPv6 literal"), true);
});
