"""H.323 wire helpers for the test room and its responder (test code only).

Owns: TPKT framing, Q.931 messages with their IEs, H.225 User-User PDUs and
H.245 PDUs (aligned PER through pycrate, an ASN.1 implementation independent
of fedge's Rust codec), and builders for the handful of values the room and
the responder exchange (fastStart OLCs, TCS, MSD, userInputIndication).
Never: network I/O, timing, or any policy about what to answer.
"""

import ipaddress
import os
import struct

from pycrate_asn1dir import H225, H245
from pycrate_asn1rt.codecs import ASN1CodecPER


def _aligned_open(orig):
    """pycrate 0.8.1 encodes a SEQUENCE's extension additions (open types)
    BEFORE their presence bitmap, so the alignment of the first one is
    computed at the wrong offset: a spurious padding octet and a bad bitmap
    padding whenever the bits before the bitmap are not octet-aligned (seen
    in ReleaseComplete with a reason; tshark calls it malformed). In a
    SEQUENCE the additions always start octet-aligned after the bitmap, so
    encode each as if at offset 0 and carry its (whole-octet) size over."""

    def encode(cla, wrapped):
        saved = cla._off[-1]
        cla._off[-1] = 0
        try:
            return orig(wrapped)
        finally:
            cla._off[-1] = saved + cla._off[-1]

    return classmethod(encode)


ASN1CodecPER.encode_unconst_open = _aligned_open(ASN1CodecPER.encode_unconst_open)
ASN1CodecPER.encode_unconst_open_ws = _aligned_open(ASN1CodecPER.encode_unconst_open_ws)

H225_PDU = H225.H323_MESSAGES.H323_UserInformation
H245_PDU = H245.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage
OLC = H245.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel

H225_PROTOCOL = (0, 0, 8, 2250, 0, 4)
H245_PROTOCOL = (0, 0, 8, 245, 0, 7)
H264_OID = (0, 0, 8, 241, 0, 0, 1)
H239_CONTROL = (0, 0, 8, 239, 1, 1)
H239_EXT_VIDEO = (0, 0, 8, 239, 1, 2)
H239_MESSAGE = (0, 0, 8, 239, 2)

# Q.931 message types (ITU-T Q.931 table 4-2, the subset H.225 uses).
Q931_TYPES = {
    0x01: "alerting",
    0x02: "callProceeding",
    0x03: "progress",
    0x05: "setup",
    0x07: "connect",
    0x0D: "setupAcknowledge",
    0x5A: "releaseComplete",
    0x62: "facility",
    0x6E: "notify",
    0x75: "statusInquiry",
    0x7B: "information",
    0x7D: "status",
}
Q931_CODES = {v: k for k, v in Q931_TYPES.items()}

IE_BEARER = 0x04
IE_CAUSE = 0x08
IE_DISPLAY = 0x28
IE_CALLING = 0x6C
IE_CALLED = 0x70
IE_UUIE = 0x7E

PT_PCMU = 0
PT_PCMA = 8
PT_H264 = 96
PT_PRESENTATION = 97
PT_EVENT = 101


class WireError(Exception):
    """A message that cannot be framed or decoded."""


# ---------------------------------------------------------------- TPKT ----

def tpkt(payload):
    """Frame one message in TPKT (RFC 1006): version 3, length incl. header."""
    if len(payload) + 4 > 0xFFFF:
        raise WireError("message too long for TPKT")
    return struct.pack("!BBH", 3, 0, len(payload) + 4) + payload


