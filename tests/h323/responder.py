#!/usr/bin/env python3
"""A gateway stand-in for the room's self-test (test code only).

Owns: answering ONE H.323 call: Setup → CallProceeding + Connect (fastStart
answers, or H.245 OpenLogicalChannel when none were offered), H.245 TCS/MSD
(tunnelled, or on a separate connection it opens to the caller's
h245Address or offers its own), RTP echoed back to the caller, digits
collected, release by either side. Prints "PORT n" once listening and a JSON
summary on exit. Never: a second call, or running past --timeout.
"""

import argparse
import json
import os
import random
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h323msg as m  # noqa: E402


class Responder:
    def __init__(self, args):
        self.a = args
        self.sel = selectors.DefaultSelector()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
        self.h245_lsock = None
        self.sig = None
        self.h245 = None
        self.readers = {}
        self.tunnel = True
        self.call_ref = 0
        self.conf_id = b"\x00" * 16
        self.guid = b"\x00" * 16
        self.rtp = {}
        self.peer_rtp = {}
        self.msd_num = random.randint(0, (1 << 24) - 1)
        self.summary = {"received": [], "sent": [], "digits": "", "rtp_in": 0, "rtp_out": 0}
        self.release_at = None
        self.done = False
        self.ended = False
        for kind in ("audio", "video", "presentation"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.rtp[kind] = s
            self.sel.register(s, selectors.EVENT_READ, ("rtp", kind))

    def port(self):
        return self.lsock.getsockname()[1]

    def send_q931(self, name, body_name, body, ies=(), h245=None):
        uu = m.uu_encode(body_name, body, tunnelling=self.tunnel, h245=h245)
        self.sig.sendall(m.tpkt(m.q931_encode(name, self.call_ref, True, list(ies) + [(m.IE_UUIE, uu)])))
        self.summary["sent"].append(name)

    def send_h245(self, value):
        data = m.h245_encode(value)
        self.summary["sent"].append("h245:" + m.h245_name(value))
        if self.h245 is not None:
            self.h245.sendall(m.tpkt(data))
        else:
            self.send_q931("facility", "empty", 0, h245=[data])
            self.summary["sent"].pop()

    def base(self):
        return {"protocolIdentifier": m.H225_PROTOCOL, "callIdentifier": m.call_id(self.guid),
                "multipleCalls": False, "maintainConnection": False}

    def on_setup(self, setup, tunnelling):
        self.conf_id = setup["conferenceID"]
        self.guid = setup.get("callIdentifier", {"guid": self.conf_id})["guid"]
        self.tunnel = bool(tunnelling) and not self.a.no_tunnel
        proceeding = dict(self.base(), destinationInfo=m.endpoint(terminal=False))
        self.send_q931("callProceeding", "callProceeding", proceeding)
        connect = dict(self.base(), destinationInfo=m.endpoint(terminal=False), conferenceID=self.conf_id)
        if setup.get("fastStart"):
            connect["fastStart"] = self.answer_fast_start(setup["fastStart"])
        if not self.tunnel:
            if "h245Address" in setup:
                ip, port = m.transport_str(setup["h245Address"]).rsplit(":", 1)
                self.adopt_h245(socket.create_connection((ip, int(port)), timeout=5))
            else:
                self.h245_lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.h245_lsock.bind(("127.0.0.1", 0))
                self.h245_lsock.listen(1)
                self.sel.register(self.h245_lsock, selectors.EVENT_READ, "h245listen")
                connect["h245Address"] = m.transport(*self.h245_lsock.getsockname())
        self.send_q931("connect", "connect", connect, [(m.IE_DISPLAY, b"responder")])
        if self.a.garble:
            # A Facility whose H.225 PDU is cut short: the wire check and the
            # room must both notice.
            uu = m.uu_encode("facility", dict(self.base(), reason=("undefinedReason", 0)))
            self.sig.sendall(m.tpkt(m.q931_encode("facility", self.call_ref, True, [(m.IE_UUIE, uu[:-12])])))
            self.summary["sent"].append("facility (garbled)")
        if self.tunnel:
            self.start_h245()

    def answer_fast_start(self, offers):
        answers, taken = [], set()
        for data in offers:
            olc = m.olc_decode(data)
            rev = olc.get("reverseLogicalChannelParameters")
            fwd = olc["forwardLogicalChannelParameters"]
            if rev:
                media = m.media_of(rev["dataType"])
                kind = "video" if media == "h264" else "audio"
                if ("rx", kind) in taken or media is None:
                    continue
                taken.add(("rx", kind))
                addr = rev["multiplexParameters"][1]["mediaChannel"]
                ip, port = m.transport_str(addr).rsplit(":", 1)
                self.peer_rtp[kind] = (ip, int(port))
                answers.append(data)
            else:
                media = m.media_of(fwd["dataType"])
                kind = "video" if media == "h264" else "audio"
                if ("tx", kind) in taken or media is None:
                    continue
                taken.add(("tx", kind))
                sock = self.rtp[kind].getsockname()
                olc["forwardLogicalChannelParameters"]["multiplexParameters"] = m.h2250(
                    media, rtp=sock, rtcp=(sock[0], sock[1] + 1))
                answers.append(m.olc_encode(olc))
        return answers

    def start_h245(self):
        self.send_h245(m.tcs(1, True))
        self.send_h245(m.msd(self.msd_num, terminal_type=60))

    def adopt_h245(self, s):
        s.setblocking(False)
        self.h245 = s
        self.readers[s] = m.TpktReader()
        self.sel.register(s, selectors.EVENT_READ, "h245")
        self.start_h245()

    def on_sig(self, msg):
        name, ref, _from_dest, ies = m.q931_decode(msg)
        self.summary["received"].append(name)
        if m.IE_UUIE not in ies:
            return
        pdu = m.uu_decode(ies[m.IE_UUIE])
        body_name, body = pdu["h323-message-body"]
        if name == "setup":
            self.call_ref = ref
            self.on_setup(body, pdu.get("h245Tunnelling", False))
        for data in pdu.get("h245Control", []):
            self.on_h245(data)
        if name == "releaseComplete":
            self.done = True

    def on_h245(self, data):
        value = m.h245_decode(data)
        name = m.h245_name(value)
        inner = value[1][1]
        self.summary["received"].append("h245:" + name)
        if name == "terminalCapabilitySet":
            self.send_h245(m.tcs_ack(inner["sequenceNumber"]))
        elif name == "masterSlaveDetermination":
            decision = m.msd_decide(60, self.msd_num, inner["terminalType"], inner["statusDeterminationNumber"])
            self.send_h245(m.msd_ack(decision))
        elif name == "userInput":
            kind, val = inner
            self.summary["digits"] += val if kind == "alphanumeric" else val.get("signalType", "")
        elif name == "openLogicalChannel":
            lcn = inner["forwardLogicalChannelNumber"]
            kind = m.KIND_OF.get(m.media_of(inner["forwardLogicalChannelParameters"]["dataType"]), "audio")
            sock = self.rtp[kind].getsockname()
            self.send_h245(m.olc_ack(lcn, sock, (sock[0], sock[1] + 1)))
            if not self.peer_rtp:
                self.open_reverse()
        elif name == "openLogicalChannelAck":
            addr = inner["forwardMultiplexAckParameters"][1]["mediaChannel"]
            ip, port = m.transport_str(addr).rsplit(":", 1)
            kind = "video" if inner["forwardLogicalChannelNumber"] == 2 else "audio"
            self.peer_rtp[kind] = (ip, int(port))
        elif name == "genericRequest" and m.h239_of(inner) and m.h239_of(inner)[0] == 3:
            params = m.h239_of(inner)[1]
            self.send_h245(m.token_response(params[42][1], params[44][1], not self.a.refuse_token))
        elif name == "endSessionCommand":
            if not self.ended:
                self.ended = True
                self.send_h245(m.end_session())

    def open_reverse(self):
        sock = self.rtp["audio"].getsockname()
        self.send_h245(("request", ("openLogicalChannel", m.olc_tx(1, "pcmu", (sock[0], sock[1] + 1)))))

    def release(self):
        self.ended = True
        self.send_h245(m.end_session())
        body = {"protocolIdentifier": m.H225_PROTOCOL, "reason": ("destinationRejection", 0),
                "callIdentifier": m.call_id(self.guid)}
        self.send_q931("releaseComplete", "releaseComplete", body, [(m.IE_CAUSE, m.cause_ie(self.a.cause))])
        self.done = True

    def on_rtp(self, kind, sock):
        try:
            data, _src = sock.recvfrom(4096)
        except OSError:
            return
        if m.rtp_pt(data) is None:
            return
        self.summary["rtp_in"] += 1
        if kind in self.peer_rtp:
            sock.sendto(data, self.peer_rtp[kind])
            self.summary["rtp_out"] += 1

    def run(self):
        deadline = time.monotonic() + self.a.timeout
        print("PORT %d" % self.port(), flush=True)
        linger = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            if self.done:
                linger = linger or now + 0.3
                if now >= linger:
                    return
            if self.a.release_after and self.sig and not self.done and self.release_at is None:
                self.release_at = now + self.a.release_after
            if self.release_at and now >= self.release_at and not self.done:
                self.release()
            for key, _ in self.sel.select(timeout=0.02):
                self.on_ready(key)

    def on_ready(self, key):
        tag = key.data
        if isinstance(tag, tuple):
            self.on_rtp(tag[1], key.fileobj)
        elif tag == "listen":
            self.sig, _ = self.lsock.accept()
            self.readers[self.sig] = m.TpktReader()
            self.sel.register(self.sig, selectors.EVENT_READ, "sig")
        elif tag == "h245listen":
            s, _ = self.h245_lsock.accept()
            self.sel.unregister(self.h245_lsock)
            self.adopt_h245(s)
        else:
            data = key.fileobj.recv(65536)
            if not data:
                self.sel.unregister(key.fileobj)
                self.done = True
                return
            for msg in self.readers[key.fileobj].feed(data):
                (self.on_sig if tag == "sig" else self.on_h245)(msg)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--release-after", type=float, default=0.0, help="hang up this long after the call arrives")
    p.add_argument("--cause", type=int, default=16)
    p.add_argument("--refuse-token", action="store_true", help="reject H.239 presentation token requests")
    p.add_argument("--garble", action="store_true", help="send a truncated Facility after Connect")
    p.add_argument("--no-tunnel", action="store_true", help="refuse tunnelling: H.245 on its own connection")
    r = Responder(p.parse_args())
    try:
        r.run()
    finally:
        print(json.dumps(r.summary), flush=True)


if __name__ == "__main__":
    main()
