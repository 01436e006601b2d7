//! The CVI benchmark's load generator for video calls: each call carries
//! an audio stream (G.711 PCMA, one 172-byte RTP packet per 20 ms) and an
//! H.264-like HD video stream (frames paced at the frame rate, each split
//! into RTP packets of at most `max_payload` bytes, a large key frame every
//! few seconds, the marker bit on a frame's last packet), in both
//! directions of both legs (room system and connector stand-in).
//!
//! Built to cost little next to the relay it measures on the same cores:
//! one sender thread that sends a whole frame with one `sendmmsg`, one
//! receiver thread on epoll that drains each ready socket with one
//! `recvmmsg`, latency taken from the kernel's receive timestamp
//! (`SO_TIMESTAMPNS`) so the receiver's own delays do not count, and the
//! sender's lag behind its schedule reported (a lagging sender measures
//! itself, not the relay). Socket drops are read from /proc/net/udp for
//! the relay's sockets and the generator's apart.
//!
//! It measures; it never sets calls up (bench/cvi.rs does) and never
//! asserts on figures. Its `unsafe` is confined to the libc calls (epoll,
//! sendmmsg, recvmmsg, setsockopt) over buffers it owns for each call.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bench::cpu_seconds;

/// An audio packet: 12 bytes of RTP header and 20 ms of G.711.
pub const AUDIO_PACKET: usize = 172;
pub const AUDIO_PT: u8 = 8;
pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PERIOD: Duration = Duration::from_millis(20);
const RTP_HEADER: usize = 12;
/// The high half of every SSRC the generator sends: what it counts.
const MAGIC: u32 = 0xF1DE_0000;
/// Latency histogram: 10 µs buckets up to 2 s (beyond: the last bucket).
const LAT_BUCKET_US: u64 = 10;
const LAT_BUCKETS: usize = 200_000;
/// Schedule-lag histogram: 100 µs buckets up to 1 s.
const LAG_BUCKET_US: u64 = 100;
const LAG_BUCKETS: usize = 10_000;

/// The video stream's shape: a mean bit rate at a frame rate, frames cut
/// into packets of at most `max_payload` bytes, one key frame every
/// `key_every` that is `key_factor` times a predicted frame, predicted
/// frames varying by up to `jitter` (a fraction) around their mean.
#[derive(Clone, Copy, Debug)]
pub struct VideoModel {
    pub kbps: u32,
    pub fps: u32,
    pub max_payload: usize,
    pub key_every: Duration,
    pub key_factor: f64,
    pub jitter: f64,
}

impl Default for VideoModel {
    /// 720p30 H.264 as room systems send it to a meeting: 1.5 Mbit/s,
    /// 30 frames/s, 1,200-byte payloads (fits a 1,280+ MTU with IP, UDP,
    /// RTP and SRTP's tag), a key frame every 5 s at 8x a P frame.
    fn default() -> Self {
        VideoModel {
            kbps: 1500,
            fps: 30,
            max_payload: 1200,
            key_every: Duration::from_secs(5),
            key_factor: 8.0,
            jitter: 0.25,
        }
    }
}

impl VideoModel {
    /// Frames in one key-frame interval (a group of pictures).
    pub fn gop(&self) -> u64 {
        ((self.fps as f64 * self.key_every.as_secs_f64()).round() as u64).max(1)
    }

    /// The mean size of a predicted frame, in bytes.
    fn p_bytes(&self) -> f64 {
        let gop_bytes = self.kbps as f64 * 1000.0 / 8.0 * self.key_every.as_secs_f64();
        gop_bytes / (self.gop() as f64 - 1.0 + self.key_factor)
    }

    /// The size of frame `n` of a stream whose key frames fall on
    /// `n % gop == phase`; `r` in [0, 1) varies a predicted frame.
    pub fn frame_bytes(&self, n: u64, phase: u64, r: f64) -> usize {
        let p = self.p_bytes();
        let b = if n % self.gop() == phase % self.gop() {
            p * self.key_factor
        } else {
            p * (1.0 + self.jitter * (2.0 * r - 1.0))
        };
        (b.round() as usize).max(1)
    }

