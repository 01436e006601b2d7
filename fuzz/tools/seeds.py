#!/usr/bin/env python3
"""Writes the fuzz seed corpora (fuzz/seeds/<target>/) from the project's
own test material: the RFC 4475 torture messages, the messages of the SIPp
scenarios in tests/sipp (keywords filled in as SIPp would), SDP bodies, and
a few STUN, DTMF, FPA, CSV and TOML inputs. Run from the repository root;
the output is deterministic, so re-running it changes nothing."""

import glob
import hashlib
import hmac
import os
import re
import shutil
import struct
import zlib

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "fuzz", "seeds")

KEYWORDS = {
    "service": "bob",
    "to_domain": "home.test",
    "from_domain": "partner.test",
    "from_user": "alice",
    "transport": "TLS",
    "local_ip": "192.0.2.10",
    "local_port": "5061",
    "remote_ip": "192.0.2.20",
    "remote_port": "5061",
    "branch": "z9hG4bK-sipp-1",
    "pid": "4242",
    "call_number": "1",
    "call_id": "1-4242@192.0.2.10",
    "peer_tag_param": ";tag=peer-9",
    "routes": "Route: <sip:edge.fuzz.test:5061;transport=tls;lr>",
    "next_url": "sip:bob@192.0.2.20:5061;transport=tls",
    "media_port": "40000",
    "media_ip": "192.0.2.10",
    "media_ip_type": "4",
    "local_ip_type": "4",
    "cseq": "2",
    "last_Via:": "Via: SIP/2.0/TLS 192.0.2.20:5061;branch=z9hG4bK-last",
    "last_From:": "From: <sip:alice@partner.test>;tag=4242",
    "last_To:": "To: <sip:bob@home.test>",
    "last_Call-ID:": "Call-ID: 1-4242@192.0.2.10",
    "last_CSeq:": "CSeq: 1 INVITE",
    "last_Record-Route:": "Record-Route: <sip:edge.fuzz.test:5061;transport=tls;lr>",
    "last_Contact:": "Contact: <sip:alice@192.0.2.10:5061;transport=tls>",
}


def fill(text):
    def sub(m):
        k = m.group(1)
        if k in KEYWORDS:
            return KEYWORDS[k]
        if k.startswith("branch"):
            return "z9hG4bK-sipp-" + k[7:]
        if k.startswith("last_"):
            return ""
        if k.startswith("$"):
            return "x"
        return m.group(0)

    return re.sub(r"\[([A-Za-z_0-9:$-]+)\]", sub, text)


def sipp_messages():
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "sipp", "*.xml"))):
        text = open(path, encoding="latin-1").read()
        for i, m in enumerate(re.finditer(r"<send[^>]*>\s*<!\[CDATA\[(.*?)\]\]>", text, re.S)):
            lines = [l.strip() for l in m.group(1).strip("\n").split("\n")]
            while lines and not lines[0]:
                lines.pop(0)
            while lines and not lines[-1]:
                lines.pop()
            lines = [fill(l) for l in lines]
            if "" in lines:
                k = lines.index("")
                head, body = lines[:k], lines[k + 1:]
            else:
                head, body = lines, []
            head = [l for l in head if l]
            body_text = "".join(l + "\r\n" for l in body)
            head = [
                f"Content-Length: {len(body_text.encode())}" if l.lower().startswith("content-length") else l
                for l in head
            ]
            msg = "\r\n".join(head) + "\r\n\r\n" + body_text
            name = os.path.basename(path)[:-4] + f"-{i}"
            out.append((name, msg.encode("latin-1")))
    return out


