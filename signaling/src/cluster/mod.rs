//! Redis, for running several instances: the shared call store (compare-and-set commits and
//! leased deadlines as Lua scripts), the pub/sub driver the Socket.IO Redis adapter uses to
//! share rooms, the node registry that reaps the sockets of instances that died, and the up/down
//! state they share so that an outage degrades to local calls. Without `redis_url` none of
//! this runs and the memory store is used instead.

mod adapter_driver;
mod health;
mod nodes;
mod redis_store;

pub use adapter_driver::{DriverError, ReconnectingDriver};
pub use health::RedisHealth;
pub use nodes::{NodeRegistry, ALIVE_TTL, HEARTBEAT};
pub use redis_store::RedisStore;