    /// The packets a frame of `bytes` takes.
    pub fn packets(&self, bytes: usize) -> usize {
        bytes.div_ceil(self.max_payload.max(1))
    }

    /// Mean packets per second of one direction (one group of pictures
    /// with the mean predicted frame, plus the rounding of varied sizes).
    pub fn packets_per_second(&self) -> f64 {
        let mut rng = 1u64;
        let n = self.gop() * 8;
        let total: usize = (0..n)
            .map(|i| self.packets(self.frame_bytes(i, 0, next_unit(&mut rng))))
            .sum();
        total as f64 / n as f64 * self.fps as f64
    }

    /// Nanoseconds between frames.
    fn period_ns(&self) -> f64 {
        1e9 / self.fps.max(1) as f64
    }
}

/// A small deterministic generator (xorshift) in [0, 1).
fn next_unit(s: &mut u64) -> f64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    (*s >> 11) as f64 / (1u64 << 53) as f64
}

/// One call: the room's and the connector's sockets for audio and video,
/// and where each sends (the relay's ports, from the gateway's SDP).
/// `video` is `None` when the call carries audio only.
pub struct VideoCall {
    pub room_audio: Arc<UdpSocket>,
    pub conn_audio: Arc<UdpSocket>,
    pub room_to: SocketAddr,
    pub conn_to: SocketAddr,
    pub video: Option<VideoLeg>,
}

/// A call's video: the two sockets and where each sends.
pub struct VideoLeg {
    pub room: Arc<UdpSocket>,
    pub conn: Arc<UdpSocket>,
    pub room_to: SocketAddr,
    pub conn_to: SocketAddr,
}

/// A loopback UDP socket for one stream of one side.
pub fn media_socket() -> Arc<UdpSocket> {
    Arc::new(UdpSocket::bind("127.0.0.1:0").expect("a loopback UDP socket"))
}

/// What one step measured. Index 0 is audio, 1 video.
pub struct VideoOutcome {
    /// Packets the schedule asked for inside the window.
    pub expected: [u64; 2],
    /// Packets sent inside the window (by their send time).
    pub sent: [u64; 2],
    /// Of those, packets that came back through the relay.
    pub received: [u64; 2],
    lat: [Vec<u32>; 2],
    lag: Vec<u32>,
    /// The relay's CPU seconds in the window, and the generator's.
    pub relay_cpu: f64,
    pub gen_cpu: f64,
    pub secs: f64,
    /// Datagrams dropped by full receive queues in the window: the
    /// relay's sockets, and the generator's.
    pub relay_drops: u64,
    pub gen_drops: u64,
    /// CPU seconds the whole machine was busy in the window (all cores,
    /// from /proc/stat): what neither the relay nor the generator used was
    /// other processes' (on a shared machine, the figures' noise).
    pub machine_cpu: f64,
}

fn hist_pct(h: &[u32], p: f64, bucket_us: u64) -> f64 {
    let total: u64 = h.iter().map(|&c| c as u64).sum();
    if total == 0 {
        return f64::NAN;
    }
    let want = ((total as f64 - 1.0) * p).round() as u64 + 1;
    let mut seen = 0u64;
    for (i, &c) in h.iter().enumerate() {
        seen += c as u64;
        if seen >= want {
            return ((i as u64 * bucket_us) + bucket_us / 2) as f64 / 1000.0;
        }
    }
    f64::NAN
}

impl VideoOutcome {
    /// Latency percentile in ms of one kind (0 audio, 1 video), or of both
    /// with `None`.
    pub fn latency_ms(&self, kind: Option<usize>, p: f64) -> f64 {
        match kind {
            Some(k) => hist_pct(&self.lat[k], p, LAT_BUCKET_US),
            None => {
                let both: Vec<u32> = self.lat[0]
                    .iter()
                    .zip(&self.lat[1])
                    .map(|(a, b)| a + b)
                    .collect();
                hist_pct(&both, p, LAT_BUCKET_US)
            }
        }
    }

