//! Real user agents on the media path (issue 18, goal 6): baresip (Debian's)
//! as a partner's user behind Kamailio (the partner's edge: TLS from the
//! user, mutual TLS to fedge) and baresip as a home user behind fedge's
//! home-pool next hop, both with SRTP (SDES, mandatory) and full ICE,
//! calling each other through fedge's media relay. Each side sends its own
//! tone; the test checks that each records the other's tone (SRTP decrypts
//! end to end: the keys crossed the edge intact), that the relay's
//! counters show RTP both ways and its ICE-lite answered both sides'
//! checks, that a capture on loopback shows RTP, RTCP and STUN through the
//! relay's ports both ways and the home side's SDP pointing at the relay
//! with RTP/SAVP and the crypto attribute kept, and that the hang-up (BYE
//! from either side) closes the session and frees its ports.
//!
//! Everything runs in a private network namespace (the user agents' ICE
//! wants an address outside 127/8; see fedge_testkit::baresip).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use fedge_testkit::baresip::{
    Baresip, Capture, DnsStub, UA_MEDIA_ADDRESS, UaSpec, free_sip_port, in_private_network,
    partner_edge, tone,
};
use fedge_testkit::lab::Lab;
use fedge_testkit::peers::Kamailio;
use fedge_testkit::*;

/// The tones each side sends (Hz), told apart in the other's recording.
const PARTNER_TONE: u32 = 440;
const HOME_TONE: u32 = 1000;
/// How long the call stays up with audio flowing (RTCP's first report
/// comes after about 5 s: RFC 3550's minimum interval).
const TALK: Duration = Duration::from_secs(8);
/// When the media has settled after the answer (ICE done, re-INVITEs
/// with the chosen candidates answered).
const SETTLE: Duration = Duration::from_millis(1500);

/// The lab: fedge with its home-pool next hop at the home user agent
/// (UDP), Kamailio as the partner's edge, the partner's user agent behind
/// it over TLS, both user agents with SRTP and ICE.
struct Interop {
    lab: Lab,
    _dns: DnsStub,
    _kam: Kamailio,
    partner: Baresip,
    home: Baresip,
}

fn interop() -> Interop {
    interop_with(false, "udp")
}

/// The lab, with both user agents asking for rtcp-mux when `mux`, and the
/// home pool (fedge's next hop, the home user agent) on `home_transport`
/// (`udp` or `tcp`).
fn interop_with(mux: bool, home_transport: &str) -> Interop {
    let home_port = free_sip_port();
    // baresip is not Lync or Skype for Business: the product check lets
    // it through (docs/policy.md, "Products and versions").
    let lab = Lab::with_config(
        "t1 = \"100ms\"\n\n[policy]\nallow_other_products = true\n",
        |c| {
            c.replace(
                "next_hop = \"sip:127.0.0.1:5080;transport=udp\"",
                &format!("next_hop = \"sip:127.0.0.1:{home_port};transport={home_transport}\""),
            )
        },
        None,
    );
    let mut pspec = UaSpec::new("sip:alice@partner.test", "tls", PARTNER_TONE);
    pspec.rtcp_mux = mux;
    let ua_cert = lab.pki.leaf(
        "alice-ua",
        &fedge::pki::LeafSpec::new("ua.partner.test", 30),
    );
    pspec.tls = Some((ua_cert, lab.pki.ca_file.clone()));
    let ua_tls = SocketAddr::from(([127, 0, 0, 1], pspec.sip_port + 1));
    let (kam, kam_ua) = partner_edge(&lab.pki, lab.edge.federation, ua_tls);
    lab.import(
        "partner.test",
        "Partner Trust",
        fedge_testkit::PARTNER_FQDN,
        kam.tls,
    );
    pspec.outbound = Some(format!("sip:{kam_ua};transport=tls"));
    let partner = Baresip::start(lab.dir(), "partner", pspec);
    // The home user agent resolves the edge's name in its Record-Route.
    let dns = DnsStub::start(&[(EDGE_FQDN, std::net::Ipv4Addr::LOCALHOST)]);
    let mut hspec = UaSpec::new("sip:bob@fedge.test", home_transport, HOME_TONE);
    hspec.dns = Some(dns.addr);
    hspec.rtcp_mux = mux;
    hspec.sip_port = home_port;
    hspec.outbound = Some(format!(
        "sip:{};transport={home_transport}",
        lab.edge.internal
    ));
    let home = Baresip::start(lab.dir(), "home", hspec);
    Interop {
        lab,
        _dns: dns,
        _kam: kam,
        partner,
        home,
    }
}

