#!/usr/bin/env python3
"""Writes the aligned-PER fixtures of fedge-h323's tests with pycrate
(PyPI `pycrate`, its compiled H.225.0/H.245 modules), one hex line per
file in tests/fixtures/. Usage: python3 tools/fixtures.py"""
import os
from pycrate_asn1dir import H225, H245
from pycrate_asn1rt.codecs import ASN1CodecPER


def _aligned_open(orig):
    """pycrate 0.8.1 encodes a SEQUENCE's extension additions before their
    presence bitmap and so aligns the first one at the wrong offset (a
    spurious padding octet when the bits before the bitmap are not
    octet-aligned; tshark calls the result malformed). The same fix-up as
    the test room's (tests/h323/h323msg.py): the additions of a SEQUENCE
    start octet-aligned, so encode each as at offset 0."""

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

M = H225.H323_MESSAGES
C = H245.MULTIMEDIA_SYSTEM_CONTROL
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
H225_OID = (0, 0, 8, 2250, 0, 4)
H245_OID = (0, 0, 8, 245, 0, 13)
CONF = bytes(range(16))
CALL = bytes(range(16, 32))


def per(typ, val):
    typ.set_val(val)
    return typ.to_aper()


def ip(a, port):
    return ("ipAddress", {"ip": bytes(a), "port": port})


def h2250(session, media=None, control=None, pt=None):
    p = {"sessionID": session}
    if media:
        p["mediaChannel"] = ("unicastAddress", ("iPAddress", {"network": bytes(media[0]), "tsapIdentifier": media[1]}))
    if control:
        p["mediaControlChannel"] = ("unicastAddress", ("iPAddress", {"network": bytes(control[0]), "tsapIdentifier": control[1]}))
    if pt:
        p["dynamicRTPPayloadType"] = pt
    return p


def olc(number, data_type, session, media=None, control=None, reverse=None):
    v = {
        "forwardLogicalChannelNumber": number,
        "forwardLogicalChannelParameters": {
            "dataType": data_type,
            "multiplexParameters": ("h2250LogicalChannelParameters", h2250(session, media, control)),
        },
    }
    if reverse:
        v["reverseLogicalChannelParameters"] = {
            "dataType": reverse,
            "multiplexParameters": ("h2250LogicalChannelParameters", h2250(session, None, control)),
        }
    return v


G711U = ("audioData", ("g711Ulaw64k", 20))
H264_OID = (0, 0, 8, 241, 0, 0, 1)
H264 = ("videoData", ("genericVideoCapability", {
    "capabilityIdentifier": ("standard", H264_OID),
    "maxBitRate": 19200,
    "collapsing": [
        {"parameterIdentifier": ("standard", 41), "parameterValue": ("booleanArray", 64)},
        {"parameterIdentifier": ("standard", 42), "parameterValue": ("unsignedMin", 71)},
    ],
}))
H263 = ("videoData", ("h263VideoCapability", {
    "cifMPI": 1, "maxBitRate": 19200, "unrestrictedVector": False, "arithmeticCoding": False,
    "advancedPrediction": False, "pbFrames": False, "temporalSpatialTradeOffCapability": False,
    "errorCompensation": False,
}))


def uu(body, extra=None):
    pdu = {"h323-message-body": body, "h245Tunnelling": True}
    if extra:
        pdu.update(extra)
    return per(M.H323_UserInformation, {"h323-uu-pdu": pdu})


def endpoint():
    return {"vendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 21324},
                       "productId": b"fedge", "versionId": b"1"},
            "terminal": {}, "mc": False, "undefinedNode": False}


