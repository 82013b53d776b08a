//! SPAT framing: encode and decode packets over byte slices.
//!
//! A packet is a little-endian u16 payload length, a u8 tag, then the
//! payload. The length 0xFFFF opens a frame for the tag, 0xFFFE closes it.
//! The decoder is total: whatever bytes arrive, it never reads past the
//! slice and never recurses. Nothing here allocates.

/// Length value that opens a frame of inner packets.
pub const FRAME_OPEN: u16 = 0xFFFF;
/// Length value that closes a frame.
pub const FRAME_CLOSE: u16 = 0xFFFE;
/// Size of a packet header (length + tag).
pub const HEADER_LEN: usize = 3;
/// Largest payload a plain packet can carry.
pub const MAX_PAYLOAD: usize = FRAME_CLOSE as usize - 1;

/// One element of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Packet { tag: u8, payload: &'a [u8] },
    Open(u8),
    Close(u8),
}

/// The datagram ended in the middle of a header or a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Walks the items of a datagram in order; yields one error and stops when
/// a header or payload runs past the end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Reader<'a> {
    pub fn new(datagram: &'a [u8]) -> Self {
        Reader {
            rest: datagram,
            failed: false,
        }
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Item<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let Some((header, after)) = self.rest.split_first_chunk::<HEADER_LEN>() else {
            self.failed = true;
            return Some(Err(Malformed));
        };
        let len = u16::from_le_bytes([header[0], header[1]]);
        let tag = header[2];
        let item = match len {
            FRAME_OPEN => {
                self.rest = after;
                Item::Open(tag)
            }
            FRAME_CLOSE => {
                self.rest = after;
                Item::Close(tag)
            }
            _ => {
                let Some((payload, rest)) = after.split_at_checked(len as usize) else {
                    self.failed = true;
                    return Some(Err(Malformed));
                };
                self.rest = rest;
                Item::Packet { tag, payload }
            }
        };
        Some(Ok(item))
    }
}

/// Reads a little-endian u32 payload; `None` unless it is exactly 4 bytes.
pub fn payload_u32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(payload.try_into().ok()?))
}

/// Reads a little-endian u64 payload; `None` unless it is exactly 8 bytes.
pub fn payload_u64(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.try_into().ok()?))
}

/// Reads a little-endian i32 payload; `None` unless it is exactly 4 bytes.
pub fn payload_i32(payload: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(payload.try_into().ok()?))
}

/// The buffer has no room for what was written; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Appends packets to a caller-provided buffer.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left, in bytes.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Drops everything written after `len` (to undo a partial frame).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn header(&mut self, len: u16, tag: u8, payload: &[u8]) -> Result<(), Full> {
        let end = self.len + HEADER_LEN + payload.len();
        if end > self.buf.len() {
            return Err(Full);
        }
        let out = &mut self.buf[self.len..end];
        out[..2].copy_from_slice(&len.to_le_bytes());
        out[2] = tag;
        out[HEADER_LEN..].copy_from_slice(payload);
        self.len = end;
        Ok(())
    }

    /// A plain packet. Payloads longer than `MAX_PAYLOAD` cannot be framed.
    pub fn packet(&mut self, tag: u8, payload: &[u8]) -> Result<(), Full> {
        if payload.len() > MAX_PAYLOAD {
            return Err(Full);
        }
        self.header(payload.len() as u16, tag, payload)
    }

    pub fn u8(&mut self, tag: u8, value: u8) -> Result<(), Full> {
        self.packet(tag, &[value])
    }

    pub fn u32(&mut self, tag: u8, value: u32) -> Result<(), Full> {
        self.packet(tag, &value.to_le_bytes())
    }

    pub fn u64(&mut self, tag: u8, value: u64) -> Result<(), Full> {
        self.packet(tag, &value.to_le_bytes())
    }

    pub fn i32(&mut self, tag: u8, value: i32) -> Result<(), Full> {
        self.packet(tag, &value.to_le_bytes())
    }

    pub fn open(&mut self, tag: u8) -> Result<(), Full> {
        self.header(FRAME_OPEN, tag, &[])
    }

    pub fn close(&mut self, tag: u8) -> Result<(), Full> {
        self.header(FRAME_CLOSE, tag, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(bytes: &[u8]) -> Vec<Result<Item<'_>, Malformed>> {
        Reader::new(bytes).collect()
    }

    #[test]
    fn decodes_packets_and_frames() {
        let bytes = [
            0xff, 0xff, 0x64, 0x02, 0x00, 0x65, b'a', b'b', 0x01, 0x00, 0x66, 0x04, 0xfe, 0xff,
            0x64,
        ];
        assert_eq!(
            items(&bytes),
            vec![
                Ok(Item::Open(0x64)),
                Ok(Item::Packet {
                    tag: 0x65,
                    payload: b"ab"
                }),
                Ok(Item::Packet {
                    tag: 0x66,
                    payload: &[4]
                }),
                Ok(Item::Close(0x64)),
            ]
        );
    }

    #[test]
    fn empty_datagram_has_no_items() {
        assert!(items(&[]).is_empty());
    }

    #[test]
    fn short_header_is_malformed() {
        assert_eq!(items(&[0x00]), vec![Err(Malformed)]);
        assert_eq!(items(&[0x00, 0x00]), vec![Err(Malformed)]);
    }

    #[test]
    fn length_past_the_end_is_malformed() {
        // The C nitro read the name out of its stale buffer here.
        assert_eq!(items(&[0x05, 0x00, 0x79]), vec![Err(Malformed)]);
        assert_eq!(
            items(&[0x00, 0x00, 0x50, 0x03, 0x00, 0x66, 1]),
            vec![
                Ok(Item::Packet {
                    tag: 0x50,
                    payload: &[]
                }),
                Err(Malformed)
            ]
        );
    }

    #[test]
    fn writer_round_trips() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        w.open(100).unwrap();
        w.packet(101, b"alpha").unwrap();
        w.u8(102, 4).unwrap();
        w.u32(103, 0x0ba7).unwrap();
        w.i32(104, -1).unwrap();
        w.close(100).unwrap();
        let got: Vec<_> = Reader::new(w.as_bytes()).map(Result::unwrap).collect();
        assert_eq!(got.len(), 6);
        assert_eq!(
            got[3],
            Item::Packet {
                tag: 103,
                payload: &[0xa7, 0x0b, 0, 0]
            }
        );
        assert_eq!(
            got[4],
            Item::Packet {
                tag: 104,
                payload: &[0xff; 4]
            }
        );
    }

    #[test]
    fn writer_refuses_what_does_not_fit() {
        let mut buf = [0u8; 5];
        let mut w = Writer::new(&mut buf);
        assert_eq!(w.packet(1, b"abc"), Err(Full));
        assert!(w.is_empty());
        w.packet(1, b"ab").unwrap();
        assert_eq!(w.remaining(), 0);
        assert_eq!(w.open(1), Err(Full));
    }

    #[test]
    fn payload_readers_want_exact_sizes() {
        assert_eq!(payload_u32(&[1, 0, 0, 0]), Some(1));
        assert_eq!(payload_u32(&[1, 0, 0]), None);
        assert_eq!(payload_i32(&[0xff, 0xff, 0xff, 0xff]), Some(-1));
    }
}
