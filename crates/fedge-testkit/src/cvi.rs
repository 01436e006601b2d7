//! The CVI gateway tests' shared harness: an edge started in CVI gateway
//! mode (the tests' `[cvi]` values, overridable one by one, more sections
//! after it, H.323 on when asked), the organisation enrolled and meetings
//! created through the CLI, SIPp as the connector (the Teams side) and as
//! SIP room systems (scenario builders for key presses, re-INVITEs and
//! hang-ups), and the waits on the edge's log and metrics.
//!
//! It never decides whether fedge is right (tests assert; the helpers fail
//! only when a peer cannot start or a wait runs out), never binds a fixed
//! port, and stops only the processes it started (SIPp by its PID).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::edge::{Edge, conference_id, fedge_cli, fedge_ok, test_config};
use crate::h323::{Room, RoomResult};
use crate::lab::{ereg, refs, xml};
use crate::peers::{Sipp, SippResult, free_media_ports, free_port, scenario};
use crate::pki::Pki;

mod h323;

/// The CVI domain rooms dial.
pub const DOMAIN: &str = "cvi.fedge.test";
/// The enrolled organiser every meeting is created for.
pub const ORGANISER: &str = "jane.doe@nhs.net";
/// How long a peer may take to finish its part.
pub const LIMIT: Duration = Duration::from_secs(60);
/// Where Debian's sip-tester keeps its RFC 4733 key recordings.
pub const DTMF_PCAPS: &str = "/usr/share/sip-tester";
/// The relay's (and the CVI listeners') address in the tests' configuration.
pub const RELAY: [u8; 4] = [127, 0, 0, 2];
/// The `[cvi]` overrides that turn H.323 on, its listeners on the relay's
/// address with ports the system picks.
pub const H323_ON: [(&str, &str); 3] = [
    ("h323", "true"),
    ("h323_listen", "\"127.0.0.2:0\""),
    ("h323_ras", "\"127.0.0.2:0\""),
];

/// A running edge in CVI gateway mode, with its connector's address.
pub struct Cvi {
    pub pki: Pki,
    pub edge: Edge,
    /// The connector SIPp's port (TCP, or UDP with `connector_udp`).
    pub connector: u16,
    pub connector_udp: bool,
}

/// Values of `[cvi]` the tests use, overridable one by one.
pub fn cvi_section(connector: u16, overrides: &[(&str, &str)]) -> String {
    let address = format!("\"127.0.0.1:{connector}\"");
    let defaults: Vec<(&str, &str)> = vec![
        ("enabled", "true"),
        ("listen", "\"127.0.0.2:0\""),
        ("listen_tls", "\"127.0.0.2:0\""),
        (
            "connector",
            "\"sip:{id}@connector.fedge.test;transport=tcp\"",
        ),
        ("connector_address", &address),
        ("digit_pause", "\"1s\""),
        ("test_call_time", "\"8s\""),
        ("tenant_key", "\"87654321\""),
        ("trusted", "[\"127.0.0.1\"]"),
        // These rooms call over UDP from the trusted address: trust by
        // address over UDP is the operator's opt-in (cvi_attacks.rs tests
        // the default, off).
        ("trust_udp", "true"),
        ("instructions_base", "\"https://cvi.fedge.test\""),
    ];
    let mut s = String::from("\n[cvi]\n");
    for (k, v) in &defaults {
        let v = overrides
            .iter()
            .find(|(ok, _)| ok == k)
            .map_or(*v, |(_, ov)| *ov);
        s.push_str(&format!("{k} = {v}\n"));
    }
    for (k, v) in overrides {
        if !defaults.iter().any(|(dk, _)| dk == k) {
            s.push_str(&format!("{k} = {v}\n"));
        }
    }
    s
}

impl Cvi {
    pub fn start(overrides: &[(&str, &str)]) -> Cvi {
        Cvi::start_with(overrides, "")
    }

    /// With `extra_sip` lines in `[sip]`.
    pub fn start_with(overrides: &[(&str, &str)], extra_sip: &str) -> Cvi {
        Cvi::start_full(overrides, extra_sip, "")
    }

