//! ChannelData framing (RFC 8656 section 12.4): the 4-byte header that replaces a 36+ byte Send or
//! Data indication once a channel is bound. This is the relay's hot path.

/// Channel numbers a client may bind. RFC 8656 section 12 narrowed the range to 0x4000-0x4FFF,
/// but RFC 5766 clients still pick from the old range, and coturn's client library (its test
/// client among them) picks from 0x4000-0x7FFF, 0x7FFF included, which coturn accepts: refusing
/// any of them would break calls for nothing, since the numbers are unambiguous either way.
pub const CHANNEL_MIN: u16 = 0x4000;
pub const CHANNEL_MAX: u16 = 0x7FFF;
pub const HEADER_LEN: usize = 4;

pub fn is_valid_channel(number: u16) -> bool {
    (CHANNEL_MIN..=CHANNEL_MAX).contains(&number)
}

/// First two bits 0b01 mark ChannelData; STUN starts with 0b00.
pub fn looks_like_channel_data(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && data[0] & 0xC0 == 0x40
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelDataError {
    #[error("shorter than the ChannelData header")]
    TooShort,
    #[error("channel number {0:#06x} is outside 0x4000-0x7FFF")]
    BadChannel(u16),
    #[error("length field {declared} exceeds the {available} bytes present")]
    BadLength { declared: usize, available: usize },
}

/// Splits a ChannelData message into channel number and application data. Trailing bytes beyond the
/// length field are padding (UDP may carry it, RFC 8656 12.5) and are ignored.
pub fn parse(data: &[u8]) -> Result<(u16, &[u8]), ChannelDataError> {
    if data.len() < HEADER_LEN {
        return Err(ChannelDataError::TooShort);
    }
    let channel = u16::from_be_bytes([data[0], data[1]]);
    if !is_valid_channel(channel) {
        return Err(ChannelDataError::BadChannel(channel));
    }
    let declared = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let available = data.len() - HEADER_LEN;
    if declared > available {
        return Err(ChannelDataError::BadLength { declared, available });
    }
    Ok((channel, &data[HEADER_LEN..HEADER_LEN + declared]))
}

/// Writes the header in front of `len` payload bytes that already sit at `buf[4..4 + len]`.
pub fn write_header(buf: &mut [u8], channel: u16, len: usize) {
    buf[..2].copy_from_slice(&channel.to_be_bytes());
    buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_ignores_padding() {
        let msg = [0x40, 0x01, 0x00, 0x03, b'a', b'b', b'c', 0];
        assert_eq!(parse(&msg).unwrap(), (0x4001, &b"abc"[..]));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse(&[0x40, 0]), Err(ChannelDataError::TooShort));
        assert_eq!(parse(&[0x7F, 0xFF, 0, 0]), Ok((0x7FFF, &[][..])), "coturn's clients use 0x7FFF");
        assert_eq!(parse(&[0x80, 0x00, 0, 0]), Err(ChannelDataError::BadChannel(0x8000)));
        assert_eq!(parse(&[0x3F, 0xFF, 0, 0]), Err(ChannelDataError::BadChannel(0x3FFF)));
        assert_eq!(parse(&[0x50, 0, 0, 0]), Ok((0x5000, &[][..])));
        assert_eq!(parse(&[0x40, 0, 0, 5, 1]), Err(ChannelDataError::BadLength { declared: 5, available: 1 }));
    }

    #[test]
    fn header_round_trip() {
        let mut buf = [0u8; 8];
        buf[4..].copy_from_slice(b"data");
        write_header(&mut buf, 0x4FFF, 4);
        assert_eq!(parse(&buf).unwrap(), (0x4FFF, &b"data"[..]));
        assert!(looks_like_channel_data(&buf));
    }
}
