//! Builds outgoing messages: attributes are appended, the length field kept current, integrity and
//! fingerprint computed last.

use std::net::SocketAddr;

use hmac::Mac;

use super::attr;
use super::integrity::{keyed_mac, HmacSha1, HmacSha256};
use super::message::{fingerprint_of, padded, Message};
use super::method::{Class, MessageType};
use super::{TransactionId, HEADER_LEN, MAGIC_COOKIE};

pub struct MessageBuilder {
    buf: Vec<u8>,
    tid: TransactionId,
}

impl MessageBuilder {
    pub fn new(typ: MessageType, tid: &TransactionId) -> Self {
        let mut buf = Vec::with_capacity(160);
        buf.extend_from_slice(&typ.to_u16().to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(tid);
        MessageBuilder { buf, tid: *tid }
    }

    /// A success or error response to `request`, same method and transaction id.
    pub fn response_to(request: &Message<'_>, class: Class) -> Self {
        let typ = MessageType::new(request.message_type().method, class);
        Self::new(typ, request.transaction_id())
    }

    fn set_length(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends an attribute; the value is padded to 4 bytes with zeros.
    pub fn attr(&mut self, code: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(self.buf.len() + padded(value.len()) - value.len(), 0);
        self.set_length();
        self
    }

    pub fn u32_attr(&mut self, code: u16, value: u32) -> &mut Self {
        self.attr(code, &value.to_be_bytes())
    }

    pub fn xor_address(&mut self, code: u16, addr: &SocketAddr) -> &mut Self {
        let mut value = [0u8; 20];
        let len = attr::xor_address_len(addr);
        attr::encode_xor_address(&mut value[..len], addr, &self.tid);
        self.attr(code, &value[..len])
    }

    /// A plain (not XORed) address, as MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS carry it.
    pub fn address(&mut self, code: u16, addr: &SocketAddr) -> &mut Self {
        let mut value = [0u8; 20];
        value[2..4].copy_from_slice(&addr.port().to_be_bytes());
        let len = match addr.ip() {
            std::net::IpAddr::V4(ip) => {
                value[1] = attr::FAMILY_IPV4;
                value[4..8].copy_from_slice(&ip.octets());
                8
            }
            std::net::IpAddr::V6(ip) => {
                value[1] = attr::FAMILY_IPV6;
                value[4..20].copy_from_slice(&ip.octets());
                20
            }
        };
        self.attr(code, &value[..len])
    }

    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        self.attr(attr::ERROR_CODE, &error_value(code, reason))
    }

    /// ERROR-CODE with the RFC's reason phrase.
    pub fn error(&mut self, e: super::ErrorCode) -> &mut Self {
        self.error_code(e.code(), e.reason())
    }

    pub fn unknown_attributes(&mut self, codes: &[u16]) -> &mut Self {
        let value: Vec<u8> = codes.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.attr(attr::UNKNOWN_ATTRIBUTES, &value)
    }

    /// MESSAGE-INTEGRITY: HMAC-SHA1 over the message so far, length counting the attribute.
    pub fn integrity_sha1(&mut self, key: &[u8]) -> &mut Self {
        let mac = keyed_mac::<HmacSha1>(&self.buf, self.buf.len() + 24, key).finalize().into_bytes();
        self.attr(attr::MESSAGE_INTEGRITY, &mac)
    }

    /// MESSAGE-INTEGRITY-SHA256, untruncated.
    pub fn integrity_sha256(&mut self, key: &[u8]) -> &mut Self {
        let mac = keyed_mac::<HmacSha256>(&self.buf, self.buf.len() + 36, key).finalize().into_bytes();
        self.attr(attr::MESSAGE_INTEGRITY_SHA256, &mac)
    }

    pub fn fingerprint(&mut self) -> &mut Self {
        let offset = self.buf.len();
        // Reserve the attribute first so the length field already counts it.
        self.attr(attr::FINGERPRINT, &[0; 4]);
        let crc = fingerprint_of(&self.buf, offset);
        self.buf[offset + 4..offset + 8].copy_from_slice(&crc.to_be_bytes());
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// ERROR-CODE value: two zero bytes, class (hundreds), number, reason phrase.
fn error_value(code: u16, reason: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + reason.len());
    v.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
    v.extend_from_slice(reason.as_bytes());
    v
}