# From crates/fedge-sip/src/edit.rs and the topology tests: list headers
# sharing lines, folding, compact names, routes of ours with tokens.
EDIT_MSG = (
    b"MESSAGE sip:bob@home.test SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS a.partner.test;branch=z9hG4bK1, SIP/2.0/TLS b.partner.test;branch=z9hG4bK2\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:edge.fuzz.test:5061;transport=tls;lr;fe-h=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA>, <sip:p.home.test;lr>\r\n"
    b"Record-Route: <sip:rr1.partner.test;lr>,\r\n <sip:rr2.partner.test;lr>\r\n"
    b"f: <sip:alice@partner.test>;tag=1\r\n"
    b"t: <sip:bob@home.test>\r\n"
    b"i: x1\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"m: <sip:alice@10.0.0.9:5061;transport=tls>;expires=60, \"A\" <sip:a@home.test;opaque=srvr:x>\r\n"
    b"X-Odd:   keep   this  \r\n"
    b"c: text/plain\r\n"
    b"l: 5\r\n\r\nhello"
)
RESPONSE_MSG = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/TLS edge.fuzz.test:5061;branch=z9hG4bK-fuzz\r\n"
    b"Via: SIP/2.0/TLS a.partner.test;branch=z9hG4bK1\r\n"
    b"Record-Route: <sip:p.home.test;lr>, <sip:edge.fuzz.test:5061;transport=tls;lr>\r\n"
    b"Record-Route: <sip:rr1.partner.test;lr>\r\n"
    b"From: <sip:alice@partner.test>;tag=1\r\nTo: <sip:bob@home.test>;tag=2\r\n"
    b"Call-ID: x1\r\nCSeq: 1 INVITE\r\n"
    b"Contact: <sip:bob@10.1.1.1:5061;transport=tls>\r\nContent-Length: 0\r\n\r\n"
)


def rfc4475():
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "conformance", "rfc4475", "*.dat"))):
        data = open(path, "rb").read()
        if len(data) <= 4096:
            out.append(("rfc4475-" + os.path.basename(path)[:-4], data))
    return out


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sdp_bodies(msgs):
    out = []
    for name, m in msgs:
        if b"\r\n\r\nv=0" in m:
            out.append((name, m.split(b"\r\n\r\n", 1)[1]))
    return out


SDP_EXTRA = {
    "ice-trickle": b"v=0\no=- 1 2 IN IP4 192.168.1.9\ns=-\nc=IN IP4 192.168.1.9\nt=0 0\na=ice-options:trickle\n"
    b"m=audio 7000 RTP/SAVP 0\na=ice-ufrag:peer\na=ice-pwd:peerpasswordpeerpassword\n"
    b"a=candidate:1 1 UDP 2130706431 192.168.1.9 7000 typ host\na=candidate:1 2 UDP 2130706430 192.168.1.9 7001 typ host\n"
    b"a=candidate:2 1 tcp 1684798975 192.168.1.9 9 typ host tcptype active\na=rtcp-mux\n"
    b"m=application 5070 UDP/BFCP *\na=floorctrl:c-s\n",
    "lync-v6": b"v=0\r\no=- 0 0 IN IP4 10.0.0.7\r\ns=session\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\n"
    b"m=audio 25890 RTP/SAVP 114 0\r\na=candidate:aBcD 1 UserNameV6 UDP 0.830 10.0.0.7 25890\r\n"
    b"a=cryptoscale:1 client AES_CM_128_HMAC_SHA1_80 inline:x\r\n",
    "hold-rejected": b"v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 25890 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n",
    "tcp-4571": b"v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 9 TCP/RTP/AVP 0\r\na=setup:active\r\na=connection:new\r\n",
    "video-rtcp": b"v=0\r\no=alice 2890844526 2890844526 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"m=video 51372 RTP/AVP 96\r\nc=IN IP4 10.1.1.2\r\na=rtcp:53020 IN IP4 10.1.1.3\r\na=sendonly\r\n",
    "ipv6": b"v=0\r\no=- 1 1 IN IP6 2001:db8::7\r\ns=-\r\nc=IN IP6 2001:db8::7\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\na=rtcp:5005 IN IP6 2001:db8::8\r\n",
}


