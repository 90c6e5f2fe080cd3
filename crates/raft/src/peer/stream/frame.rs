//! Frames: a little-endian `u32` length, then that many bytes.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;

/// A frame being built: the payload is encoded after room for the length, so that the whole
/// frame goes out in one write (one segment for a small RPC, with `TCP_NODELAY`).
#[derive(Debug)]
pub struct FrameBuf(Vec<u8>);

impl FrameBuf {
    /// An empty frame with room for `payload` bytes.
    pub fn with_capacity(payload: usize) -> Self {
        let mut bytes = Vec::with_capacity(LEN_BYTES + payload);
        bytes.extend_from_slice(&[0; LEN_BYTES]);
        FrameBuf(bytes)
    }

    /// Appends payload bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Appends `value`, postcard-encoded.
    pub fn encode<T: serde::Serialize>(&mut self, value: &T) -> Result<(), postcard::Error> {
        let bytes = std::mem::take(&mut self.0);
        self.0 = postcard::to_extend(value, bytes)?;
        Ok(())
    }

    /// The finished frame (length filled in); `None` when the payload does not fit a `u32`.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        let len = u32::try_from(self.0.len() - LEN_BYTES).ok()?;
        self.0[..LEN_BYTES].copy_from_slice(&len.to_le_bytes());
        Some(self.0)
    }
}

/// Writes a finished frame and flushes.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

/// Reads one frame's payload, refusing one longer than `max` bytes before reading it (the
/// buffer grows as bytes arrive, so a forged length costs no memory up front).
pub async fn read<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; LEN_BYTES];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit of {max}"),
        ));
    }
    let mut payload = Vec::with_capacity(len.min(1 << 20));
    let read = r.take(len as u64).read_to_end(&mut payload).await?;
    if read < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bounds_hold() {
        let mut f = FrameBuf::with_capacity(8);
        f.extend(&[7]);
        f.encode(&("x", 5u64)).unwrap();
        let frame = f.finish().unwrap();
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write(&mut a, &frame).await.unwrap();
        write(&mut a, &FrameBuf::with_capacity(0).finish().unwrap())
            .await
            .unwrap();
        let payload = read(&mut b, 1024).await.unwrap();
        assert_eq!(payload[0], 7);
        let (s, n): (&str, u64) = postcard::from_bytes(&payload[1..]).unwrap();
        assert_eq!((s, n), ("x", 5));
        assert_eq!(read(&mut b, 1024).await.unwrap(), Vec::<u8>::new());

        // Over the limit: refused from the length alone.
        write(&mut a, &(2000u32).to_le_bytes()).await.unwrap();
        let e = read(&mut b, 1024).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);

        // Cut short: an error, not a short frame.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write(&mut a, &[10, 0, 0, 0, 1, 2, 3]).await.unwrap();
        drop(a);
        let e = read(&mut b, 1024).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
