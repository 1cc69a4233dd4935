//! Client events to state machine inputs: names, required fields, sizes, id syntax. Pure, so
//! every malformed payload is unit-tested; a bad request gets an error ack and touches nothing.

use serde_json::Value;

use crate::calls::{CallType, ErrorCode, Input, Reply, SdpKind};

/// Longest call id; UUIDs are 36.
const MAX_CALL_ID: usize = 64;
/// Longest chat id.
const MAX_CHAT_ID: usize = 128;

/// Client -> server events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// Start a call.
    Initiate,
    /// Caller's SDP.
    Offer,
    /// Callee's SDP.
    Answer,
    /// Decline.
    Reject,
    /// Hang up / cancel.
    End,
    /// Trickle ICE.
    IceCandidate,
    /// Resync after reconnect.
    Sync,
    /// New offer/answer in an accepted call (ICE restart).
    Renegotiate,
}

impl ClientEvent {
    /// Every event, for registering handlers.
    pub const ALL: [ClientEvent; 8] = [
        Self::Initiate,
        Self::Offer,
        Self::Answer,
        Self::Reject,
        Self::End,
        Self::IceCandidate,
        Self::Sync,
        Self::Renegotiate,
    ];

    /// The Socket.IO event name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Initiate => "call:initiate",
            Self::Offer => "call:offer",
            Self::Answer => "call:answer",
            Self::Reject => "call:reject",
            Self::End => "call:end",
            Self::IceCandidate => "call:ice-candidate",
            Self::Sync => "call:sync",
            Self::Renegotiate => "call:renegotiate",
        }
    }
}

fn bad(call_id: Option<&str>) -> Reply {
    Reply::Err { code: ErrorCode::BadRequest, call_id: call_id.map(str::to_owned), winner: None }
}

/// A call id: 1-64 of `[A-Za-z0-9_-]` (a UUID fits).
pub fn valid_call_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CALL_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn string_field<'a>(data: &'a Value, name: &str) -> Option<&'a str> {
    data.get(name).and_then(Value::as_str)
}

/// An SDP is opaque here: a string or an `RTCSessionDescriptionInit` object.
fn sdp_field(data: &Value) -> Option<Value> {
    data.get("sdp").filter(|v| v.is_string() || v.is_object()).cloned()
}

