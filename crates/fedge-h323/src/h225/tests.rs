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
fn decodes_pycrates_setup() {
    let s = decode(&fixture("setup_faststart")).unwrap();
    let Body::Setup(u) = &s.body else {
        panic!("{s:?}")
    };
    assert_eq!(u.conference_id, core::array::from_fn(|i| i as u8));
    assert_eq!(s.call_id, Some(core::array::from_fn(|i| 16 + i as u8)));
    assert_eq!(
        u.source,
        vec![
            Alias::H323Id("Room 1".into()),
            Alias::Dialled("4711".into())
        ]
    );
    assert_eq!(
        u.destination,
        vec![Alias::Url("meeting@example.com".into())]
    );
    assert_eq!(u.vendor.as_deref(), Some("fedge"));
    assert_eq!(u.source_call_signal, Some(addr("10.0.0.2:1720")));
    assert_eq!(u.protocol_version, 4);
    assert!(s.h245_tunnelling);
    assert_eq!(s.fast_start.len(), 1);
}

#[test]
fn decodes_pycrates_connect_and_release() {
    let s = decode(&fixture("connect")).unwrap();
    assert_eq!(
        s.body,
        Body::Connect {
            conference_id: core::array::from_fn(|i| i as u8)
        }
    );
    assert_eq!(s.h245_address, Some(addr("10.0.0.1:30000")));
    let s = decode(&fixture("release_complete")).unwrap();
    assert_eq!(s.body, Body::ReleaseComplete { reason: Some(ReleaseReason::DestinationRejection) });
}

#[test]
fn every_body_round_trips() {
    let setup = Setup {
        conference_id: [7; 16],
        destination: vec![
            Alias::Dialled("4711#".into()),
            Alias::Url("h323:room@example.com".into()),
        ],
        source: vec![
            Alias::H323Id("Sitzungsraum \u{e4}".into()),
            Alias::Email("a@b.c".into()),
            Alias::Transport(addr("[2001:db8::1]:1720")),
            Alias::Party("123".into()),
        ],
        vendor: Some("fedge".into()),
        media_wait_for_connect: true,
        source_call_signal: Some(addr("192.0.2.1:1720")),
        protocol_version: 6,
    };
    let bodies = [
        Body::Setup(setup),
        Body::CallProceeding,
        Body::Alerting,
        Body::Connect {
            conference_id: [9; 16],
        },
        Body::ReleaseComplete {
            reason: Some(ReleaseReason::DestinationRejection),
        },
        Body::ReleaseComplete {
            reason: Some(ReleaseReason::CalledPartyNotRegistered),
        },
        Body::ReleaseComplete { reason: None },
        Body::Facility {
            reason: FacilityReason::StartH245,
        },
        Body::Progress,
        Body::Information,
        Body::Status,
        Body::Empty,
    ];
    for body in bodies {
        let mut s = Signal::new(body);
        s.call_id = Some([3; 16]);
        s.h245_tunnelling = true;
        s.h245_control = vec![vec![1, 2, 3]];
        if !matches!(
            s.body,
            Body::ReleaseComplete { .. } | Body::Status | Body::Empty
        ) {
            s.fast_start = vec![vec![4, 5]];
        }
        if matches!(
            s.body,
            Body::Connect { .. } | Body::Facility { .. } | Body::Alerting
        ) {
            s.h245_address = Some(addr("198.51.100.7:4000"));
        }
        if s.body == Body::Empty {
            s.call_id = None;
        }
        let b = encode(&s, "fedge").unwrap();
        assert_eq!(decode(&b).unwrap(), s);
    }
    assert!(encode(&Signal::new(Body::Other("notify")), "fedge").is_err());
}

#[test]
fn ras_fixtures_and_round_trips() {
    let grq = decode_ras(&fixture("grq")).unwrap();
    assert_eq!(
        grq,
        Ras::Grq {
            seq: 7,
            ras: Some(addr("10.0.0.2:1719")),
            aliases: vec![]
        }
    );
    let lrq = decode_ras(&fixture("lrq")).unwrap();
    assert_eq!(
        lrq,
        Ras::Lrq {
            seq: 8,
            destination: vec![
                Alias::Dialled("4711".into()),
                Alias::H323Id("meeting".into())
            ],
            reply: Some(addr("10.0.0.2:1719")),
        }
    );
    for r in [
        grq,
        lrq,
        Ras::Grj {
            seq: 1,
            reason: GrjReason::ResourceUnavailable,
        },
        Ras::Lcf {
            seq: 2,
            call_signal: addr("10.0.0.1:1720"),
            ras: addr("[::1]:1719"),
        },
        Ras::Lrj {
            seq: 3,
            reason: LrjReason::NoRouteToDestination,
        },
    ] {
        assert_eq!(decode_ras(&encode_ras(&r).unwrap()).unwrap(), r);
    }
}

#[test]
fn hostile_bytes_are_errors_not_panics() {
    let b = fixture("setup_faststart");
    for cut in 0..b.len() {
        assert!(decode(&b[..cut]).is_err(), "cut {cut}");
    }
    let mut flipped = b.clone();
    for i in 0..flipped.len() {
        for bit in 0..8 {
            flipped[i] ^= 1 << bit;
            let _ = decode(&flipped);
            flipped[i] ^= 1 << bit;
        }
    }
    assert!(decode(&[]).is_err());
    let _ = decode_ras(&[0xFF; 40]);
}
