//! The transitions. One [`Machine`] handles one input against a snapshot of the records it
//! touches and accumulates the writes and effects; the store commits the writes atomically (or,
//! if a record changed meanwhile, reloads and runs the machine again) and only then does the
//! shell perform the effects. Retrying is safe because the machine has no state of its own.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::effect::{Effect, Event, Hook, HookKind, Target};
use super::input::{Ack, ErrorCode, Input, Reply, SdpKind, SyncEntry};
use super::model::{Call, CallId, CallState, Deadline, DeadlineKind, Role, UserId};
use super::transition::Transition;

/// Durations the machine needs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Ringing -> no-answer after this.
    pub ring_timeout_ms: u64,
    /// A dropped party has this long to come back.
    pub grace_ms: u64,
    /// How long a terminal record stays, so retries and late events find it.
    pub record_ttl_ms: u64,
    /// Upper bound on an accepted call's record life (refreshed on every write).
    pub max_call_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self { ring_timeout_ms: 45_000, grace_ms: 20_000, record_ttl_ms: 600_000, max_call_ms: 86_400_000 }
    }
}

/// The records an input touches, as loaded. A user absent from `slots` has no live call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// Calls by id.
    pub calls: BTreeMap<CallId, Call>,
    /// Each user's current live call ("slot"): at most one per user.
    pub slots: BTreeMap<UserId, CallId>,
}

/// What to load for an input: these calls and slots, plus the calls the slots point to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Calls by id.
    pub calls: BTreeSet<CallId>,
    /// Users whose slot to read.
    pub slots: BTreeSet<UserId>,
}

impl Input {
    /// The records this input reads.
    pub fn needs(&self) -> Needs {
        let mut n = Needs::default();
        match self {
            Input::Initiate { call_id, user, callee, .. } => {
                n.calls.insert(call_id.clone());
                n.slots.insert(user.clone());
                n.slots.insert(callee.clone());
            }
            Input::Offer { call_id, .. }
            | Input::Answer { call_id, .. }
            | Input::Reject { call_id, .. }
            | Input::End { call_id, .. }
            | Input::Candidate { call_id, .. }
            | Input::Renegotiate { call_id, .. }
            | Input::Deadline { call_id, .. } => {
                n.calls.insert(call_id.clone());
            }
            Input::Sync { user, resume, .. } => {
                n.slots.insert(user.clone());
                n.calls.extend(resume.iter().cloned());
            }
            Input::Connected { user, .. } | Input::Disconnected { user, .. } => {
                n.slots.insert(user.clone());
            }
        }
        n
    }
}

/// Record changes to commit atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writes {
    /// Calls to store (whole records).
    pub calls: BTreeMap<CallId, Call>,
    /// Slots to point at a call (the slot was read, so the commit compares it).
    pub set_slots: BTreeMap<UserId, CallId>,
    /// Slots to clear if they still point at the given call (no read needed).
    pub clear_slots: BTreeSet<(UserId, CallId)>,
    /// Deadlines to (re)arm at unix ms.
    pub arm: BTreeMap<Deadline, u64>,
    /// Deadlines to remove.
    pub disarm: BTreeSet<Deadline>,
    /// The state changes these writes make (filled by [`Machine::finish`]); nothing to store,
    /// they are counted once the commit succeeds.
    pub transitions: Vec<Transition>,
}

impl Writes {
    /// Nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
            && self.set_slots.is_empty()
            && self.clear_slots.is_empty()
            && self.arm.is_empty()
            && self.disarm.is_empty()
    }
}

/// One transition in progress.
#[derive(Debug)]
pub struct Machine {
    timing: Timing,
    view: View,
    /// Each loaded call's state before the input, to derive [`Transition`]s from the writes.
    before: BTreeMap<CallId, CallState>,
    now_ms: u64,
    writes: Writes,
    effects: Vec<Effect>,
}

impl Machine {
    /// A machine over `view`.
    pub fn new(timing: Timing, view: View) -> Self {
        let before = view.calls.iter().map(|(id, c)| (id.clone(), c.state)).collect();
        Self { timing, view, before, now_ms: 0, writes: Writes::default(), effects: Vec::new() }
    }