def fixtures():
    f = {}
    fs_olc = per(C.OpenLogicalChannel, olc(1, G711U, 1, None, ((10, 0, 0, 2), 5005),
                                          reverse=G711U))
    f["olc_g711"] = per(C.OpenLogicalChannel, olc(1, G711U, 1, ((10, 0, 0, 2), 5004), ((10, 0, 0, 2), 5005)))
    f["setup_faststart"] = uu(("setup", {
        "protocolIdentifier": H225_OID,
        "sourceAddress": [("h323-ID", "Room 1"), ("dialledDigits", "4711")],
        "sourceInfo": endpoint(),
        "destinationAddress": [("url-ID", "meeting@example.com")],
        "activeMC": False,
        "conferenceID": CONF,
        "conferenceGoal": ("create", 0),
        "callType": ("pointToPoint", 0),
        "sourceCallSignalAddress": ip((10, 0, 0, 2), 1720),
        "callIdentifier": {"guid": CALL},
        "fastStart": [fs_olc],
        "mediaWaitForConnect": False,
        "canOverlapSend": False,
        "multipleCalls": False,
        "maintainConnection": False,
    }))
    f["connect"] = uu(("connect", {
        "protocolIdentifier": H225_OID,
        "h245Address": ip((10, 0, 0, 1), 30000),
        "destinationInfo": endpoint(),
        "conferenceID": CONF,
        "callIdentifier": {"guid": CALL},
        "multipleCalls": False,
        "maintainConnection": False,
    }))
    f["release_complete"] = uu(("releaseComplete", {
        "protocolIdentifier": H225_OID,
        "reason": ("destinationRejection", 0),
        "callIdentifier": {"guid": CALL},
    }))
    caps = [
        (1, ("receiveAudioCapability", ("g711Ulaw64k", 20))),
        (2, ("receiveAudioCapability", ("g711Alaw64k", 20))),
        (3, ("receiveAudioCapability", ("g722-64k", 20))),
        (4, ("receiveVideoCapability", H264[1])),
        (5, ("receiveVideoCapability", H263[1])),
        (6, ("receiveUserInputCapability", ("dtmf", 0))),
    ]
    f["tcs"] = per(C.MultimediaSystemControlMessage, ("request", ("terminalCapabilitySet", {
        "sequenceNumber": 1,
        "protocolIdentifier": H245_OID,
        "capabilityTable": [{"capabilityTableEntryNumber": n, "capability": c} for n, c in caps],
        "capabilityDescriptors": [{"capabilityDescriptorNumber": 0, "simultaneousCapabilities": [[1, 2, 3], [4, 5], [6]]}],
    })))
    f["msd"] = per(C.MultimediaSystemControlMessage, ("request", ("masterSlaveDetermination", {
        "terminalType": 60, "statusDeterminationNumber": 123456})))
    f["olc"] = per(C.MultimediaSystemControlMessage, ("request", ("openLogicalChannel",
                                                                   olc(2, H264, 2))))
    f["olc_ack"] = per(C.MultimediaSystemControlMessage, ("response", ("openLogicalChannelAck", {
        "forwardLogicalChannelNumber": 2,
        "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", {
            "sessionID": 2,
            "mediaChannel": ("unicastAddress", ("iPAddress", {"network": bytes((10, 0, 0, 1)), "tsapIdentifier": 40000})),
            "mediaControlChannel": ("unicastAddress", ("iPAddress", {"network": bytes((10, 0, 0, 1)), "tsapIdentifier": 40001})),
        }),
    })))
    f["uii_alnum"] = per(C.MultimediaSystemControlMessage, ("indication", ("userInput", ("alphanumeric", "1234#"))))
    f["uii_signal"] = per(C.MultimediaSystemControlMessage, ("indication", ("userInput", ("signal", {"signalType": "5"}))))
    f["end_session"] = per(C.MultimediaSystemControlMessage, ("command", ("endSessionCommand", ("disconnect", 0))))
    f["grq"] = per(M.RasMessage, ("gatekeeperRequest", {
        "requestSeqNum": 7, "protocolIdentifier": H225_OID, "rasAddress": ip((10, 0, 0, 2), 1719),
        "endpointType": endpoint(),
    }))
    f["lrq"] = per(M.RasMessage, ("locationRequest", {
        "requestSeqNum": 8, "destinationInfo": [("dialledDigits", "4711"), ("h323-ID", "meeting")],
        "replyAddress": ip((10, 0, 0, 2), 1719),
    }))
    return f


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in fixtures().items():
        with open(os.path.join(OUT, name + ".hex"), "w") as fh:
            fh.write(data.hex() + "\n")
        print(name, len(data))


if __name__ == "__main__":
    main()
