//! The data path's batched UDP calls (`recvmmsg`, `sendmmsg` with GSO) live in the `udp-batch`
//! crate, which the bench's load generator shares; this names them where the driver looks.

pub(super) use udp_batch::{Out, RecvBatch, SendQueue};
