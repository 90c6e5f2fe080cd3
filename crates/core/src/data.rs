//! [`Data`]: an item's data, shared between the log entry that carried it, the state and any
//! snapshot or backup being written, and allocated at exactly its length.
//!
//! `Arc<str>` puts its two counters in front of the text, so 1,024 bytes of data take a
//! 1,040-byte block, which the allocator (mimalloc: four size classes per power of two)
//! serves from its 1,280-byte class: a quarter wasted. Here the text is a `Box<str>` of its
//! own (1,024 bytes in the 1,024-byte class) behind a small `Arc` (32 bytes), and the handle
//! is one pointer wide, which also makes every item in the state's table 8 bytes smaller.
//! Measured in `docs/design.md` ("An item's data at its own length").

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::{Deserializer, Error, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// An item's data: immutable UTF-8 text, cheap to clone (one counter increment), compared and
/// encoded as the text it holds (the encoding is that of a `str`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Data(Arc<Box<str>>);

impl Data {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Data {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Data {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Data {
    /// Copies `text` into an allocation of exactly its length.
    fn from(text: &str) -> Self {
        Data(Arc::new(Box::from(text)))
    }
}

impl From<String> for Data {
    /// Takes `text`'s buffer, shrunk to its length.
    fn from(text: String) -> Self {
        Data(Arc::new(text.into_boxed_str()))
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Decodes the borrowed text the decoder offers (postcard from a byte slice always does) with
/// one copy, into a block of exactly its length; an owned `String` is taken as it is.
struct DataVisitor;

impl Visitor<'_> for DataVisitor {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Data, E> {
        Ok(Data::from(v))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Data, E> {
        Ok(Data::from(v))
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Data, E> {
        std::str::from_utf8(v)
            .map(Data::from)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(v), &self))
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Data, D::Error> {
        deserializer.deserialize_str(DataVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_as_a_str() {
        for text in [
            "",
            "a",
            "ünïcødé \u{1F600}",
            "with \"quotes\" and \\",
            &"x".repeat(70_000),
        ] {
            let data = Data::from(text);
            let as_str = postcard::to_allocvec(text).unwrap();
            assert_eq!(postcard::to_allocvec(&data).unwrap(), as_str);
            assert_eq!(postcard::from_bytes::<Data>(&as_str).unwrap(), data);
            let json = serde_json::to_string(text).unwrap();
            assert_eq!(serde_json::to_string(&data).unwrap(), json);
            assert_eq!(serde_json::from_str::<Data>(&json).unwrap(), data);
            assert_eq!(&*data, text);
            assert_eq!(data.to_string(), text);
            assert_eq!(format!("{data:?}"), format!("{text:?}"));
        }
        // Invalid UTF-8 is refused as serde refuses it for a `String`.
        let mut bytes = postcard::to_allocvec("ab").unwrap();
        bytes[1] = 0xff;
        assert!(postcard::from_bytes::<Data>(&bytes).is_err());
        assert!(postcard::from_bytes::<String>(&bytes).is_err());
    }

    #[test]
    fn clones_share_one_block_of_exactly_the_text_length() {
        let text = "y".repeat(1024);
        let data = Data::from(text.as_str());
        let copy = data.clone();
        assert!(std::ptr::eq(data.as_str(), copy.as_str()));
        assert_eq!(std::mem::size_of::<Data>(), std::mem::size_of::<usize>());
        assert_eq!(data.0.len(), 1024);
        assert_eq!(Data::from(text.clone()).as_str(), text);
    }
}
