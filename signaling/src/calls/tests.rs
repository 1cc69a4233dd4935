//! Every transition, driven through an in-test store that loads and commits like the real ones.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;

const T: Timing = Timing { ring_timeout_ms: 45_000, grace_ms: 20_000, record_ttl_ms: 600_000, max_call_ms: 86_400_000 };

/// A committed transition as `(call, from, to, ringing_ms, talking_ms)`.
pub(super) type Move = (CallId, Option<CallState>, CallState, Option<u64>, Option<u64>);

/// The whole state, applied the way the stores apply `Writes` (also driven by `proptests.rs`).
#[derive(Default)]
pub(super) struct World {
    pub(super) calls: BTreeMap<CallId, Call>,
    pub(super) slots: BTreeMap<UserId, CallId>,
    pub(super) deadlines: BTreeMap<Deadline, u64>,
    /// Every committed transition, in order.
    pub(super) moves: Vec<Move>,
}

impl World {
    pub(super) fn run(&mut self, now: u64, input: Input) -> (Reply, Vec<Effect>) {
        let needs = input.needs();
        let mut view = View::default();
        for user in &needs.slots {
            if let Some(id) = self.slots.get(user) {
                view.slots.insert(user.clone(), id.clone());
            }
        }
        for id in needs.calls.iter().chain(view.slots.values()) {
            if let Some(c) = self.calls.get(id) {
                view.calls.insert(id.clone(), c.clone());
            }
        }
        let mut m = Machine::new(T, view);
        let reply = m.handle(now, input);
        let (writes, effects) = m.finish();
        if !reply.is_ok() {
            // Refusals may record a terminal call (busy, glare) but never touch live state.
            assert!(writes.set_slots.is_empty() && writes.clear_slots.is_empty() && writes.arm.is_empty());
        }
        for t in writes.transitions {
            self.moves.push((t.call_id, t.from, t.to, t.ringing_ms, t.talking_ms));
        }
        for (id, c) in writes.calls {
            self.calls.insert(id, c);
        }
        for (u, id) in writes.set_slots {
            self.slots.insert(u, id);
        }
        for (u, id) in writes.clear_slots {
            if self.slots.get(&u) == Some(&id) {
                self.slots.remove(&u);
            }
        }
        for d in writes.disarm {
            self.deadlines.remove(&d);
        }
        for (d, at) in writes.arm {
            self.deadlines.insert(d, at);
        }
        (reply, effects)
    }

    fn due(&self, now: u64) -> Vec<Deadline> {
        self.deadlines.iter().filter(|(_, at)| **at <= now).map(|(d, _)| d.clone()).collect()
    }

    pub(super) fn fire(&mut self, now: u64) -> Vec<(Reply, Vec<Effect>)> {
        self.due(now).into_iter().map(|d| self.run(now, Input::Deadline { call_id: d.call_id, kind: d.kind })).collect()
    }

    fn state(&self, id: &str) -> CallState {
        self.calls[id].state
    }
}

fn initiate(id: &str, from: &str, sid: &str, to: &str, sdp: Option<&str>) -> Input {
    Input::Initiate {
        call_id: id.into(),
        user: from.into(),
        sid: sid.into(),
        callee: to.into(),
        chat_id: "chat-1".into(),
        call_type: CallType::Video,
        sdp: sdp.map(|s| json!(s)),
    }
}

fn answer(id: &str, user: &str, sid: &str) -> Input {
    Input::Answer { call_id: id.into(), user: user.into(), sid: sid.into(), sdp: json!("answer-sdp") }
}

fn end(id: &str, user: &str, sid: &str) -> Input {
    Input::End { call_id: id.into(), user: user.into(), sid: sid.into() }
}

fn emits(effects: &[Effect]) -> Vec<(Target, &'static str, Value)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Emit { to, event, data } => Some((to.clone(), event.name(), data.clone())),
            _ => None,
        })
        .collect()
}

fn names(effects: &[Effect]) -> Vec<&'static str> {
    emits(effects).into_iter().map(|(_, n, _)| n).collect()
}

fn hooks(effects: &[Effect]) -> Vec<(HookKind, Option<String>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Webhook(h) => Some((h.kind, h.reason.clone())),
            Effect::PushIfOffline { hook, .. } => Some((hook.kind, None)),
            _ => None,
        })
        .collect()
}

fn user(u: &str) -> Target {
    Target::User(u.into())
}

fn sock(s: &str) -> Target {
    Target::Socket(s.into())
}