    /// The writes (with their [`Transition`]s) and effects accumulated by [`handle`](Self::handle).
    pub fn finish(mut self) -> (Writes, Vec<Effect>) {
        let now = self.now_ms;
        let before = &self.before;
        self.writes.transitions = self
            .writes
            .calls
            .values()
            .filter_map(|call| {
                let from = before.get(&call.id).copied();
                (from != Some(call.state)).then(|| transition(from, call, now))
            })
            .collect();
        (self.writes, self.effects)
    }

    /// Handles `input` at unix time `now_ms`.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Reply {
        self.now_ms = now_ms;
        match input {
            Input::Initiate { call_id, user, sid, callee, chat_id, call_type, sdp } => {
                self.initiate(now_ms, call_id, user, sid, callee, chat_id, call_type, sdp)
            }
            Input::Offer { call_id, user, sid, sdp } => self.offer(now_ms, &call_id, &user, &sid, sdp),
            Input::Answer { call_id, user, sid, sdp } => self.answer(now_ms, &call_id, &user, &sid, sdp),
            Input::Reject { call_id, user, sid } => self.reject(now_ms, &call_id, &user, &sid),
            Input::End { call_id, user, sid } => self.end(now_ms, &call_id, &user, &sid),
            Input::Candidate { call_id, user, sid, candidate } => self.candidate(&call_id, &user, &sid, candidate),
            Input::Renegotiate { call_id, user, sid, kind, sdp } => self.renegotiate(&call_id, &user, &sid, kind, sdp),
            Input::Sync { user, sid, resume } => self.sync(now_ms, &user, &sid, &resume),
            Input::Connected { user, sid } => self.connected(&user, &sid),
            Input::Disconnected { user, sid } => self.disconnected(now_ms, &user, &sid),
            Input::Deadline { call_id, kind } => self.deadline(now_ms, &call_id, kind),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn initiate(
        &mut self,
        now: u64,
        call_id: CallId,
        user: UserId,
        sid: String,
        callee: UserId,
        chat_id: String,
        call_type: super::CallType,
        sdp: Option<Value>,
    ) -> Reply {
        if let Some(existing) = self.view.calls.get(&call_id) {
            // A retried initiate (lost ack, reconnect) must not ring twice.
            return if existing.caller == user && existing.callee == callee {
                match existing.state {
                    CallState::Busy => Reply::err(ErrorCode::Busy, &call_id),
                    state => Reply::ok(&call_id, state),
                }
            } else {
                Reply::err(ErrorCode::Forbidden, &call_id)
            };
        }
        if callee == user {
            return Reply::err(ErrorCode::SelfCall, &call_id);
        }
        let mut call = Call {
            id: call_id.clone(),
            caller: user.clone(),
            callee: callee.clone(),
            chat_id,
            call_type,
            state: CallState::Ringing,
            reason: None,
            caller_socket: sid.clone(),
            callee_socket: None,
            offer: None,
            created_at_ms: now,
            ring_deadline_ms: now.saturating_add(self.timing.ring_timeout_ms),
            answered_at_ms: None,
            caller_lost_at_ms: None,
            callee_lost_at_ms: None,
            keep_until_ms: 0,
        };
        // The caller's own slot: free, or holding the call the callee is placing to us (glare).
        if let Some(mine) = self.live_slot(&user) {
            let glare = mine.state == CallState::Ringing && mine.caller == callee && mine.callee == user;
            if !glare {
                return Reply::err(ErrorCode::AlreadyInCall, &call_id);
            }
            let theirs = mine.clone();
            // Both sides see both ids, so "lower id wins" picks the same call everywhere.
            if theirs.id < call_id {
                call.state = CallState::Cancelled;
                call.reason = Some("glare".into());
                self.put_terminal(now, call);
                self.emit(
                    Target::Socket(sid),
                    Event::Cancelled,
                    json!({"callId": call_id, "reason": "glare", "replacedBy": theirs.id}),
                );
                return Reply::Err { code: ErrorCode::Glare, call_id: Some(call_id), winner: Some(theirs.id) };
            }
            let mut loser = theirs;
            self.emit(
                Target::Socket(loser.caller_socket.clone()),
                Event::Cancelled,
                json!({"callId": loser.id, "reason": "glare", "replacedBy": call_id}),
            );
            self.emit(
                Target::User(loser.callee.clone()),
                Event::Cancelled,
                json!({"callId": loser.id, "reason": "glare", "replacedBy": call_id}),
            );
            self.writes.disarm.insert(Deadline { call_id: loser.id.clone(), kind: DeadlineKind::Ring });
            loser.state = CallState::Cancelled;
            loser.reason = Some("glare".into());
            self.put_terminal_keep_slots(now, loser);
        } else if let Some(theirs) = self.live_slot(&callee) {
            let theirs_id = theirs.id.clone();
            call.state = CallState::Busy;
            call.reason = Some("busy".into());
            self.emit(Target::Socket(sid), Event::Busy, json!({"callId": call_id, "calleeId": callee}));
            self.effects.push(Effect::Webhook(hook(HookKind::Missed, &call, now)));
            tracing::debug!(call = %call_id, busy_with = %theirs_id, "callee busy");
            self.put_terminal(now, call);
            return Reply::err(ErrorCode::Busy, &call_id);
        }
        self.writes.set_slots.insert(user, call_id.clone());
        self.writes.set_slots.insert(callee, call_id.clone());
        self.writes.arm.insert(Deadline { call_id: call_id.clone(), kind: DeadlineKind::Ring }, call.ring_deadline_ms);
        if let Some(sdp) = sdp {
            self.ring(now, &mut call, sdp);
        }
        self.put_live(now, call);
        Reply::ok(&call_id, CallState::Ringing)
    }

    /// Stores the offer and rings every callee device (or asks for a push if none is online).
    fn ring(&mut self, now: u64, call: &mut Call, sdp: Value) {
        call.offer = Some(sdp);
        self.emit(Target::User(call.callee.clone()), Event::Offer, offer_payload(call));
        self.effects.push(Effect::PushIfOffline { user: call.callee.clone(), hook: hook(HookKind::Offer, call, now) });
    }

    fn offer(&mut self, now: u64, call_id: &str, user: &str, sid: &str, sdp: Value) -> Reply {
        let mut call = match self.party_call(call_id, user) {
            Ok((call, Role::Caller)) => call,
            Ok((_, Role::Callee)) => return Reply::err(ErrorCode::Forbidden, call_id),
            Err(reply) => return reply,
        };
        if call.state != CallState::Ringing {
            return Reply::err(ErrorCode::InvalidState, call_id);
        }
        if call.caller_socket != sid {
            return Reply::err(ErrorCode::Forbidden, call_id);
        }
        if call.offer.as_ref() == Some(&sdp) {
            return Reply::ok(call_id, call.state);
        }
        self.ring(now, &mut call, sdp);
        self.put_live(now, call);
        Reply::ok(call_id, CallState::Ringing)
    }

    fn answer(&mut self, now: u64, call_id: &str, user: &str, sid: &str, sdp: Value) -> Reply {
        let mut call = match self.party_call(call_id, user) {
            Ok((call, Role::Callee)) => call,
            Ok((_, Role::Caller)) => return Reply::err(ErrorCode::Forbidden, call_id),
            Err(reply) => return reply,
        };
        match call.state {
            CallState::Ringing => {}
            CallState::Accepted if call.callee_socket.as_deref() == Some(sid) => return Reply::ok(call_id, call.state),
            CallState::Accepted => return Reply::err(ErrorCode::AnsweredElsewhere, call_id),
            _ => return Reply::err(ErrorCode::InvalidState, call_id),
        }
        call.state = CallState::Accepted;
        call.callee_socket = Some(sid.to_owned());
        call.answered_at_ms = Some(now);
        call.offer = None;
        self.writes.disarm.insert(Deadline { call_id: call.id.clone(), kind: DeadlineKind::Ring });
        self.emit(Target::Socket(call.caller_socket.clone()), Event::Answer, json!({"callId": call_id, "sdp": sdp}));
        self.emit(
            Target::UserExcept(call.callee.clone(), sid.to_owned()),
            Event::AnsweredElsewhere,
            json!({"callId": call_id}),
        );
        self.put_live(now, call);
        Reply::ok(call_id, CallState::Accepted)
    }

    fn reject(&mut self, now: u64, call_id: &str, user: &str, sid: &str) -> Reply {
        let call = match self.party_call(call_id, user) {
            Ok((call, Role::Callee)) => call,
            // A caller "rejecting" its own call means cancelling it.
            Ok((_, Role::Caller)) => return self.end(now, call_id, user, sid),
            Err(reply) => return reply,
        };
        match call.state {
            CallState::Ringing => {}
            CallState::Rejected => return Reply::ok(call_id, call.state),
            _ => return Reply::err(ErrorCode::InvalidState, call_id),
        }
        self.emit(
            Target::Socket(call.caller_socket.clone()),
            Event::Reject,
            json!({"callId": call_id, "reason": "rejected"}),
        );
        self.emit(
            Target::UserExcept(call.callee.clone(), sid.to_owned()),
            Event::Cancelled,
            json!({"callId": call_id, "reason": "rejected-elsewhere"}),
        );
        self.finish_call(now, call, CallState::Rejected, "rejected");
        Reply::ok(call_id, CallState::Rejected)
    }

    fn end(&mut self, now: u64, call_id: &str, user: &str, sid: &str) -> Reply {
        let (call, role) = match self.party_call(call_id, user) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        match (call.state, role) {
            (CallState::Ringing, Role::Caller) => {
                self.stop_ringing(now, call, CallState::Cancelled, "caller-cancelled")
            }
            // Hanging up on a ringing call from a callee device is declining it.
            (CallState::Ringing, Role::Callee) => self.reject(now, call_id, user, sid),
            (CallState::Accepted, _) => {
                let peer = self.peer_socket(&call, role);
                self.emit(Target::Socket(peer), Event::End, json!({"callId": call_id, "reason": "hangup", "by": user}));
                self.finish_call(now, call, CallState::Ended, "hangup");
                Reply::ok(call_id, CallState::Ended)
            }
            // Already over: a duplicate or late hang-up changes nothing.
            (state, _) => Reply::ok(call_id, state),
        }
    }

    fn candidate(&mut self, call_id: &str, user: &str, sid: &str, candidate: Value) -> Reply {
        let (call, role) = match self.party_call(call_id, user) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let data = json!({"callId": call_id, "candidate": candidate});
        let to = match (call.state, role) {
            (CallState::Ringing, Role::Caller) => Target::User(call.callee.clone()),
            (CallState::Ringing, Role::Callee) => Target::Socket(call.caller_socket.clone()),
            (CallState::Accepted, Role::Caller) if call.caller_socket == sid => {
                Target::Socket(self.peer_socket(&call, role))
            }
            (CallState::Accepted, Role::Callee) if call.callee_socket.as_deref() == Some(sid) => {
                Target::Socket(call.caller_socket.clone())
            }
            // The caller's other devices are not in the call; the callee's lost the race.
            (CallState::Accepted, Role::Caller) => return Reply::err(ErrorCode::Forbidden, call_id),
            (CallState::Accepted, Role::Callee) => return Reply::err(ErrorCode::AnsweredElsewhere, call_id),
            _ => return Reply::err(ErrorCode::InvalidState, call_id),
        };
        self.emit(to, Event::IceCandidate, data);
        Reply::ok(call_id, call.state)
    }

    /// Only the two devices in an accepted call may renegotiate: while ringing there is no
    /// answer to build on, and another device of either user has no peer connection in the call.
    fn renegotiate(&mut self, call_id: &str, user: &str, sid: &str, kind: SdpKind, sdp: Value) -> Reply {
        let (call, role) = match self.party_call(call_id, user) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        if call.state != CallState::Accepted {
            return Reply::err(ErrorCode::InvalidState, call_id);
        }
        let in_call = match role {
            Role::Caller => call.caller_socket == sid,
            Role::Callee => call.callee_socket.as_deref() == Some(sid),
        };
        if !in_call {
            return Reply::err(ErrorCode::Forbidden, call_id);
        }
        let to = self.peer_socket(&call, role);
        self.emit(
            Target::Socket(to),
            Event::Renegotiate,
            json!({"callId": call_id, "type": kind.as_str(), "sdp": sdp, "from": user}),
        );
        Reply::ok(call_id, call.state)
    }

    fn sync(&mut self, now: u64, user: &str, sid: &str, resume: &[CallId]) -> Reply {
        let mut entries = Vec::new();
        if let Some(mut call) = self.live_slot(user).cloned() {
            let Some(role) = call.role_of(user) else {
                return Reply::Ok(Ack { calls: Some(entries), ..Ack::default() });
            };
            let named = resume.contains(&call.id);
            let mut changed = false;
            match role {
                Role::Caller if call.caller_lost_at_ms.is_some() || (named && call.caller_socket != sid) => {
                    call.caller_socket = sid.to_owned();
                    call.caller_lost_at_ms = None;
                    self.writes.disarm.insert(Deadline { call_id: call.id.clone(), kind: DeadlineKind::Grace(role) });
                    changed = true;
                }
                Role::Callee
                    if call.state == CallState::Accepted
                        && (call.callee_lost_at_ms.is_some()
                            || (named && call.callee_socket.as_deref() != Some(sid))) =>
                {
                    call.callee_socket = Some(sid.to_owned());
                    call.callee_lost_at_ms = None;
                    self.writes.disarm.insert(Deadline { call_id: call.id.clone(), kind: DeadlineKind::Grace(role) });
                    changed = true;
                }
                _ => {}
            }
            let this_device = match role {
                Role::Caller => call.caller_socket == sid,
                Role::Callee => call.callee_socket.as_deref() == Some(sid),
            };
            entries.push(SyncEntry {
                call_id: call.id.clone(),
                state: call.state.as_str(),
                role,
                peer_id: call.peer_of(role).clone(),
                chat_id: call.chat_id.clone(),
                call_type: call.call_type,
                sdp: if role == Role::Callee && call.state == CallState::Ringing { call.offer.clone() } else { None },
                this_device,
                reason: None,
            });
            if changed {
                self.put_live(now, call);
            }
        }
        // Calls the client thinks it is in but that are over: tell it how they ended.
        for id in resume {
            if entries.iter().any(|e| &e.call_id == id) {
                continue;
            }
            if let Some(call) = self.view.calls.get(id) {
                if let Some(role) = call.role_of(user) {
                    entries.push(SyncEntry {
                        call_id: call.id.clone(),
                        state: call.state.as_str(),
                        role,
                        peer_id: call.peer_of(role).clone(),
                        chat_id: call.chat_id.clone(),
                        call_type: call.call_type,
                        sdp: None,
                        this_device: false,
                        reason: call.reason.clone(),
                    });
                }
            }
        }
        Reply::Ok(Ack { calls: Some(entries), ..Ack::default() })
    }

    fn connected(&mut self, user: &str, sid: &str) -> Reply {
        if let Some(call) = self.live_slot(user) {
            if call.state == CallState::Ringing && call.callee == user && call.offer.is_some() {
                let data = offer_payload(call);
                self.emit(Target::Socket(sid.to_owned()), Event::Offer, data);
            }
        }
        Reply::Ok(Ack::default())
    }

    fn disconnected(&mut self, now: u64, user: &str, sid: &str) -> Reply {
        let Some(mut call) = self.live_slot(user).cloned() else {
            return Reply::Ok(Ack::default());
        };
        let role = if call.caller == user && call.caller_socket == sid && call.caller_lost_at_ms.is_none() {
            call.caller_lost_at_ms = Some(now);
            Role::Caller
        } else if call.state == CallState::Accepted
            && call.callee == user
            && call.callee_socket.as_deref() == Some(sid)
            && call.callee_lost_at_ms.is_none()
        {
            call.callee_lost_at_ms = Some(now);
            Role::Callee
        } else {
            // A ringing callee device, or a device not in the call: the others carry on.
            return Reply::Ok(Ack::default());
        };
        let id = call.id.clone();
        self.writes
            .arm
            .insert(Deadline { call_id: id.clone(), kind: DeadlineKind::Grace(role) }, now + self.timing.grace_ms);
        self.put_live(now, call);
        Reply::ok(&id, CallState::Ringing).with_state_of(&self.writes, &id)
    }

    fn deadline(&mut self, now: u64, call_id: &str, kind: DeadlineKind) -> Reply {
        let deadline = Deadline { call_id: call_id.to_owned(), kind };
        // Whatever happens, this deadline is consumed; a stale one (call moved on) just goes.
        self.writes.disarm.insert(deadline);
        let Some(call) = self.view.calls.get(call_id).cloned() else {
            return Reply::err(ErrorCode::NotFound, call_id);
        };
        match (kind, call.state) {
            (DeadlineKind::Ring, CallState::Ringing) => {
                self.emit(Target::Socket(call.caller_socket.clone()), Event::NoAnswer, json!({"callId": call_id}));
                self.stop_ringing(now, call, CallState::NoAnswer, "no-answer")
            }
            (DeadlineKind::Grace(Role::Caller), CallState::Ringing) if call.caller_lost_at_ms.is_some() => {
                self.stop_ringing(now, call, CallState::Cancelled, "caller-disconnected")
            }
            (DeadlineKind::Grace(role), CallState::Accepted) => {
                let lost = match role {
                    Role::Caller => call.caller_lost_at_ms.is_some(),
                    Role::Callee => call.callee_lost_at_ms.is_some(),
                };
                if !lost {
                    return Reply::ok(call_id, call.state);
                }
                let peer = self.peer_socket(&call, role);
                let gone = match role {
                    Role::Caller => call.caller.clone(),
                    Role::Callee => call.callee.clone(),
                };
                self.emit(
                    Target::Socket(peer),
                    Event::End,
                    json!({"callId": call_id, "reason": "peer-disconnected", "by": gone}),
                );
                self.finish_call(now, call, CallState::Ended, "peer-disconnected");
                Reply::ok(call_id, CallState::Ended)
            }
            (_, state) => Reply::ok(call_id, state),
        }
    }

    // --- helpers ---

    /// The live call in `user`'s slot, ignoring a dangling slot (record expired or terminal).
    fn live_slot(&self, user: &str) -> Option<&Call> {
        let id = self.view.slots.get(user)?;
        self.view.calls.get(id).filter(|c| c.state.is_live() && c.role_of(user).is_some())
    }

    /// The call and `user`'s role in it, or the error reply.
    fn party_call(&self, call_id: &str, user: &str) -> Result<(Call, Role), Reply> {
        let call = self.view.calls.get(call_id).ok_or_else(|| Reply::err(ErrorCode::NotFound, call_id))?;
        // Another user's call id gets the same answer whether or not it exists elsewhere would
        // be nicer, but clients need `forbidden` to tell a bug from an expired call.
        let role = call.role_of(user).ok_or_else(|| Reply::err(ErrorCode::Forbidden, call_id))?;
        Ok((call.clone(), role))
    }

    /// Where the peer of `role` is reached in an accepted call.
    fn peer_socket(&self, call: &Call, role: Role) -> String {
        match role {
            Role::Caller => call.callee_socket.clone().unwrap_or_default(),
            Role::Callee => call.caller_socket.clone(),
        }
    }

    fn emit(&mut self, to: Target, event: Event, data: Value) {
        // An accepted call always has a callee socket; an empty one would broadcast to room "".
        if matches!(&to, Target::Socket(s) if s.is_empty()) {
            return;
        }
        self.effects.push(Effect::Emit { to, event, data });
    }

    fn put_live(&mut self, now: u64, mut call: Call) {
        call.keep_until_ms = match call.state {
            CallState::Ringing => call.ring_deadline_ms.max(now) + self.timing.grace_ms + self.timing.record_ttl_ms,
            _ => now + self.timing.max_call_ms,
        };
        self.view.calls.insert(call.id.clone(), call.clone());
        self.writes.calls.insert(call.id.clone(), call);
    }

    fn put_terminal_keep_slots(&mut self, now: u64, mut call: Call) {
        call.keep_until_ms = now + self.timing.record_ttl_ms;
        self.view.calls.insert(call.id.clone(), call.clone());
        self.writes.calls.insert(call.id.clone(), call);
    }

    fn put_terminal(&mut self, now: u64, call: Call) {
        self.put_terminal_keep_slots(now, call);
    }

    /// Moves a live call to a terminal state: frees both slots and every deadline.
    /// A ringing call that will not be answered: the callee's devices stop ringing (`call:cancelled`
    /// with `reason`), the backend hears of a missed call, and the call ends in `state`.
    fn stop_ringing(&mut self, now: u64, call: Call, state: CallState, reason: &str) -> Reply {
        let call_id = call.id.clone();
        self.emit(Target::User(call.callee.clone()), Event::Cancelled, json!({"callId": call_id, "reason": reason}));
        self.effects.push(Effect::Webhook(hook_with_reason(HookKind::Missed, &call, now, reason)));
        self.finish_call(now, call, state, reason);
        Reply::ok(&call_id, state)
    }

    fn finish_call(&mut self, now: u64, mut call: Call, state: CallState, reason: &str) {
        call.state = state;
        call.reason = Some(reason.to_owned());
        call.offer = None;
        for user in [&call.caller, &call.callee] {
            self.writes.clear_slots.insert((user.clone(), call.id.clone()));
        }
        for kind in [DeadlineKind::Ring, DeadlineKind::Grace(Role::Caller), DeadlineKind::Grace(Role::Callee)] {
            self.writes.disarm.insert(Deadline { call_id: call.id.clone(), kind });
        }
        self.put_terminal(now, call);
    }
}

impl Reply {
    /// Replaces the state in an `Ok` with the one just written for `id`.
    fn with_state_of(self, writes: &Writes, id: &str) -> Self {
        match (self, writes.calls.get(id)) {
            (Reply::Ok(mut ack), Some(call)) => {
                ack.state = Some(call.state);
                Reply::Ok(ack)
            }
            (reply, _) => reply,
        }
    }
}

fn transition(from: Option<CallState>, call: &Call, now: u64) -> Transition {
    let ringing_ms = match (from, call.state) {
        (Some(CallState::Ringing), CallState::Accepted) => {
            Some(call.answered_at_ms.unwrap_or(now).saturating_sub(call.created_at_ms))
        }
        (Some(CallState::Ringing), to) if !to.is_live() => Some(now.saturating_sub(call.created_at_ms)),
        _ => None,
    };
    let talking_ms = match (from, call.state) {
        (Some(CallState::Accepted), CallState::Ended) => call.answered_at_ms.map(|at| now.saturating_sub(at)),
        _ => None,
    };
    Transition { call_id: call.id.clone(), from, to: call.state, reason: call.reason.clone(), ringing_ms, talking_ms }
}

fn offer_payload(call: &Call) -> Value {
    json!({
        "callId": call.id,
        "callerId": call.caller,
        "calleeId": call.callee,
        "chatId": call.chat_id,
        "callType": call.call_type,
        "sdp": call.offer,
    })
}

fn hook(kind: HookKind, call: &Call, now: u64) -> Hook {
    Hook {
        kind,
        call_id: call.id.clone(),
        caller: call.caller.clone(),
        callee: call.callee.clone(),
        chat_id: call.chat_id.clone(),
        call_type: call.call_type,
        reason: call.reason.clone(),
        at_ms: now,
    }
}

fn hook_with_reason(kind: HookKind, call: &Call, now: u64, reason: &str) -> Hook {
    Hook { reason: Some(reason.to_owned()), ..hook(kind, call, now) }
}
