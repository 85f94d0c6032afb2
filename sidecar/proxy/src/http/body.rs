//! Message bodies relayed exactly as framed: a known length, the chunked coding (parsed
//! strictly, re-framed for the next hop), or until the origin closes. Bulk bytes are spliced on
//! Linux (never copied into user space); small ones coalesce with the head in one write.

#[cfg(target_os = "linux")]
use crate::relay::splice;
use std::io::{self, IoSlice, Write as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};

/// Bytes already read that are appended to the pending write rather than written on their own.
const COALESCE: usize = 16 * 1024;
/// A body with at least this many bytes still to come is spliced (Linux).
#[cfg(target_os = "linux")]
const SPLICE_MIN: u64 = 32 * 1024;
/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted (trailers are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// What ended a body relay early.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Reading the sending side failed.
    Read(io::Error),
    /// Writing the receiving side failed.
    Write(io::Error),
    /// The sending side closed before the body was complete.
    Eof,
    /// The chunked coding was not valid.
    Malformed(&'static str),
}

/// A pipe for splicing one direction, made when first needed (Linux only).
#[cfg(target_os = "linux")]
pub(crate) type PipeSlot = Option<splice::Pipe>;
#[cfg(not(target_os = "linux"))]
pub(crate) type PipeSlot = ();

/// A read buffer: bytes `start..end` of `data` are read and not yet used.
pub(crate) struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    pub(crate) fn new(capacity: usize) -> Buf {
        Buf {
            data: vec![0u8; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
    pub(crate) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    /// Forgets everything buffered (the bytes of a connection that is gone).
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
    /// One read into the free space (moving unread bytes to the front first). `Ok(0)` at end of
    /// stream; an error if the buffer is already full.
    pub(crate) async fn fill(&mut self, from: &mut ReadHalf<'_>) -> io::Result<usize> {
        if self.end == self.data.len() {
            if self.start == 0 {
                return Err(io::Error::other("read buffer full"));
            }
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = from.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// Writes `a` then `b`, in one `writev` when the socket takes both.
pub(crate) async fn write_two(to: &mut WriteHalf<'_>, a: &[u8], b: &[u8]) -> io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() {
        let n = to
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n >= a.len() {
            b = &b[n - a.len()..];
            a = &[];
        } else {
            a = &a[n..];
        }
    }
    if !b.is_empty() {
        to.write_all(b).await?;
    }
    Ok(())
}

/// Writes what is pending in `out` (before any read that may wait, so nothing sits unsent).
pub(crate) async fn flush(to: &mut WriteHalf<'_>, out: &mut Vec<u8>) -> Result<(), BodyError> {
    if !out.is_empty() {
        to.write_all(out).await.map_err(BodyError::Write)?;
        out.clear();
    }
    Ok(())
}

/// Relays exactly `n` body bytes: those already in `buf` first (appended to the pending `out`
/// when small), then from the socket. Bytes beyond `n` stay in `buf` (a pipelined next message).
pub(crate) async fn copy_exact(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    buf: &mut Buf,
    out: &mut Vec<u8>,
    n: u64,
    pipe: &mut PipeSlot,
) -> Result<(), BodyError> {
    let mut left = n;
    let take = left.min(buf.len() as u64) as usize;
    if take > 0 {
        let part = &buf.filled()[..take];
        if out.len() + take <= COALESCE {
            out.extend_from_slice(part);
        } else {
            write_two(to, out, part).await.map_err(BodyError::Write)?;
            out.clear();
        }
        buf.consume(take);
        left -= take as u64;
    }
    while left > 0 {
        flush(to, out).await?;
        #[cfg(target_os = "linux")]
        if left >= SPLICE_MIN {
            if pipe.is_none() {
                *pipe = splice::pipe().ok();
            }
            if let Some(p) = pipe.as_ref() {
                let want = left.min(splice::CHUNK as u64) as usize;
                let m = splice::fill(p, from.as_ref(), want)
                    .await
                    .map_err(BodyError::Read)?;
                if m == 0 {
                    return Err(BodyError::Eof);
                }
                splice::drain(p, to.as_ref(), m)
                    .await
                    .map_err(BodyError::Write)?;
                left -= m as u64;
                continue;
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = &pipe;
        if buf.fill(from).await.map_err(BodyError::Read)? == 0 {
            return Err(BodyError::Eof);
        }
        let take = left.min(buf.len() as u64) as usize;
        to.write_all(&buf.filled()[..take])
            .await
            .map_err(BodyError::Write)?;
        buf.consume(take);
        left -= take as u64;
    }
    Ok(())
}

/// Reads more into `buf` after writing what is pending; end of stream is an error.
async fn more(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    buf: &mut Buf,
    out: &mut Vec<u8>,
) -> Result<(), BodyError> {
    flush(to, out).await?;
    match buf.fill(from).await {
        Ok(0) => Err(BodyError::Eof),
        Ok(_) => Ok(()),
        Err(e) => Err(BodyError::Read(e)),
    }
}

/// A chunk-size line at the start of `b`: `Ok(Some((size, line length with CRLF)))`, `Ok(None)`
/// when incomplete. Strict: hex digits, optional extensions after `;`, CRLF (no bare LF).
pub(crate) fn chunk_size_line(b: &[u8]) -> Result<Option<(u64, usize)>, &'static str> {
    let Some(lf) = b.iter().take(MAX_CHUNK_LINE).position(|c| *c == b'\n') else {
        return if b.len() >= MAX_CHUNK_LINE {
            Err("chunk size line too long")
        } else {
            Ok(None)
        };
    };
    if lf == 0 || b[lf - 1] != b'\r' {
        return Err("chunk size line not ended by CRLF");
    }
    let line = &b[..lf - 1];
    let digits = line.iter().take_while(|c| c.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("chunk size is not hexadecimal");
    }
    if digits > 15 {
        return Err("chunk size too large");
    }
    let mut size = 0u64;
    for c in &line[..digits] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        };
        size = size * 16 + u64::from(d);
    }
    let rest = &line[digits..];
    let ws = rest
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count();
    let rest = &rest[ws..];
    if !rest.is_empty() {
        // Chunk extensions: `;` then visible characters, spaces and tabs only.
        if rest[0] != b';' || rest.iter().any(|c| c.is_ascii_control() && *c != b'\t') {
            return Err("bad characters after the chunk size");
        }
    } else if ws > 0 {
        return Err("bad characters after the chunk size");
    }
    Ok(Some((size, lf + 1)))
}

/// Whether a trailer line is a plausible field (`name: value`, no control characters).
fn valid_trailer(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|c| *c == b':') else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|c| c.is_ascii_graphic() && *c != b':')
        && !line.iter().any(|c| c.is_ascii_control() && *c != b'\t')
}

/// Relays a chunked body: each chunk re-framed as `SIZE CRLF data CRLF` (extensions dropped),
/// trailers read and dropped, `0 CRLF CRLF` at the end.
pub(crate) async fn relay_chunked(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    buf: &mut Buf,
    out: &mut Vec<u8>,
    pipe: &mut PipeSlot,
) -> Result<(), BodyError> {
    loop {
        let (size, used) = loop {
            match chunk_size_line(buf.filled()).map_err(BodyError::Malformed)? {
                Some(x) => break x,
                None => more(from, to, buf, out).await?,
            }
        };
        buf.consume(used);
        if size == 0 {
            let mut total = 0usize;
            loop {
                let Some(lf) = buf.filled().iter().position(|c| *c == b'\n') else {
                    if total + buf.len() > MAX_TRAILERS {
                        return Err(BodyError::Malformed("trailer section too large"));
                    }
                    more(from, to, buf, out).await?;
                    continue;
                };
                let line = &buf.filled()[..lf];
                let Some(line) = line.strip_suffix(b"\r") else {
                    return Err(BodyError::Malformed("trailer line not ended by CRLF"));
                };
                if line.is_empty() {
                    buf.consume(lf + 1);
                    break;
                }
                if !valid_trailer(line) {
                    return Err(BodyError::Malformed("invalid trailer field"));
                }
                total += lf + 1;
                if total > MAX_TRAILERS {
                    return Err(BodyError::Malformed("trailer section too large"));
                }
                buf.consume(lf + 1);
            }
            out.extend_from_slice(b"0\r\n\r\n");
            return flush(to, out).await;
        }
        let _ = write!(out, "{size:x}\r\n");
        copy_exact(from, to, buf, out, size, pipe).await?;
        while buf.len() < 2 {
            more(from, to, buf, out).await?;
        }
        if &buf.filled()[..2] != b"\r\n" {
            return Err(BodyError::Malformed("chunk data not followed by CRLF"));
        }
        buf.consume(2);
        out.extend_from_slice(b"\r\n");
    }
}

/// Relays until the origin closes (a response without length or chunking). Splices once a read
/// fills the buffer (a bulk transfer).
pub(crate) async fn relay_to_eof(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    buf: &mut Buf,
    out: &mut Vec<u8>,
    pipe: &mut PipeSlot,
) -> Result<(), BodyError> {
    if !buf.is_empty() {
        write_two(to, out, buf.filled())
            .await
            .map_err(BodyError::Write)?;
        out.clear();
        buf.consume(buf.len());
    }
    flush(to, out).await?;
    #[cfg(target_os = "linux")]
    let mut bulk = false;
    loop {
        #[cfg(target_os = "linux")]
        if bulk {
            if pipe.is_none() {
                *pipe = splice::pipe().ok();
            }
            if let Some(p) = pipe.as_ref() {
                let m = splice::fill(p, from.as_ref(), splice::CHUNK)
                    .await
                    .map_err(BodyError::Read)?;
                if m == 0 {
                    return Ok(());
                }
                splice::drain(p, to.as_ref(), m)
                    .await
                    .map_err(BodyError::Write)?;
                bulk = m >= COALESCE;
                continue;
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = &pipe;
        let m = buf.fill(from).await.map_err(BodyError::Read)?;
        if m == 0 {
            return Ok(());
        }
        to.write_all(buf.filled()).await.map_err(BodyError::Write)?;
        #[cfg(target_os = "linux")]
        {
            bulk = buf.len() >= COALESCE;
        }
        buf.consume(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_parsed_strictly() {
        assert_eq!(chunk_size_line(b"1a\r\nxyz"), Ok(Some((26, 4))));
        assert_eq!(chunk_size_line(b"0\r\n\r\n"), Ok(Some((0, 3))));
        assert_eq!(chunk_size_line(b"A;name=v\r\n"), Ok(Some((10, 10))));
        assert_eq!(chunk_size_line(b"5 ;x\r\n"), Ok(Some((5, 6))));
        assert_eq!(chunk_size_line(b"fff"), Ok(None));
        assert_eq!(chunk_size_line(b"ff\r"), Ok(None));
        for bad in [
            &b"\r\n"[..],
            b"5\n",
            b"-5\r\n",
            b"+5\r\n",
            b" 5\r\n",
            b"0x5\r\n",
            b"5 \r\n",
            b"5 x\r\n",
            b"5;\x00\r\n",
            b"1000000000000000\r\n",
            b"g\r\n",
        ] {
            assert!(
                chunk_size_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(chunk_size_line(&[b'1'; MAX_CHUNK_LINE]).is_err());
    }

    #[test]
    fn trailer_lines_must_look_like_fields() {
        assert!(valid_trailer(b"X-Sum: abc"));
        assert!(!valid_trailer(b"no colon"));
        assert!(!valid_trailer(b": empty name"));
        assert!(!valid_trailer(b"Bad Name: v"));
        assert!(!valid_trailer(b"X: a\x00b"));
    }

    #[test]
    fn the_buffer_consumes_and_compacts() {
        let mut b = Buf::new(8);
        b.data[..6].copy_from_slice(b"abcdef");
        b.end = 6;
        b.consume(2);
        assert_eq!(b.filled(), b"cdef");
        b.consume(10);
        assert!(b.is_empty());
        assert_eq!((b.start, b.end), (0, 0));
    }
}
