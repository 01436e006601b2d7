#!/usr/bin/env python3
"""The tests' H.323 room system: calls a gateway and reports what happened.

Owns: one H.323 call as the calling endpoint: Q.931/H.225 call signalling
over TCP, H.245 tunnelled in H.225 or on a separate TCP connection (either
side may open it), fastStart or H.245 OpenLogicalChannel media, RTP sending
and counting, DTMF (H.245 userInputIndication or RFC 2833), hang-up either
way, and a JSON result. Test code only: never a production endpoint, never
more than one call, never runs past --timeout.

Exit 0 when the dialogue completed as asked; non-zero with a one-line reason.
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


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateway", required=True, help="HOST:PORT of the gateway's call signalling")
    p.add_argument("--dial", required=True, help="the alias to call")
    p.add_argument("--alias-kind", choices=["dialled", "url", "h323id"], default="dialled")
    p.add_argument("--media-ip", default="127.0.0.1")
    p.add_argument("--digits", default="")
    p.add_argument("--digits-via", choices=["alphanumeric", "signal", "rfc2833"], default="alphanumeric")
    p.add_argument("--digit-gap", type=int, default=250, help="ms between digits")
    p.add_argument("--separate-h245", action="store_true")
    p.add_argument("--no-fast-start", action="store_true")
    p.add_argument("--video", action="store_true")
    p.add_argument("--await-msd", action="store_true",
                   help="send no master/slave determination of our own: wait for the gateway's")
    p.add_argument("--ignore-pause", action="store_true",
                   help="acknowledge an empty TCS but keep our channels open (a room that does not honour the pause)")
    p.add_argument("--presentation", action="store_true")
    p.add_argument("--presentation-for", type=float, default=0.0,
                   help="stop presenting after this many seconds (CLC and token release); 0: never")
    p.add_argument("--receive-presentation", action="store_true",
                   help="take the gateway's H.239 presentation channel and count its RTP")
    p.add_argument("--presentation-cycles", type=int, default=0,
                   help="open and at once close the presentation this many times")
    p.add_argument("--hangup", choices=["room", "gateway"], default="room")
    p.add_argument("--after", type=float, default=2.0)
    p.add_argument("--out")
    p.add_argument("--timeout", type=float, default=20.0)
    return p.parse_args(argv)


class Media:
    """One RTP session (audio or video): our sockets, where to send, counters."""

    def __init__(self, kind, ip):
        self.kind = kind
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((ip, 0))
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind((ip, 0))
        self.rtp.setblocking(False)
        self.rtcp.setblocking(False)
        self.target = None  # (ip, port) where the gateway wants our RTP
        self.media = None  # 'pcmu' | 'pcma' | 'h264' we send
        self.seq = random.randint(0, 0xFFFF)
        self.ts = random.randint(0, 0xFFFFFFFF)
        self.ssrc = random.randint(1, 0xFFFFFFFF)
        self.next_at = 0.0
        self.frames = 0

    def local(self):
        return self.rtp.getsockname()

    def local_rtcp(self):
        return self.rtcp.getsockname()


class Room:
    def __init__(self, args):
        self.a = args
        self.sel = selectors.DefaultSelector()
        self.result = {"ok": False, "error": None, "sent": [], "received": [], "cause": None,
                       "reason": None, "released_by": None,
                       "rtp": {"sent": {}, "received": {}, "sent_to": {}, "local": {}, "local_rtcp": {},
                               "received_from": {}},
                       "fast_start_accepted": [], "digits_sent": "", "digits_received": "",
                       "olc_received": [], "olc_rejected": [], "olc_acked": [], "paused": 0, "pause_ignored": 0,
                       "h245": {"mode": "separate" if args.separate_h245 else "tunnelled", "msd": None}}
        self.call_ref = random.randint(1, 0x7FFF)
        self.guid = m.new_guid()
        self.sig = None
        self.sig_reader = m.TpktReader()
        self.h245 = None  # separate H.245 socket
        self.h245_reader = m.TpktReader()
        self.h245_listener = None
        self.h245_peer_addr = None
        self.connected = False
        self.released = False
        self.tunnel = not args.separate_h245
        self.h245_started = False
        self.tcs_acked = False
        self.tcs_seen = False
        self.msd_num = random.randint(0, (1 << 24) - 1)
        self.msd_done = False
        self.msd_ack_sent = False
        self.olcs_opened = False
        self.opened = {}  # kind -> our OpenLogicalChannel number (slow start)
        self.rx_media = {}  # kind -> the media of the gateway's channel to us
        self.paused = False  # an empty TCS closed our channels (H.323 8.4.6)
        self.pending_h245 = []
        self.digits_left = list(args.digits)
        self.next_digit_at = None
        self.hangup_at = None
        self.ended = False
        self.media = {"audio": Media("audio", args.media_ip)}
        if args.video:
            self.media["video"] = Media("video", args.media_ip)
        if args.presentation or args.receive_presentation:
            self.media["presentation"] = Media("presentation", args.media_ip)
            self.result["presentation"] = None
        if args.receive_presentation:
            # The gateway's presentation towards us: its channel, whether it
            # was closed, whether the token was released.
            self.result["presentation_in"] = None
        self.cycles_left = max(1, args.presentation_cycles)
        self.next_token_at = 0.0
        self.result["cycles"] = {"acked": 0, "rejected": 0}
        self.token_requested = False
        self.presentation_open_at = None
        for med in self.media.values():
            self.result["rtp"]["local"][med.kind] = "%s:%d" % med.local()
            self.result["rtp"]["local_rtcp"][med.kind] = "%s:%d" % med.local_rtcp()
            self.sel.register(med.rtp, selectors.EVENT_READ, ("rtp", med))
            self.sel.register(med.rtcp, selectors.EVENT_READ, ("rtcp", med))

    # ------------------------------------------------------------ sending --
    def send_q931(self, name, body_name, body, ies=(), h245=None):
        uu = m.uu_encode(body_name, body, tunnelling=self.tunnel, h245=h245)
        msg = m.q931_encode(name, self.call_ref, False, list(ies) + [(m.IE_UUIE, uu)])
        self.sig.sendall(m.tpkt(msg))
        self.result["sent"].append(name)

    def send_h245(self, value):
        data = m.h245_encode(value)
        self.result["sent"].append("h245:" + m.h245_name(value))
        if self.h245 is not None:
            self.h245.sendall(m.tpkt(data))
        elif self.tunnel and self.sig is not None:
            self.send_q931("facility", "empty", 0, h245=[data])
            self.result["sent"].pop()  # the carrier, listed as the H.245 name
        else:
            self.pending_h245.append(value)
            self.result["sent"].pop()

    def setup(self):
        a = self.a
        host, port = a.gateway.rsplit(":", 1)
        self.sig = socket.create_connection((host, int(port)), timeout=5)
        self.sig.setblocking(False)
        self.sel.register(self.sig, selectors.EVENT_READ, ("sig", None))
        self.result["signal_local"] = "%s:%d" % self.sig.getsockname()[:2]
        alias = {"dialled": ("dialledDigits", a.dial), "url": ("url-ID", a.dial),
                 "h323id": ("h323-ID", a.dial)}[a.alias_kind]
        local_ip = self.sig.getsockname()[0]
        body = {"protocolIdentifier": m.H225_PROTOCOL,
                "sourceAddress": [("h323-ID", "fedge-test-room")],
                "sourceInfo": m.endpoint(),
                "destinationAddress": [alias],
                "destCallSignalAddress": m.transport(host, int(port)),
                "activeMC": False, "conferenceID": self.guid,
                "conferenceGoal": ("create", 0), "callType": ("pointToPoint", 0),
                "sourceCallSignalAddress": m.transport(local_ip, self.sig.getsockname()[1]),
                "callIdentifier": m.call_id(self.guid),
                "mediaWaitForConnect": False, "canOverlapSend": False,
                "multipleCalls": False, "maintainConnection": False}
        if a.separate_h245:
            self.h245_listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.h245_listener.bind((a.media_ip, 0))
            self.h245_listener.listen(1)
            self.h245_listener.setblocking(False)
            self.sel.register(self.h245_listener, selectors.EVENT_READ, ("listen", None))
            body["h245Address"] = m.transport(*self.h245_listener.getsockname())
        if not a.no_fast_start:
            body["fastStart"] = self.fast_start_offer()
        ies = [(m.IE_BEARER, bytes([0x88, 0x90, 0xA5])), (m.IE_DISPLAY, b"fedge test room")]
        if a.alias_kind == "dialled":
            ies.append((m.IE_CALLED, m.called_number_ie(a.dial)))
        self.send_q931("setup", "setup", body, ies)

    def fast_start_offer(self):
        olcs, lcn = [], 1
        kinds = [("audio", "pcmu"), ("audio", "pcma")]
        if self.a.video:
            kinds.append(("video", "h264"))
        for kind, media in kinds:
            med = self.media[kind]
            olcs.append(m.olc_encode(m.olc_tx(lcn, media, med.local_rtcp())))
            olcs.append(m.olc_encode(m.olc_rx(lcn + 1, media, med.local(), med.local_rtcp())))
            lcn += 2
        return olcs

    # ------------------------------------------------------------ receiving --
    def on_sig(self, msg):
        name, _ref, _from_dest, ies = m.q931_decode(msg)
        self.result["received"].append(name)
        if m.IE_CAUSE in ies:
            self.result["cause"] = m.cause_value(ies[m.IE_CAUSE])
        if m.IE_UUIE not in ies:
            if name == "releaseComplete":
                self.gateway_released()
            return
        pdu = m.uu_decode(ies[m.IE_UUIE])
        body_name, body = pdu["h323-message-body"]
        if "h245Tunnelling" in pdu and not pdu["h245Tunnelling"] and self.tunnel and body_name != "releaseComplete":
            self.tunnel = False
            self.result["h245"]["mode"] = "separate"
        if isinstance(body, dict):
            if body.get("fastStart") and not self.result["fast_start_accepted"]:
                self.take_fast_start(body["fastStart"])
            if body.get("h245Address") and self.h245 is None and not self.tunnel:
                self.connect_h245(body["h245Address"])
        for data in pdu.get("h245Control", []):
            self.on_h245(data)
        if name == "connect":
            self.connected = True
            self.start_h245()
        elif name == "releaseComplete":
            if isinstance(body, dict) and "reason" in body:
                self.result["reason"] = body["reason"][0]
            self.gateway_released()

    def take_fast_start(self, olcs):
        for data in olcs:
            olc = m.olc_decode(data)
            rev = olc.get("reverseLogicalChannelParameters")
            fwd = olc["forwardLogicalChannelParameters"]
            if rev:
                media = m.media_of(rev["dataType"])
                params = rev.get("multiplexParameters", ("none", 0))[1]
                addr = params.get("mediaChannel") if isinstance(params, dict) else None
                self.result["fast_start_accepted"].append(
                    {"media": media, "dir": "rx", "addr": m.transport_str(addr) if addr else None})
            elif fwd["dataType"][0] != "nullData":
                media = m.media_of(fwd["dataType"])
                params = fwd["multiplexParameters"][1]
                addr = params.get("mediaChannel")
                kind = "video" if media == "h264" else "audio"
                ours = ["%s:%d" % med.local() for med in self.media.values()]
                if addr and m.transport_str(addr) in ours:
                    # The gateway's own transmit channel written forward,
                    # towards the address we gave: a receive channel.
                    self.result["fast_start_accepted"].append(
                        {"media": media, "dir": "rx", "addr": m.transport_str(addr)})
                    continue
                if addr and kind in self.media and self.media[kind].target is None:
                    ip, port = m.transport_str(addr).rsplit(":", 1)
                    self.media[kind].target = (ip, int(port))
                    self.media[kind].media = media
                    self.opened[kind] = olc["forwardLogicalChannelNumber"]
                self.result["fast_start_accepted"].append(
                    {"media": media, "dir": "tx", "addr": m.transport_str(addr) if addr else None})

    def connect_h245(self, addr):
        ip, port = m.transport_str(addr).rsplit(":", 1)
        self.h245_peer_addr = (ip, int(port))
        s = socket.create_connection(self.h245_peer_addr, timeout=5)
        self.adopt_h245(s)

    def adopt_h245(self, s):
        if self.h245 is not None:
            s.close()
            return
        s.setblocking(False)
        self.h245 = s
        self.result["h245"]["local"] = "%s:%d" % s.getsockname()[:2]
        self.result["h245"]["peer"] = "%s:%d" % s.getpeername()[:2]
        self.sel.register(s, selectors.EVENT_READ, ("h245", None))
        if self.h245_listener is not None:
            self.sel.unregister(self.h245_listener)
            self.h245_listener.close()
            self.h245_listener = None
        self.start_h245()
        for value in self.pending_h245:
            self.send_h245(value)
        self.pending_h245 = []

    def start_h245(self):
        if self.h245_started:
            return
        if not self.tunnel and self.h245 is None:
            return
        self.h245_started = True
        self.send_h245(m.tcs(1, self.a.video, self.a.presentation))
        if not self.a.await_msd:
            self.send_h245(m.msd(self.msd_num))

    def on_h245(self, data):
        value = m.h245_decode(data)
        name = m.h245_name(value)
        self.result["received"].append("h245:" + name)
        self.start_h245()
        inner = value[1][1]
        if name == "terminalCapabilitySet":
            self.tcs_seen = True
            if not inner.get("capabilityTable"):
                self.pause()
            elif self.paused:
                self.paused = False  # tick() opens the channels anew
            self.send_h245(m.tcs_ack(inner["sequenceNumber"]))
        elif name == "openLogicalChannelReject":
            lcn = inner["forwardLogicalChannelNumber"]
            self.result["olc_rejected"].append(lcn)
            for kind, n in list(self.opened.items()):
                if n == lcn:
                    del self.opened[kind]
            self.on_olc_reject(inner)
        elif name == "terminalCapabilitySetAck":
            self.tcs_acked = True
        elif name == "masterSlaveDetermination":
            decision = m.msd_decide(50, self.msd_num, inner["terminalType"], inner["statusDeterminationNumber"])
            if decision is None:
                self.send_h245(("response", ("masterSlaveDeterminationReject", {"cause": ("identicalNumbers", 0)})))
                return
            self.result["h245"]["msd"] = "slave" if decision == "master" else "master"
            self.send_h245(m.msd_ack(decision))
            self.msd_ack_sent = True
        elif name == "masterSlaveDeterminationAck":
            self.result["h245"]["msd"] = inner["decision"][0]
            if not self.msd_ack_sent:
                mine = inner["decision"][0]
                self.send_h245(m.msd_ack("slave" if mine == "master" else "master"))
                self.msd_ack_sent = True
            self.msd_done = True
        elif name == "openLogicalChannel":
            self.on_olc(inner)
        elif name == "openLogicalChannelAck":
            self.on_olc_ack(inner)
        elif name == "userInput":
            kind, val = inner
            digit = val if kind == "alphanumeric" else val.get("signalType", "") if kind == "signal" else ""
            self.result["digits_received"] += digit
        elif name in ("genericRequest", "genericResponse", "genericCommand"):
            self.on_generic(name, inner)
        elif name == "closeLogicalChannel":
            pin = self.result.get("presentation_in")
            if pin and pin["channel"] == inner["forwardLogicalChannelNumber"]:
                pin["closed"] = True
            self.send_h245(("response", ("closeLogicalChannelAck", {
                "forwardLogicalChannelNumber": inner["forwardLogicalChannelNumber"]})))
        elif name == "requestChannelClose":
            self.send_h245(("response", ("requestChannelCloseAck", {
                "forwardLogicalChannelNumber": inner["forwardLogicalChannelNumber"]})))
        elif name == "roundTripDelayRequest":
            self.send_h245(("response", ("roundTripDelayResponse", {"sequenceNumber": inner["sequenceNumber"]})))
        elif name == "endSessionCommand":
            if not self.ended:
                self.ended = True
                self.send_h245(m.end_session())
            if self.a.hangup == "gateway" and self.result["released_by"] is None:
                self.result["released_by"] = "gateway"
        if self.msd_ack_sent and self.result["h245"]["msd"]:
            self.msd_done = True

    def on_generic(self, name, msg):
        """H.239: the token we asked for, or the gateway asking for it."""
        h239 = m.h239_of(msg)
        if h239 is None:
            return
        sub, params = h239
        if name == "genericRequest" and sub == 3:
            lcn = params.get(42, ("unsignedMin", 0))[1]
            label = params.get(44, ("unsignedMin", 0))[1]
            self.send_h245(m.token_response(lcn, label, True))
            self.result["token_requests"] = self.result.get("token_requests", 0) + 1
            if self.presentation_open_at is not None:
                # The token taken back while we present (H.239 §7.2): we
                # stop, close our channel and release it.
                self.stop_presenting("revoked")
        elif name == "genericCommand" and sub == 5:
            pin = self.result.get("presentation_in")
            if pin:
                pin["released"] = True
        elif name == "genericResponse" and sub == 4 and self.token_requested:
            granted = 126 in params
            self.result["presentation"] = "granted" if granted else "rejected"
            med = self.media.get("presentation")
            if granted and med is not None and med.media is None:
                med.media = "h239"
                self.send_h245(("request", ("openLogicalChannel", m.olc_tx(1005, "h239", med.local_rtcp()))))

    def pause(self):
        """An empty TCS (H.323 8.4.6): close the channels we transmit on."""
        self.result["paused"] += 1
        if self.a.ignore_pause:
            self.result["pause_ignored"] += 1
            return
        self.paused = True
        for kind, lcn in sorted(self.opened.items()):
            self.media[kind].target = None
            self.send_h245(("request", ("closeLogicalChannel", {
                "forwardLogicalChannelNumber": lcn, "source": ("user", 0)})))
        self.opened = {}
        self.olcs_opened = False

    def stop_presenting(self, why):
        self.presentation_open_at = None
        self.media["presentation"].target = None
        self.result["presentation"] = why
        self.send_h245(("request", ("closeLogicalChannel", {
            "forwardLogicalChannelNumber": 1005, "source": ("user", 0)})))
        self.send_h245(m.token_release(1005, 1))

    def next_cycle(self):
        """--presentation-cycles: the next open, from the token on."""
        med = self.media["presentation"]
        med.media = None
        med.target = None
        self.cycles_left -= 1
        if self.cycles_left > 0:
            # A second for the gateway to close the last one first.
            self.token_requested = False
            self.next_token_at = time.monotonic() + 1.0

    def on_olc_reject(self, rej):
        if rej["forwardLogicalChannelNumber"] == 1005 and self.a.presentation_cycles:
            self.result["cycles"]["rejected"] += 1
            self.next_cycle()

    def on_olc(self, olc):
        lcn = olc["forwardLogicalChannelNumber"]
        media = m.media_of(olc["forwardLogicalChannelParameters"]["dataType"])
        kind = m.KIND_OF.get(media, "audio")
        self.result["olc_received"].append(media)
        if media in ("pcmu", "pcma", "h264"):
            self.rx_media[kind] = media
        med = self.media.get(kind)
        if kind == "presentation" and med is not None and "presentation_in" in self.result:
            self.result["presentation_in"] = {"channel": lcn, "closed": False, "released": False}
        if med is None:
            self.send_h245(("response", ("openLogicalChannelReject", {
                "forwardLogicalChannelNumber": lcn, "cause": ("dataTypeNotSupported", 0)})))
            return
        self.send_h245(m.olc_ack(lcn, med.local(), med.local_rtcp()))

    def on_olc_ack(self, ack):
        params = ack.get("forwardMultiplexAckParameters", ("none", {}))[1]
        addr = params.get("mediaChannel") if isinstance(params, dict) else None
        kind = {1003: "video", 1005: "presentation"}.get(ack["forwardLogicalChannelNumber"], "audio")
        self.result["olc_acked"].append(ack["forwardLogicalChannelNumber"])
        if addr and kind in self.media:
            ip, port = m.transport_str(addr).rsplit(":", 1)
            self.media[kind].target = (ip, int(port))
            if kind == "presentation":
                self.presentation_open_at = time.monotonic()
                if self.a.presentation_cycles:
                    self.result["cycles"]["acked"] += 1
                    self.stop_presenting("stopped")
                    self.next_cycle()

    def open_channels(self):
        """Without (accepted) fastStart: H.245 OpenLogicalChannel for what we send."""
        self.olcs_opened = True
        for kind, media, lcn in (("audio", "pcmu", 1001), ("video", "h264", 1003)):
            med = self.media.get(kind)
            if med is None or med.target is not None:
                continue
            if kind == "audio":
                # Send what the gateway sends us (slow start), if it said.
                media = self.rx_media.get("audio", media)
            med.media = media
            self.opened[kind] = lcn
            self.send_h245(("request", ("openLogicalChannel", m.olc_tx(lcn, media, med.local_rtcp()))))

    def gateway_released(self):
        if self.released:
            return
        self.released = True
        if self.result["released_by"] is None:
            self.result["released_by"] = "gateway"

    # ------------------------------------------------------------ media --
    def send_media(self, now):
        for med in self.media.values():
            if med.target is None or med.media is None or now < med.next_at:
                continue
            pt = m.PT_OF[med.media]
            if med.kind == "audio":
                payload = (b"\xff" if pt == m.PT_PCMU else b"\xd5") * 160
                pkt = m.rtp_packet(pt, med.seq, med.ts, med.ssrc, payload)
                med.ts += 160
                med.next_at = (med.next_at or now) + 0.020
            else:
                nal = (b"\x67\x42\x00\x1f\xe9\x02\xc1\x2c\x80" if med.frames % 30 == 0
                       else b"\x41" + os.urandom(300))
                pkt = m.rtp_packet(pt, med.seq, med.ts, med.ssrc, nal, marker=True)
                med.ts += 3000
                med.frames += 1
                med.next_at = (med.next_at or now) + (0.2 if med.kind == "presentation" else 0.033)
            med.seq += 1
            self.count_sent(med, pt, pkt)

    def count_sent(self, med, pt, pkt):
        try:
            med.rtp.sendto(pkt, med.target)
        except OSError:
            return
        sent = self.result["rtp"]["sent"]
        sent[str(pt)] = sent.get(str(pt), 0) + 1
        self.result["rtp"]["sent_to"][str(pt)] = "%s:%d" % med.target

    def send_rfc2833(self, digit):
        med = self.media["audio"]
        if med.target is None:
            raise RuntimeError("no audio channel to send RFC 2833 digits on")
        event = "0123456789*#ABCD".index(digit)
        ts = med.ts
        for i in range(6):
            end = 0x80 if i >= 3 else 0
            payload = bytes([event, end | 10]) + ((i + 1) * 400 if i < 3 else 1600).to_bytes(2, "big")
            pkt = m.rtp_packet(m.PT_EVENT, med.seq, ts, med.ssrc, payload, marker=(i == 0))
            med.seq += 1
            self.count_sent(med, m.PT_EVENT, pkt)
        med.ts += 1600

    def on_rtp(self, med, sock):
        try:
            data, src = sock.recvfrom(4096)
        except OSError:
            return
        if sock is not med.rtp:
            return
        pt = m.rtp_pt(data)
        if pt is None:
            return
        recv = self.result["rtp"]["received"]
        recv[str(pt)] = recv.get(str(pt), 0) + 1
        self.result["rtp"]["received_from"][str(pt)] = "%s:%d" % src

    # ------------------------------------------------------------ the call --
    def h245_ready(self):
        return self.tcs_acked and self.tcs_seen and self.msd_done

    def media_ready(self):
        return all(med.target is not None for med in self.media.values() if med.kind != "presentation")

    def hang_up(self):
        if not self.ended and self.h245_started:
            self.ended = True
            self.send_h245(m.end_session())
        body = {"protocolIdentifier": m.H225_PROTOCOL, "reason": ("undefinedReason", 0),
                "callIdentifier": m.call_id(self.guid)}
        self.send_q931("releaseComplete", "releaseComplete", body, [(m.IE_CAUSE, m.cause_ie(16))])
        self.result["released_by"] = "room"
        self.released = True

    def tick(self, now):
        a = self.a
        if self.connected and self.h245_ready():
            if not self.media_ready() and not self.olcs_opened and not self.paused:
                self.open_channels()
            if (a.presentation_for and self.presentation_open_at is not None
                    and now >= self.presentation_open_at + a.presentation_for):
                self.stop_presenting("stopped")
            if a.presentation and not self.token_requested and now >= self.next_token_at:
                self.token_requested = True
                self.send_h245(m.token_request(1005, 1, random.randint(1, 127)))
            if self.next_digit_at is None:
                self.next_digit_at = now + 0.5
            if self.digits_left and now >= self.next_digit_at:
                digit = self.digits_left.pop(0)
                if a.digits_via == "rfc2833":
                    self.send_rfc2833(digit)
                else:
                    self.send_h245(m.user_input(digit, a.digits_via))
                self.result["digits_sent"] += digit
                self.next_digit_at = now + a.digit_gap / 1000.0
            if not self.digits_left and self.hangup_at is None and a.hangup == "room":
                self.hangup_at = now + a.after
        if self.hangup_at is not None and now >= self.hangup_at and not self.released:
            self.hang_up()
        self.send_media(now)

    def run(self):
        deadline = time.monotonic() + self.a.timeout
        self.setup()
        linger = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise RuntimeError("timeout: %s" % self.stage())
            if self.released:
                linger = linger or now + 0.3
                if now >= linger:
                    break
            for key, _ in self.sel.select(timeout=0.005):
                self.on_ready(key)
            self.tick(time.monotonic())

    def on_ready(self, key):
        what, med = key.data
        if what in ("rtp", "rtcp"):
            self.on_rtp(med, key.fileobj)
            return
        if what == "listen":
            s, _ = self.h245_listener.accept()
            self.adopt_h245(s)
            return
        data = key.fileobj.recv(65536)
        if not data:
            self.sel.unregister(key.fileobj)
            if what == "sig":
                if not self.released:
                    self.gateway_released()
                    self.result["received"].append("tcp-close")
            return
        if what == "sig":
            for msg in self.sig_reader.feed(data):
                self.on_sig(msg)
        else:
            for msg in self.h245_reader.feed(data):
                self.on_h245(msg)

    def stage(self):
        if not self.connected:
            return "no Connect"
        if not self.h245_ready():
            return "H.245 not up (tcs_acked=%s tcs_seen=%s msd_done=%s)" % (
                self.tcs_acked, self.tcs_seen, self.msd_done)
        if not self.media_ready():
            return "no media channel to send to"
        return "call not released"

    def verdict(self):
        """Did the dialogue complete as asked? None when it did, else why not."""
        r = self.result
        if not self.connected:
            return "call not connected: cause %s reason %s" % (r["cause"], r["reason"])
        if not self.h245_ready():
            return "H.245 incomplete: " + self.stage()
        if r["digits_sent"] != self.a.digits:
            return "digits not all sent"
        if not r["rtp"]["sent"]:
            return "no RTP sent"
        if (self.a.presentation and not self.a.presentation_cycles
                and not r["rtp"]["sent"].get(str(m.PT_PRESENTATION))):
            return "no presentation sent (token: %s)" % r.get("presentation")
        if r["released_by"] != self.a.hangup:
            return "released by %s, expected %s (cause %s reason %s)" % (
                r["released_by"], self.a.hangup, r["cause"], r["reason"])
        return None


def main(argv):
    args = parse_args(argv)
    room = Room(args)
    code = 0
    try:
        room.run()
        room.result["error"] = room.verdict()
    except Exception as e:  # reported in the JSON and the exit code
        room.result["error"] = "%s: %s" % (type(e).__name__, e)
    room.result["ok"] = room.result["error"] is None
    if not room.result["ok"]:
        code = 1
        print("room: " + room.result["error"], file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(room.result, f, indent=1)
    else:
        print(json.dumps(room.result))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
