//! Zero-copy view of one STUN message, validated in a single pass.

use super::attr;
use super::method::MessageType;
use super::{TransactionId, HEADER_LEN, MAGIC_COOKIE};

/// Why bytes are not an acceptable STUN message. Every variant means "drop silently": RFC 8489
/// answers only well-formed requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("not a STUN message (top bits or magic cookie)")]
    NotStun,
    #[error("message length field disagrees with the datagram or is not a multiple of 4")]
    BadLength,
    #[error("an attribute runs past the end of the message")]
    AttributeOverrun,
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    #[error("FINGERPRINT does not match")]
    BadFingerprint,
}

/// Where message integrity sits, if the message has any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityAttr {
    /// MESSAGE-INTEGRITY (HMAC-SHA1) whose attribute header starts at this offset.
    Sha1 { offset: usize },
    /// MESSAGE-INTEGRITY-SHA256 at this offset with this (possibly truncated) value length.
    Sha256 { offset: usize, len: usize },
}

/// A parsed message borrowing the datagram it came from.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    raw: &'a [u8],
    typ: MessageType,
    tid: TransactionId,
    /// Attributes before this offset count; the rest (after an integrity attribute) are ignored.
    counted_end: usize,
    integrity: Option<IntegrityAttr>,
    has_fingerprint: bool,
}

/// One attribute: type code and value (without padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    pub code: u16,
    pub value: &'a [u8],
    /// Where `value` starts in the message, so a caller can name it by bounds (Send indications'
    /// DATA is relayed from the driver's buffer, not copied).
    pub start: usize,
}

/// Cheap test used to demultiplex STUN from ChannelData on a shared socket.
pub fn looks_like_stun(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && data[0] & 0xC0 == 0 && data[4..8] == MAGIC_COOKIE.to_be_bytes()
}

impl<'a> Message<'a> {
    /// Parses exactly one message occupying all of `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self, ParseError> {
        if data.len() < HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        if !looks_like_stun(data) {
            return Err(ParseError::NotStun);
        }
        let body_len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        if body_len % 4 != 0 || HEADER_LEN + body_len != data.len() {
            return Err(ParseError::BadLength);
        }
        let typ = MessageType::from_u16(u16::from_be_bytes([data[0], data[1]]));
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&data[8..20]);

        let mut counted_end = data.len();
        let mut integrity = None;
        let mut has_fingerprint = false;
        let mut offset = HEADER_LEN;
        while offset < data.len() {
            let (code, value_len) = attr_header(data, offset)?;
            let next = offset + 4 + padded(value_len);
            if next > data.len() {
                return Err(ParseError::AttributeOverrun);
            }
            if has_fingerprint {
                return Err(ParseError::FingerprintNotLast);
            }
            match code {
                attr::MESSAGE_INTEGRITY if integrity.is_none() => {
                    integrity = Some(IntegrityAttr::Sha1 { offset });
                    counted_end = counted_end.min(offset);
                }
                attr::MESSAGE_INTEGRITY_SHA256 if !matches!(integrity, Some(IntegrityAttr::Sha256 { .. })) => {
                    // RFC 8489 14.6: SHA-256 integrity wins when both are present.
                    integrity = Some(IntegrityAttr::Sha256 { offset, len: value_len });
                    counted_end = counted_end.min(offset);
                }
                attr::FINGERPRINT => {
                    if value_len != 4 {
                        return Err(ParseError::BadFingerprint);
                    }
                    check_fingerprint(data, offset)?;
                    has_fingerprint = true;
                    counted_end = counted_end.min(offset);
                }
                _ => {}
            }
            offset = next;
        }
        Ok(Message { raw: data, typ, tid, counted_end, integrity, has_fingerprint })
    }

    pub fn message_type(&self) -> MessageType {
        self.typ
    }

    pub fn transaction_id(&self) -> &TransactionId {
        &self.tid
    }

    /// The whole message as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn integrity(&self) -> Option<IntegrityAttr> {
        self.integrity
    }

    pub fn has_fingerprint(&self) -> bool {
        self.has_fingerprint
    }

    /// Attributes that count: those before MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT.
    pub fn attributes(&self) -> AttrIter<'a> {
        AttrIter { raw: self.raw, offset: HEADER_LEN, end: self.counted_end }
    }

    /// Value of the first counted attribute of this type (RFC 8489: later duplicates are ignored).
    pub fn get(&self, code: u16) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.code == code).map(|a| a.value)
    }

    pub fn has(&self, code: u16) -> bool {
        self.get(code).is_some()
    }

    /// Comprehension-required attributes we do not understand (for 420 UNKNOWN-ATTRIBUTES).
    pub fn unknown_required(&self) -> impl Iterator<Item = u16> + 'a {
        self.attributes().map(|a| a.code).filter(|&c| c < 0x8000 && !attr::is_understood(c))
    }
}

/// Iterator over attributes of an already validated message.
pub struct AttrIter<'a> {
    raw: &'a [u8],
    offset: usize,
    end: usize,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = RawAttr<'a>;

    fn next(&mut self) -> Option<RawAttr<'a>> {
        if self.offset >= self.end {
            return None;
        }
        let (code, len) = attr_header(self.raw, self.offset).ok()?;
        let start = self.offset + 4;
        let value = self.raw.get(start..start + len)?;
        self.offset += 4 + padded(len);
        Some(RawAttr { code, value, start })
    }
}

fn attr_header(data: &[u8], offset: usize) -> Result<(u16, usize), ParseError> {
    let h = data.get(offset..offset + 4).ok_or(ParseError::AttributeOverrun)?;
    Ok((u16::from_be_bytes([h[0], h[1]]), usize::from(u16::from_be_bytes([h[2], h[3]]))))
}

pub(crate) fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// FINGERPRINT = CRC-32 of the message up to the attribute, with the length field already counting
/// it, XOR 0x5354554e (RFC 8489 14.7).
pub(crate) fn fingerprint_of(data: &[u8], offset: usize) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&data[..2]);
    crc.update(&((offset + 8 - HEADER_LEN) as u16).to_be_bytes());
    crc.update(&data[4..offset]);
    crc.finalize() ^ 0x5354_554E
}

fn check_fingerprint(data: &[u8], offset: usize) -> Result<(), ParseError> {
    let got = data.get(offset + 4..offset + 8).ok_or(ParseError::AttributeOverrun)?;
    if got == fingerprint_of(data, offset).to_be_bytes() {
        Ok(())
    } else {
        Err(ParseError::BadFingerprint)
    }
}