/// alice (socket a1) calls bob with an offer; returns the world.
fn ringing() -> World {
    let mut w = World::default();
    let (r, fx) = w.run(1_000, initiate("c1", "alice", "a1", "bob", Some("offer-sdp")));
    assert_eq!(r, Reply::ok("c1", CallState::Ringing));
    assert_eq!(emits(&fx)[0].0, user("bob"));
    assert_eq!(emits(&fx)[0].1, "call:offer");
    assert_eq!(emits(&fx)[0].2["sdp"], "offer-sdp");
    assert_eq!(emits(&fx)[0].2["callerId"], "alice");
    assert_eq!(hooks(&fx), vec![(HookKind::Offer, None)]);
    w
}

fn accepted() -> World {
    let mut w = ringing();
    let (r, _) = w.run(2_000, answer("c1", "bob", "b1"));
    assert_eq!(r, Reply::ok("c1", CallState::Accepted));
    w
}

#[test]
fn initiate_rings_all_callee_devices_and_arms_the_ring_timer() {
    let w = ringing();
    assert_eq!(w.state("c1"), CallState::Ringing);
    assert_eq!(w.slots["alice"], "c1");
    assert_eq!(w.slots["bob"], "c1");
    assert_eq!(w.deadlines[&Deadline { call_id: "c1".into(), kind: DeadlineKind::Ring }], 46_000);
}

#[test]
fn initiate_then_offer_rings_on_the_offer() {
    let mut w = World::default();
    let (r, fx) = w.run(1_000, initiate("c1", "alice", "a1", "bob", None));
    assert!(r.is_ok());
    assert!(fx.is_empty(), "nothing rings before there is an offer");
    let offer = Input::Offer {
        call_id: "c1".into(),
        user: "alice".into(),
        sid: "a1".into(),
        sdp: json!({"type": "offer", "sdp": "v=0"}),
    };
    let (r, fx) = w.run(1_100, offer.clone());
    assert_eq!(r, Reply::ok("c1", CallState::Ringing));
    assert_eq!(names(&fx), vec!["call:offer"]);
    // The same offer again (a retry) does not ring twice.
    let (r, fx) = w.run(1_200, offer);
    assert!(r.is_ok() && fx.is_empty());
}

#[test]
fn offer_only_from_the_calling_device() {
    let mut w = ringing();
    let from = |user: &str, sid: &str| Input::Offer {
        call_id: "c1".into(),
        user: user.into(),
        sid: sid.into(),
        sdp: json!("x"),
    };
    assert_eq!(w.run(1_100, from("bob", "b1")).0.code(), Some(ErrorCode::Forbidden));
    assert_eq!(w.run(1_100, from("alice", "a2")).0.code(), Some(ErrorCode::Forbidden));
    assert_eq!(w.run(1_100, from("mallory", "m1")).0.code(), Some(ErrorCode::Forbidden));
}

#[test]
fn retried_initiate_is_idempotent() {
    let mut w = ringing();
    let (r, fx) = w.run(1_500, initiate("c1", "alice", "a1", "bob", Some("offer-sdp")));
    assert_eq!(r, Reply::ok("c1", CallState::Ringing));
    assert!(fx.is_empty());
    // Someone else reusing the id gets nothing.
    let (r, fx) = w.run(1_500, initiate("c1", "mallory", "m1", "bob", None));
    assert_eq!(r.code(), Some(ErrorCode::Forbidden));
    assert!(fx.is_empty());
}

#[test]
fn answer_accepts_and_tells_the_other_devices() {
    let mut w = ringing();
    let (r, fx) = w.run(2_000, answer("c1", "bob", "b1"));
    assert_eq!(r, Reply::ok("c1", CallState::Accepted));
    let e = emits(&fx);
    assert_eq!(e[0], (sock("a1"), "call:answer", json!({"callId": "c1", "sdp": "answer-sdp"})));
    assert_eq!(
        e[1],
        (Target::UserExcept("bob".into(), "b1".into()), "call:answered-elsewhere", json!({"callId": "c1"}))
    );
    assert!(w.deadlines.is_empty(), "ring timer disarmed");
    assert_eq!(w.calls["c1"].callee_socket.as_deref(), Some("b1"));
}

#[test]
fn first_device_to_answer_wins() {
    let mut w = accepted();
    let (r, fx) = w.run(2_100, answer("c1", "bob", "b2"));
    assert_eq!(r.code(), Some(ErrorCode::AnsweredElsewhere));
    assert!(fx.is_empty());
    // The winner's duplicate answer is a no-op success.
    let (r, fx) = w.run(2_100, answer("c1", "bob", "b1"));
    assert_eq!(r, Reply::ok("c1", CallState::Accepted));
    assert!(fx.is_empty());
}

#[test]
fn caller_cannot_answer_and_strangers_are_forbidden() {
    let mut w = ringing();
    assert_eq!(w.run(2_000, answer("c1", "alice", "a1")).0.code(), Some(ErrorCode::Forbidden));
    assert_eq!(w.run(2_000, answer("c1", "eve", "e1")).0.code(), Some(ErrorCode::Forbidden));
    assert_eq!(w.run(2_000, answer("nope", "bob", "b1")).0.code(), Some(ErrorCode::NotFound));
    assert_eq!(w.state("c1"), CallState::Ringing);
}

