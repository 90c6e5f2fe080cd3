//! The record frame used for every log record and metadata value:
//! `[format version: u8][crc32 of payload: u32 LE][payload]`.
//!
//! The checksum lets a read detect corruption the engine's own checks missed; the version
//! lets a later release change the payload encoding and still read old records.

use crate::StorageError;

/// The current record format version.
pub const RECORD_FORMAT_VERSION: u8 = 1;
const HEADER: usize = 5;

/// Frames `payload` with the version byte and its CRC32.
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(RECORD_FORMAT_VERSION);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a framed record and returns its payload. `what` names the record in errors.
pub fn decode_record<'a>(
    bytes: &'a [u8],
    what: &dyn Fn() -> String,
) -> Result<&'a [u8], StorageError> {
    if bytes.len() < HEADER {
        return Err(StorageError::Corrupt {
            what: what(),
            detail: format!("record of {} bytes is shorter than its header", bytes.len()),
        });
    }
    if bytes[0] != RECORD_FORMAT_VERSION {
        return Err(StorageError::Corrupt {
            what: what(),
            detail: format!("unknown record format version {}", bytes[0]),
        });
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let payload = &bytes[HEADER..];
    if crc32fast::hash(payload) != stored {
        return Err(StorageError::Corrupt {
            what: what(),
            detail: "checksum mismatch".to_string(),
        });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detects_flips() {
        let framed = encode_record(b"hello");
        assert_eq!(decode_record(&framed, &|| "t".into()).unwrap(), b"hello");
        for i in 0..framed.len() {
            let mut bad = framed.clone();
            bad[i] ^= 0x40;
            assert!(decode_record(&bad, &|| "t".into()).is_err(), "flip at {i}");
        }
        assert!(decode_record(&framed[..3], &|| "t".into()).is_err());
    }
}