    /// The sender's lag behind its schedule, percentile in ms.
    pub fn lag_ms(&self, p: f64) -> f64 {
        hist_pct(&self.lag, p, LAG_BUCKET_US)
    }

    pub fn loss(&self) -> f64 {
        let s: u64 = self.sent.iter().sum();
        let r: u64 = self.received.iter().sum();
        s.saturating_sub(r) as f64 / s.max(1) as f64
    }

    /// Whether the sender kept its schedule: it offered at least 99.5 % of
    /// what the schedule asked for and its 99th percentile lag is under
    /// 10 ms (a packet's lag is the sender's, not the relay's: the latency
    /// counts from the actual send). A step where it did not measures the
    /// generator.
    pub fn generator_kept_up(&self) -> bool {
        let e: u64 = self.expected.iter().sum();
        let s: u64 = self.sent.iter().sum();
        s as f64 >= e as f64 * 0.995 && self.lag_ms(0.99) < 10.0
    }
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One direction of one stream, as the sender schedules it.
struct Flow {
    fd: RawFd,
    to: libc::sockaddr_in,
    video: bool,
    ssrc: u32,
    seq: u16,
    /// Scheduled time of event 0 (ns after the start), and the event count.
    phase_ns: u64,
    event: u64,
    key_phase: u64,
    rng: u64,
}

fn sockaddr_in(a: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = a else {
        panic!("the generator sends to IPv4 only: {a}");
    };
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = v4.port().to_be();
    s.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
    s
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, value: i32) {
    // SAFETY: a valid fd, a pointer to an i32 that lives for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt({level}, {name})");
}

/// The flows of `calls` (each call's audio and video, from the room's
/// side and the connector's), their phases spread over the periods, and
/// their sockets set up for the receiver (non-blocking, kernel receive
/// stamps, 1 MiB receive queues).
fn flows_of(calls: &[VideoCall], model: &VideoModel) -> (Vec<Flow>, Vec<Arc<UdpSocket>>) {
    let n = calls.len().max(1) as u64;
    let mut flows = Vec::new();
    let mut sockets: Vec<Arc<UdpSocket>> = Vec::new();
    let audio_ns = AUDIO_PERIOD.as_nanos() as u64;
    let frame_ns = model.period_ns();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for (i, c) in calls.iter().enumerate() {
        let i = i as u64;
        // Calls spread evenly over the audio period and the frame period;
        // the connector side half a period after the room's.
        let a_phase = audio_ns * i / n;
        let v_phase = (frame_ns * i as f64 / n as f64) as u64;
        let mut add = |sock: &Arc<UdpSocket>, to, video, phase, side: u64| {
            let r = next_unit(&mut seed);
            flows.push(Flow {
                fd: sock.as_raw_fd(),
                to: sockaddr_in(to),
                video,
                ssrc: MAGIC | ((i as u32 & 0x3fff) << 2) | ((side as u32) << 1) | video as u32,
                seq: (r * 65535.0) as u16,
                phase_ns: phase,
                event: 0,
                key_phase: (r * model.gop() as f64) as u64,
                rng: seed | 1,
            });
            sockets.push(sock.clone());
        };
        add(&c.room_audio, c.room_to, false, a_phase, 0);
        add(&c.conn_audio, c.conn_to, false, a_phase + audio_ns / 2, 1);
        if let Some(v) = &c.video {
            add(&v.room, v.room_to, true, v_phase, 0);
            add(
                &v.conn,
                v.conn_to,
                true,
                v_phase + (frame_ns / 2.0) as u64,
                1,
            );
        }
    }
    for s in &sockets {
        s.set_nonblocking(true).expect("non-blocking");
        set_int_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
        set_int_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 1 << 20);
    }
    (flows, sockets)
}

