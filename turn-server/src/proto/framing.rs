//! Splitting a TCP or TLS byte stream into STUN messages and ChannelData frames (RFC 8656 12.5:
//! over streams ChannelData is padded to a multiple of 4 bytes; STUN lengths already are).

use super::stun::{HEADER_LEN, MAGIC_COOKIE};

/// Largest frame accepted from a stream: a STUN message or ChannelData is at most 4 + 65535 bytes
/// (plus padding); anything claiming more is not TURN.
pub const MAX_FRAME: usize = HEADER_LEN + 65_535 + 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The first two bits are neither STUN (00) nor ChannelData (01): the peer does not speak TURN,
    /// and no later frame boundary can be trusted, so the connection must be closed.
    #[error("stream does not carry STUN or ChannelData (first byte {0:#04x})")]
    NotTurn(u8),
}

/// Length of the frame at the start of `buf`, if enough bytes are there to know it and the whole
/// frame has arrived. `Ok(None)` asks for more bytes.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FramingError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let len = match first >> 6 {
        0b00 => {
            if buf.len() < 8 {
                return Ok(None);
            }
            // Without the magic cookie it is not STUN (a TLS ClientHello on a plain port, say), and
            // its length field would make us wait for bytes that never come.
            if buf[4..8] != MAGIC_COOKIE.to_be_bytes() {
                return Err(FramingError::NotTurn(first));
            }
            HEADER_LEN + usize::from(u16::from_be_bytes([buf[2], buf[3]]))
        }
        0b01 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let data = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            4 + ((data + 3) & !3)
        }
        _ => return Err(FramingError::NotTurn(first)),
    };
    Ok((buf.len() >= len).then_some(len))
}

/// Bytes to append after a ChannelData message of `len` total bytes when it goes over a stream.
pub fn stream_padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_frames_by_header_length() {
        let mut msg = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        msg.resize(28, 0);
        assert_eq!(frame_len(&msg[..7]), Ok(None));
        assert_eq!(frame_len(&msg[..27]), Ok(None));
        assert_eq!(frame_len(&msg), Ok(Some(28)));
        let mut two = msg.clone();
        two.extend_from_slice(&msg);
        assert_eq!(frame_len(&two), Ok(Some(28)));
    }

    #[test]
    fn channel_data_frames_include_padding() {
        let frame = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(frame_len(&frame[..9]), Ok(None));
        assert_eq!(frame_len(&frame), Ok(Some(12)));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x00]), Ok(Some(4)));
        assert_eq!(stream_padding(9), 3);
        assert_eq!(stream_padding(12), 0);
    }

    #[test]
    fn other_protocols_are_refused() {
        // A TLS ClientHello starts like STUN but has no magic cookie.
        assert_eq!(frame_len(&[0x16, 0x03, 0x01]), Ok(None));
        assert_eq!(frame_len(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]), Err(FramingError::NotTurn(0x16)));
        assert_eq!(frame_len(&[0x80]), Err(FramingError::NotTurn(0x80)));
        assert_eq!(frame_len(&[]), Ok(None));
    }
}
