//! The error codes this relay answers with (RFC 8489 section 14.8, RFC 8656 section 19, RFC 6062
//! section 6.3), each with its reason phrase, so a refusal names its meaning instead of a number.

/// An ERROR-CODE the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    TryAlternate,
    BadRequest,
    Unauthorized,
    Forbidden,
    UnknownAttribute,
    AllocationMismatch,
    StaleNonce,
    AddressFamilyNotSupported,
    WrongCredentials,
    UnsupportedTransportProtocol,
    PeerAddressFamilyMismatch,
    ConnectionAlreadyExists,
    ConnectionTimeoutOrFailure,
    AllocationQuotaReached,
    ServerError,
    InsufficientCapacity,
}

impl ErrorCode {
    /// The number on the wire.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::TryAlternate => 300,
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::UnknownAttribute => 420,
            ErrorCode::AllocationMismatch => 437,
            ErrorCode::StaleNonce => 438,
            ErrorCode::AddressFamilyNotSupported => 440,
            ErrorCode::WrongCredentials => 441,
            ErrorCode::UnsupportedTransportProtocol => 442,
            ErrorCode::PeerAddressFamilyMismatch => 443,
            ErrorCode::ConnectionAlreadyExists => 446,
            ErrorCode::ConnectionTimeoutOrFailure => 447,
            ErrorCode::AllocationQuotaReached => 486,
            ErrorCode::ServerError => 500,
            ErrorCode::InsufficientCapacity => 508,
        }
    }

    /// The RFC's reason phrase: short, because error responses to unauthenticated requests should
    /// not be larger than needed.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorCode::TryAlternate => "Try Alternate",
            ErrorCode::BadRequest => "Bad Request",
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnknownAttribute => "Unknown Attribute",
            ErrorCode::AllocationMismatch => "Allocation Mismatch",
            ErrorCode::StaleNonce => "Stale Nonce",
            ErrorCode::AddressFamilyNotSupported => "Address Family not Supported",
            ErrorCode::WrongCredentials => "Wrong Credentials",
            ErrorCode::UnsupportedTransportProtocol => "Unsupported Transport Protocol",
            ErrorCode::PeerAddressFamilyMismatch => "Peer Address Family Mismatch",
            ErrorCode::ConnectionAlreadyExists => "Connection Already Exists",
            ErrorCode::ConnectionTimeoutOrFailure => "Connection Timeout or Failure",
            ErrorCode::AllocationQuotaReached => "Allocation Quota Reached",
            ErrorCode::ServerError => "Server Error",
            ErrorCode::InsufficientCapacity => "Insufficient Capacity",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_sit_in_their_rfc_classes() {
        for (e, class) in [
            (ErrorCode::TryAlternate, 3),
            (ErrorCode::BadRequest, 4),
            (ErrorCode::StaleNonce, 4),
            (ErrorCode::InsufficientCapacity, 5),
        ] {
            assert_eq!(e.code() / 100, class, "{e:?}");
            assert!(!e.reason().is_empty());
        }
    }
}
