//! Redis, for running several instances: the shared call store (compare-and-set commits and
//! leased deadlines as Lua scripts), the pub/sub driver the Socket.IO Redis adapter uses to
//! share rooms, the node registry that reaps the sockets of instances that died, and the link
//! state they share so that an outage degrades to local calls. Without `redis_url` none of
//! this runs and the memory store is used instead.

mod adapter_driver;
mod link;
mod nodes;
mod redis_store;

pub use adapter_driver::{DriverError, ReconnectingDriver};
pub use link::{is_outage, RedisLink};
pub use nodes::{NodeRegistry, ALIVE_TTL, HEARTBEAT};
pub use redis_store::RedisStore;

/// How the store's and the registry's Redis connections behave in an outage. The defaults of
/// `redis` (no response timeout, six reconnect attempts backing off to seconds) make every
/// request wait on a dead Redis; with these a request fails within about two seconds, is
/// acknowledged `unavailable`, and the next one tries to reconnect again.
pub fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(1)))
        .set_response_timeout(Some(std::time::Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(std::time::Duration::from_millis(500))
}

/// The adapter needs RESP3 (pub/sub on the same connection); add it to the URL unless given.
pub fn resp3_url(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp3_is_requested_once() {
        assert_eq!(resp3_url("redis://h:1/0"), "redis://h:1/0?protocol=resp3");
        assert_eq!(resp3_url("redis://h:1/0?x=1"), "redis://h:1/0?x=1&protocol=resp3");
        assert_eq!(resp3_url("redis://h?protocol=resp3"), "redis://h?protocol=resp3");
    }
}