    /// With `extra_sip` lines in `[sip]` and `sections` (whole TOML
    /// sections, `[name]` lines included) after `[cvi]`.
    pub fn start_full(overrides: &[(&str, &str)], extra_sip: &str, sections: &str) -> Cvi {
        let pki = Pki::new();
        let connector = free_port(true);
        let config =
            test_config(&pki, extra_sip) + &cvi_section(connector, overrides) + "\n" + sections;
        let edge = Edge::start(&pki, &config);
        assert!(
            edge.cvi.is_some() && edge.cvi_tls.is_some(),
            "CVI listeners"
        );
        let connector_udp = overrides
            .iter()
            .any(|(k, v)| *k == "connector" && v.contains("transport=udp"));
        let cvi = Cvi {
            pki,
            edge,
            connector,
            connector_udp,
        };
        enrol(&cvi.edge.config_path);
        cvi
    }

    pub fn dir(&self) -> &Path {
        self.pki.path()
    }

    pub fn addr(&self) -> SocketAddr {
        self.edge.cvi.expect("CVI listener")
    }

    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        fedge_cli(&self.edge.config_path, args)
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        fedge_ok(&self.edge.config_path, args)
    }

    /// A new meeting's conference ID, read from the invite block.
    pub fn meeting(&self, extra: &[&str]) -> String {
        new_meeting(&self.edge.config_path, extra)
    }

    pub fn logs(&self) -> String {
        self.edge.logs().join("\n")
    }

    /// A metric of the edge without labels.
    pub fn metric(&self, name: &str) -> f64 {
        crate::admin::metric(self.edge.admin, name, &[])
    }

    /// Waits until the metric `name` is `value`, or fails with the log.
    pub fn wait_metric(&self, name: &str, value: f64, within: Duration) {
        wait_for(self, &format!("{name} = {value}"), within, || {
            self.metric(name) == value
        });
    }

    /// The H.323 call signalling listener (`transport` "tcp") or RAS
    /// socket ("ras"), as the edge logged it (with [`H323_ON`]).
    pub fn h323_listener(&self, transport: &str) -> SocketAddr {
        self.edge
            .logs()
            .iter()
            .find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let f = &v["fields"];
                (f["message"] == "listening"
                    && f["role"] == "cvi_h323"
                    && f["transport"] == transport)
                    .then(|| f["addr"].as_str()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no H.323 {transport} listener logged:\n{}", self.logs()))
    }

    /// The connector: SIPp over TCP, answering with PCMA and playing a pcap.
    pub fn connector(&self, checks: &str, references: &str, pcap: &Path, end: &str) -> (Sipp, u16) {
        self.connector_with("cvi_connector_uas.xml", checks, references, pcap, end)
    }

    /// The connector with another scenario of tests/sipp that takes the
    /// same values (`cvi_h323_connector_uas.xml`: audio and H.264).
    pub fn connector_with(
        &self,
        template: &str,
        checks: &str,
        references: &str,
        pcap: &Path,
        end: &str,
    ) -> (Sipp, u16) {
        let media = free_media_ports();
        // SIPp refuses variables assigned but never used: the dialog's
        // From and To are used only when the connector hangs up itself.
        let references = if end.contains("[$from]") {
            references.to_string()
        } else {
            format!("{references}{}", refs(&["from", "to"]))
        };
        let sc = scenario(
            self.dir(),
            template,
            &[
                ("CHECKS", checks),
                ("REFERENCES", &references),
                ("PCAP", pcap.to_str().unwrap()),
                ("END", end),
            ],
        );
        let mut s = Sipp::spawn(
            self.dir(),
            &sc,
            self.connector,
            None,
            &[
                "-t",
                if self.connector_udp { "u1" } else { "t1" },
                "-mp",
                &media.to_string(),
                "-timeout",
                "60s",
            ],
        );
        self.wait_connector(&mut s);
        (s, media)
    }

    /// Waits until the connector SIPp listens on its TCP port.
    pub fn wait_connector(&self, sipp: &mut Sipp) {
        let port = format!(":{:04X} ", self.connector);
        wait_for(
            self,
            "the connector listening",
            Duration::from_secs(10),
            || {
                if let Some(r) = sipp.exited() {
                    panic!(
                        "the connector SIPp exited ({:?}) before listening: {}",
                        r.code, r.errors
                    );
                }
                let (table, listening) = if self.connector_udp {
                    ("/proc/net/udp", "07")
                } else {
                    ("/proc/net/tcp", "0A")
                };
                std::fs::read_to_string(table)
                    .unwrap_or_default()
                    .lines()
                    .any(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.get(1).is_some_and(|a| format!("{a} ").ends_with(&port))
                            && f.get(3) == Some(&listening)
                    })
            },
        );
    }

    /// The room system: SIPp calling `user@DOMAIN`.
    pub fn room(&self, call: &RoomCall) -> Sipp {
        let ok = call.status == "200";
        let sc = scenario(
            self.dir(),
            "cvi_room_uac.xml",
            &[
                ("KEYS", &call.keys),
                ("THEN", &call.then),
                ("CHECKS", &call.checks),
                ("REFERENCES", &call.references),
                ("USER", &call.user),
                ("DOMAIN", DOMAIN),
                ("FROM_DOMAIN", "rooms.leeds.nhs.uk"),
                // SIPp sends its pcaps from its media port only when the
                // SDP names it by keyword (else from port 0).
                (
                    "MPORT",
                    &if call.media_port == call.sipp_media {
                        "[media_port]".to_string()
                    } else {
                        call.media_port.to_string()
                    },
                ),
                ("STATUS", call.status),
                (
                    "ACK_URI",
                    &if ok {
                        "[next_url]".to_string()
                    } else {
                        format!("sip:{}@{DOMAIN}", call.user)
                    },
                ),
                ("ACK_BRANCH", if ok { "[branch]" } else { "[branch-4]" }),
                ("ACK_ROUTES", if ok { "[routes]" } else { "" }),
            ],
        );
        let mut args = vec![
            "-mp".to_string(),
            call.sipp_media.to_string(),
            "-timeout".into(),
            "60s".into(),
        ];
        args.extend(call.args.iter().cloned());
        let port = if call.tcp {
            args.extend(["-t".into(), "t1".into()]);
            free_port(true)
        } else {
            // A new UDP source answers the gateway's OPTIONS probe (SIPp
            // answers OPTIONS outside its calls with -aa).
            args.push("-aa".into());
            free_port(false)
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Sipp::spawn(self.dir(), &sc, port, Some(self.addr()), &args)
    }
}

