//! AIP-158 pagination: page sizes and opaque keyset page tokens.
//!
//! A page token is base64url of `"j1" | crc32(filters) | created_at µs | key`, where `key`
//! is the last token id (or principal id) of the previous page. The filter checksum makes a
//! token used with other filters (or by another caller) an `INVALID_ARGUMENT` instead of a
//! silently wrong page.

use crate::usecase::Error;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub(super) const DEFAULT_PAGE_SIZE: u64 = 50;
pub(super) const MAX_PAGE_SIZE: u64 = 1000;
const MAGIC: &[u8; 2] = b"j1";
/// Longest page token looked at.
const MAX_TOKEN_LEN: usize = 1024;

/// 0 means the default; above the maximum is coerced to it (AIP-158); negative is refused.
pub(super) fn page_size(v: i32) -> Result<u64, Error> {
    match v {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

/// A position in a listing: the sort key of the last item returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cursor {
    pub(crate) created_micros: i64,
    pub(crate) key: String,
}

/// Page tokens of one listing, bound to its filters.
#[derive(Debug)]
pub(super) struct Pager {
    filters: String,
}

impl Pager {
    /// `filters`: everything that selects the listing, as one string.
    pub(super) fn new(filters: String) -> Self {
        Self { filters }
    }

    /// The position a page token stands for; `None` (first page) for an empty one.
    pub(super) fn decode(&self, token: &str) -> Result<Option<Cursor>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(not_ours());
        }
        let b = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .filter(|b| b.len() >= 14 && &b[..2] == MAGIC)
            .ok_or_else(not_ours)?;
        let crc = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
        if crc != crc32fast::hash(self.filters.as_bytes()) {
            return Err(Error::invalid(
                "page_token",
                "was issued for a request with other filters",
            ));
        }
        let mut micros = [0u8; 8];
        micros.copy_from_slice(&b[6..14]);
        let key = String::from_utf8(b[14..].to_vec()).map_err(|_| not_ours())?;
        Ok(Some(Cursor {
            created_micros: i64::from_be_bytes(micros),
            key,
        }))
    }

    /// The token of the page after the one that ended at `last`; empty when no page follows.
    pub(super) fn next(&self, more: bool, last: Option<Cursor>) -> String {
        let Some(cursor) = last.filter(|_| more) else {
            return String::new();
        };
        let mut b = Vec::with_capacity(14 + cursor.key.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&crc32fast::hash(self.filters.as_bytes()).to_be_bytes());
        b.extend_from_slice(&cursor.created_micros.to_be_bytes());
        b.extend_from_slice(cursor.key.as_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }
}

/// The error for a page token that this listing did not issue.
pub(super) fn not_ours() -> Error {
    Error::invalid("page_token", "not a page token of this listing")
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
        let api = Pager::new("API||".into());
        let t = api.next(true, Some(c.clone()));
        assert_eq!(api.decode(&t).unwrap(), Some(c.clone()));
        assert_eq!(api.decode("").unwrap(), None);
        assert_eq!(api.next(false, Some(c)), "");
        assert!(Pager::new("SIEM||".into()).decode(&t).is_err());
        assert!(api.decode("garbage!").is_err());
        assert!(api.decode("AAAA").is_err());
        assert!(api.decode(&"A".repeat(5000)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(1_000_000).unwrap(), 1000);
        assert!(page_size(-1).is_err());
    }
}
