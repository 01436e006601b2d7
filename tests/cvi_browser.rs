//! Joining a CVI meeting from a browser (issue 20): a real headless
//! Chromium (Debian's, fake camera and microphone) driven through
//! chromedriver opens the meeting's instructions page on the public
//! listener, types a name and joins; a Rust connector (the Teams side)
//! answers the gateway's INVITE and exchanges RTP with the relay. The
//! call stays up ten seconds: the connector receives the browser's PCMU
//! and H.264 (its own payload types), the page's getStats() shows
//! packets from the connector, the connector's INVITE does not mark the
//! browser trusted. Leave sends BYE and frees the ports; a page closed
//! without Leave is hung up too; the connector's BYE, a full node, a
//! draining node and a withdrawn meeting are shown on the page. The
//! WHIP endpoint's bad input (no or reused token, malformed SDP, no DTLS
//! fingerprint, oversized body, wrong type) is refused with a status and
//! reason and reaches no connector. The page in a call is saved as
//! target/cvi-screenshots/browser-call.png.

#[path = "browser/connector.rs"]
mod connector;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use connector::Connector;
use fantoccini::{Client, Locator};
use fedge_testkit::browser::Driver;
use fedge_testkit::cvi::{ORGANISER, enrol, new_meeting};
use fedge_testkit::*;

/// Chromium's fake camera and microphone, granted without asking, and
/// WebRTC over loopback.
const MEDIA_ARGS: &[&str] = &[
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
];

