use super::*;

/// A Setup as room systems send it: bearer capability, display, called
/// number with digits, a single-octet IE (sending complete), user-user.
const SETUP: &[u8] = &[
    0x08, 0x02, 0x12, 0x34, 0x05, // header, call ref 0x1234, Setup
    0x04, 0x03, 0x88, 0x93, 0xA5, // bearer capability
    0xA1, // sending complete
    0x28, 0x04, b'R', b'o', b'o', b'm', // display
    0x6C, 0x03, 0x01, 0x80, b'7', // calling: type/plan without ext, 3a, "7"
    0x70, 0x04, 0x81, b'1', b'2', b'3', // called "123"
    0x7E, 0x00, 0x03, 0x05, 0xAA, 0xBB, // user-user
];

#[test]
fn decodes_a_setup() {
    let m = Message::decode(SETUP).unwrap();
    assert_eq!(m.kind, MessageType::Setup);
    assert_eq!(m.call_ref, 0x1234);
    assert!(!m.from_destination);
    assert_eq!(m.bearer.as_deref(), Some(&[0x88, 0x93, 0xA5][..]));
    assert_eq!(m.display.as_deref(), Some("Room"));
    assert_eq!(m.calling.as_deref(), Some("7"));
    assert_eq!(m.called.as_deref(), Some("123"));
    assert_eq!(m.user_user.as_deref(), Some(&[0xAA, 0xBB][..]));
    assert_eq!(m.other, vec![(0xA1, vec![])]);
}

#[test]
fn round_trips() {
    let mut m = Message::new(MessageType::ReleaseComplete, 0x7FFF, true);
    m.cause = Some(16);
    m.display = Some("fedge".into());
    m.called = Some("4711".into());
    m.user_user = Some(vec![1, 2, 3]);
    m.other.push((0x1E, vec![0x81, 0x88]));
    m.other.push((0xA1, vec![]));
    let b = m.encode();
    assert_eq!(&b[..5], &[0x08, 0x02, 0xFF, 0xFF, 0x5A]);
    let back = Message::decode(&b).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.encode(), b);
    let cause = b.windows(4).position(|w| w == [0x08, 0x02, 0x80, 0x90]);
    assert!(cause.is_some(), "cause IE 16 with location octet: {b:02x?}");
}

#[test]
fn every_message_type_code_round_trips() {
    for code in 0..=0x7F {
        assert_eq!(MessageType::from_code(code).code(), code);
    }
    assert_eq!(MessageType::from_code(0x62), MessageType::Facility);
}

#[test]
fn malformed_is_an_error() {
    for cut in 0..SETUP.len() {
        let r = Message::decode(&SETUP[..cut]);
        // Cuts at an IE boundary are whole messages; inside one, an error.
        let boundaries = [5, 10, 11, 17, 22, 28, SETUP.len()];
        assert_eq!(r.is_ok(), boundaries.contains(&cut), "cut {cut}: {r:?}");
    }
    assert!(Message::decode(&[0x09, 0x02, 0, 1, 5]).is_err());
    assert!(Message::decode(&[0x08, 0x03, 0, 1, 0, 5]).is_err());
    // IE length past the end (overlong).
    assert!(Message::decode(&[0x08, 0x02, 0, 1, 5, 0x28, 0x09, b'a']).is_err());
    assert!(Message::decode(&[0x08, 0x02, 0, 1, 5, 0x7E, 0x01, 0x00, 0x05]).is_err());
    // User-user with another protocol discriminator, or empty.
    assert!(Message::decode(&[0x08, 0x02, 0, 1, 5, 0x7E, 0x00, 0x01, 0x04]).is_err());
    assert!(Message::decode(&[0x08, 0x02, 0, 1, 5, 0x7E, 0x00, 0x00]).is_err());
    assert!(Message::decode(&[0x08, 0x02, 0, 1, 5, 0x08, 0x00]).is_err());
}
