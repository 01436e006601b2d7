//! Conversions shared by `h225` and `h245`: transport addresses, strings
//! of the ASN.1 character types, object identifiers and PER entry points.
//! Owns no message; never panics on any value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rasn::types::{BmpString, Ia5String, ObjectIdentifier, OctetString};

use crate::Error;

/// Decodes aligned PER into `T`.
pub(crate) fn per_decode<T: rasn::Decode>(b: &[u8]) -> Result<T, Error> {
    rasn::aper::decode(b).map_err(|e| Error::Decode(e.to_string()))
}

/// Encodes `T` in aligned PER.
pub(crate) fn per_encode<T: rasn::Encode>(v: &T) -> Result<Vec<u8>, Error> {
    rasn::aper::encode(v).map_err(|e| Error::Encode(e.to_string()))
}

/// An IPv4 or IPv6 socket address from its address octets and port.
pub(crate) fn socket(ip: &[u8], port: u16) -> Option<SocketAddr> {
    let ip = match ip.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The address octets of a socket address (4 or 16).
pub(crate) fn octets(a: SocketAddr) -> OctetString {
    match a.ip() {
        IpAddr::V4(v4) => OctetString::from(v4.octets().to_vec()),
        IpAddr::V6(v6) => OctetString::from(v6.octets().to_vec()),
    }
}

/// A BMPString as Rust text (unpaired surrogates become U+FFFD).
pub(crate) fn bmp_to_string(s: &BmpString) -> String {
    let units: Vec<u16> = s.clone().into_vec();
    String::from_utf16_lossy(&units)
}

/// Rust text as a BMPString: characters outside the BMP are dropped.
pub(crate) fn bmp(s: &str) -> Result<BmpString, Error> {
    let bytes: Vec<u8> = s
        .chars()
        .filter_map(|c| u16::try_from(u32::from(c)).ok())
        .flat_map(u16::to_be_bytes)
        .collect();
    BmpString::try_from(bytes).map_err(|_| Error::Bad("BMPString"))
}

/// Rust text as an IA5String (ASCII only).
pub(crate) fn ia5(s: &str) -> Result<Ia5String, Error> {
    if !s.is_ascii() {
        return Err(Error::Bad("IA5String: not ASCII"));
    }
    Ia5String::try_from(s).map_err(|_| Error::Bad("IA5String"))
}

/// An object identifier from its arcs.
pub(crate) fn oid(arcs: &[u32]) -> Result<ObjectIdentifier, Error> {
    ObjectIdentifier::new(arcs.to_vec()).ok_or(Error::Bad("object identifier"))
}