/// Enrols the tests' organisation (Teams enabled) with [`ORGANISER`],
/// through the CLI of the edge configured at `config`.
pub fn enrol(config: &Path) {
    fedge_ok(
        config,
        &[
            "cvi",
            "enrol",
            "--org",
            "Leeds Teaching Hospitals",
            "--ods",
            "RR8",
            "--teams-enabled",
            "--email",
            ORGANISER,
        ],
    );
}

/// A new meeting for [`ORGANISER`] (`extra`: more `meeting create`
/// arguments) through the CLI of the edge configured at `config`; its
/// conference ID, read from the invite block (which must name the CVI
/// address and the instructions page).
pub fn new_meeting(config: &Path, extra: &[&str]) -> String {
    let mut args = vec!["cvi", "meeting", "create", "--organiser", ORGANISER];
    args.extend_from_slice(extra);
    let out = fedge_ok(config, &args);
    assert!(
        out.contains("Join with a video conferencing device\nteams@cvi.fedge.test\n"),
        "{out}"
    );
    let id = conference_id(&out);
    assert_eq!(id.len(), 10, "{out}");
    assert!(
        out.contains(&format!("https://cvi.fedge.test/cvi/{id}")),
        "{out}"
    );
    id
}

/// An H.323 room (tests/h323/room.py) calling `dial` at the edge's H.323
/// listener (with [`H323_ON`]); `args` are further room.py arguments.
pub fn h323_room(cvi: &Cvi, dial: &str, args: &[&str]) -> Room {
    Room::start(cvi.dir(), cvi.h323_listener("tcp"), dial, args)
}

/// The H.323 room's own verdict is that its dialogue completed as asked.
pub fn assert_room(r: &RoomResult, logs: &str) {
    assert!(
        r.ok(),
        "room: exit {:?}: {}\n{:#}\nfedge:\n{logs}",
        r.code,
        r.stderr,
        r.json
    );
}

/// One room system call.
pub struct RoomCall {
    pub user: String,
    pub status: &'static str,
    pub checks: String,
    pub references: String,
    pub keys: String,
    pub then: String,
    /// The port in the SDP offer (SIPp's own, or a test's socket).
    pub media_port: u16,
    /// SIPp's media socket (what plays the pcaps).
    pub sipp_media: u16,
    pub tcp: bool,
    /// More SIPp options.
    pub args: Vec<String>,
}

impl RoomCall {
    pub fn new(user: &str) -> RoomCall {
        let m = free_media_ports();
        RoomCall {
            user: user.to_string(),
            status: "200",
            checks: String::new(),
            references: String::new(),
            keys: String::new(),
            then: String::new(),
            media_port: m,
            sipp_media: m,
            tcp: false,
            args: Vec::new(),
        }
    }
}