def stun_request(key, username=b"RLAY:peer", use_candidate=True, fingerprint=True):
    tid = bytes(range(1, 13))
    attrs = b""

    def attr(t, v):
        pad = (4 - len(v) % 4) % 4
        return struct.pack("!HH", t, len(v)) + v + b"\0" * pad

    attrs += attr(0x0006, username)
    attrs += attr(0x0024, struct.pack("!I", 0x6E0001FF))
    if use_candidate:
        attrs += attr(0x0025, b"")
    head = lambda n: struct.pack("!HH", 0x0001, n) + bytes([0x21, 0x12, 0xA4, 0x42]) + tid
    msg = head(len(attrs) + 24) + attrs
    mac = hmac.new(key, msg, hashlib.sha1).digest()
    msg += attr(0x0008, mac)
    if fingerprint:
        msg = head(len(msg) - 20 + 8) + msg[20:]
        crc = (zlib.crc32(msg) ^ 0x5354554E) & 0xFFFFFFFF
        msg += attr(0x8028, struct.pack("!I", crc))
    else:
        msg = head(len(msg) - 20) + msg[20:]
    return msg


def rtp(pt, digit, end, ts=160, cc=0, ext=False):
    b0 = 0x80 | cc | (0x10 if ext else 0)
    head = struct.pack("!BBHI", b0, pt, 1, ts) + struct.pack("!I", 0x1234)
    head += b"\0\0\0\1" * cc
    if ext:
        head += struct.pack("!HH", 0xBEDE, 1) + b"\x10\xff\0\0"
    return head + bytes([digit, 0x80 if end else 0x0A]) + struct.pack("!H", 800)


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    msgs = rfc4475() + sipp_messages()
    extra = [
        ("keepalive", b"\r\n\r\n"),
        ("edit-lists", EDIT_MSG),
        ("response-rr-lists", RESPONSE_MSG),
        ("two-messages", msgs[-1][1] + b"\r\n" + msgs[-1][1]),
    ]
    for i, (name, m) in enumerate(msgs + extra):
        write("sip_datagram", name, m)
        write("sip_stream", name, bytes([i % 64]) + m)
        write("sip_forward", name, bytes([(i * 37) % 64]) + m)
    for name, body in sdp_bodies(msgs) + list(SDP_EXTRA.items()):
        write("sdp_rewrite", name, body)
    key = b"relaypasswordrelaypassword"
    write("stun", "binding-fp", stun_request(key))
    write("stun", "binding-nofp", stun_request(key, use_candidate=False, fingerprint=False))
    write("stun", "binding-wrongkey", stun_request(b"other"))
    write("stun", "rfc5769-resp-prefix", bytes.fromhex("0101003c2112a442b7e7a701bc34d686fa87dfae"))
    write("topology_token", "route", b"\x00call-1@partner.test\n<sip:p1.home.test;lr>\n<sip:p2.home.test;lr>")
    write("topology_token", "contact", b"\x41abc\nsip:bob@10.0.0.9:5061;transport=tls")
    write("topology_token", "made-up", b"\x82c\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    write("topology_token", "append", b"\xc3x\n")
    write("dtmf", "rtp-5", bytes([101 << 1]) + rtp(101, 5, False) + b"\xfe" + rtp(101, 5, True))
    write("dtmf", "rtp-hash-csrc-ext", bytes([96 << 1]) + rtp(96, 11, True, cc=2, ext=True))
    write("dtmf", "info-relay", bytes([1]) + b"Signal=5\r\nDuration=160\r\n")
    write("dtmf", "info-dtmf", bytes([3]) + b"#\r\n")
    write("dtmf", "info-relay-10", bytes([5]) + b"Signal= 10\r\nDuration=100\r\n")
    fpa = os.path.join(ROOT, "fpa-schemas", "examples", "fpa-valid.json")
    write("fpa_json", "fpa-valid", open(fpa, "rb").read())
    write("fpa_json", "broken", b'{\n  "fpa_version": 1,\n  oops\n}')
    write("enrol_csv", "good", b"\xef\xbb\xbfEmailAddress\r\njane.doe@nhs.net\r\n\"bob@trust.nhs.net\"\r\n\r\nJANE.DOE@NHS.NET\r\n")
    write("enrol_csv", "two-columns", b"EmailAddress,Name\njane@nhs.net,Jane\n")
    write("enrol_csv", "bad-rows", b"EmailAddress\njane\n@nhs.net\nja ne@nhs.net\njane@-x.nhs.net\nx@care.test;y@care.test\n")
    write("config_toml", "example", open(os.path.join(ROOT, "src", "config", "example.toml"), "rb").read())


if __name__ == "__main__":
    main()
