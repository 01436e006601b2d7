//! Fuzz target: sealed topology tokens. A token the fuzzer makes up must
//! never open under a key that never sealed anything (libFuzzer learns
//! the tokens sealed below from the comparisons, and a replayed token of
//! ours is not a forgery); a token the edge sealed must open to what was
//! sealed, and
//! only for the kind, Call-ID and partner it was sealed for; any change to it (one
//! character, a cut, an addition) must make it fail closed.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use fedge_sip::proxy::topology::{Kind, Topology, TopologyKey};
use libfuzzer_sys::fuzz_target;

fn key(b: u8) -> TopologyKey {
    TopologyKey {
        id: 1,
        secret: [b; 32],
        retire_at: None,
    }
}

fn topology() -> &'static Topology {
    static T: OnceLock<Topology> = OnceLock::new();
    T.get_or_init(|| {
        Topology::new(
            &[key(7)],
            Duration::from_secs(3600),
            vec!["home.test".into()],
            "edge.fuzz.test:5061".into(),
        )
        .expect("system random numbers")
    })
}

/// Seals nothing, so no input can be a token of its.
fn never_sealed() -> &'static Topology {
    static T: OnceLock<Topology> = OnceLock::new();
    T.get_or_init(|| {
        Topology::new(
            &[key(9)],
            Duration::from_secs(3600),
            vec!["home.test".into()],
            "edge.fuzz.test:5061".into(),
        )
        .expect("system random numbers")
    })
}

fn other_key() -> &'static Topology {
    static T: OnceLock<Topology> = OnceLock::new();
    T.get_or_init(|| {
        Topology::new(
            &[key(8)],
            Duration::from_secs(3600),
            vec!["home.test".into()],
            "edge.fuzz.test:5061".into(),
        )
        .expect("system random numbers")
    })
}

/// The partner the tokens are sealed for.
const PEER: &str = "partner-a";

const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (call_id, body) = text.split_once('\n').unwrap_or(("c", &text));
    let t = topology();
    // Made up: never opens, whatever it is.
    for kind in [Kind::Route, Kind::Contact] {
        assert!(
            never_sealed().open(kind, call_id, PEER, body).is_err(),
            "a made-up token opened"
        );
        let _ = t.open(kind, call_id, PEER, body);
    }
    // Sealed by the edge: opens to what was sealed, nowhere else.
    let parts: Vec<&str> = body.split('\n').collect();
    let kind = if op & 1 == 0 {
        Kind::Route
    } else {
        Kind::Contact
    };
    let token = t.seal(kind, call_id, PEER, &parts);
    assert_eq!(
        t.open(kind, call_id, PEER, &token).ok().as_deref(),
        Some(&parts.iter().map(|p| p.to_string()).collect::<Vec<_>>()[..])
    );
    let other_kind = if kind == Kind::Route {
        Kind::Contact
    } else {
        Kind::Route
    };
    assert!(t.open(other_kind, call_id, PEER, &token).is_err());
    assert!(t.open(kind, &format!("{call_id}x"), PEER, &token).is_err());
    assert!(t.open(kind, call_id, "partner-b", &token).is_err());
    assert!(other_key().open(kind, call_id, PEER, &token).is_err());
    // Tampered: one character changed, a cut, or an addition.
    let mut bytes = token.clone().into_bytes();
    let at = usize::from(op >> 1) % bytes.len();
    let tampered = match op >> 6 {
        0 | 1 => {
            let old = bytes[at];
            let pos = URL_SAFE.iter().position(|&c| c == old).unwrap_or(0);
            bytes[at] = URL_SAFE[(pos + 1 + usize::from(op & 0x1f)) % URL_SAFE.len()];
            String::from_utf8(bytes).expect("ASCII")
        }
        2 => token[..at].to_string(),
        _ => format!(
            "{token}{}",
            URL_SAFE[usize::from(op) % URL_SAFE.len()] as char
        ),
    };
    assert_ne!(tampered, token);
    assert!(
        t.open(kind, call_id, PEER, &tampered).is_err(),
        "a tampered token opened: {token} -> {tampered}"
    );
});
