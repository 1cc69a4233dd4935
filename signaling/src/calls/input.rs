//! What the machine is asked to do, and what it answers the requester.

use serde::Serialize;
use serde_json::{json, Value};

use super::model::{CallId, CallState, CallType, DeadlineKind, Role, SocketId, UserId};

/// One request or happening. The gateway has already authenticated `user` and validated shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `call:initiate`: `user` calls `callee`, optionally with the offer SDP right away.
    Initiate {
        /// Caller-chosen id.
        call_id: CallId,
        /// Caller.
        user: UserId,
        /// Caller's socket.
        sid: SocketId,
        /// Who to call.
        callee: UserId,
        /// Chat.
        chat_id: String,
        /// Audio or video.
        call_type: CallType,
        /// The offer, when sent together with the initiate.
        sdp: Option<Value>,
    },
    /// `call:offer`: the caller's SDP.
    Offer {
        /// Call.
        call_id: CallId,
        /// Sender.
        user: UserId,
        /// Sender's socket.
        sid: SocketId,
        /// Opaque SDP (string or `RTCSessionDescriptionInit`).
        sdp: Value,
    },
    /// `call:answer`: a callee device answers.
    Answer {
        /// Call.
        call_id: CallId,
        /// Sender.
        user: UserId,
        /// Sender's socket.
        sid: SocketId,
        /// Opaque SDP.
        sdp: Value,
    },
    /// `call:reject`: a callee device declines.
    Reject {
        /// Call.
        call_id: CallId,
        /// Sender.
        user: UserId,
        /// Sender's socket.
        sid: SocketId,
    },
    /// `call:end`: hang up (or cancel while ringing).
    End {
        /// Call.
        call_id: CallId,
        /// Sender.
        user: UserId,
        /// Sender's socket.
        sid: SocketId,
    },
    /// `call:ice-candidate`: forwarded to the peer.
    Candidate {
        /// Call.
        call_id: CallId,
        /// Sender.
        user: UserId,
        /// Sender's socket.
        sid: SocketId,
        /// Opaque candidate.
        candidate: Value,
    },
    /// `call:renegotiate`: a party of an accepted call sends a new offer or answer (an ICE
    /// restart after a network change); forwarded to the other party, the state does not change.
    Renegotiate {
        /// Call.
        call_id: CallId,
        /// Sender.
        user: UserId,
        /// Sender's socket.
        sid: SocketId,
        /// Offer or answer.
        kind: SdpKind,
        /// Opaque SDP.
        sdp: Value,
    },
    /// `call:sync`: a (re)connected socket asks for its calls and, if it was the party in a
    /// call whose socket dropped (or names the call in `resume`), takes it over.
    Sync {
        /// Sender.
        user: UserId,
        /// Sender's socket.
        sid: SocketId,
        /// Calls the client says it is in.
        resume: Vec<CallId>,
    },
    /// A socket connected: deliver a pending offer to a callee device.
    Connected {
        /// User.
        user: UserId,
        /// New socket.
        sid: SocketId,
    },
    /// A socket is gone: start the reconnect grace of a call it was a party in.
    Disconnected {
        /// User.
        user: UserId,
        /// Gone socket.
        sid: SocketId,
    },
    /// A deadline claimed from the store is due.
    Deadline {
        /// Call.
        call_id: CallId,
        /// Which one.
        kind: DeadlineKind,
    },
}

/// Which half of an offer/answer exchange a `call:renegotiate` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// A new offer (from either party; clients pick one side to avoid crossing offers).
    Offer,
    /// The answer to the peer's renegotiation offer.
    Answer,
}

impl SdpKind {
    /// Wire value of `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
        }
    }
}

/// Error codes in acks and `call:error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed payload or missing field.
    BadRequest,
    /// Payload larger than `max_event_bytes`.
    PayloadTooLarge,
    /// No such call (or it was forgotten).
    NotFound,
    /// The call belongs to other users, or this socket may not do that.
    Forbidden,
    /// The call is not in a state that allows this; nothing happened.
    InvalidState,
    /// The callee is in another call.
    Busy,
    /// Both called each other; the other call won (see `winner`).
    Glare,
    /// The caller is already in a call.
    AlreadyInCall,
    /// Calling oneself.
    SelfCall,
    /// Another device of the callee answered first.
    AnsweredElsewhere,
    /// Store unreachable or contention; retry.
    Unavailable,
    /// An event name the service does not handle.
    UnknownEvent,
}

impl ErrorCode {
    /// Wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::InvalidState => "invalid_state",
            Self::Busy => "busy",
            Self::Glare => "glare",
            Self::AlreadyInCall => "already_in_call",
            Self::SelfCall => "self_call",
            Self::AnsweredElsewhere => "answered_elsewhere",
            Self::Unavailable => "unavailable",
            Self::UnknownEvent => "unknown_event",
        }
    }
}

/// One call in a `call:sync` reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncEntry {
    /// Call.
    pub call_id: CallId,
    /// Its state.
    pub state: &'static str,
    /// The requester's side.
    pub role: Role,
    /// The other party.
    pub peer_id: UserId,
    /// Chat.
    pub chat_id: String,
    /// Audio or video.
    pub call_type: CallType,
    /// The pending offer, for a ringing callee.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp: Option<Value>,
    /// Whether this socket is the party's device in the call.
    pub this_device: bool,
    /// How a finished call ended (`"hangup"`, `"peer-disconnected"`, `"caller-cancelled"`, ...):
    /// the reason the live event would have carried, for a client that missed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A successful ack.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ack {
    /// The call the request was about.
    pub call_id: Option<CallId>,
    /// Its state after the request.
    pub state: Option<CallState>,
    /// For `call:sync`.
    pub calls: Option<Vec<SyncEntry>>,
}

/// The requester's answer: `{ok:true,...}` or `{ok:false,error,...}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done (or already done: retries are idempotent).
    Ok(Ack),
    /// Refused; nothing changed.
    Err {
        /// Why.
        code: ErrorCode,
        /// The call, when known.
        call_id: Option<CallId>,
        /// For glare: the call that won.
        winner: Option<CallId>,
    },
}

impl Reply {
    pub(crate) fn ok(call_id: &str, state: CallState) -> Self {
        Self::Ok(Ack { call_id: Some(call_id.to_owned()), state: Some(state), calls: None })
    }

    pub(crate) fn err(code: ErrorCode, call_id: &str) -> Self {
        Self::Err { code, call_id: Some(call_id.to_owned()), winner: None }
    }

    /// Whether it is an `Ok`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok(_))
    }

    /// The error code, if any.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Err { code, .. } => Some(*code),
            Self::Ok(_) => None,
        }
    }

    /// The ack JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Ok(ack) => {
                let mut v = json!({ "ok": true });
                if let Some(id) = &ack.call_id {
                    v["callId"] = json!(id);
                }
                if let Some(state) = ack.state {
                    v["state"] = json!(state.as_str());
                }
                if let Some(calls) = &ack.calls {
                    v["calls"] = json!(calls);
                }
                v
            }
            Self::Err { code, call_id, winner } => {
                let mut v = json!({ "ok": false, "error": code.as_str() });
                if let Some(id) = call_id {
                    v["callId"] = json!(id);
                }
                if let Some(w) = winner {
                    v["winner"] = json!(w);
                }
                v
            }
        }
    }
}
