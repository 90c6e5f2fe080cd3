//! Decoding text straight into `Arc<str>`.
//!
//! serde's own `Arc<str>` goes through a `String` and then copies it into the `Arc`: two
//! allocations and two copies per field. Entries are decoded on every node for every store
//! (namespace, key and value each), so this takes the borrowed text the decoder offers
//! (postcard from a byte slice always does) and copies it once.

use std::sync::Arc;

use serde::de::{Deserializer, Error, Visitor};

struct ArcStrVisitor;

impl Visitor<'_> for ArcStrVisitor {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Arc<str>, E> {
        Ok(Arc::from(v))
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Arc<str>, E> {
        std::str::from_utf8(v)
            .map(Arc::from)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(v), &self))
    }
}

/// `#[serde(deserialize_with = "crate::arc_str::deserialize")]` for an `Arc<str>` field:
/// accepts exactly what serde's `Arc<str>` accepts, with one allocation.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<str>, D::Error> {
    deserializer.deserialize_str(ArcStrVisitor)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain(Arc<str>);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Fast(#[serde(deserialize_with = "deserialize")] Arc<str>);

    #[test]
    fn decodes_exactly_what_serde_decodes() {
        for text in [
            "",
            "a",
            "PLUGIN#check_disk",
            "ünïcødé \u{1F600}",
            &"x".repeat(70_000),
        ] {
            let bytes = postcard::to_allocvec(&Plain(Arc::from(text))).unwrap();
            let fast: Fast = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(&*fast.0, text);
            let json = serde_json::to_string(&Plain(Arc::from(text))).unwrap();
            let fast: Fast = serde_json::from_str(&json).unwrap();
            assert_eq!(&*fast.0, text);
        }
        // Invalid UTF-8 is refused as serde refuses it.
        let mut bytes = postcard::to_allocvec(&Plain(Arc::from("ab"))).unwrap();
        bytes[1] = 0xff;
        assert!(postcard::from_bytes::<Fast>(&bytes).is_err());
        assert!(postcard::from_bytes::<Plain>(&bytes).is_err());
    }
}