#[test]
fn reject_tells_caller_and_stops_other_devices() {
    let mut w = ringing();
    let (r, fx) = w.run(2_000, Input::Reject { call_id: "c1".into(), user: "bob".into(), sid: "b2".into() });
    assert_eq!(r, Reply::ok("c1", CallState::Rejected));
    let e = emits(&fx);
    assert_eq!(e[0].0, sock("a1"));
    assert_eq!(e[0].1, "call:reject");
    assert_eq!(e[1].0, Target::UserExcept("bob".into(), "b2".into()));
    assert_eq!(e[1].1, "call:cancelled");
    assert!(w.slots.is_empty() && w.deadlines.is_empty());
    // Duplicate reject: no-op.
    let (r, fx) = w.run(2_100, Input::Reject { call_id: "c1".into(), user: "bob".into(), sid: "b2".into() });
    assert!(r.is_ok() && fx.is_empty());
    // Late answer: refused, nothing emitted.
    let (r, fx) = w.run(2_200, answer("c1", "bob", "b1"));
    assert_eq!(r.code(), Some(ErrorCode::InvalidState));
    assert!(fx.is_empty());
}

#[test]
fn callee_hanging_up_while_ringing_declines() {
    let mut w = ringing();
    let (r, fx) = w.run(2_000, end("c1", "bob", "b1"));
    assert_eq!(r, Reply::ok("c1", CallState::Rejected));
    assert_eq!(names(&fx), vec!["call:reject", "call:cancelled"]);
}

#[test]
fn caller_cancel_while_ringing_is_a_missed_call() {
    let mut w = ringing();
    let (r, fx) = w.run(3_000, end("c1", "alice", "a1"));
    assert_eq!(r, Reply::ok("c1", CallState::Cancelled));
    assert_eq!(emits(&fx)[0], (user("bob"), "call:cancelled", json!({"callId": "c1", "reason": "caller-cancelled"})));
    assert_eq!(hooks(&fx), vec![(HookKind::Missed, Some("caller-cancelled".into()))]);
    assert!(w.slots.is_empty() && w.deadlines.is_empty());
}

#[test]
fn end_of_an_accepted_call_reaches_the_peer_once() {
    let mut w = accepted();
    let (r, fx) = w.run(9_000, end("c1", "bob", "b1"));
    assert_eq!(r, Reply::ok("c1", CallState::Ended));
    assert_eq!(emits(&fx), vec![(sock("a1"), "call:end", json!({"callId": "c1", "reason": "hangup", "by": "bob"}))]);
    assert!(w.slots.is_empty());
    for who in [("alice", "a1"), ("bob", "b1")] {
        let (r, fx) = w.run(9_100, end("c1", who.0, who.1));
        assert_eq!(r, Reply::ok("c1", CallState::Ended));
        assert!(fx.is_empty(), "a late end is a no-op");
    }
}

#[test]
fn candidates_are_routed_to_the_peer() {
    let mut w = ringing();
    let cand = |u: &str, s: &str| Input::Candidate {
        call_id: "c1".into(),
        user: u.into(),
        sid: s.into(),
        candidate: json!({"candidate": "x"}),
    };
    let (_, fx) = w.run(1_100, cand("alice", "a1"));
    assert_eq!(emits(&fx)[0].0, user("bob"));
    assert_eq!(emits(&fx)[0].1, "call:ice-candidate");
    w.run(2_000, answer("c1", "bob", "b1"));
    assert_eq!(emits(&w.run(2_100, cand("alice", "a1")).1)[0].0, sock("b1"));
    assert_eq!(emits(&w.run(2_100, cand("bob", "b1")).1)[0].0, sock("a1"));
    assert_eq!(w.run(2_100, cand("bob", "b2")).0.code(), Some(ErrorCode::AnsweredElsewhere));
    assert_eq!(w.run(2_100, cand("alice", "a2")).0.code(), Some(ErrorCode::Forbidden));
    assert_eq!(w.run(2_100, cand("eve", "e1")).0.code(), Some(ErrorCode::Forbidden));
    w.run(3_000, end("c1", "alice", "a1"));
    let (r, fx) = w.run(3_100, cand("bob", "b1"));
    assert_eq!(r.code(), Some(ErrorCode::InvalidState));
    assert!(fx.is_empty());
}

fn renegotiate(user: &str, sid: &str, kind: SdpKind) -> Input {
    Input::Renegotiate { call_id: "c1".into(), user: user.into(), sid: sid.into(), kind, sdp: json!("restart-sdp") }
}