/// Parses `data` of `event` from `user` on socket `sid`.
pub fn parse(event: ClientEvent, user: &str, sid: &str, data: Option<Value>, max_bytes: usize) -> Result<Input, Reply> {
    let data = data.unwrap_or(Value::Null);
    let size = serde_json::to_vec(&data).map(|v| v.len()).unwrap_or(usize::MAX);
    let claimed_id = string_field(&data, "callId").filter(|id| valid_call_id(id));
    if size > max_bytes {
        return Err(Reply::Err {
            code: ErrorCode::PayloadTooLarge,
            call_id: claimed_id.map(str::to_owned),
            winner: None,
        });
    }
    let (user, sid) = (user.to_owned(), sid.to_owned());
    if event == ClientEvent::Sync {
        let resume = match data.get("callIds") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ids)) if ids.len() <= 16 => {
                let ids: Option<Vec<String>> =
                    ids.iter().map(|v| v.as_str().filter(|s| valid_call_id(s)).map(str::to_owned)).collect();
                ids.ok_or_else(|| bad(None))?
            }
            Some(_) => return Err(bad(None)),
        };
        return Ok(Input::Sync { user, sid, resume });
    }
    if !data.is_object() {
        return Err(bad(None));
    }
    let call_id = claimed_id.ok_or_else(|| bad(None))?.to_owned();
    let missing = || bad(Some(&call_id));
    let input = match event {
        ClientEvent::Initiate => {
            let callee = string_field(&data, "calleeId")
                .filter(|c| crate::auth::valid_user_id(c))
                .ok_or_else(missing)?
                .to_owned();
            let chat_id = match data.get("chatId") {
                Some(Value::String(s)) if s.len() <= MAX_CHAT_ID => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                None | Some(Value::Null) => String::new(),
                Some(_) => return Err(missing()),
            };
            let call_type = match data.get("callType").and_then(Value::as_str) {
                Some("audio") | None => CallType::Audio,
                Some("video") => CallType::Video,
                Some(_) => return Err(missing()),
            };
            let sdp = data.get("sdp").filter(|v| !v.is_null()).cloned();
            Input::Initiate { call_id, user, sid, callee, chat_id, call_type, sdp }
        }
        ClientEvent::Offer | ClientEvent::Answer => {
            let sdp = sdp_field(&data).ok_or_else(missing)?;
            if event == ClientEvent::Offer {
                Input::Offer { call_id, user, sid, sdp }
            } else {
                Input::Answer { call_id, user, sid, sdp }
            }
        }
        ClientEvent::Reject => Input::Reject { call_id, user, sid },
        ClientEvent::End => Input::End { call_id, user, sid },
        ClientEvent::IceCandidate => {
            let candidate = data.get("candidate").filter(|v| !v.is_null()).cloned().ok_or_else(missing)?;
            Input::Candidate { call_id, user, sid, candidate }
        }
        ClientEvent::Renegotiate => {
            let kind = match data.get("type").and_then(Value::as_str) {
                Some("offer") => SdpKind::Offer,
                Some("answer") => SdpKind::Answer,
                _ => return Err(missing()),
            };
            let sdp = sdp_field(&data).ok_or_else(missing)?;
            Input::Renegotiate { call_id, user, sid, kind, sdp }
        }
        ClientEvent::Sync => return Err(bad(None)),
    };
    Ok(input)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn p(event: ClientEvent, data: Value) -> Result<Input, Reply> {
        parse(event, "alice", "s1", Some(data), 4096)
    }

    #[test]
    fn initiate_fields() {
        let id = "6f1c2a9e-4b7d-4c2e-9f00-0123456789ab";
        let input =
            p(ClientEvent::Initiate, json!({"callId": id, "calleeId": "bob", "chatId": 7, "callType": "video"}))
                .unwrap();
        assert_eq!(
            input,
            Input::Initiate {
                call_id: id.into(),
                user: "alice".into(),
                sid: "s1".into(),
                callee: "bob".into(),
                chat_id: "7".into(),
                call_type: CallType::Video,
                sdp: None
            }
        );
        assert_eq!(p(ClientEvent::Initiate, json!({"callId": id})).unwrap_err().code(), Some(ErrorCode::BadRequest));
        assert!(p(ClientEvent::Initiate, json!({"callId": id, "calleeId": "bob", "callType": "hologram"})).is_err());
    }

    #[test]
    fn call_ids_are_checked() {
        for bad_id in [json!(""), json!("a b"), json!("x".repeat(65)), json!(5), json!("../../etc")] {
            assert!(p(ClientEvent::End, json!({"callId": bad_id})).is_err());
        }
        assert!(p(ClientEvent::End, json!("not an object")).is_err());
        assert!(parse(ClientEvent::End, "alice", "s1", None, 4096).is_err());
        assert!(p(ClientEvent::End, json!({"callId": "abc_DEF-1"})).is_ok());
    }

    #[test]
    fn sdp_and_candidate_required() {
        assert!(p(ClientEvent::Offer, json!({"callId": "c"})).is_err());
        assert!(p(ClientEvent::Answer, json!({"callId": "c", "sdp": 5})).is_err());
        assert!(p(ClientEvent::Answer, json!({"callId": "c", "sdp": {"type": "answer", "sdp": "v=0"}})).is_ok());
        assert!(p(ClientEvent::IceCandidate, json!({"callId": "c"})).is_err());
        assert!(p(ClientEvent::IceCandidate, json!({"callId": "c", "candidate": {"candidate": "a"}})).is_ok());
    }

    #[test]
    fn renegotiate_needs_a_type_and_an_sdp() {
        let input = p(ClientEvent::Renegotiate, json!({"callId": "c", "type": "offer", "sdp": "v=0"})).unwrap();
        assert_eq!(
            input,
            Input::Renegotiate {
                call_id: "c".into(),
                user: "alice".into(),
                sid: "s1".into(),
                kind: SdpKind::Offer,
                sdp: json!("v=0")
            }
        );
        assert!(p(ClientEvent::Renegotiate, json!({"callId": "c", "type": "answer", "sdp": {"sdp": "v=0"}})).is_ok());
        for bad_payload in [
            json!({"callId": "c", "sdp": "v=0"}),
            json!({"callId": "c", "type": "pranswer", "sdp": "v=0"}),
            json!({"callId": "c", "type": "offer"}),
            json!({"callId": "c", "type": "offer", "sdp": 1}),
        ] {
            assert_eq!(p(ClientEvent::Renegotiate, bad_payload).unwrap_err().code(), Some(ErrorCode::BadRequest));
        }
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let r = p(ClientEvent::Offer, json!({"callId": "c", "sdp": "x".repeat(5000)})).unwrap_err();
        assert_eq!(r.code(), Some(ErrorCode::PayloadTooLarge));
        assert_eq!(r.to_json()["callId"], "c");
    }

    #[test]
    fn sync_payloads() {
        assert_eq!(
            p(ClientEvent::Sync, Value::Null).unwrap(),
            Input::Sync { user: "alice".into(), sid: "s1".into(), resume: vec![] }
        );
        assert_eq!(
            p(ClientEvent::Sync, json!({"callIds": ["a"]})).unwrap(),
            Input::Sync { user: "alice".into(), sid: "s1".into(), resume: vec!["a".into()] }
        );
        assert!(p(ClientEvent::Sync, json!({"callIds": "a"})).is_err());
        assert!(p(ClientEvent::Sync, json!({"callIds": ["bad id"]})).is_err());
    }
}