pub fn assert_ok(what: &str, r: &SippResult, logs: &str) {
    assert!(
        r.ok(),
        "{what}: SIPp exit {:?}\nerrors:\n{}\nmessages:\n{}\nfedge:\n{logs}",
        r.code,
        r.errors,
        r.messages
    );
}

/// Key presses as RFC 4733 telephone-events: SIPp plays sip-tester's
/// recording of each key from its media socket.
pub fn keys_rtp(keys: &str) -> String {
    keys.chars()
        .map(|c| {
            let name = match c {
                '#' => "pound".to_string(),
                '*' => "star".to_string(),
                d => d.to_string(),
            };
            format!(
                "  <nop><action><exec play_pcap_audio=\"{DTMF_PCAPS}/dtmf_2833_{name}.pcap\"/></action></nop>\n  <pause milliseconds=\"300\"/>\n"
            )
        })
        .collect()
}

/// An in-dialog request from the room system (a `<send>`), CSeq `cseq`,
/// with an optional (Content-Type, body).
pub fn room_send(user: &str, method: &str, cseq: u32, body: Option<(&str, &str)>) -> String {
    let (ct, len, body) = match body {
        Some((ct, b)) => (
            format!("Content-Type: {ct}\n      "),
            "[len]",
            b.to_string(),
        ),
        None => (String::new(), "0", String::new()),
    };
    format!(
        r#"  <send retrans="500">
    <![CDATA[

      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Room 101" <sip:room101@rooms.leeds.nhs.uk>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{user}@{DOMAIN}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Max-Forwards: 70
      Contact: <sip:room101@[local_ip]:[local_port];transport=[transport]>
      {ct}Content-Length: {len}

      {body}
    ]]>
  </send>
"#
    )
}

/// An in-dialog request from the room system.
pub fn room_request(user: &str, method: &str, cseq: u32, body: Option<(&str, &str)>) -> String {
    room_send(user, method, cseq, body) + "  <recv response=\"200\"/>\n"
}

/// Key presses as SIP INFO (`application/dtmf-relay` or `application/dtmf`),
/// CSeq from `cseq`; returns the XML and the next CSeq.
pub fn keys_info(user: &str, keys: &str, dtmf_relay: bool, cseq: u32) -> (String, u32) {
    let mut out = String::new();
    let mut n = cseq;
    for c in keys.chars() {
        let (ct, body) = if dtmf_relay {
            (
                "application/dtmf-relay",
                format!("Signal={c}\n      Duration=160"),
            )
        } else {
            ("application/dtmf", c.to_string())
        };
        out.push_str(&room_request(user, "INFO", n, Some((ct, &body))));
        out.push_str("  <pause milliseconds=\"100\"/>\n");
        n += 1;
    }
    (out, n)
}

/// The gateway's re-INVITE once the meeting answers, our answer, media
/// (`pcap` from SIPp's socket), then our BYE after `hold_ms`.
pub fn then_join(
    user: &str,
    media_port: u16,
    cseq: u32,
    pcap: Option<&Path>,
    hold_ms: u32,
) -> String {
    let reinvite_checks = ereg("m=audio 4[0-9]{4} RTP/AVP 8 101", "body", "ra", false)
        + &ereg("c=IN IP4 127\\.0\\.0\\.2", "body", "rc", false);
    let play = pcap
        .map(|p| {
            format!(
                "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n",
                xml(p.to_str().unwrap())
            )
        })
        .unwrap_or_default();
    let answer = format!(
        "      v=0\n      o=room101 1 2 IN IP[local_ip_type] [local_ip]\n      s=-\n      c=IN IP[media_ip_type] [media_ip]\n      t=0 0\n      m=audio {media_port} RTP/AVP 8 101\n      a=rtpmap:8 PCMA/8000\n      a=rtpmap:101 telephone-event/8000\n      a=sendrecv\n"
    );
    format!(
        "{}{play}  <pause milliseconds=\"{hold_ms}\"/>\n{}  {}\n",
        answer_reinvite(&reinvite_checks, "room101", &answer),
        room_request(user, "BYE", cseq, None),
        refs(&["ra", "rc"]),
    )
}

/// Takes a re-INVITE (`checks`: ereg actions on it), answers it 200 with
/// `sdp` (lines indented six spaces, each ending in a newline) and a
/// Contact of user `contact`, then takes the ACK.
pub fn answer_reinvite(checks: &str, contact: &str, sdp: &str) -> String {
    format!(
        r#"  <recv request="INVITE" crlf="true" timeout="30000">
    <action>
      {checks}
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{contact}@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

{sdp}
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
"#
    )
}