#[test]
fn renegotiation_is_forwarded_between_the_two_devices_of_an_accepted_call() {
    let mut w = accepted();
    let moves = w.moves.len();
    let (r, fx) = w.run(3_000, renegotiate("alice", "a1", SdpKind::Offer));
    assert_eq!(r, Reply::ok("c1", CallState::Accepted));
    assert_eq!(
        emits(&fx),
        vec![(
            sock("b1"),
            "call:renegotiate",
            json!({"callId": "c1", "type": "offer", "sdp": "restart-sdp", "from": "alice"})
        )]
    );
    let (r, fx) = w.run(3_100, renegotiate("bob", "b1", SdpKind::Answer));
    assert_eq!(r, Reply::ok("c1", CallState::Accepted));
    assert_eq!(emits(&fx)[0].0, sock("a1"));
    assert_eq!(emits(&fx)[0].2["type"], "answer");
    // The callee may offer too (either side's network can change).
    let (r, fx) = w.run(3_200, renegotiate("bob", "b1", SdpKind::Offer));
    assert!(r.is_ok());
    assert_eq!(emits(&fx)[0].0, sock("a1"));
    assert_eq!(w.state("c1"), CallState::Accepted);
    assert_eq!(w.moves.len(), moves, "renegotiating is no transition");
}

#[test]
fn renegotiation_is_refused_outside_an_accepted_call_and_to_outsiders() {
    let mut w = ringing();
    for who in [("alice", "a1"), ("bob", "b1")] {
        let (r, fx) = w.run(1_500, renegotiate(who.0, who.1, SdpKind::Offer));
        assert_eq!(r.code(), Some(ErrorCode::InvalidState), "{who:?} while ringing");
        assert!(fx.is_empty());
    }
    w.run(2_000, answer("c1", "bob", "b1"));
    for (who, code) in [
        (("eve", "e1"), ErrorCode::Forbidden),
        (("bob", "b2"), ErrorCode::Forbidden),
        (("alice", "a2"), ErrorCode::Forbidden),
    ] {
        let (r, fx) = w.run(2_500, renegotiate(who.0, who.1, SdpKind::Offer));
        assert_eq!(r.code(), Some(code), "{who:?}");
        assert!(fx.is_empty());
    }
    w.run(3_000, end("c1", "bob", "b1"));
    let (r, fx) = w.run(3_100, renegotiate("alice", "a1", SdpKind::Offer));
    assert_eq!(r.code(), Some(ErrorCode::InvalidState));
    assert!(fx.is_empty());
    let missing = Input::Renegotiate {
        call_id: "nope".into(),
        user: "alice".into(),
        sid: "a1".into(),
        kind: SdpKind::Offer,
        sdp: json!("x"),
    };
    assert_eq!(w.run(3_200, missing).0.code(), Some(ErrorCode::NotFound));
}

#[test]
fn busy_callee() {
    let mut w = accepted();
    let (r, fx) = w.run(5_000, initiate("c2", "carol", "k1", "bob", Some("o")));
    assert_eq!(r.code(), Some(ErrorCode::Busy));
    assert_eq!(emits(&fx), vec![(sock("k1"), "call:busy", json!({"callId": "c2", "calleeId": "bob"}))]);
    assert_eq!(hooks(&fx), vec![(HookKind::Missed, Some("busy".into()))]);
    assert_eq!(w.state("c2"), CallState::Busy);
    assert_eq!(w.slots["bob"], "c1");
    assert!(!w.slots.contains_key("carol"));
    // Retrying the busy call id repeats the answer without a second event.
    let (r, fx) = w.run(5_100, initiate("c2", "carol", "k1", "bob", Some("o")));
    assert_eq!(r.code(), Some(ErrorCode::Busy));
    assert!(fx.is_empty());
}

#[test]
fn ringing_callee_is_busy_for_a_third_caller() {
    let mut w = ringing();
    assert_eq!(w.run(1_500, initiate("c2", "carol", "k1", "bob", None)).0.code(), Some(ErrorCode::Busy));
    assert_eq!(w.run(1_500, initiate("c3", "carol", "k1", "alice", None)).0.code(), Some(ErrorCode::Busy));
}

#[test]
fn caller_in_a_call_cannot_start_another_and_nobody_calls_themselves() {
    let mut w = accepted();
    assert_eq!(w.run(5_000, initiate("c2", "alice", "a1", "carol", None)).0.code(), Some(ErrorCode::AlreadyInCall));
    assert_eq!(w.run(5_000, initiate("c3", "carol", "k1", "carol", None)).0.code(), Some(ErrorCode::SelfCall));
}