/// Plays every stream of `calls` for `secs` after a 1 s warm-up (the
/// relay latches, the first key frames pass), counting only packets sent
/// inside the window; `relay_pids` are the processes whose CPU and socket
/// drops are the relay's.
///
/// With `gso`, a video frame goes as one UDP GSO train (one `sendmsg`
/// with `UDP_SEGMENT`) instead of one `sendmmsg`; fedge still reads single
/// datagrams (loopback cuts the train before the socket).
pub fn play_video(
    calls: &[VideoCall],
    model: &VideoModel,
    secs: u64,
    relay_pids: &[u32],
    gso: bool,
) -> VideoOutcome {
    let frame_ns = model.period_ns();
    let audio_ns = AUDIO_PERIOD.as_nanos() as u64;
    let (mut flows, sockets) = flows_of(calls, model);
    let window = Arc::new([AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)]);
    let stop = Arc::new(AtomicBool::new(false));
    let (receiver, rx_result) = spawn_receiver(&sockets, &window, &stop);

    let warmup = Duration::from_secs(1);
    let total_ns = (warmup + Duration::from_secs(secs)).as_nanos() as u64;
    // The largest frame: a key frame, or a predicted one at its largest.
    let max_packets = model
        .packets(model.frame_bytes(0, 0, 1.0))
        .max(model.packets(model.frame_bytes(1, 0, 1.0)))
        .max(2);
    let mut bufs = vec![[0u8; 2048]; max_packets];
    let mut lens = vec![0usize; max_packets];
    let mut train = Vec::with_capacity(65_536);
    let mut expected = [0u64; 2];
    let mut sent = [0u64; 2];
    let mut lag = vec![0u32; LAG_BUCKETS];
    let mut cpu0 = None;
    let mut drops0 = (0, 0);
    let mut busy0 = 0.0;
    let start = Instant::now();
    let window_start_ns = warmup.as_nanos() as u64;
    let mut tick = 0u64;
    let mut in_window = false;
    loop {
        let now = start.elapsed().as_nanos() as u64;
        if now >= total_ns {
            break;
        }
        if !in_window && now >= window_start_ns {
            in_window = true;
            drops0 = (udp_drops(relay_pids), udp_drops(&[std::process::id()]));
            cpu0 = Some((
                cpu_seconds(relay_pids),
                cpu_seconds(&[std::process::id()]),
                Instant::now(),
            ));
            busy0 = machine_busy();
            window[0].store(realtime_ns(), Ordering::Relaxed);
        }
        for f in flows.iter_mut() {
            loop {
                let due = if f.video {
                    f.phase_ns + (f.event as f64 * frame_ns) as u64
                } else {
                    f.phase_ns + f.event * audio_ns
                };
                if due > now {
                    break;
                }
                let kind = f.video as usize;
                let count = if f.video {
                    let r = next_unit(&mut f.rng);
                    let bytes = model.frame_bytes(f.event, f.key_phase, r);
                    fill_frame(&mut bufs, &mut lens, model, bytes, f)
                } else {
                    fill_audio(&mut bufs[0], f);
                    lens[0] = AUDIO_PACKET;
                    1
                };
                let due_in_window = due >= window_start_ns;
                let late = now.saturating_sub(due);
                let stamp = realtime_ns();
                let ok = if f.video && gso {
                    for b in bufs[..count].iter_mut() {
                        b[RTP_HEADER..RTP_HEADER + 8].copy_from_slice(&stamp.to_be_bytes());
                    }
                    // Refused by the kernel (or too big): sendmmsg.
                    send_gso(f, &bufs[..count], &lens[..count], &mut train)
                        .unwrap_or_else(|| send_batch(f, &mut bufs[..count], &lens[..count], stamp))
                } else {
                    send_batch(f, &mut bufs[..count], &lens[..count], stamp)
                };
                if in_window {
                    if due_in_window {
                        expected[kind] += count as u64;
                        let b = ((late / 1000) / LAG_BUCKET_US) as usize;
                        lag[b.min(LAG_BUCKETS - 1)] += 1;
                    }
                    sent[kind] += ok as u64;
                }
                f.event += 1;
            }
        }
        tick += 1;
        let next = Duration::from_millis(tick);
        if let Some(d) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(d);
        } else {
            // Behind: catch up without sleeping, but in whole ticks.
            tick = start.elapsed().as_millis() as u64;
        }
    }
    let end_rt = realtime_ns();
    window[1].store(end_rt, Ordering::Relaxed);
    let (c0, g0, t0) = cpu0.unwrap_or((
        cpu_seconds(relay_pids),
        cpu_seconds(&[std::process::id()]),
        Instant::now(),
    ));
    let relay_cpu = cpu_seconds(relay_pids) - c0;
    let gen_cpu = cpu_seconds(&[std::process::id()]) - g0;
    let machine_cpu = machine_busy() - busy0;
    let secs_measured = t0.elapsed().as_secs_f64();
    // Late packets still count for 300 ms (p99 must be far below that).
    std::thread::sleep(Duration::from_millis(300));
    let relay_drops = udp_drops(relay_pids).saturating_sub(drops0.0);
    let gen_drops = udp_drops(&[std::process::id()]).saturating_sub(drops0.1);
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    let (received, lat) = rx_result
        .lock()
        .unwrap()
        .take()
        .unwrap_or_else(|| ([0; 2], [vec![0; LAT_BUCKETS], vec![0; LAT_BUCKETS]]));
    VideoOutcome {
        expected,
        sent,
        received,
        lat,
        lag,
        relay_cpu,
        gen_cpu,
        secs: secs_measured,
        relay_drops,
        gen_drops,
        machine_cpu,
    }
}

