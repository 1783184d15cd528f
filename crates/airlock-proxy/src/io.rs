//! Reading whole frames from a stream during the handshake and login phases,
//! where simplicity beats throughput. The session relay has its own scanner.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use airlock_pgwire::codec::{decode_frame, decode_startup, StartupPacket};
use airlock_pgwire::{Frame, ProtocolError};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a message")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Result<(), ReadError> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    let n = s.read_buf(buf).await?;
    if n == 0 {
        return Err(if buf.is_empty() {
            ReadError::Closed
        } else {
            ReadError::Truncated
        });
    }
    Ok(())
}

pub async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Frame, ReadError> {
    loop {
        if let Some(frame) = decode_frame(buf, max)? {
            return Ok(frame);
        }
        fill(s, buf).await?;
    }
}

pub async fn read_startup<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<StartupPacket, ReadError> {
    loop {
        if let Some(p) = decode_startup(buf)? {
            return Ok(p);
        }
        fill(s, buf).await?;
    }
}