/// Waits for the gateway's BYE and answers it; `checks` are ereg actions
/// on the BYE.
pub fn then_gateway_hangs_up(checks: &str) -> String {
    format!(
        r#"  <recv request="BYE" timeout="45000">
    <action>
      {checks}
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"#
    )
}

/// The connector waits for the gateway's BYE.
pub fn end_on_bye() -> String {
    then_gateway_hangs_up("")
}

/// The connector hangs up after `hold_ms`.
pub fn end_hang_up(hold_ms: u32) -> String {
    format!(
        r#"  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: [$to];tag=[pid]SIPpTag01[call_number]
      To: [$from]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Contact: <sip:meeting@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
"#
    )
}

/// The connector's own re-INVITE (CSeq `cseq`) with `sdp` (lines indented
/// six spaces, each ending in a newline), its 200 checked with `answered`
/// (ereg actions) within 20 s, then ACKed.
pub fn connector_reinvites(cseq: u32, sdp: &str, answered: &str) -> String {
    format!(
        r#"  <send retrans="500">
    <![CDATA[

      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: [$to];tag=[pid]SIPpTag01[call_number]
      To: [$from]
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Max-Forwards: 70
      Contact: <sip:meeting@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

{sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200" timeout="20000">
    <action>
      {answered}
    </action>
  </recv>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: [$to];tag=[pid]SIPpTag01[call_number]
      To: [$from]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"#
    )
}

/// Checks on the gateway's INVITE to the connector for meeting `id`: the
/// offer a SIP room's (PCMU, PCMA, telephone-event) leads to.
pub fn connector_checks(id: &str, trusted: bool) -> (String, String) {
    connector_checks_with(id, trusted, "0 8 101")
}

/// The same with the offer's audio payload types `pts` ("0 101").
pub fn connector_checks_with(id: &str, trusted: bool, pts: &str) -> (String, String) {
    let checks = ereg(&format!("^ *{id}$"), "X-Fedge-Conference-Id:", "cid", false)
        + &ereg(
            &format!("^INVITE sip:{id}@connector\\.fedge\\.test;transport=tcp SIP/2\\.0"),
            "msg",
            "ruri",
            false,
        )
        + &ereg(
            &format!("m=audio 4[0-9]{{4}} RTP/AVP {pts}"),
            "body",
            "m",
            false,
        )
        + &ereg("c=IN IP4 127\\.0\\.0\\.2", "body", "c", false)
        + &ereg("X-Fedge-Trusted-Device: yes", "msg", "trust", !trusted);
    (checks, refs(&["cid", "ruri", "m", "c", "trust"]))
}

/// Waits until `f` holds, or fails with `what` and the edge's log.
pub fn wait_for(cvi: &Cvi, what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "{what}\nfedge:\n{}", cvi.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A log line of the edge with every needle, within `within`.
pub fn log_line(cvi: &Cvi, needles: &[&str], within: Duration) -> String {
    cvi.edge
        .wait_log(needles, within)
        .unwrap_or_else(|| panic!("no log line with {needles:?}:\n{}", cvi.logs()))
}

/// An in-dialog request from the room with an SDP body; expects `status`
/// (after a 100 Trying, when the connector is asked first),
/// with `checks` on it, and ACKs an INVITE's answer.
pub fn room_offer(
    user: &str,
    method: &str,
    cseq: u32,
    sdp: &str,
    status: u16,
    checks: &str,
) -> String {
    let ack = match (method, status) {
        ("INVITE", 200..=299) => ("[next_url]", "[branch]"),
        ("INVITE", _) => ("[next_url]", "[branch-2]"),
        _ => ("", ""),
    };
    let ack = if ack.0.is_empty() {
        String::new()
    } else {
        format!(
            r#"  <send>
    <![CDATA[

      ACK {} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={}
      [routes]
      From: "Room 101" <sip:room101@rooms.leeds.nhs.uk>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{user}@{DOMAIN}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"#,
            ack.0, ack.1
        )
    };
    room_send(
        user,
        method,
        cseq,
        Some(("application/sdp", sdp.trim_start())),
    ) + &format!(
        r#"  <recv response="100" optional="true"/>
  <recv response="{status}">
    <action>
      {checks}
    </action>
  </recv>
{ack}"#
    )
}
