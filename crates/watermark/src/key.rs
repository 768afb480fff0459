//! The watermark key: what both the pattern and the payload are derived from.

use sha2::{Digest as _, Sha256};

/// A 256-bit watermark key (from config/secret in production).
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)") // never print the secret
    }
}

impl Key {
    /// A key written as 64 hex digits (how configs carry it); `None` for anything else.
    pub fn from_hex(hex_digits: &str) -> Option<Self> {
        let bytes = hex::decode(hex_digits).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// A key derived from arbitrary bytes (SHA-256), e.g. a passphrase in tests.
    pub fn derive(material: &[u8]) -> Self {
        Self(Sha256::digest(material).into())
    }
}