#[test]
fn glare_lower_call_id_wins_when_it_is_the_new_call() {
    // alice calls bob with "b-..." while bob calls alice with "a-..."; "a-" < "b-".
    let mut w = World::default();
    w.run(1_000, initiate("b-call", "alice", "a1", "bob", Some("o1")));
    let (r, fx) = w.run(1_010, initiate("a-call", "bob", "b1", "alice", Some("o2")));
    assert_eq!(r, Reply::ok("a-call", CallState::Ringing));
    assert_eq!(w.state("b-call"), CallState::Cancelled);
    assert_eq!(w.calls["b-call"].reason.as_deref(), Some("glare"));
    assert_eq!(w.slots["alice"], "a-call");
    assert_eq!(w.slots["bob"], "a-call");
    let e = emits(&fx);
    assert!(e.contains(&(
        sock("a1"),
        "call:cancelled",
        json!({"callId": "b-call", "reason": "glare", "replacedBy": "a-call"})
    )));
    assert!(e.iter().any(|(t, n, d)| *t == user("alice") && *n == "call:offer" && d["callId"] == "a-call"));
    assert_eq!(w.deadlines.len(), 1, "only the winner's ring timer remains");
    assert!(hooks(&fx).iter().all(|(k, _)| *k == HookKind::Offer), "a glare loser is not a missed call");
}

#[test]
fn glare_lower_call_id_wins_when_it_is_the_existing_call() {
    let mut w = World::default();
    w.run(1_000, initiate("a-call", "alice", "a1", "bob", Some("o1")));
    let (r, fx) = w.run(1_010, initiate("b-call", "bob", "b1", "alice", Some("o2")));
    assert_eq!(r, Reply::Err { code: ErrorCode::Glare, call_id: Some("b-call".into()), winner: Some("a-call".into()) });
    assert_eq!(
        emits(&fx),
        vec![(sock("b1"), "call:cancelled", json!({"callId": "b-call", "reason": "glare", "replacedBy": "a-call"}))]
    );
    assert_eq!(w.state("a-call"), CallState::Ringing);
    assert_eq!(w.state("b-call"), CallState::Cancelled);
    // bob answers the winner and the call proceeds normally.
    assert!(w.run(1_500, answer("a-call", "bob", "b1")).0.is_ok());
}

#[test]
fn ring_timeout_frees_the_call() {
    let mut w = ringing();
    assert!(w.fire(45_999).is_empty());
    let fired = w.fire(46_000);
    assert_eq!(fired.len(), 1);
    let (r, fx) = &fired[0];
    assert_eq!(*r, Reply::ok("c1", CallState::NoAnswer));
    let e = emits(fx);
    assert_eq!(e[0], (sock("a1"), "call:no-answer", json!({"callId": "c1"})));
    assert_eq!(e[1], (user("bob"), "call:cancelled", json!({"callId": "c1", "reason": "no-answer"})));
    assert_eq!(hooks(fx), vec![(HookKind::Missed, Some("no-answer".into()))]);
    assert!(w.slots.is_empty() && w.deadlines.is_empty());
    // bob can now be called again.
    assert!(w.run(50_000, initiate("c2", "carol", "k1", "bob", None)).0.is_ok());
}

#[test]
fn stale_ring_deadline_is_a_no_op() {
    let mut w = accepted();
    let (r, fx) = w.run(46_000, Input::Deadline { call_id: "c1".into(), kind: DeadlineKind::Ring });
    assert_eq!(r, Reply::ok("c1", CallState::Accepted));
    assert!(fx.is_empty());
    let (r, _) = w.run(46_000, Input::Deadline { call_id: "gone".into(), kind: DeadlineKind::Ring });
    assert_eq!(r.code(), Some(ErrorCode::NotFound));
}

#[test]
fn late_device_gets_the_pending_offer() {
    let mut w = ringing();
    let (_, fx) = w.run(1_500, Input::Connected { user: "bob".into(), sid: "b9".into() });
    let e = emits(&fx);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, sock("b9"));
    assert_eq!(e[0].1, "call:offer");
    assert_eq!(e[0].2["sdp"], "offer-sdp");
    // The caller's other device and unrelated users get nothing.
    assert!(w.run(1_500, Input::Connected { user: "alice".into(), sid: "a2".into() }).1.is_empty());
    assert!(w.run(1_500, Input::Connected { user: "carol".into(), sid: "k1".into() }).1.is_empty());
    w.run(2_000, answer("c1", "bob", "b1"));
    assert!(w.run(2_500, Input::Connected { user: "bob".into(), sid: "b8".into() }).1.is_empty());
}

