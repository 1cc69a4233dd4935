//! What the machine asks the IO shell to do after a transition is committed.

use serde_json::Value;

use super::model::{CallId, CallType, SocketId, UserId};

/// Server -> client events, in the messenger's naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The caller's SDP offer (to every callee device).
    Offer,
    /// The callee's SDP answer (to the caller's device).
    Answer,
    /// The callee declined.
    Reject,
    /// An accepted call ended.
    End,
    /// A trickled ICE candidate from the peer.
    IceCandidate,
    /// A renegotiation offer or answer from the peer of an accepted call.
    Renegotiate,
    /// Nobody answered in time (to the caller).
    NoAnswer,
    /// The callee is in another call (to the caller).
    Busy,
    /// The call stopped ringing: caller gave up, timeout, glare, declined on another device.
    Cancelled,
    /// Another of the callee's devices answered.
    AnsweredElsewhere,
    /// A request failed (also sent as the error ack).
    Error,
}

impl Event {
    /// The Socket.IO event name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Offer => "call:offer",
            Self::Answer => "call:answer",
            Self::Reject => "call:reject",
            Self::End => "call:end",
            Self::IceCandidate => "call:ice-candidate",
            Self::Renegotiate => "call:renegotiate",
            Self::NoAnswer => "call:no-answer",
            Self::Busy => "call:busy",
            Self::Cancelled => "call:cancelled",
            Self::AnsweredElsewhere => "call:answered-elsewhere",
            Self::Error => "call:error",
        }
    }
}

/// Who receives an event. Users and sockets are both Socket.IO rooms, so delivery works across
/// instances through the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every device of a user.
    User(UserId),
    /// Every device of a user but one.
    UserExcept(UserId, SocketId),
    /// One device.
    Socket(SocketId),
}

/// Why the backend is told about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// A call is ringing for a user with no connected device: push it.
    Offer,
    /// The callee missed a call (no answer, caller cancelled, busy, glare loser excluded).
    Missed,
}

impl HookKind {
    /// The `event` field of the webhook body.
    pub fn name(self) -> &'static str {
        match self {
            Self::Offer => "call.offer",
            Self::Missed => "call.missed",
        }
    }
}

/// A webhook payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// Why.
    pub kind: HookKind,
    /// Which call.
    pub call_id: CallId,
    /// Caller.
    pub caller: UserId,
    /// Callee, the user to push to.
    pub callee: UserId,
    /// Chat.
    pub chat_id: String,
    /// Audio or video.
    pub call_type: CallType,
    /// The call's terminal reason for `Missed`.
    pub reason: Option<String>,
    /// Unix milliseconds of the transition.
    pub at_ms: u64,
}

/// One thing to do after commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Emit `event` with `data` (always carrying `callId`) to `to`.
    Emit {
        /// Recipients.
        to: Target,
        /// Event name.
        event: Event,
        /// JSON payload.
        data: Value,
    },
    /// Post `hook` if `user` has no connected device (checked cluster-wide by the shell).
    PushIfOffline {
        /// The callee.
        user: UserId,
        /// What to post.
        hook: Hook,
    },
    /// Post `hook`.
    Webhook(Hook),
}
