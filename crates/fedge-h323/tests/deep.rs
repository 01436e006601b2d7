//! Hostile nesting: H.245's GenericParameter nests without bound; a deep
//! one must be an error from a thread with a small (2 MiB) stack, not a
//! stack overflow.

use fedge_h323::asn::h245 as asn;
use fedge_h323::h245;

fn nested(depth: usize) -> Vec<u8> {
    let mut v = asn::ParameterValue::logical(());
    for _ in 0..depth {
        v = asn::ParameterValue::genericParameter(vec![asn::GenericParameter::new(
            asn::ParameterIdentifier::standard(1),
            v,
            None,
        )]);
    }
    let g = asn::GenericMessage::new(
        asn::CapabilityIdentifier::standard(
            rasn::types::ObjectIdentifier::new(vec![0, 0, 8, 239, 2]).unwrap(),
        ),
        Some(1),
        Some(vec![asn::GenericParameter::new(
            asn::ParameterIdentifier::standard(1),
            v,
            None,
        )]),
    );
    let m = asn::MultimediaSystemControlMessage::request(asn::RequestMessage::genericRequest(g));
    let b = rasn::aper::encode(&m).unwrap();
    std::mem::forget(m);
    b
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let decode = |depth: usize| {
        // Building and encoding the value recurses too: a big stack for that.
        let b = std::thread::Builder::new()
            .stack_size(1 << 30)
            .spawn(move || nested(depth))
            .expect("thread")
            .join()
            .expect("encodes");
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || h245::decode(&b).is_ok())
            .expect("thread")
            .join()
            .expect("decoding does not crash")
    };
    assert!(decode(5));
    assert!(!decode(3000));
}