#[test]
fn dropped_party_reconnects_within_grace() {
    let mut w = accepted();
    let (r, _) = w.run(5_000, Input::Disconnected { user: "alice".into(), sid: "a1".into() });
    assert!(r.is_ok());
    assert_eq!(w.deadlines[&Deadline { call_id: "c1".into(), kind: DeadlineKind::Grace(Role::Caller) }], 25_000);
    let (r, fx) = w.run(8_000, Input::Sync { user: "alice".into(), sid: "a2".into(), resume: vec![] });
    assert!(fx.is_empty());
    let Reply::Ok(ack) = r else { panic!() };
    let calls = ack.calls.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].state, "accepted");
    assert_eq!(calls[0].role, Role::Caller);
    assert_eq!(calls[0].peer_id, "bob");
    assert!(calls[0].this_device);
    assert!(w.deadlines.is_empty());
    assert_eq!(w.calls["c1"].caller_socket, "a2");
    // The grace deadline, had it been claimed already, does nothing now.
    let (_, fx) = w.run(25_000, Input::Deadline { call_id: "c1".into(), kind: DeadlineKind::Grace(Role::Caller) });
    assert!(fx.is_empty());
    assert_eq!(w.state("c1"), CallState::Accepted);
    // bob's candidates now reach the new socket.
    let (_, fx) = w.run(
        9_000,
        Input::Candidate { call_id: "c1".into(), user: "bob".into(), sid: "b1".into(), candidate: json!("c") },
    );
    assert_eq!(emits(&fx)[0].0, sock("a2"));
}

#[test]
fn dropped_party_that_does_not_return_ends_the_call_for_the_peer() {
    let mut w = accepted();
    w.run(5_000, Input::Disconnected { user: "bob".into(), sid: "b1".into() });
    assert!(w.fire(24_999).is_empty());
    let fired = w.fire(25_000);
    let (r, fx) = &fired[0];
    assert_eq!(*r, Reply::ok("c1", CallState::Ended));
    assert_eq!(
        emits(fx),
        vec![(sock("a1"), "call:end", json!({"callId": "c1", "reason": "peer-disconnected", "by": "bob"}))]
    );
    assert!(w.slots.is_empty() && w.deadlines.is_empty());
}

#[test]
fn caller_dropping_while_ringing_cancels_after_grace() {
    let mut w = ringing();
    w.run(2_000, Input::Disconnected { user: "alice".into(), sid: "a1".into() });
    let fired = w.fire(22_000);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].0, Reply::ok("c1", CallState::Cancelled));
    assert_eq!(names(&fired[0].1), vec!["call:cancelled"]);
    // The ring deadline went with it.
    assert!(w.deadlines.is_empty());
}

#[test]
fn other_sockets_dropping_change_nothing() {
    let mut w = accepted();
    for (u, s) in [("bob", "b2"), ("alice", "a9"), ("carol", "k1")] {
        let (r, fx) = w.run(5_000, Input::Disconnected { user: u.into(), sid: s.into() });
        assert!(r.is_ok() && fx.is_empty());
    }
    assert!(w.deadlines.is_empty());
    // A ringing callee device dropping leaves the others ringing.
    let mut w = ringing();
    w.run(1_500, Input::Disconnected { user: "bob".into(), sid: "b1".into() });
    assert_eq!(w.deadlines.len(), 1);
}

#[test]
fn sync_reports_a_ringing_offer_and_finished_calls() {
    let mut w = ringing();
    let (r, _) = w.run(1_500, Input::Sync { user: "bob".into(), sid: "b3".into(), resume: vec![] });
    let Reply::Ok(ack) = r else { panic!() };
    let calls = ack.calls.unwrap();
    assert_eq!(calls[0].state, "ringing");
    assert_eq!(calls[0].sdp, Some(json!("offer-sdp")));
    assert!(!calls[0].this_device);
    w.run(2_000, end("c1", "alice", "a1"));
    let (r, _) = w.run(2_500, Input::Sync { user: "bob".into(), sid: "b3".into(), resume: vec!["c1".into()] });
    let Reply::Ok(ack) = r else { panic!() };
    let calls = ack.calls.unwrap();
    assert_eq!(calls[0].state, "cancelled");
    assert_eq!(calls[0].reason.as_deref(), Some("caller-cancelled"), "the reason the missed event carried");
    // Someone else's call id in resume reveals nothing.
    let (r, _) = w.run(2_500, Input::Sync { user: "eve".into(), sid: "e1".into(), resume: vec!["c1".into()] });
    let Reply::Ok(ack) = r else { panic!() };
    assert!(ack.calls.unwrap().is_empty());
}

