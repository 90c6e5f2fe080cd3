//! The record format of a segment: magics, checksums, and decoding records from bytes.

/// The magic of version 1 segments (checksums without the segment's name); still read.
pub(crate) const MAGIC: &[u8; 8] = b"SMWAL001";
/// The magic of version 2 segments (checksums salted with the name); still read and
/// continued.
pub(crate) const MAGIC_V2: &[u8; 8] = b"SMWAL002";
/// The magic of version 3 segments, the ones written now: each record's payload starts with
/// the index of the first record of its append (8 bytes LE), and the checksum salt is the
/// name XOR [`V3_SALT`], so a record of one version never checks out under the other.
pub(crate) const MAGIC_V3: &[u8; 8] = b"SMWAL003";
/// Mixed into version 3 salts.
pub(super) const V3_SALT: u64 = 0x5633_5633_5633_5633;
/// Bytes before the caller's payload in a version 3 record: its append's first index.
pub(super) const APPEND_PREFIX: usize = 8;
pub(super) const HEADER: usize = 16; // len, crc, index
/// Largest record accepted (a bound against corrupt lengths).
pub(super) const MAX_RECORD: usize = 256 * 1024 * 1024;
/// Largest record index accepted (one below `u64::MAX`, so `last + 1` never overflows).
pub(super) const MAX_INDEX: u64 = u64::MAX - 1;

/// The format version a segment's magic names (1, 2 or 3).
pub(super) fn version_of(magic: &[u8]) -> Option<u8> {
    match magic {
        m if m == MAGIC => Some(1),
        m if m == MAGIC_V2 => Some(2),
        m if m == MAGIC_V3 => Some(3),
        _ => None,
    }
}

/// The checksum salt of a segment named `first` of `version`.
pub(super) fn salt_of(version: u8, first: u64) -> Option<u64> {
    match version {
        1 => None,
        2 => Some(first),
        _ => Some(first ^ V3_SALT),
    }
}

pub(super) fn segment_name(first: u64) -> String {
    format!("{first:020}.wal")
}

pub(super) fn crc(salt: Option<u64>, index: u64, payload: &[u8]) -> u32 {
    crc_parts(salt, index, &[payload])
}

/// The checksum of a record whose stored payload is `parts` concatenated.
pub(super) fn crc_parts(salt: Option<u64>, index: u64, parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    if let Some(salt) = salt {
        h.update(&salt.to_le_bytes());
    }
    h.update(&index.to_le_bytes());
    for part in parts {
        h.update(part);
    }
    h.finalize()
}

/// The index a record header at `pos` claims, if `buf` holds a header there.
pub(super) fn index_at(buf: &[u8], pos: usize) -> Option<u64> {
    let header = buf.get(pos..pos + HEADER)?;
    Some(u64::from_le_bytes(header[8..16].try_into().ok()?))
}

/// Decodes the record at `pos` of `buf`: `Some((index, payload_range, next_pos))` when it is
/// whole and its checksum (with `salt`) matches.
pub(super) fn record_at(
    buf: &[u8],
    pos: usize,
    salt: Option<u64>,
) -> Option<(u64, std::ops::Range<usize>, usize)> {
    let header = buf.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let stored_crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let index = u64::from_le_bytes(header[8..16].try_into().ok()?);
    if !(8..=MAX_RECORD).contains(&len) || index > MAX_INDEX {
        return None;
    }
    let end = pos.checked_add(8 + len)?;
    let payload = pos + HEADER..end;
    let bytes = buf.get(payload.clone())?;
    (crc(salt, index, bytes) == stored_crc).then_some((index, payload, end))
}

/// The valid records that could continue the log anywhere in `buf[from..]`: those with an
/// index above `after` (at least `first`, the segment's name, when there is none yet), as
/// `(index, payload range)`. Records are at least a header long and their indexes
/// consecutive, so such a record has an index within `remaining / HEADER` of that bound: the
/// index is checked before the checksum, which makes the scan cheap over old or random bytes.
pub(super) fn valid_records_after(
    buf: &[u8],
    from: usize,
    after: Option<u64>,
    first: u64,
    salt: Option<u64>,
) -> impl Iterator<Item = (u64, std::ops::Range<usize>)> + '_ {
    let lowest = after.map_or(first, |a| a.saturating_add(1));
    let span = (buf.len().saturating_sub(from) / HEADER) as u64 + 1;
    (from..buf.len().saturating_sub(HEADER - 1)).filter_map(move |p| {
        if !index_at(buf, p).is_some_and(|i| i >= lowest && i - lowest <= span) {
            return None;
        }
        record_at(buf, p, salt)
            .filter(|(index, _, _)| after.is_none_or(|a| *index > a))
            .map(|(index, payload, _)| (index, payload))
    })
}

/// The first index of the append a version 3 record belongs to (its payload's prefix).
pub(super) fn append_first(buf: &[u8], payload: &std::ops::Range<usize>) -> Option<u64> {
    let prefix = buf.get(payload.start..payload.start.checked_add(APPEND_PREFIX)?)?;
    Some(u64::from_le_bytes(prefix.try_into().ok()?))
}