fn shots_dir() -> PathBuf {
    let d = workspace_root().join("target/cvi-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An edge with the CVI gateway, browsers allowed, and our connector.
struct Lab {
    edge: Edge,
    _pki: Pki,
    connector: Connector,
}

impl Lab {
    fn start(max_calls: usize) -> Lab {
        let pki = Pki::new();
        let connector = Connector::start();
        let cvi = format!(
            "\n[cvi]\nenabled = true\nlisten = \"127.0.0.2:0\"\n\
             connector = \"sip:{{id}}@connector.fedge.test;transport=tcp\"\n\
             connector_address = \"127.0.0.1:{}\"\n\
             trusted = [\"127.0.0.1\"]\nmax_calls = {max_calls}\nwebrtc = true\n\
             instructions_base = \"https://cvi.fedge.test\"\n",
            connector.port
        );
        let edge = Edge::start(&pki, &(test_config(&pki, "") + &cvi));
        enrol(&edge.config_path);
        Lab {
            edge,
            _pki: pki,
            connector,
        }
    }

    fn meeting(&self) -> String {
        new_meeting(&self.edge.config_path, &[])
    }

    fn page(&self, id: &str) -> String {
        format!("http://{}/cvi/{id}", self.edge.public)
    }

    fn logs(&self) -> String {
        self.edge.logs().join("\n")
    }
}

/// Waits for `f`, or fails with `what` and the edge's log.
fn wait_for(lab: &Lab, what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "{what}\nfedge:\n{}", lab.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn attr(c: &Client, css: &str, name: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.attr(name).await.ok().flatten().unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the join section's `data-call` is `want`.
async fn wait_call(lab: &Lab, c: &Client, want: &str, within: Duration) {
    let t0 = Instant::now();
    loop {
        let got = attr(c, "#join", "data-call").await;
        if got == want {
            return;
        }
        if t0.elapsed() > within {
            let sdp = c
                .execute(
                    "return [window.fedgeCall && window.fedgeCall.localDescription && window.fedgeCall.localDescription.sdp, window.fedgeAnswer];",
                    vec![],
                )
                .await
                .unwrap_or_default();
            panic!(
                "page call state {got:?}, wanted {want:?}; status {:?}\noffer and answer: {}\nfedge:\n{}",
                text(c, "#join-status").await,
                sdp.to_string().replace("\\r\\n", "\n"),
                lab.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens the page of `id`, types a name and clicks Join.
async fn join(lab: &Lab, c: &Client, id: &str) {
    c.goto(&lab.page(id)).await.unwrap();
    c.find(Locator::Css("#join-name"))
        .await
        .expect("the join section")
        .send_keys("Ann Patient")
        .await
        .unwrap();
    c.find(Locator::Css("#join-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The page's inbound and outbound RTP packet counts by kind.
async fn stats(c: &Client) -> serde_json::Value {
    c.execute_async(
        "const done = arguments[arguments.length - 1];
         window.fedgeCall.getStats().then(s => {
           const r = {};
           s.forEach(x => {
             if (x.type === 'inbound-rtp') {
               r['in_' + x.kind] = x.packetsReceived;
               if (x.kind === 'video') r.frames_decoded = x.framesDecoded;
             }
             if (x.type === 'outbound-rtp') r['out_' + x.kind] = x.packetsSent;
           });
           done(r);
         });",
        vec![],
    )
    .await
    .unwrap()
}

/// The port of our ICE candidate in the answer the page holds.
async fn ice_port(c: &Client) -> u16 {
    let sdp = c
        .execute("return window.fedgeCall.remoteDescription.sdp;", vec![])
        .await
        .unwrap();
    let sdp = sdp.as_str().unwrap().to_string();
    sdp.lines()
        .find(|l| l.starts_with("a=candidate:"))
        .and_then(|l| l.split(' ').nth(5))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a candidate in the answer:\n{sdp}"))
}

/// Whether UDP `addr` can be bound (its port is free again).
fn free(addr: SocketAddr) -> bool {
    UdpSocket::bind(addr).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_joins_exchanges_media_and_leaves() {
    let lab = Lab::start(1);
    let id = lab.meeting();
    let driver = Driver::start();
    let c = driver.browser((1280, 900), MEDIA_ARGS).await;
    join(&lab, &c, &id).await;
    wait_call(&lab, &c, "connected", Duration::from_secs(30)).await;
    let seen = lab.connector.seen.clone();
    let invite = seen.invite.lock().unwrap().clone();
    assert!(
        invite.starts_with(&format!("INVITE sip:{id}@connector.fedge.test")),
        "{invite}"
    );
    assert!(
        !invite.contains("X-Fedge-Trusted-Device: yes"),
        "a browser is never trusted (its address is):\n{invite}"
    );
    // The call stays up ten seconds.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = stats(&c).await;
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    assert!(
        n("in_audio") > 100,
        "the connector's audio reached the page: {s}"
    );
    assert!(
        n("in_video") > 50,
        "the connector's video reached the page: {s}"
    );
    assert!(n("out_video") > 50, "the page sent video: {s}");
    // The connector sends the browser's video back: real frames decoded.
    assert!(
        n("frames_decoded") > 20,
        "the meeting's video decoded in the page: {s}"
    );
    let (audio_in, video_in) = (
        seen.audio_in.load(Ordering::Relaxed),
        seen.video_in.load(Ordering::Relaxed),
    );
    assert!(
        audio_in > 100,
        "the browser's PCMU at the connector: {audio_in}\n{}",
        lab.logs()
    );
    assert!(
        video_in > 50,
        "the browser's H.264 at the connector (PT {}): {video_in}",
        connector::VIDEO_PT
    );
    assert_eq!(
        seen.wrong_pt.load(Ordering::Relaxed),
        0,
        "only the connector's payload types"
    );
    // The browser's offer, kept beside the picture (a fuzz seed).
    let offer = c
        .execute("return window.fedgeCall.localDescription.sdp;", vec![])
        .await
        .unwrap();
    std::fs::write(
        shots_dir().join("chromium-offer.sdp"),
        offer.as_str().unwrap(),
    )
    .unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots_dir().join("browser-call.png"), png).unwrap();

    // A second browser while the node is full (max_calls 1).
    let c2 = driver.browser((1280, 900), MEDIA_ARGS).await;
    join(&lab, &c2, &id).await;
    wait_call(&lab, &c2, "refused", Duration::from_secs(20)).await;
    let why = text(&c2, "#join-status").await;
    assert!(why.contains("maximum of 1 calls"), "{why}");
    c2.close().await.unwrap();

    // Leave: BYE at the connector, the ports free again.
    let port = ice_port(&c).await;
    let relay = seen.relay.lock().unwrap().expect("relay addresses");
    c.find(Locator::Css("#leave-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_call(&lab, &c, "left", Duration::from_secs(5)).await;
    wait_for(&lab, "the connector's BYE", Duration::from_secs(10), || {
        seen.bye_in.load(Ordering::Relaxed)
    });
    let ice = SocketAddr::from(([127, 0, 0, 2], port));
    wait_for(
        &lab,
        "the browser's ICE port freed",
        Duration::from_secs(10),
        || free(ice),
    );
    wait_for(
        &lab,
        "the relay's port freed",
        Duration::from_secs(10),
        || free(relay.0),
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_hanging_up_and_a_withdrawn_meeting_are_shown_on_the_page() {
    let lab = Lab::start(4);
    let id = lab.meeting();
    let driver = Driver::start();
    let c = driver.browser((1280, 900), MEDIA_ARGS).await;
    join(&lab, &c, &id).await;
    wait_call(&lab, &c, "connected", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    lab.connector.seen.hang_up.store(true, Ordering::Relaxed);
    wait_call(&lab, &c, "ended", Duration::from_secs(10)).await;
    let why = text(&c, "#join-status").await;
    assert!(why.contains("the meeting ended the call"), "{why}");
    assert!(
        lab.connector.seen.bye_answered.load(Ordering::Relaxed),
        "our BYE answered 200"
    );

    // A page closed without Leave: its call is hung up all the same.
    let c2 = driver.browser((1280, 900), MEDIA_ARGS).await;
    join(&lab, &c2, &id).await;
    wait_call(&lab, &c2, "connected", Duration::from_secs(30)).await;
    assert_eq!(lab.connector.seen.invites.load(Ordering::Relaxed), 2);
    c2.close().await.unwrap();
    wait_for(
        &lab,
        "the closed page's BYE",
        Duration::from_secs(45),
        || lab.connector.seen.bye_in.load(Ordering::Relaxed),
    );
    // By the page's keepalive DELETE, or by its ICE going silent.
    let logs = lab.logs();
    let ended = logs
        .lines()
        .rfind(|l| l.contains("browser call ended"))
        .unwrap_or("");
    assert!(
        ended.contains("you left the meeting") || ended.contains("connection was lost"),
        "{ended}"
    );

    // The page was open; the organiser is withdrawn before Join.
    c.goto(&lab.page(&id)).await.unwrap();
    fedge_ok(
        &lab.edge.config_path,
        &["cvi", "withdraw", "--email", ORGANISER],
    );
    c.find(Locator::Css("#join-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_call(&lab, &c, "refused", Duration::from_secs(20)).await;
    let why = text(&c, "#join-status").await;
    assert!(why.contains("Not joined"), "{why}");
    assert_eq!(
        lab.connector.seen.invites.load(Ordering::Relaxed),
        2,
        "no new INVITE"
    );
    c.close().await.unwrap();
}

/// A join token from the meeting's page.
async fn token(http: &reqwest::Client, lab: &Lab, id: &str) -> String {
    let page = http.get(lab.page(id)).send().await.unwrap();
    let csp = page
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let body = page.text().await.unwrap();
    let at = body
        .find("data-token=\"")
        .expect("a join token on the page")
        + 12;
    body[at..at + 32].to_string()
}

const FINGERPRINT: &str = "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n";

fn offer(fingerprint: bool) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n{}\
m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=sendrecv\r\na=rtcp-mux\r\n\
a=rtpmap:0 PCMU/8000\r\na=ssrc:1 cname:x\r\n",
        if fingerprint { FINGERPRINT } else { "" }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_join_requests_are_refused_with_a_reason_and_reach_no_connector() {
    let lab = Lab::start(4);
    let id = lab.meeting();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let post = |q: String, ct: &'static str, body: String| {
        let http = http.clone();
        let url = format!("{}/join{q}", lab.page(&id));
        async move {
            let r = http
                .post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let sdp = "application/sdp";
    let (s, why) = post(String::new(), sdp, offer(true)).await;
    assert_eq!(
        (s, why.contains("not valid")),
        (403, true),
        "no token: {why}"
    );
    let (s, why) = post(
        "?token=0123456789abcdef0123456789abcdef".into(),
        sdp,
        offer(true),
    )
    .await;
    assert_eq!(
        (s, why.contains("not valid")),
        (403, true),
        "wrong token: {why}"
    );
    let t = token(&http, &lab, &id).await;
    let (s, why) = post(format!("?token={t}"), sdp, "v=0\r\nthis is not sdp".into()).await;
    assert_eq!(s, 400, "malformed: {why}");
    let (s, why) = post(format!("?token={t}"), sdp, offer(true)).await;
    assert_eq!(
        (s, why.contains("not valid")),
        (403, true),
        "reused token: {why}"
    );
    let t = token(&http, &lab, &id).await;
    let (s, why) = post(format!("?token={t}"), sdp, offer(false)).await;
    assert_eq!(
        (s, why.contains("fingerprint")),
        (400, true),
        "no fingerprint: {why}"
    );
    let t = token(&http, &lab, &id).await;
    let (s, why) = post(
        format!("?token={t}"),
        sdp,
        offer(true) + &"a=x\r\n".repeat(8000),
    )
    .await;
    assert_eq!(s, 413, "oversized: {why}");
    let (s, why) = post(format!("?token={t}"), "text/plain", offer(true)).await;
    assert_eq!(s, 415, "wrong type: {why}");
    // Another meeting's token.
    let other = lab.meeting();
    let t = token(&http, &lab, &other).await;
    let (s, why) = post(format!("?token={t}"), sdp, offer(true)).await;
    assert_eq!(s, 403, "another meeting's token: {why}");
    // Leaving or asking about a call that does not exist.
    let r = http
        .delete(format!("{}/join/1-nope", lab.page(&id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        lab.connector.seen.invites.load(Ordering::Relaxed),
        0,
        "nothing reached the connector"
    );
    assert!(
        !lab.logs().contains("browser call connected"),
        "{}",
        lab.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_tells_the_page_and_keeps_the_call_up() {
    let lab = Lab::start(4);
    let id = lab.meeting();
    let driver = Driver::start();
    let c = driver.browser((1280, 900), MEDIA_ARGS).await;
    join(&lab, &c, &id).await;
    wait_call(&lab, &c, "connected", Duration::from_secs(30)).await;
    let cli = lab.edge.cli_config("cli.toml");
    let out = fedge_ok(&cli, &["drain"]);
    assert!(out.contains("draining since"), "{out}");
    let c2 = driver.browser((1280, 900), MEDIA_ARGS).await;
    join(&lab, &c2, &id).await;
    wait_call(&lab, &c2, "refused", Duration::from_secs(20)).await;
    let why = text(&c2, "#join-status").await;
    assert!(why.contains("draining"), "{why}");
    c2.close().await.unwrap();
    // The call up carries on, and ends when the page leaves.
    assert_eq!(attr(&c, "#join", "data-call").await, "connected");
    c.find(Locator::Css("#leave-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&lab, "the connector's BYE", Duration::from_secs(10), || {
        lab.connector.seen.bye_in.load(Ordering::Relaxed)
    });
    c.close().await.unwrap();
}

/// An nftables table dropping UDP to `addr` from anyone but itself (the
/// browser's UDP to fedge's media range), deleted on drop.
struct UdpBlock {
    table: String,
}

impl UdpBlock {
    fn new(addr: std::net::Ipv4Addr) -> UdpBlock {
        let table = format!("fedge_wrtc_{}", rand::random::<u32>());
        let rules = format!(
            "table inet {table} {{\n chain out {{\n  type filter hook output priority 0;\n  \
             ip daddr {addr} ip saddr != {addr} meta l4proto udp counter drop\n }}\n}}\n"
        );
        let out = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn();
        let mut child = out.expect("nft (the test runs as root)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft took {rules}");
        UdpBlock { table }
    }

    /// Packets the rule dropped so far.
    fn dropped(&self) -> u64 {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &self.table])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        s.split("packets ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for UdpBlock {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

/// The selected candidate pair's protocols (local, remote) in the page.
async fn selected_protocols(c: &Client) -> serde_json::Value {
    c.execute_async(
        "const done = arguments[arguments.length - 1];
         window.fedgeCall.getStats().then(s => {
           let pair = null;
           s.forEach(x => {
             if (x.type === 'transport' && x.selectedCandidatePairId) pair = s.get(x.selectedCandidatePairId);
           });
           if (!pair) { done(null); return; }
           const l = s.get(pair.localCandidateId), r = s.get(pair.remoteCandidateId);
           done({local: l && l.protocol, remote: r && r.protocol, tcptype: l && l.tcpType});
         });",
        vec![],
    )
    .await
    .unwrap()
}

/// Issue 20's ICE-TCP: with the browser's UDP to fedge's media address
/// dropped (nftables), the browser joins over the `[cvi] webrtc_tcp`
/// port and media crosses both ways over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_without_udp_joins_over_ice_tcp() {
    let pki = Pki::new();
    let connector = Connector::start();
    let media = std::net::Ipv4Addr::new(127, 0, 3, 1 + rand::random::<u8>() % 250);
    let tcp_port = fedge_testkit::peers::free_port(true);
    let cvi = format!(
        "\n[cvi]\nenabled = true\nlisten = \"127.0.0.2:0\"\n\
         connector = \"sip:{{id}}@connector.fedge.test;transport=tcp\"\n\
         connector_address = \"127.0.0.1:{}\"\nmedia_address = \"{media}\"\n\
         connector_media_address = \"127.0.0.2\"\n\
         max_calls = 2\nwebrtc = true\nwebrtc_tcp = {tcp_port}\n\
         instructions_base = \"https://cvi.fedge.test\"\n",
        connector.port
    );
    let edge = Edge::start(&pki, &(test_config(&pki, "") + &cvi));
    fedge_ok(
        &edge.config_path,
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
    let lab = Lab {
        edge,
        _pki: pki,
        connector,
    };
    let block = UdpBlock::new(media);
    let id = lab.meeting();
    let driver = Driver::start();
    let c = driver.browser((1280, 900), MEDIA_ARGS).await;
    join(&lab, &c, &id).await;
    wait_call(&lab, &c, "connected", Duration::from_secs(30)).await;
    let answer = c
        .execute("return window.fedgeCall.remoteDescription.sdp;", vec![])
        .await
        .unwrap();
    let answer = answer.as_str().unwrap_or_default().to_string();
    assert!(
        answer.contains(" tcp "),
        "a TCP candidate in the answer:\n{answer}"
    );
    assert!(
        answer.contains(&format!("{media} {tcp_port} typ host tcptype passive")),
        "the passive ICE-TCP candidate on the configured port:\n{answer}"
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let pair = selected_protocols(&c).await;
    assert_eq!(
        pair["local"],
        "tcp",
        "the selected pair is TCP: {pair}\n{}",
        lab.logs()
    );
    assert_eq!(pair["remote"], "tcp", "the selected pair is TCP: {pair}");
    assert!(
        block.dropped() > 0,
        "the browser's UDP was tried and dropped"
    );
    let held = metric(lab.edge.admin, "fedge_cvi_browser_tcp_connections", &[]);
    assert!(held >= 1.0, "ICE-TCP connections held (metrics): {held}");
    let s = stats(&c).await;
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    assert!(n("in_audio") > 100, "the connector's audio over TCP: {s}");
    assert!(n("in_video") > 30, "the connector's video over TCP: {s}");
    assert!(n("frames_decoded") > 10, "video decoded over TCP: {s}");
    let seen = lab.connector.seen.clone();
    let (audio_in, video_in) = (
        seen.audio_in.load(Ordering::Relaxed),
        seen.video_in.load(Ordering::Relaxed),
    );
    assert!(
        audio_in > 100,
        "the browser's PCMU at the connector: {audio_in}"
    );
    assert!(
        video_in > 30,
        "the browser's H.264 at the connector: {video_in}"
    );
    c.find(Locator::Css("#leave-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&lab, "the connector's BYE", Duration::from_secs(10), || {
        seen.bye_in.load(Ordering::Relaxed)
    });
    c.close().await.unwrap();
    drop(block);
}