#[test]
fn sync_tells_a_party_who_missed_the_hang_up_how_the_call_ended() {
    // Both sockets dropped; alice's queued hang-up reaches the service before bob is back, so
    // bob's `call:end` went nowhere: his sync says the call ended by a hang-up, not just "ended".
    let mut w = accepted();
    w.run(3_000, Input::Disconnected { user: "bob".into(), sid: "b1".into() });
    w.run(4_000, end("c1", "alice", "a1"));
    let (r, _) = w.run(5_000, Input::Sync { user: "bob".into(), sid: "b2".into(), resume: vec!["c1".into()] });
    let Reply::Ok(ack) = r else { panic!() };
    let calls = ack.calls.unwrap();
    assert_eq!((calls[0].state, calls[0].reason.as_deref()), ("ended", Some("hangup")));
    assert!(!calls[0].this_device);
}

#[test]
fn sync_naming_the_call_moves_it_to_the_new_device() {
    // The server may not have noticed the old socket dying yet (ping timeout); a client that
    // reconnects and names its call takes it over.
    let mut w = accepted();
    w.run(3_000, Input::Sync { user: "bob".into(), sid: "b7".into(), resume: vec!["c1".into()] });
    assert_eq!(w.calls["c1"].callee_socket.as_deref(), Some("b7"));
    // The old socket's disconnect, when it is noticed, is then ignored.
    let (_, fx) = w.run(4_000, Input::Disconnected { user: "bob".into(), sid: "b1".into() });
    assert!(fx.is_empty());
    assert!(w.deadlines.is_empty());
}

#[test]
fn reply_json_shapes() {
    assert_eq!(Reply::ok("c", CallState::NoAnswer).to_json(), json!({"ok": true, "callId": "c", "state": "no-answer"}));
    assert_eq!(
        Reply::Err { code: ErrorCode::Glare, call_id: Some("b".into()), winner: Some("a".into()) }.to_json(),
        json!({"ok": false, "error": "glare", "callId": "b", "winner": "a"})
    );
}

#[test]
fn deadline_members_round_trip() {
    for kind in [DeadlineKind::Ring, DeadlineKind::Grace(Role::Caller), DeadlineKind::Grace(Role::Callee)] {
        let d = Deadline { call_id: "0b1c-uuid".into(), kind };
        assert_eq!(Deadline::from_member(&d.member()), Some(d));
    }
    assert_eq!(Deadline::from_member("ring|"), None);
    assert_eq!(Deadline::from_member("boom|x"), None);
    assert_eq!(Deadline::from_member("nobar"), None);
}

#[test]
fn records_carry_a_bounded_lifetime() {
    let w = ringing();
    let c = &w.calls["c1"];
    assert_eq!(c.keep_until_ms, 46_000 + T.grace_ms + T.record_ttl_ms);
    let w = accepted();
    assert_eq!(w.calls["c1"].keep_until_ms, 2_000 + T.max_call_ms);
}

/// Every slot points at a live call its user is in; every live call holds both slots; every
/// deadline belongs to a call that can still use it.
fn check_invariants(w: &World, step: usize, history: &[String]) {
    let ctx = || format!("after step {step}:\n{}", history.join("\n"));
    for (user, id) in &w.slots {
        let call = w.calls.get(id).unwrap_or_else(|| panic!("slot {user}->{id} dangles {}", ctx()));
        assert!(call.state.is_live(), "slot {user}->{id} points at a {:?} call {}", call.state, ctx());
        assert!(call.role_of(user).is_some(), "slot {user}->{id}: not a party {}", ctx());
    }
    for call in w.calls.values().filter(|c| c.state.is_live()) {
        for user in [&call.caller, &call.callee] {
            assert_eq!(w.slots.get(user), Some(&call.id), "live call {} lost {user}'s slot {}", call.id, ctx());
        }
        if call.state == CallState::Accepted {
            assert!(call.callee_socket.is_some(), "{}", ctx());
        }
    }
    for d in w.deadlines.keys() {
        let call = &w.calls[&d.call_id];
        match d.kind {
            DeadlineKind::Ring => assert_eq!(call.state, CallState::Ringing, "ring deadline of {} {}", call.id, ctx()),
            DeadlineKind::Grace(Role::Caller) => {
                assert!(
                    call.state.is_live() && call.caller_lost_at_ms.is_some(),
                    "caller grace of {} {}",
                    call.id,
                    ctx()
                )
            }
            DeadlineKind::Grace(Role::Callee) => assert!(
                call.state == CallState::Accepted && call.callee_lost_at_ms.is_some(),
                "callee grace of {} {}",
                call.id,
                ctx()
            ),
        }
    }
    for call in w.calls.values().filter(|c| c.state == CallState::Ringing) {
        assert!(
            w.deadlines.contains_key(&Deadline { call_id: call.id.clone(), kind: DeadlineKind::Ring }),
            "{}",
            ctx()
        );
    }
}

