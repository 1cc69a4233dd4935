//! STUN message codec (RFC 8489, RFC 8656 attributes), zero-copy on the parse side.
//!
//! Written here rather than taken from the webrtc-rs `stun` crate because the relay needs what that
//! crate's owned, allocating `Message` does not give: a single validating pass over borrowed bytes,
//! RFC 8489's rule that attributes after MESSAGE-INTEGRITY are ignored, integrity checked without
//! copying the message, and Send/Data indications handled without a heap allocation per packet.

pub mod attr;
pub mod builder;
pub mod error_code;
pub mod integrity;
pub mod message;
pub mod method;

pub use builder::MessageBuilder;
pub use error_code::ErrorCode;
pub use message::{Message, ParseError};
pub use method::{Class, MessageType, Method};

/// The fixed value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header.
pub const HEADER_LEN: usize = 20;

/// A 96-bit transaction id.
pub type TransactionId = [u8; 12];

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
