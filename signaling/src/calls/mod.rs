//! The call state machine, pure: no sockets, no clock, no store.
//!
//! A call's life is ringing -> accepted | rejected | busy | no-answer | cancelled, and accepted ->
//! ended. [`Machine`] takes a [`View`] of the records an input touches (loaded by the store), the
//! current time and one [`Input`], and returns the [`Reply`] for the requester, the [`Writes`] to
//! commit atomically and the [`Effect`]s (events to emit, webhooks) to perform once committed.
//! The in-memory and the Redis store run this same code; they differ only in how they load and
//! compare-and-set the records, so the transition logic exists once and is unit-tested here
//! without IO (the model is str0m/quinn-proto: time is an input, outputs are values).

mod effect;
mod input;
mod machine;
mod model;
mod transition;

pub use effect::{Effect, Event, Hook, HookKind, Target};
pub use input::{Ack, ErrorCode, Input, Reply, SdpKind, SyncEntry};
pub use machine::{Machine, Needs, Timing, View, Writes};
pub use model::{Call, CallId, CallState, CallType, Deadline, DeadlineKind, Role, SocketId, UserId};
pub use transition::Transition;

#[cfg(test)]
mod tests;