#[test]
fn random_sequences_keep_the_invariants() {
    // A small deterministic generator (no dependency): many seeds, short sequences over three
    // users with two devices each and a handful of call ids, so collisions (busy, glare,
    // duplicates, late events, strangers) are frequent.
    let users = ["a", "b", "c"];
    for seed in 1..=300u64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut w = World::default();
        let mut now = 1_000u64;
        let mut history = Vec::new();
        for step in 0..60 {
            now += next(20_000);
            for (r, _) in w.fire(now) {
                history.push(format!("{now}: deadline -> {r:?}"));
            }
            let u = users[next(3) as usize];
            let sid = format!("{u}{}", next(2));
            let id = format!("k{}", next(5));
            let input = match next(10) {
                0 | 1 => Input::Initiate {
                    call_id: id,
                    user: u.into(),
                    sid,
                    callee: users[next(3) as usize].into(),
                    chat_id: String::new(),
                    call_type: CallType::Audio,
                    sdp: (next(2) == 0).then(|| json!("o")),
                },
                2 => Input::Offer { call_id: id, user: u.into(), sid, sdp: json!("o") },
                3 => Input::Answer { call_id: id, user: u.into(), sid, sdp: json!("a") },
                4 => Input::Reject { call_id: id, user: u.into(), sid },
                5 => Input::End { call_id: id, user: u.into(), sid },
                6 => Input::Candidate { call_id: id, user: u.into(), sid, candidate: json!("c") },
                7 => Input::Sync { user: u.into(), sid, resume: vec![id] },
                8 => Input::Disconnected { user: u.into(), sid },
                _ => Input::Connected { user: u.into(), sid },
            };
            let desc = format!("{now}: {input:?}");
            let (reply, _) = w.run(now, input);
            history.push(format!("{desc} -> {reply:?}"));
            check_invariants(&w, step, &history);
        }
    }
}

// --- transitions (what metrics count) ---

use CallState::{Accepted, Busy, Cancelled, Ended, NoAnswer, Rejected, Ringing};

fn mv(id: &str, from: Option<CallState>, to: CallState, ringing: Option<u64>, talking: Option<u64>) -> Move {
    (id.into(), from, to, ringing, talking)
}

#[test]
fn transitions_of_an_answered_call_that_ends() {
    let mut w = accepted();
    w.run(2_500, end("c1", "bob", "b1"));
    // Ring time from the initiate (1 000) to the answer (2 000); talk time to the hang-up.
    assert_eq!(
        w.moves,
        vec![
            mv("c1", None, Ringing, None, None),
            mv("c1", Some(Ringing), Accepted, Some(1_000), None),
            mv("c1", Some(Accepted), Ended, None, Some(500)),
        ]
    );
    // A duplicate hang-up and a retried answer move nothing.
    w.run(2_600, end("c1", "alice", "a1"));
    w.run(2_600, answer("c1", "bob", "b1"));
    assert_eq!(w.moves.len(), 3);
}

#[test]
fn transitions_of_calls_that_never_connect() {
    let mut w = ringing();
    w.run(1_400, Input::Reject { call_id: "c1".into(), user: "bob".into(), sid: "b1".into() });
    assert_eq!(w.moves.last(), Some(&mv("c1", Some(Ringing), Rejected, Some(400), None)));

    let mut w = ringing();
    w.run(1_700, end("c1", "alice", "a1"));
    assert_eq!(w.moves.last(), Some(&mv("c1", Some(Ringing), Cancelled, Some(700), None)));

    let mut w = ringing();
    w.fire(46_000);
    assert_eq!(w.moves.last(), Some(&mv("c1", Some(Ringing), NoAnswer, Some(45_000), None)));

    let mut w = accepted();
    w.run(5_000, initiate("c2", "carol", "k1", "bob", None));
    assert_eq!(w.moves.last(), Some(&mv("c2", None, Busy, None, None)));
    // The retried busy initiate is not a second busy call.
    let n = w.moves.len();
    w.run(5_100, initiate("c2", "carol", "k1", "bob", None));
    assert_eq!(w.moves.len(), n);
}

#[test]
fn transitions_of_a_glare_and_a_dropped_caller() {
    let mut w = World::default();
    w.run(1_000, initiate("b-call", "alice", "a1", "bob", Some("o1")));
    w.run(1_010, initiate("a-call", "bob", "b1", "alice", Some("o2")));
    assert_eq!(
        w.moves[1..],
        [mv("a-call", None, Ringing, None, None), mv("b-call", Some(Ringing), Cancelled, Some(10), None)]
    );
    // A disconnect only starts the grace: no state change, nothing counted until it expires.
    let mut w = ringing();
    w.run(2_000, Input::Disconnected { user: "alice".into(), sid: "a1".into() });
    assert_eq!(w.moves.len(), 1);
    w.fire(22_000);
    assert_eq!(w.moves.last(), Some(&mv("c1", Some(Ringing), Cancelled, Some(21_000), None)));
}
