//! A whole snapshot sent to a follower in one request, streamed both ways.
//!
//! The body is `[u32 LE length][postcard (vote, meta)][the snapshot file]`. The leader sends
//! its file as it reads it ([`body`]), and the follower writes what arrives straight into a
//! file of its own ([`receive`]): neither holds the snapshot in memory. (Both did until the
//! twenty-first session: a leader read a 270 MB snapshot whole before it sent it, the
//! follower collected the body, copied it once more to write it, and could not take one over
//! the peer body limit, 512 MiB, at all; see `docs/design.md`, "Snapshots streamed to a
//! follower".)

use std::path::Path;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::types::{decode, encode, SnapshotMeta, Vote};

/// The longest head a follower accepts: a vote and a snapshot's meta (its membership
/// included) are a few hundred bytes.
pub const MAX_HEAD: usize = 1024 * 1024;

/// How much of the file the sender reads at a time, and the receiver gathers before it
/// writes.
const CHUNK: usize = 1024 * 1024;

/// Why a snapshot body could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The head is missing, too long or undecodable: the sender's fault (400).
    #[error("{0}")]
    Refused(String),
    /// The body broke off, or the file could not be written.
    #[error("cannot store the snapshot: {0}")]
    Store(#[source] std::io::Error),
}

/// The head of a body: the length prefix and the encoded vote and meta.
pub fn head(vote: &Vote, meta: &SnapshotMeta) -> Result<Vec<u8>, postcard::Error> {
    let encoded = encode(&(vote, meta))?;
    let mut head = Vec::with_capacity(4 + encoded.len());
    head.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    head.extend_from_slice(&encoded);
    Ok(head)
}

/// The request body: `head`, then `file` from its start, read a chunk at a time as the
/// connection takes it.
pub fn body(head: Vec<u8>, file: tokio::fs::File) -> reqwest::Body {
    let head = futures_util::stream::once(async move { Ok(axum::body::Bytes::from(head)) });
    let file = tokio_util::io::ReaderStream::with_capacity(file, CHUNK);
    reqwest::Body::wrap_stream(head.chain(file))
}

/// What [`split`] found at the start of a body.
#[derive(Debug, PartialEq, Eq)]
pub enum Split<'a> {
    /// The head is complete: its encoded part, and the file's bytes that followed it.
    Head(&'a [u8], &'a [u8]),
    /// More bytes are needed.
    Short,
    /// The length prefix is over [`MAX_HEAD`].
    TooLong(usize),
}

/// Splits the start of a body (as much of it as has arrived) into the encoded head and the
/// file's first bytes.
pub fn split(start: &[u8]) -> Split<'_> {
    let Some(prefix) = start.get(..4) else {
        return Split::Short;
    };
    let mut len = [0u8; 4];
    len.copy_from_slice(prefix);
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_HEAD {
        return Split::TooLong(len);
    }
    match start.get(4..4 + len) {
        Some(head) => Split::Head(head, &start[4 + len..]),
        None => Split::Short,
    }
}

/// Takes a body as it arrives: decodes its head and writes the file's bytes to `path`
/// (created). The file is not fsync'd here: installing gives it a name of the state
/// machine's and fsyncs it then (or copies it, where it cannot be linked).
pub async fn receive(
    body: axum::body::Body,
    path: &Path,
) -> Result<(Vote, SnapshotMeta), ReceiveError> {
    let mut chunks = body.into_data_stream();
    let mut start = Vec::new();
    let (vote, meta, rest) = loop {
        match split(&start) {
            Split::Head(head, rest) => {
                let (vote, meta): (Vote, SnapshotMeta) = decode(head).map_err(|e| {
                    ReceiveError::Refused(format!("undecodable snapshot head: {e}"))
                })?;
                break (vote, meta, rest.to_vec());
            }
            Split::TooLong(len) => {
                return Err(ReceiveError::Refused(format!(
                    "snapshot head of {len} bytes (at most {MAX_HEAD})"
                )))
            }
            Split::Short => match chunks.next().await {
                Some(chunk) => start.extend_from_slice(&chunk.map_err(broken)?),
                None => return Err(ReceiveError::Refused("truncated snapshot".into())),
            },
        }
    };
    let file = tokio::fs::File::create(path)
        .await
        .map_err(ReceiveError::Store)?;
    let mut file = tokio::io::BufWriter::with_capacity(CHUNK, file);
    file.write_all(&rest).await.map_err(ReceiveError::Store)?;
    while let Some(chunk) = chunks.next().await {
        file.write_all(&chunk.map_err(broken)?)
            .await
            .map_err(ReceiveError::Store)?;
    }
    file.flush().await.map_err(ReceiveError::Store)?;
    Ok((vote, meta))
}

