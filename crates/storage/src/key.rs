//! Storage keys: what both backends accept, checked before any I/O so no key can escape a local root or address
//! something unexpected in a bucket.

use crate::StorageError;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Accepts `a/b/c.mp4`-style keys: relative, `/`-separated, segments of `[A-Za-z0-9._-]` that are not `.` or `..`.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = |why: &str| Err(StorageError::InvalidKey(key.to_string(), why.to_string()));
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return bad("longer than 512 bytes");
    }
    if key.starts_with('/') {
        return bad("must be relative");
    }
    for seg in key.split('/') {
        if seg.is_empty() {
            return bad("empty path segment");
        }
        if seg == "." || seg == ".." {
            return bad("`.` and `..` segments are not allowed");
        }
        if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return bad("only letters, digits, `.`, `_`, `-` and `/` are allowed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_or_surprise_are_refused() {
        for ok in ["a.mp4", "jobs/2026/11/abc-123_x.mp4", "v1/thumb.png"] {
            validate_key(ok).unwrap();
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "a b", "ä.mp4", "a/"] {
            assert!(validate_key(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(validate_key(&"k".repeat(513)).is_err());
    }
}
