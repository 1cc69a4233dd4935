//! What changed in a call's life, as facts derived from the machine's writes: the shell counts
//! them (metrics) only once the writes are committed, so with several instances each transition
//! is counted by exactly the instance that applied it, and a retried (conflicting) run counts
//! nothing. Durations come from the records' own timestamps and the input's `now`, never a clock.

use super::model::{CallId, CallState};

/// One call moving from one state to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The call.
    pub call_id: CallId,
    /// The state before (`None`: the call did not exist, e.g. a new ringing or busy call).
    pub from: Option<CallState>,
    /// The state after.
    pub to: CallState,
    /// The terminal reason written with it (`"caller-cancelled"`, `"glare"`, `"hangup"`, ...).
    pub reason: Option<String>,
    /// For a call that stopped ringing: milliseconds from the initiate to this transition.
    pub ringing_ms: Option<u64>,
    /// For an accepted call that ended: milliseconds from the answer to the end.
    pub talking_ms: Option<u64>,
}