/// The body broke off (the sender went away, or the connection failed).
fn broken(e: axum::Error) -> ReceiveError {
    ReceiveError::Store(std::io::Error::other(format!(
        "the snapshot body broke off: {e}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_found_once_it_has_all_arrived() {
        let mut body = vec![3, 0, 0, 0, 7, 8, 9];
        assert_eq!(split(&body[..2]), Split::Short);
        assert_eq!(split(&body[..6]), Split::Short);
        assert_eq!(split(&body), Split::Head(&[7, 8, 9], &[]));
        body.extend_from_slice(b"file");
        assert_eq!(split(&body), Split::Head(&[7, 8, 9], b"file"));
        assert_eq!(split(&[0, 0, 0, 0]), Split::Head(&[], &[]));
    }

    #[test]
    fn a_head_longer_than_the_bound_is_refused_before_it_arrives() {
        let len = (MAX_HEAD as u32 + 1).to_le_bytes();
        assert_eq!(split(&len), Split::TooLong(MAX_HEAD + 1));
        let len = (MAX_HEAD as u32).to_le_bytes();
        assert_eq!(split(&len), Split::Short);
    }

    fn sample() -> (Vote, SnapshotMeta) {
        let vote = Vote::new_committed(3, 1);
        let meta = SnapshotMeta {
            last_log_id: None,
            last_membership: Default::default(),
        };
        (vote, meta)
    }

    /// What `body` sends, `receive` takes back, in chunks cut anywhere (inside the length
    /// prefix, inside the head, at its end): the head decoded, the file written unchanged.
    #[tokio::test]
    async fn what_is_sent_is_received_in_chunks_of_any_size() {
        let dir = tempfile::tempdir().unwrap();
        let (vote, meta) = sample();
        let file: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let source = dir.path().join("source");
        std::fs::write(&source, &file).unwrap();
        let sent = body(
            head(&vote, &meta).unwrap(),
            tokio::fs::File::open(&source).await.unwrap(),
        );
        let mut bytes = Vec::new();
        let mut frames = axum::body::Body::new(sent).into_data_stream();
        while let Some(frame) = frames.next().await {
            bytes.extend_from_slice(&frame.unwrap());
        }
        for cut in [1, 3, 5, 11, 4096, CHUNK + 1] {
            let pieces: Vec<Result<axum::body::Bytes, std::io::Error>> = bytes
                .chunks(cut)
                .map(|c| Ok(axum::body::Bytes::copy_from_slice(c)))
                .collect();
            let received = axum::body::Body::from_stream(futures_util::stream::iter(pieces));
            let target = dir.path().join(format!("target-{cut}"));
            let (v, m) = receive(received, &target).await.unwrap();
            assert_eq!((v, m), (vote, meta.clone()), "cut {cut}");
            assert!(std::fs::read(&target).unwrap() == file, "cut {cut}");
        }
    }

    #[tokio::test]
    async fn a_body_cut_off_in_its_head_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (vote, meta) = sample();
        let head = head(&vote, &meta).unwrap();
        for len in [0, 2, head.len() - 1] {
            let target = dir.path().join(format!("t{len}"));
            let received = axum::body::Body::from(head[..len].to_vec());
            let e = receive(received, &target).await.unwrap_err();
            assert!(matches!(e, ReceiveError::Refused(_)), "{e}");
            assert!(!target.exists());
        }
        let mut garbage = vec![2, 0, 0, 0, 0xff, 0xff];
        garbage.extend_from_slice(b"file");
        let e = receive(axum::body::Body::from(garbage), &dir.path().join("g"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("undecodable snapshot head"), "{e}");
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (vote, meta) = sample();
        let pieces: Vec<Result<axum::body::Bytes, std::io::Error>> = vec![
            Ok(head(&vote, &meta).unwrap().into()),
            Ok(axum::body::Bytes::from_static(b"part of a file")),
            Err(std::io::Error::other("connection reset")),
        ];
        let received = axum::body::Body::from_stream(futures_util::stream::iter(pieces));
        let e = receive(received, &dir.path().join("t")).await.unwrap_err();
        assert!(matches!(e, ReceiveError::Store(_)), "{e}");
        assert!(e.to_string().contains("broke off"), "{e}");
    }
}