impl Interop {
    fn diagnostics(&self) -> String {
        format!(
            "fedge:\n{}\n\npartner UA:\n{}\n\nhome UA:\n{}\n\nkamailio:\n{}",
            self.lab.edge.logs().join("\n"),
            self.partner.logs(),
            self.home.logs(),
            self._kam.logs()
        )
    }

    /// The relay's live sessions (`GET /media`).
    fn media(&self) -> serde_json::Value {
        admin_get(self.lab.edge.admin, "/media")
    }
}

impl Drop for Interop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// The relay's ports of the one live session: (side A's RTP port, side
/// B's RTP port); RTCP is on the next port of each.
fn relay_ports(v: &serde_json::Value) -> (u16, u16) {
    let s = &v["sessions"][0]["streams"][0];
    let port = |i: usize| s[i]["port"].as_u64().unwrap_or(0) as u16;
    (port(0), port(1))
}

/// One call from `caller` to `callee_uri`, up for [`TALK`], hung up by
/// `hanger`; every check of the module's header. `caller_is_partner`
/// says which side A (the side that sent the offer) is.
fn call(t: &Interop, caller_is_partner: bool, callee_uri: &str, partner_hangs_up: bool) {
    let (caller, callee) = if caller_is_partner {
        (&t.partner, &t.home)
    } else {
        (&t.home, &t.partner)
    };
    let n_before = |b: &Baresip| b.events("CALL_ESTABLISHED").len();
    let (caller_n, callee_n) = (n_before(caller) + 1, n_before(callee) + 1);
    let dir = t.lab.dir();
    let pcap = dir.join(format!("call-{}.pcapng", rand::random::<u32>()));
    // The relay's range, the home user agent's SIP (in clear), and
    // the user agents' media address.
    let mut cap = Capture::start(
        &pcap,
        &format!(
            "udp portrange 50000-59999 or port {} or host {UA_MEDIA_ADDRESS}",
            t.home.spec.sip_port
        ),
    );
    caller.dial(callee_uri);
    let within = Duration::from_secs(20);
    caller.wait_event("CALL_ESTABLISHED", caller_n, within);
    callee.wait_event("CALL_ESTABLISHED", callee_n, within);
    // SRTP (SDES) on both ends.
    for (ua, n) in [(caller, caller_n), (callee, callee_n)] {
        let menc = ua.wait_event("CALL_MENC", n, within);
        assert!(
            menc["param"]
                .as_str()
                .is_some_and(|p| p.contains("AES_CM_128_HMAC_SHA1_80")),
            "{}: {menc}",
            ua.name
        );
    }
    // Both ends' ICE completed against the relay's (ICE-lite) candidates.
    for ua in [caller, callee] {
        ua.wait_log("connectivity check is complete", within);
        assert!(
            !ua.logs().contains("connectivity check failed"),
            "{}:\n{}",
            ua.name,
            t.diagnostics()
        );
    }
    let live = t.media();
    assert_eq!(
        live["sessions"].as_array().map(Vec::len),
        Some(1),
        "{live}\n{}",
        t.diagnostics()
    );
    let (port_a, port_b) = relay_ports(&live);
    assert!(port_a >= 50000 && port_b >= 50000, "{live}");
    // No drops before the media settles either: an answerer's ICE checks
    // and media overtake its answer, and the latch its checks made must
    // survive the answer (the relay's bug found here, docs/decisions.md;
    // unit test an_ice_check_that_overtakes_the_answer_keeps_its_latch).
    std::thread::sleep(SETTLE);
    let drops = |v: &serde_json::Value| -> Vec<u64> {
        (0..2)
            .map(|i| {
                v["sessions"][0]["streams"][0][i]["drops"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .collect()
    };
    let early = drops(&t.media());
    assert!(
        early.iter().sum::<u64>() == 0,
        "{early:?}\n{}",
        t.diagnostics()
    );
    std::thread::sleep(TALK - SETTLE);
    // The relay's counters while the call is up: RTP both ways, STUN
    // checks answered on both sides, nothing dropped since it settled.
    let live = t.media();
    assert_eq!(drops(&live), early, "drops while the call was up: {live}");
    let s = &live["sessions"][0]["streams"][0];
    for side in 0..2 {
        let packets = s[side]["packets"].as_u64().unwrap_or(0);
        // 50 packets/s of 20 ms PCMU for most of TALK.
        assert!(packets >= 200, "side {side}: {s}\n{}", t.diagnostics());
        assert!(
            s[side]["stun"].as_u64().unwrap_or(0) >= 1,
            "side {side}: {s}"
        );
    }
    assert_eq!(live["sessions"][0]["confirmed"], true, "{live}");
    if partner_hangs_up {
        t.partner.hangup();
    } else {
        t.home.hangup();
    }
    caller.wait_event("CALL_CLOSED", caller_n, within);
    callee.wait_event("CALL_CLOSED", callee_n, within);
    // Hang-up releases the relay's session and ports.
    let closed = t
        .lab
        .edge
        .wait_log(
            &["media session closed", "BYE answered 200"],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no close line\n{}", t.diagnostics()));
    assert!(
        closed.contains(&format!("\"drops\":{}", early.iter().sum::<u64>())),
        "{closed}\nbefore the hang-up: {live}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = t.media();
        if v["sessions"].as_array().map(Vec::len) == Some(0) && v["ports_in_use"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still held: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for p in [port_a, port_a + 1, port_b, port_b + 1] {
        UdpSocket::bind(("127.0.0.1", p))
            .unwrap_or_else(|e| panic!("relay port {p} still bound after the hang-up: {e}"));
    }
    check_capture(
        &mut cap,
        (port_a, port_b),
        (t.home.spec.transport.as_str(), t.home.spec.sip_port),
        t.home.spec.rtcp_mux,
        &t.diagnostics(),
    );
    check_tones(t);
}

/// What crossed the relay's ports, as tshark decodes it: RTP (SRTP) and
/// RTCP (SRTCP) into and out of both of the relay's ports, STUN Binding
/// requests answered on both; and the SDP the home side saw. With `mux`
/// (RFC 5761), RTCP shares the RTP ports.
fn check_capture(
    cap: &mut Capture,
    (port_a, port_b): (u16, u16),
    (home_transport, home_port): (&str, u16),
    mux: bool,
    diag: &str,
) {
    let decode: Vec<String> = [port_a, port_b]
        .iter()
        .flat_map(|p| {
            let mut d = vec![format!("udp.port=={p},rtp")];
            if !mux {
                d.push(format!("udp.port=={},rtcp", p + 1));
            }
            d
        })
        .collect();
    let fields = [
        "ip.src",
        "udp.srcport",
        "ip.dst",
        "udp.dstport",
        "rtp.ssrc",
        "rtcp.pt",
        "stun.type",
    ];
    // RTP (version 2: a STUN packet decoded as RTP is not) and RTCP.
    // Wireshark names SRTP "SRTP" (and SRTCP "SRTCP") where it saw the
    // SDP: filter on fields both have.
    let mut rows = cap.fields(&decode, "rtp.version == 2 || rtcp.pt", &fields);
    for r in &mut rows {
        r[6].clear();
    }
    // STUN, in a pass of its own: Decode As can take it for RTP.
    rows.extend(cap.fields(&[], "stun.type", &fields));
    let count = |pred: &dyn Fn(&[String]) -> bool| rows.iter().filter(|r| pred(r)).count();
    // Flows by source, destination and kind, for the failure messages.
    let mut flows = std::collections::BTreeMap::new();
    for r in &rows {
        let kind = if !r[6].is_empty() {
            format!("stun {}", r[6])
        } else if !r[5].is_empty() {
            "rtcp".to_string()
        } else {
            "rtp".to_string()
        };
        *flows
            .entry(format!("{}:{} -> {}:{} {kind}", r[0], r[1], r[2], r[3]))
            .or_insert(0) += 1;
    }
    let diag = &format!("flows: {flows:#?}\n{diag}");
    for (p, name) in [(port_a, "A"), (port_b, "B")] {
        let ps = p.to_string();
        let rtcp = if mux { ps.clone() } else { (p + 1).to_string() };
        let rtp_in = count(&|r| r[3] == ps && r[5].is_empty() && r[6].is_empty());
        let rtp_out = count(&|r| r[1] == ps && r[5].is_empty() && r[6].is_empty());
        let rtcp_in = count(&|r| r[3] == rtcp && !r[5].is_empty());
        let rtcp_out = count(&|r| r[1] == rtcp && !r[5].is_empty());
        // STUN Binding request in, success response out (types 0x0001, 0x0101).
        let stun_req = count(&|r| r[3] == ps && r[6] == "0x0001");
        let stun_ok = count(&|r| r[1] == ps && r[6] == "0x0101");
        assert!(
            rtp_in >= 200 && rtp_out >= 200,
            "side {name} (port {p}): RTP in {rtp_in}, out {rtp_out}\n{diag}"
        );
        assert!(
            rtcp_in >= 1 && rtcp_out >= 1,
            "side {name} (port {rtcp}): RTCP in {rtcp_in}, out {rtcp_out}\n{diag}"
        );
        assert!(
            stun_req >= 1 && stun_ok >= 1,
            "side {name} (port {p}): STUN requests {stun_req}, answers {stun_ok}\n{diag}"
        );
    }
    // The SDPs fedge sent the home user agent (SIP in clear, over the
    // home pool's transport):
    // SRTP kept (RTP/SAVP, the crypto attribute), the relay's address
    // only (the partner's 198.18.0.1 never shows), ICE-lite with the
    // relay's own candidates.
    let sdps = cap.fields(
        &[],
        &format!("sip && sdp && {home_transport}.dstport == {home_port}"),
        &[
            "sdp.media",
            "sdp.connection_info",
            "sdp.session_attr",
            "sdp.media_attr",
        ],
    );
    assert!(!sdps.is_empty(), "fedge sent the home side no SDP\n{diag}");
    for sdp in &sdps {
        let text = sdp.join("\n");
        assert!(sdp[0].contains("RTP/SAVP"), "{text}");
        assert!(sdp[1].contains("127.0.0.1"), "{text}");
        assert!(sdp[2].contains("ice-lite"), "{text}");
        assert!(
            sdp[3].contains("crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{text}"
        );
        assert!(
            sdp[3].contains("candidate:1 1 UDP 2130706431 127.0.0.1 "),
            "{text}"
        );
        assert_eq!(sdp[3].contains("rtcp-mux"), mux, "{text}");
        assert!(
            !text.contains(UA_MEDIA_ADDRESS),
            "the partner's address leaked: {text}"
        );
    }
}

/// Each side recorded the other's tone for most of the call: SRTP
/// decrypted end to end through the relay.
fn check_tones(t: &Interop) {
    for (ua, want) in [(&t.partner, HOME_TONE), (&t.home, PARTNER_TONE)] {
        let rec = ua
            .recordings("dec")
            .pop()
            .unwrap_or_else(|| panic!("{} recorded nothing\n{}", ua.name, ua.logs()));
        let got = tone(&rec);
        assert!(
            got.seconds >= 4.0,
            "{}: {got:?} in {}",
            ua.name,
            rec.display()
        );
        let f = f64::from(want);
        assert!(
            (got.hz - f).abs() < f * 0.1,
            "{} heard {got:?}, want {want} Hz",
            ua.name
        );
    }
}

#[test]
fn a_partner_user_calls_a_home_user_with_srtp_and_ice_and_hangs_up() {
    in_private_network(|| {
        let t = interop();
        call(&t, true, "sip:bob@fedge.test", true);
    });
}

#[test]
fn a_home_user_calls_a_partner_user_with_srtp_and_ice_and_hangs_up() {
    in_private_network(|| {
        let t = interop();
        call(&t, false, "sip:alice@partner.test", false);
    });
}

#[test]
fn a_call_with_rtcp_mux_to_a_home_pool_over_tcp() {
    in_private_network(|| {
        let t = interop_with(true, "tcp");
        call(&t, true, "sip:bob@fedge.test", true);
    });
}