/// CPU seconds all cores have been busy since boot (/proc/stat: user,
/// nice, system, irq, softirq, steal; USER_HZ is 100 on Linux).
fn machine_busy() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| {
            let l = t.lines().next()?.strip_prefix("cpu ")?.to_string();
            let f: Vec<f64> = l
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            Some(
                [0usize, 1, 2, 5, 6, 7]
                    .iter()
                    .filter_map(|&i| f.get(i))
                    .sum::<f64>()
                    / 100.0,
            )
        })
        .unwrap_or(0.0)
}

fn rtp_header(b: &mut [u8], pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    b[0] = 0x80;
    b[1] = pt | if marker { 0x80 } else { 0 };
    b[2..4].copy_from_slice(&seq.to_be_bytes());
    b[4..8].copy_from_slice(&ts.to_be_bytes());
    b[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// One audio packet (`AUDIO_PACKET` bytes) into `b`.
fn fill_audio(b: &mut [u8; 2048], f: &mut Flow) {
    let ts = (f.event as u32).wrapping_mul(160);
    rtp_header(b, AUDIO_PT, false, f.seq, ts, f.ssrc);
    f.seq = f.seq.wrapping_add(1);
    // The payload after the send stamp: G.711 silence.
    b[RTP_HEADER + 8..AUDIO_PACKET].fill(0xd5);
}

/// A frame of `bytes` into packets (FU-A style: full packets, then the
/// rest; the marker on the last); returns how many.
fn fill_frame(
    bufs: &mut [[u8; 2048]],
    lens: &mut [usize],
    model: &VideoModel,
    bytes: usize,
    f: &mut Flow,
) -> usize {
    let full = model.max_payload.clamp(8, 2048 - RTP_HEADER);
    let count = model.packets(bytes).min(bufs.len());
    let ts = (f.event as u32).wrapping_mul(90_000 / model.fps.max(1));
    for (i, (b, len)) in bufs.iter_mut().zip(lens.iter_mut()).enumerate().take(count) {
        rtp_header(b, VIDEO_PT, i + 1 == count, f.seq, ts, f.ssrc);
        f.seq = f.seq.wrapping_add(1);
        let payload = if i + 1 < count {
            full
        } else {
            bytes.saturating_sub(full * (count - 1))
        };
        // At least room for the send stamp.
        *len = RTP_HEADER + payload.clamp(8, full);
    }
    count
}

/// Sends a frame's packets (stamped, every one but the last `lens[0]`
/// long) as one UDP GSO datagram train (`UDP_SEGMENT`): one syscall and
/// one skb down the stack; the kernel cuts it into datagrams before the
/// receiving socket. `None` when the kernel refuses (the caller falls back
/// to `sendmmsg`).
fn send_gso(f: &Flow, bufs: &[[u8; 2048]], lens: &[usize], train: &mut Vec<u8>) -> Option<usize> {
    let count = bufs.len();
    let seg = lens[0];
    if !(2..=64).contains(&count) || lens[..count - 1].iter().any(|&l| l != seg) {
        return None;
    }
    train.clear();
    for (b, &l) in bufs.iter().zip(lens) {
        train.extend_from_slice(&b[..l]);
    }
    if train.len() > 65_000 {
        return None;
    }
    let mut to = f.to;
    let mut iov = libc::iovec {
        iov_base: train.as_mut_ptr() as *mut libc::c_void,
        iov_len: train.len(),
    };
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_name = &mut to as *mut libc::sockaddr_in as *mut libc::c_void;
    h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    h.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE is a size computation.
    h.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
    // SAFETY: the control buffer (32 bytes) holds one cmsg of a u16; the
    // pointers are to locals alive for the call.
    let r = unsafe {
        let c = libc::CMSG_FIRSTHDR(&h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg as u16);
        libc::sendmsg(f.fd, &h, libc::MSG_DONTWAIT)
    };
    (r >= 0).then_some(count)
}

/// Stamps and sends a batch with one `sendmmsg`; returns how many went.
fn send_batch(f: &Flow, bufs: &mut [[u8; 2048]], lens: &[usize], stamp: u64) -> usize {
    let count = bufs.len();
    for b in bufs.iter_mut() {
        b[RTP_HEADER..RTP_HEADER + 8].copy_from_slice(&stamp.to_be_bytes());
    }
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .zip(lens)
        .map(|(b, &len)| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: len,
        })
        .collect();
    let mut to = f.to;
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: msghdr is plain old data; all-zero is a valid value.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = &mut to as *mut libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = iov as *mut libc::iovec;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    let mut done = 0usize;
    while done < count {
        // SAFETY: `msgs` points into `iovs`, `bufs` and `to`, all alive
        // and unaliased for the call; the length is the vector's.
        let r = unsafe {
            libc::sendmmsg(
                f.fd,
                msgs[done..].as_mut_ptr(),
                (count - done) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r <= 0 {
            break;
        }
        done += r as usize;
    }
    done
}

type Received = ([u64; 2], [Vec<u32>; 2]);

/// The receiver thread over `sockets`, and where it leaves what it counted
/// once `stop` is set.
fn spawn_receiver(
    sockets: &[Arc<UdpSocket>],
    window: &Arc<[AtomicU64; 2]>,
    stop: &Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Arc<Mutex<Option<Received>>>) {
    let out = Arc::new(Mutex::new(None));
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let (window, stop, slot) = (window.clone(), stop.clone(), out.clone());
    let handle = std::thread::Builder::new()
        .name("videogen-rx".into())
        .spawn(move || {
            let r = receive(&fds, &window, &stop);
            *slot.lock().unwrap() = Some(r);
        })
        .expect("the receiver thread");
    (handle, out)
}

/// The receiver: epoll over every socket, each ready one drained with one
/// `recvmmsg`; latency from the kernel's receive timestamp.
fn receive(fds: &[RawFd], window: &[AtomicU64; 2], stop: &AtomicBool) -> Received {
    const BATCH: usize = 64;
    const CMSG: usize = 64;
    let mut received = [0u64; 2];
    let mut lat = [vec![0u32; LAT_BUCKETS], vec![0u32; LAT_BUCKETS]];
    // SAFETY: plain syscall; the fd is closed below.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    for (i, &fd) in fds.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: valid fds, an event that lives for the call.
        let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        assert_eq!(r, 0, "epoll_ctl");
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut cmsgs = vec![[0u64; CMSG / 8]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(cmsgs.iter_mut())
        .map(|(iov, c)| {
            // SAFETY: msghdr is plain old data; all-zero is a valid value.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_iov = iov as *mut libc::iovec;
            h.msg_iovlen = 1;
            h.msg_control = c.as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = CMSG;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    let mut stopped_at: Option<Instant> = None;
    loop {
        // SAFETY: `events` is a live buffer of the length given.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 20) };
        if n <= 0 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            continue;
        }
        // After the stop, what is queued is still read (it arrived in
        // time: its kernel stamp says when), for at most 2 s.
        if stop.load(Ordering::Relaxed)
            && stopped_at.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(2)
        {
            break;
        }
        let (lo, hi) = (
            window[0].load(Ordering::Relaxed),
            window[1].load(Ordering::Relaxed),
        );
        for ev in &events[..n as usize] {
            let fd = fds[ev.u64 as usize];
            for m in msgs.iter_mut() {
                m.msg_hdr.msg_controllen = CMSG;
            }
            // SAFETY: `msgs` points into `iovs`, `bufs` and `cmsgs`, all
            // alive and unaliased for the call.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got <= 0 {
                continue;
            }
            for (m, b) in msgs.iter().zip(bufs.iter()).take(got as usize) {
                let len = m.msg_len as usize;
                if len < RTP_HEADER + 8 {
                    continue;
                }
                let ssrc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
                if ssrc & 0xFFFF_0000 != MAGIC {
                    continue;
                }
                let mut sent = [0u8; 8];
                sent.copy_from_slice(&b[RTP_HEADER..RTP_HEADER + 8]);
                let sent = u64::from_be_bytes(sent);
                if sent < lo || sent >= hi {
                    continue;
                }
                let Some(at) = kernel_stamp(&m.msg_hdr) else {
                    continue;
                };
                let kind = (ssrc & 1) as usize;
                received[kind] += 1;
                let us = at.saturating_sub(sent) / 1000;
                let bucket = ((us / LAT_BUCKET_US) as usize).min(LAT_BUCKETS - 1);
                lat[kind][bucket] += 1;
            }
        }
    }
    // SAFETY: the epoll fd this function opened.
    unsafe { libc::close(ep) };
    (received, lat)
}

/// The SO_TIMESTAMPNS receive time (ns since the epoch) of a message.
fn kernel_stamp(h: &libc::msghdr) -> Option<u64> {
    // SAFETY: `h` was filled by recvmmsg; the CMSG macros walk its
    // control buffer within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// Datagrams the UDP sockets of `pids` dropped so far (full receive
/// queues), from /proc/net/udp's last column.
pub fn udp_drops(pids: &[u32]) -> u64 {
    let mut inodes = HashSet::new();
    for pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in dir.flatten() {
            if let Ok(t) = std::fs::read_link(e.path())
                && let Some(i) = t
                    .to_str()
                    .and_then(|s| s.strip_prefix("socket:["))
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse::<u64>().ok())
            {
                inodes.insert(i);
            }
        }
    }
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let inode = f.get(9)?.parse::<u64>().ok()?;
                    let drops = f.last()?.parse::<u64>().ok()?;
                    inodes.contains(&inode).then_some(drops)
                })
                .collect::<Vec<_>>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_model_is_an_hd_stream() {
        let m = VideoModel::default();
        let pps = m.packets_per_second();
        assert!((150.0..=175.0).contains(&pps), "{pps} packets/s");
        // A key frame is a burst of dozens of packets; a P frame a few.
        assert!(m.packets(m.frame_bytes(0, 0, 0.5)) >= 30);
        assert!((4..=7).contains(&m.packets(m.frame_bytes(1, 0, 0.5))));
        // The mean rate over a group of pictures is the configured rate.
        let bytes: usize = (0..m.gop()).map(|i| m.frame_bytes(i, 0, 0.5)).sum();
        let kbps = bytes as f64 * 8.0 / m.key_every.as_secs_f64() / 1000.0;
        assert!((kbps - 1500.0).abs() < 15.0, "{kbps} kbit/s");
    }
}
