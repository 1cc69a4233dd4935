//! Which Redis errors mean "Redis is not there now" (fail over, fall back, look for the
//! primary) as opposed to a bad command or a script bug, which retrying elsewhere only hides.

/// Whether `error` means Redis cannot be reached or cannot take writes now.
pub fn is_outage(error: &redis::RedisError) -> bool {
    use redis::ServerErrorKind as S;
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            redis::ErrorKind::Server(S::BusyLoading | S::ReadOnly | S::MasterDown | S::ClusterDown | S::TryAgain)
                | redis::ErrorKind::ClusterConnectionNotFound
                | redis::ErrorKind::MasterNameNotFoundBySentinel
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_and_read_only_are_outages_a_bad_command_is_not() {
        let refused: redis::RedisError = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into();
        assert!(is_outage(&refused));
        let read_only =
            redis::RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly), "READONLY"));
        assert!(is_outage(&read_only));
        let typo = redis::RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError), "ERR"));
        assert!(!is_outage(&typo));
        assert!(!is_outage(&redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "type"))));
    }
}
