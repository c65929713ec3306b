//! Length-prefixed frames: `len2` (2-byte big-endian binary, the default) or
//! `len4-ascii` (4 ASCII digits). The decoder checks the header before it waits for the
//! body, so an oversize or zero length is refused without buffering it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::config::Framing;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} exceeds max_frame {1}")]
    Oversize(usize, usize),
    #[error("zero-length frame")]
    ZeroLength,
    #[error("unreadable length header")]
    BadHeader,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The label of `multiguna_frames_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::Oversize(..) => "oversize",
            FrameError::ZeroLength => "zero_length",
            FrameError::BadHeader => "bad_header",
            FrameError::Io(_) => "io",
        }
    }

    /// A TLS peer that closes its socket without `close_notify`: rustls reports that as
    /// `UnexpectedEof` where plain TCP gives a clean end of stream. Many terminals and
    /// hosts close that way; it is a departure, not a bad frame.
    pub fn is_peer_gone(&self) -> bool {
        matches!(self, FrameError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    framing: Framing,
    max_frame: usize,
}

impl FrameCodec {
    pub fn new(framing: Framing, max_frame: usize) -> FrameCodec {
        FrameCodec { framing, max_frame }
    }

    fn header_len(&self) -> usize {
        match self.framing {
            Framing::Len2 => 2,
            Framing::Len4Ascii => 4,
        }
    }

    fn body_len(&self, header: &[u8]) -> Result<usize, FrameError> {
        match self.framing {
            Framing::Len2 => Ok(usize::from(u16::from_be_bytes([header[0], header[1]]))),
            Framing::Len4Ascii => {
                if !header.iter().all(u8::is_ascii_digit) {
                    return Err(FrameError::BadHeader);
                }
                Ok(header
                    .iter()
                    .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
            }
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let header_len = self.header_len();
        let Some(header) = src.get(..header_len) else {
            return Ok(None);
        };
        let len = self.body_len(header)?;
        if len == 0 {
            return Err(FrameError::ZeroLength);
        }
        if len > self.max_frame {
            return Err(FrameError::Oversize(len, self.max_frame));
        }
        if src.len() < header_len + len {
            src.reserve(header_len + len - src.len());
            return Ok(None);
        }
        src.advance(header_len);
        Ok(Some(src.split_to(len).freeze()))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = item.len();
        let limit = match self.framing {
            Framing::Len2 => usize::from(u16::MAX),
            Framing::Len4Ascii => 9_999,
        };
        if len == 0 || len > limit {
            return Err(FrameError::Oversize(len, limit));
        }
        dst.reserve(self.header_len() + len);
        match self.framing {
            Framing::Len2 => dst.put_u16(len as u16),
            Framing::Len4Ascii => dst.put_slice(format!("{len:04}").as_bytes()),
        }
        dst.put_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Result<Vec<Bytes>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf)? {
            out.push(frame);
        }
        Ok(out)
    }

    #[test]
    fn len2_waits_for_a_whole_frame_and_splits_pipelined_ones() {
        let mut codec = FrameCodec::new(Framing::Len2, 4096);
        assert!(decode_all(&mut codec, &[0, 3, b'a']).unwrap().is_empty());
        let frames = decode_all(&mut codec, &[0, 1, b'a', 0, 2, b'b', b'c']).unwrap();
        assert_eq!(
            frames,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        );
    }

    #[test]
    fn oversize_zero_and_bad_headers_are_errors() {
        let mut codec = FrameCodec::new(Framing::Len2, 16);
        assert!(matches!(
            decode_all(&mut codec, &[0, 17]),
            Err(FrameError::Oversize(17, 16))
        ));
        assert!(matches!(
            decode_all(&mut codec, &[0, 0]),
            Err(FrameError::ZeroLength)
        ));
        let mut ascii = FrameCodec::new(Framing::Len4Ascii, 16);
        assert!(matches!(
            decode_all(&mut ascii, b"00x1"),
            Err(FrameError::BadHeader)
        ));
        assert_eq!(
            decode_all(&mut ascii, b"0002hi").unwrap(),
            vec![Bytes::from_static(b"hi")]
        );
    }

    proptest::proptest! {
        /// Any byte stream, cut anywhere: the decoder never panics, never yields a
        /// frame over `max_frame`, and stops at the first bad header.
        #[test]
        fn arbitrary_streams_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..32),
            ascii in proptest::bool::ANY,
        ) {
            let framing = if ascii { Framing::Len4Ascii } else { Framing::Len2 };
            let mut codec = FrameCodec::new(framing, 64);
            let mut buf = BytesMut::new();
            'stream: for chunk in chunks {
                buf.extend_from_slice(&chunk);
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(frame)) => proptest::prop_assert!(!frame.is_empty() && frame.len() <= 64),
                        Ok(None) => break,
                        Err(_) => break 'stream,
                    }
                }
            }
        }
    }

    #[test]
    fn encode_writes_the_header_of_each_framing() {
        let mut out = BytesMut::new();
        FrameCodec::new(Framing::Len4Ascii, 4096)
            .encode(Bytes::from_static(b"abc"), &mut out)
            .unwrap();
        assert_eq!(&out[..], b"0003abc");
        let mut out = BytesMut::new();
        FrameCodec::new(Framing::Len2, 4096)
            .encode(Bytes::from_static(b"abc"), &mut out)
            .unwrap();
        assert_eq!(&out[..], &[0, 3, b'a', b'b', b'c']);
    }
}
