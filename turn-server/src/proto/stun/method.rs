//! Message type: the method and class packed into 14 bits (RFC 8489 section 5).

/// STUN/TURN methods this relay knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Binding,
    Allocate,
    Refresh,
    Send,
    Data,
    CreatePermission,
    ChannelBind,
    /// RFC 6062 TCP allocations.
    Connect,
    ConnectionBind,
    ConnectionAttempt,
    /// Any other 12-bit method value; answered with 400 when it arrives as a request.
    Other(u16),
}

impl Method {
    pub fn code(self) -> u16 {
        match self {
            Method::Binding => 0x001,
            Method::Allocate => 0x003,
            Method::Refresh => 0x004,
            Method::Send => 0x006,
            Method::Data => 0x007,
            Method::CreatePermission => 0x008,
            Method::ChannelBind => 0x009,
            Method::Connect => 0x00A,
            Method::ConnectionBind => 0x00B,
            Method::ConnectionAttempt => 0x00C,
            Method::Other(code) => code & 0x0FFF,
        }
    }

    pub fn from_code(code: u16) -> Method {
        match code {
            0x001 => Method::Binding,
            0x003 => Method::Allocate,
            0x004 => Method::Refresh,
            0x006 => Method::Send,
            0x007 => Method::Data,
            0x008 => Method::CreatePermission,
            0x009 => Method::ChannelBind,
            0x00A => Method::Connect,
            0x00B => Method::ConnectionBind,
            0x00C => Method::ConnectionAttempt,
            other => Method::Other(other),
        }
    }

    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Method::Binding => "Binding",
            Method::Allocate => "Allocate",
            Method::Refresh => "Refresh",
            Method::Send => "Send",
            Method::Data => "Data",
            Method::CreatePermission => "CreatePermission",
            Method::ChannelBind => "ChannelBind",
            Method::Connect => "Connect",
            Method::ConnectionBind => "ConnectionBind",
            Method::ConnectionAttempt => "ConnectionAttempt",
            Method::Other(_) => "Unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    pub method: Method,
    pub class: Class,
}

impl MessageType {
    pub const fn new(method: Method, class: Class) -> Self {
        MessageType { method, class }
    }

    /// Packs method bits M0-M11 and class bits C0-C1 as `M11..M7 C1 M6..M4 C0 M3..M0`.
    pub fn to_u16(self) -> u16 {
        let m = self.method.code();
        let c: u16 = match self.class {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        };
        (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
    }

    /// Inverse of [`MessageType::to_u16`]; the two top bits must already be known to be zero.
    pub fn from_u16(v: u16) -> Self {
        let m = (v & 0x000F) | ((v >> 1) & 0x0070) | ((v >> 2) & 0x0F80);
        let c = ((v >> 4) & 0b01) | ((v >> 7) & 0b10);
        let class = match c {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        };
        MessageType { method: Method::from_code(m), class }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_type_values() {
        assert_eq!(MessageType::new(Method::Binding, Class::Request).to_u16(), 0x0001);
        assert_eq!(MessageType::new(Method::Binding, Class::Success).to_u16(), 0x0101);
        assert_eq!(MessageType::new(Method::Binding, Class::Error).to_u16(), 0x0111);
        assert_eq!(MessageType::new(Method::Allocate, Class::Request).to_u16(), 0x0003);
        assert_eq!(MessageType::new(Method::Allocate, Class::Error).to_u16(), 0x0113);
        assert_eq!(MessageType::new(Method::Send, Class::Indication).to_u16(), 0x0016);
        assert_eq!(MessageType::new(Method::Data, Class::Indication).to_u16(), 0x0017);
        assert_eq!(MessageType::new(Method::ChannelBind, Class::Success).to_u16(), 0x0109);
    }

    #[test]
    fn round_trips_every_method_and_class() {
        for code in 0..0x1000u16 {
            for class in [Class::Request, Class::Indication, Class::Success, Class::Error] {
                let t = MessageType::new(Method::from_code(code), class);
                assert_eq!(MessageType::from_u16(t.to_u16()), t);
            }
        }
    }
}