class TpktReader:
    """Splits a TCP byte stream into TPKT payloads."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            if self.buf[0] != 3:
                raise WireError("not a TPKT header: version %d" % self.buf[0])
            (length,) = struct.unpack("!H", self.buf[2:4])
            if length < 4:
                raise WireError("TPKT length %d below its header" % length)
            if len(self.buf) < length:
                break
            out.append(self.buf[4:length])
            self.buf = self.buf[length:]
        return out


# ---------------------------------------------------------------- Q.931 ---

def q931_encode(msg_type, call_ref, from_destination, ies):
    """A Q.931 message: ies is a list of (id, bytes); 0x7E gets a 2-octet length."""
    flag = 0x80 if from_destination else 0
    out = bytes([0x08, 2, flag | ((call_ref >> 8) & 0x7F), call_ref & 0xFF, Q931_CODES[msg_type]])
    for ie_id, body in ies:
        if ie_id & 0x80:
            out += bytes([ie_id])
        elif ie_id == IE_UUIE:
            out += bytes([ie_id]) + struct.pack("!H", len(body)) + body
        else:
            if len(body) > 255:
                raise WireError("IE 0x%02x too long" % ie_id)
            out += bytes([ie_id, len(body)]) + body
    return out


def q931_decode(data):
    """Returns (type name, call_ref, from_destination, {ie_id: bytes})."""
    if len(data) < 3 or data[0] != 0x08:
        raise WireError("not Q.931 (protocol discriminator)")
    crl = data[1] & 0x0F
    if crl > 2 or len(data) < 3 + crl:
        raise WireError("bad call reference length")
    cr = data[2:2 + crl]
    from_dest = bool(cr and cr[0] & 0x80)
    call_ref = int.from_bytes(bytes([cr[0] & 0x7F]) + cr[1:], "big") if cr else 0
    pos = 2 + crl
    mtype = data[pos]
    name = Q931_TYPES.get(mtype, "q931-0x%02x" % mtype)
    pos += 1
    ies = {}
    while pos < len(data):
        ie_id = data[pos]
        pos += 1
        if ie_id & 0x80:
            ies[ie_id] = b""
            continue
        if ie_id == IE_UUIE:
            if pos + 2 > len(data):
                raise WireError("truncated user-user IE")
            (length,) = struct.unpack("!H", data[pos:pos + 2])
            pos += 2
        else:
            if pos >= len(data):
                raise WireError("truncated IE")
            length = data[pos]
            pos += 1
        if pos + length > len(data):
            raise WireError("IE 0x%02x runs past the message" % ie_id)
        ies[ie_id] = data[pos:pos + length]
        pos += length
    return name, call_ref, from_dest, ies


def cause_ie(value):
    """Cause IE: ITU-T coding, location user, the cause value."""
    return bytes([0x80, 0x80 | (value & 0x7F)])


def cause_value(body):
    """The cause value of a Cause IE body (skipping octet 3a when present)."""
    if not body:
        return None
    i = 1 if body[0] & 0x80 else 2
    return body[i] & 0x7F if i < len(body) else None


def called_number_ie(digits):
    return bytes([0x81]) + digits.encode("ascii")


# ---------------------------------------------------------------- H.225 ---

def uu_encode(body_name, body, tunnelling=True, h245=None):
    """A User-User IE body: protocol discriminator 5 + the H.225 PDU in APER."""
    pdu = {"h323-message-body": (body_name, body), "h245Tunnelling": tunnelling}
    if h245:
        pdu["h245Control"] = list(h245)
    H225_PDU.set_val({"h323-uu-pdu": pdu})
    return b"\x05" + H225_PDU.to_aper()


def uu_decode(body):
    if not body or body[0] != 0x05:
        raise WireError("user-user IE without protocol discriminator 5")
    H225_PDU.from_aper(body[1:])
    return H225_PDU.get_val()["h323-uu-pdu"]


def transport(ip, port):
    return ("ipAddress", {"ip": ipaddress.ip_address(ip).packed, "port": port})


def transport_str(addr):
    """'ip:port' of an H.225 TransportAddress or H.245 TransportAddress."""
    kind, val = addr
    if kind == "ipAddress":
        return "%s:%d" % (ipaddress.ip_address(val["ip"]), val["port"])
    if kind in ("unicastAddress",):
        sub_kind, sub = val
        if sub_kind == "iPAddress":
            return "%s:%d" % (ipaddress.ip_address(sub["network"]), sub["tsapIdentifier"])
    raise WireError("unsupported transport %s" % kind)


def endpoint(terminal=True):
    ep = {"vendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 0x4654},
                     "productId": b"fedge-test-room", "versionId": b"1"},
          "mc": False, "undefinedNode": False}
    if terminal:
        ep["terminal"] = {}
    else:
        ep["gateway"] = {}
    return ep


def new_guid():
    return os.urandom(16)


def call_id(guid):
    return {"guid": guid}


# ---------------------------------------------------------------- H.245 ---

def h245_encode(value):
    H245_PDU.set_val(value)
    return H245_PDU.to_aper()


def h245_decode(data):
    H245_PDU.from_aper(data)
    return H245_PDU.get_val()


def h245_name(value):
    """'terminalCapabilitySet', 'userInputIndication', ... of a decoded PDU."""
    return value[1][0]


def olc_encode(value):
    OLC.set_val(value)
    return OLC.to_aper()


def olc_decode(data):
    OLC.from_aper(data)
    return OLC.get_val()


def h245_transport(ip, port):
    return ("unicastAddress", ("iPAddress", {"network": ipaddress.ip_address(ip).packed, "tsapIdentifier": port}))


def h264_capability():
    return ("genericVideoCapability", {
        "capabilityIdentifier": ("standard", H264_OID),
        "maxBitRate": 20480,
        "collapsing": [
            {"parameterIdentifier": ("standard", 41), "parameterValue": ("booleanArray", 64)},
            {"parameterIdentifier": ("standard", 42), "parameterValue": ("unsignedMin", 71)},
        ],
    })


def presentation_capability():
    """H.239 extendedVideoCapability: H.264 in the presentation role."""
    return ("extendedVideoCapability", {
        "videoCapability": [h264_capability()],
        "videoCapabilityExtension": [{
            "capabilityIdentifier": ("standard", H239_EXT_VIDEO),
            "collapsing": [{"parameterIdentifier": ("standard", 1), "parameterValue": ("booleanArray", 1)}],
        }],
    })


def data_type(media):
    """media: 'pcmu' | 'pcma' | 'h264' | 'h239' → an H.245 DataType."""
    if media == "pcmu":
        return ("audioData", ("g711Ulaw64k", 20))
    if media == "pcma":
        return ("audioData", ("g711Alaw64k", 20))
    if media == "h264":
        return ("videoData", h264_capability())
    if media == "h239":
        return ("videoData", presentation_capability())
    raise WireError("unknown media %s" % media)


def media_of(dt):
    """Inverse of data_type: 'pcmu' | 'pcma' | 'h264' | None."""
    kind, val = dt
    if kind == "audioData":
        return {"g711Ulaw64k": "pcmu", "g711Alaw64k": "pcma"}.get(val[0])
    if kind == "videoData" and val[0] == "extendedVideoCapability":
        return "h239"
    if kind == "videoData" and val[0] == "genericVideoCapability":
        ident = val[1]["capabilityIdentifier"]
        if ident == ("standard", H264_OID):
            return "h264"
    return None


PT_OF = {"pcmu": PT_PCMU, "pcma": PT_PCMA, "h264": PT_H264, "h239": PT_PRESENTATION}
SESSION_OF = {"pcmu": 1, "pcma": 1, "h264": 2, "h239": 3}
KIND_OF = {"pcmu": "audio", "pcma": "audio", "h264": "video", "h239": "presentation", None: "audio"}


def h2250(media, rtp=None, rtcp=None):
    params = {"sessionID": SESSION_OF[media]}
    if rtp:
        params["mediaChannel"] = h245_transport(*rtp)
    if rtcp:
        params["mediaControlChannel"] = h245_transport(*rtcp)
    if PT_OF[media] >= 96:
        params["dynamicRTPPayloadType"] = PT_OF[media]
    return ("h2250LogicalChannelParameters", params)


def olc_tx(lcn, media, rtcp):
    """A transmit proposal: the proposer sends `media`; its RTCP at rtcp."""
    return {"forwardLogicalChannelNumber": lcn,
            "forwardLogicalChannelParameters": {"dataType": data_type(media),
                                                "multiplexParameters": h2250(media, rtcp=rtcp)}}


def olc_rx(lcn, media, rtp, rtcp):
    """A receive proposal: the proposer receives `media` at rtp."""
    return {"forwardLogicalChannelNumber": lcn,
            "forwardLogicalChannelParameters": {"dataType": ("nullData", 0), "multiplexParameters": ("none", 0)},
            "reverseLogicalChannelParameters": {"dataType": data_type(media),
                                                "multiplexParameters": h2250(media, rtp=rtp, rtcp=rtcp)}}


def tcs(seq, video, presentation=False):
    table = [
        {"capabilityTableEntryNumber": 1, "capability": ("receiveAudioCapability", ("g711Ulaw64k", 20))},
        {"capabilityTableEntryNumber": 2, "capability": ("receiveAudioCapability", ("g711Alaw64k", 20))},
        {"capabilityTableEntryNumber": 3, "capability": ("receiveRTPAudioTelephonyEventCapability",
                                                         {"dynamicRTPPayloadType": PT_EVENT,
                                                          "audioTelephoneEvent": "0-16"})},
        {"capabilityTableEntryNumber": 4, "capability": ("receiveUserInputCapability", ("basicString", 0))},
        {"capabilityTableEntryNumber": 5, "capability": ("receiveUserInputCapability", ("dtmf", 0))},
    ]
    alternatives = [[1, 2], [3], [4], [5]]
    if video:
        table.append({"capabilityTableEntryNumber": 6, "capability": ("receiveVideoCapability", h264_capability())})
        alternatives.append([6])
    if presentation:
        table.append({"capabilityTableEntryNumber": 7, "capability": ("genericControlCapability", {
            "capabilityIdentifier": ("standard", H239_CONTROL)})})
        table.append({"capabilityTableEntryNumber": 8, "capability": ("receiveVideoCapability",
                                                                     presentation_capability())})
        alternatives.extend([[7], [8]])
    return ("request", ("terminalCapabilitySet", {
        "sequenceNumber": seq, "protocolIdentifier": H245_PROTOCOL, "capabilityTable": table,
        "capabilityDescriptors": [{"capabilityDescriptorNumber": 0, "simultaneousCapabilities": alternatives}]}))


def h239_param(ident, value):
    return {"parameterIdentifier": ("standard", ident), "parameterValue": value}


def token_request(lcn, label, symmetry):
    """H.239 presentationTokenRequest (a genericRequest)."""
    return ("request", ("genericRequest", {
        "messageIdentifier": ("standard", H239_MESSAGE), "subMessageIdentifier": 3,
        "messageContent": [h239_param(44, ("unsignedMin", label)), h239_param(42, ("unsignedMin", lcn)),
                           h239_param(43, ("unsignedMin", symmetry))]}))


def token_response(lcn, label, granted):
    """H.239 presentationTokenResponse: acknowledge (126) or reject (127)."""
    return ("response", ("genericResponse", {
        "messageIdentifier": ("standard", H239_MESSAGE), "subMessageIdentifier": 4,
        "messageContent": [h239_param(126 if granted else 127, ("logical", 0)),
                           h239_param(44, ("unsignedMin", label)), h239_param(42, ("unsignedMin", lcn))]}))


def token_release(lcn, label):
    """H.239 presentationTokenRelease (a genericCommand)."""
    return ("command", ("genericCommand", {
        "messageIdentifier": ("standard", H239_MESSAGE), "subMessageIdentifier": 5,
        "messageContent": [h239_param(44, ("unsignedMin", label)), h239_param(42, ("unsignedMin", lcn))]}))


def h239_of(msg):
    """(subMessageIdentifier, {parameter id: value}) of an H.239 generic message, else None."""
    if msg.get("messageIdentifier") != ("standard", H239_MESSAGE):
        return None
    params = {}
    for p in msg.get("messageContent", []):
        kind, ident = p["parameterIdentifier"]
        if kind == "standard":
            params[ident] = p["parameterValue"]
    return msg.get("subMessageIdentifier"), params


def tcs_ack(seq):
    return ("response", ("terminalCapabilitySetAck", {"sequenceNumber": seq}))


def msd(number, terminal_type=50):
    return ("request", ("masterSlaveDetermination",
                        {"terminalType": terminal_type, "statusDeterminationNumber": number}))


def msd_decide(mine_type, mine_num, theirs_type, theirs_num):
    """Which side the REMOTE terminal is: 'master', 'slave' or None (indeterminate)."""
    if theirs_type != mine_type:
        return "master" if theirs_type > mine_type else "slave"
    diff = (theirs_num - mine_num) % (1 << 24)
    if diff == 0 or diff == 1 << 23:
        return None
    return "master" if diff < 1 << 23 else "slave"


def msd_ack(decision):
    return ("response", ("masterSlaveDeterminationAck", {"decision": (decision, 0)}))


def user_input(digit, via):
    if via == "signal":
        return ("indication", ("userInput", ("signal", {"signalType": digit, "duration": 200})))
    return ("indication", ("userInput", ("alphanumeric", digit)))


def end_session():
    return ("command", ("endSessionCommand", ("disconnect", 0)))


def olc_ack(lcn, rtp, rtcp):
    return ("response", ("openLogicalChannelAck", {
        "forwardLogicalChannelNumber": lcn,
        "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", {
            "mediaChannel": h245_transport(*rtp), "mediaControlChannel": h245_transport(*rtcp)})}))


# ---------------------------------------------------------------- RTP -----

def rtp_packet(pt, seq, ts, ssrc, payload, marker=False):
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def rtp_pt(data):
    """The payload type of an RTP packet, or None for RTCP / non-RTP."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    pt = data[1] & 0x7F
    if 72 <= pt <= 76:
        return None
    return pt
