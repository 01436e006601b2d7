use std::net::SocketAddr;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn decodes_pycrates_messages() {
    let Control::TerminalCapabilitySet { seq, caps } = decode(&fixture("tcs")).unwrap() else {
        panic!()
    };
    assert_eq!(seq, 1);
    assert_eq!(
        caps,
        vec![
            Capability::Audio(Media::G711Ulaw { frames: 20 }),
            Capability::Audio(Media::G711Alaw { frames: 20 }),
            Capability::Audio(Media::G722 { frames: 20 }),
            Capability::Video(Media::H264 {
                profile: 64,
                level: 71
            }),
            Capability::Video(Media::H263),
            Capability::UserInput(UII_DTMF),
        ]
    );
    assert_eq!(
        decode(&fixture("msd")).unwrap(),
        Control::MasterSlaveDetermination {
            terminal_type: 60,
            random: 123_456
        }
    );
    let Control::OpenLogicalChannel(o) = decode(&fixture("olc")).unwrap() else {
        panic!()
    };
    assert_eq!(
        (o.number, o.session_id, o.forward, o.presentation),
        (2, 2, true, false)
    );
    assert_eq!(
        o.media,
        Media::H264 {
            profile: 64,
            level: 71
        }
    );
    assert_eq!(
        decode(&fixture("olc_ack")).unwrap(),
        Control::OpenLogicalChannelAck {
            number: 2,
            media: Some(addr("10.0.0.1:40000")),
            control: Some(addr("10.0.0.1:40001")),
        }
    );
    assert_eq!(
        decode(&fixture("uii_alnum")).unwrap(),
        Control::UserInput(UserInput::Alphanumeric("1234#".into()))
    );
    assert_eq!(
        decode(&fixture("uii_signal")).unwrap(),
        Control::UserInput(UserInput::Signal('5'))
    );
    assert_eq!(
        decode(&fixture("end_session")).unwrap(),
        Control::EndSession
    );
    let o = decode_olc(&fixture("olc_g711")).unwrap();
    assert_eq!(o.media, Media::G711Ulaw { frames: 20 });
    assert_eq!(
        (o.rtp, o.rtcp),
        (Some(addr("10.0.0.2:5004")), Some(addr("10.0.0.2:5005")))
    );
}

#[test]
fn fast_start_proposal_from_pycrates_setup() {
    let s = crate::h225::decode(&fixture("setup_faststart")).unwrap();
    let o = decode_olc(&s.fast_start[0]).unwrap();
    assert!(o.forward);
    assert_eq!(o.media, Media::G711Ulaw { frames: 20 });
    assert_eq!(o.rtcp, Some(addr("10.0.0.2:5005")));
    assert_eq!(
        o.reverse,
        Some((
            Media::G711Ulaw { frames: 20 },
            None,
            Some(addr("10.0.0.2:5005"))
        ))
    );
}

#[test]
fn every_control_round_trips() {
    let olc = Olc {
        number: 3,
        media: Media::H264 {
            profile: 64,
            level: 71,
        },
        session_id: 3,
        payload_type: Some(109),
        forward: true,
        rtp: Some(addr("192.0.2.1:6000")),
        rtcp: Some(addr("192.0.2.1:6001")),
        reverse: None,
        presentation: true,
    };
    let reverse_only = Olc {
        number: 4,
        media: Media::G722 { frames: 20 },
        session_id: 1,
        payload_type: None,
        forward: false,
        rtp: Some(addr("[2001:db8::2]:7000")),
        rtcp: Some(addr("[2001:db8::2]:7001")),
        reverse: None,
        presentation: false,
    };
    let bidirectional = Olc {
        reverse: Some((
            Media::G711Alaw { frames: 30 },
            Some(addr("10.1.1.1:1")),
            None,
        )),
        media: Media::G711Alaw { frames: 30 },
        ..reverse_only.clone()
    };
    let bidirectional = Olc {
        forward: true,
        ..bidirectional
    };
    let all = [
        gateway_capabilities(7),
        Control::TerminalCapabilitySetAck { seq: 7 },
        Control::TerminalCapabilitySetReject { seq: 8 },
        Control::MasterSlaveDetermination {
            terminal_type: 190,
            random: 0xAB_CDEF,
        },
        Control::MasterSlaveDeterminationAck {
            receiver_is_master: true,
        },
        Control::MasterSlaveDeterminationAck {
            receiver_is_master: false,
        },
        Control::MasterSlaveDeterminationReject,
        Control::OpenLogicalChannel(olc.clone()),
        Control::OpenLogicalChannel(reverse_only.clone()),
        Control::OpenLogicalChannel(bidirectional),
        Control::OpenLogicalChannelAck {
            number: 3,
            media: Some(addr("10.0.0.1:1")),
            control: None,
        },
        Control::OpenLogicalChannelReject { number: 3 },
        Control::CloseLogicalChannel { number: 3 },
        Control::CloseLogicalChannelAck { number: 3 },
        Control::UserInput(UserInput::Alphanumeric("12#".into())),
        Control::UserInput(UserInput::Signal('#')),
        Control::EndSession,
        Control::RoundTripDelayRequest { seq: 1 },
        Control::RoundTripDelayResponse { seq: 1 },
        Control::Generic(GenericMessage {
            kind: GenericKind::Request,
            id: "0.0.8.239.2".into(),
            sub: Some(3),
            params: vec![
                (42, GenericValue::UnsignedMin(1)),
                (44, GenericValue::UnsignedMin(5)),
            ],
        }),
        Control::Generic(GenericMessage {
            kind: GenericKind::Indication,
            id: "0.0.8.239.2".into(),
            sub: None,
            params: vec![],
        }),
    ];
    for c in all {
        let b = encode(&c).unwrap();
        assert_eq!(decode(&b).unwrap(), c, "{b:02x?}");
    }
    for o in [olc, reverse_only] {
        assert_eq!(decode_olc(&encode_olc(&o).unwrap()).unwrap(), o);
    }
    assert!(encode(&Control::UserInput(UserInput::Signal('x'))).is_err());
    assert!(encode(&Control::Other("x")).is_err());
}

#[test]
fn gateway_capabilities_are_what_a_room_reads() {
    let Control::TerminalCapabilitySet { caps, .. } =
        decode(&encode(&gateway_capabilities(1)).unwrap()).unwrap()
    else {
        panic!()
    };
    assert!(caps.contains(&Capability::Video(Media::H264 {
        profile: 64,
        level: 71
    })));
    assert!(caps.contains(&Capability::Extended("0.0.8.239.1.2".into())));
    assert!(caps.contains(&Capability::UserInput(UII_HOOKFLASH)));
}

#[test]
fn hostile_bytes_are_errors_not_panics() {
    for name in ["tcs", "olc", "olc_ack", "msd"] {
        let b = fixture(name);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "{name} cut {cut}");
        }
        let mut f = b.clone();
        for i in 0..f.len() {
            for bit in 0..8 {
                f[i] ^= 1 << bit;
                let _ = decode(&f);
                let _ = decode_olc(&f);
                f[i] ^= 1 << bit;
            }
        }
    }
}
