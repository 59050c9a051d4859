//! AIP-158 pagination: page sizes and opaque keyset page tokens.
//!
//! A page token is base64url of `"j1" | crc32(filters) | created_at µs | key`, where `key`
//! is the last token id (or principal id) of the previous page. The filter checksum makes a
//! token used with other filters an `INVALID_ARGUMENT` instead of a silently wrong page.

use crate::engine::Error;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub(crate) const DEFAULT_PAGE_SIZE: u64 = 50;
pub(crate) const MAX_PAGE_SIZE: u64 = 1000;
const MAGIC: &[u8; 2] = b"j1";

/// 0 means the default; above the maximum is coerced to it (AIP-158); negative is refused.
pub(crate) fn page_size(v: i32) -> Result<u64, Error> {
    match v {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

/// A position in a listing: the sort key of the last item returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub created_micros: i64,
    pub key: String,
}

pub(crate) fn encode(filters: &str, cursor: &Cursor) -> String {
    let mut b = Vec::with_capacity(14 + cursor.key.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&crc32fast::hash(filters.as_bytes()).to_be_bytes());
    b.extend_from_slice(&cursor.created_micros.to_be_bytes());
    b.extend_from_slice(cursor.key.as_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// Empty means the first page.
pub(crate) fn decode(filters: &str, token: &str) -> Result<Option<Cursor>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "not a page token of this listing");
    if token.len() > 1024 {
        return Err(bad());
    }
    let b = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    if b.len() < 14 || &b[..2] != MAGIC {
        return Err(bad());
    }
    let crc = u32::from_be_bytes(b[2..6].try_into().map_err(|_| bad())?);
    if crc != crc32fast::hash(filters.as_bytes()) {
        return Err(Error::invalid(
            "page_token",
            "was issued for a request with other filters",
        ));
    }
    let created_micros = i64::from_be_bytes(b[6..14].try_into().map_err(|_| bad())?);
    let key = String::from_utf8(b[14..].to_vec()).map_err(|_| bad())?;
    Ok(Some(Cursor {
        created_micros,
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let c = Cursor {
            created_micros: 1_700_000_000_000_000,
            key: "abc".into(),
        };
        let t = encode("API||", &c);
        assert_eq!(decode("API||", &t).unwrap(), Some(c));
        assert_eq!(decode("API||", "").unwrap(), None);
        assert!(decode("SIEM||", &t).is_err());
        assert!(decode("API||", "garbage!").is_err());
        assert!(decode("API||", "AAAA").is_err());
        assert!(decode("API||", &"A".repeat(5000)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(1_000_000).unwrap(), 1000);
        assert!(page_size(-1).is_err());
    }
}
