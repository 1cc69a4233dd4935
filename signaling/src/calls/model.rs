//! The records the state machine reads and writes, as stored (JSON) in memory or in Redis.

use serde::{Deserialize, Serialize};

/// A call id, chosen by the caller (a UUID) so that a retried `call:initiate` is idempotent.
pub type CallId = String;
/// The messenger's user id, from the JWT.
pub type UserId = String;
/// A Socket.IO socket id; each socket is also a room of that name, so it is reachable from any
/// instance through the adapter.
pub type SocketId = String;

/// Audio or video, as the messenger names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallType {
    /// Voice only.
    Audio,
    /// Voice and video.
    Video,
}

/// Where a call is in its life. Everything but `Ringing` and `Accepted` is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallState {
    /// Offered, the callee's devices ring.
    Ringing,
    /// One callee device answered.
    Accepted,
    /// The callee declined.
    Rejected,
    /// The callee was already in a call.
    Busy,
    /// Nobody answered within the ring timeout.
    NoAnswer,
    /// The caller gave up, dropped, or lost a glare.
    Cancelled,
    /// An accepted call finished.
    Ended,
}

impl CallState {
    /// Still holds its parties' slots.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Ringing | Self::Accepted)
    }

    /// The wire name (`"no-answer"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ringing => "ringing",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Cancelled => "cancelled",
            Self::Ended => "ended",
        }
    }
}

/// Which side of a call a user is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Started the call.
    Caller,
    /// Was called.
    Callee,
}

/// One call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Caller-chosen id.
    pub id: CallId,
    /// Who called.
    pub caller: UserId,
    /// Who is called.
    pub callee: UserId,
    /// The messenger's chat the call belongs to (opaque here).
    pub chat_id: String,
    /// Audio or video.
    pub call_type: CallType,
    /// Where it is.
    pub state: CallState,
    /// Why it reached a terminal state, e.g. `"hangup"`, `"no-answer"`, `"glare"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The caller's device.
    pub caller_socket: SocketId,
    /// The callee device that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee_socket: Option<SocketId>,
    /// The caller's offer, kept while ringing so a device that connects late still gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<serde_json::Value>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// When it stops ringing.
    pub ring_deadline_ms: u64,
    /// When a device answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at_ms: Option<u64>,
    /// When the caller's socket dropped and has not come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_lost_at_ms: Option<u64>,
    /// When the answering callee socket dropped and has not come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee_lost_at_ms: Option<u64>,
    /// The store may forget the record (and its slots) after this; refreshed on every write.
    pub keep_until_ms: u64,
}

impl Call {
    /// `user`'s role, if a party.
    pub fn role_of(&self, user: &str) -> Option<Role> {
        if self.caller == user {
            Some(Role::Caller)
        } else if self.callee == user {
            Some(Role::Callee)
        } else {
            None
        }
    }

    /// The other party's user id.
    pub fn peer_of(&self, role: Role) -> &UserId {
        match role {
            Role::Caller => &self.callee,
            Role::Callee => &self.caller,
        }
    }
}

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadlineKind {
    /// The ring timeout.
    Ring,
    /// The reconnect grace of a party whose socket dropped.
    Grace(Role),
}

/// A timer kept by the store (a sorted set in Redis) so any live instance can fire it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Deadline {
    /// The call it belongs to.
    pub call_id: CallId,
    /// What fires.
    pub kind: DeadlineKind,
}

impl Deadline {
    /// The store's member name, `ring|<id>` or `grace-caller|<id>`.
    pub fn member(&self) -> String {
        let kind = match self.kind {
            DeadlineKind::Ring => "ring",
            DeadlineKind::Grace(Role::Caller) => "grace-caller",
            DeadlineKind::Grace(Role::Callee) => "grace-callee",
        };
        format!("{kind}|{}", self.call_id)
    }

    /// Parses [`member`](Self::member)'s output.
    pub fn from_member(member: &str) -> Option<Self> {
        let (kind, call_id) = member.split_once('|')?;
        let kind = match kind {
            "ring" => DeadlineKind::Ring,
            "grace-caller" => DeadlineKind::Grace(Role::Caller),
            "grace-callee" => DeadlineKind::Grace(Role::Callee),
            _ => return None,
        };
        (!call_id.is_empty()).then(|| Self { call_id: call_id.to_owned(), kind })
    }
}
