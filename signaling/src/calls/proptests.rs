//! Property tests of the call machine: arbitrary sequences of requests, socket events and time
//! passing, driven through the same committing `World` as `tests.rs`, never panic and keep the
//! invariants the stores and clients rely on. A few users, devices and call ids make collisions
//! (glare, busy, retries, devices racing to answer) common rather than rare.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::tests::World;
use super::*;

const USERS: [&str; 3] = ["ann", "bob", "cat"];
const CALL_IDS: [&str; 3] = ["c1", "c2", "c3"];

/// One step of a run: an input at the current time, or time passing (due deadlines fire, as the
/// stores' timer loops fire them).
#[derive(Debug, Clone)]
enum Step {
    Input(Input),
    Wait(u64),
}

fn user() -> impl Strategy<Value = UserId> {
    prop::sample::select(USERS.to_vec()).prop_map(str::to_owned)
}

/// `(user, one of the user's two devices)`: a socket belongs to one user, as the gateway ensures.
fn device() -> impl Strategy<Value = (UserId, SocketId)> {
    (user(), 0..2u8).prop_map(|(u, n)| {
        let sid = format!("{u}-{n}");
        (u, sid)
    })
}

fn call_id() -> impl Strategy<Value = CallId> {
    prop::sample::select(CALL_IDS.to_vec()).prop_map(str::to_owned)
}

fn sdp() -> impl Strategy<Value = serde_json::Value> {
    (0..3u8).prop_map(|n| json!(format!("v=0 sdp-{n}")))
}

fn deadline_kind() -> impl Strategy<Value = DeadlineKind> {
    prop_oneof![
        Just(DeadlineKind::Ring),
        Just(DeadlineKind::Grace(Role::Caller)),
        Just(DeadlineKind::Grace(Role::Callee))
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => (call_id(), device(), user(), prop::option::of(sdp())).prop_map(|(call_id, (user, sid), callee, sdp)| {
            Input::Initiate { call_id, user, sid, callee, chat_id: "chat".into(), call_type: CallType::Audio, sdp }
        }),
        1 => (call_id(), device(), sdp()).prop_map(|(call_id, (user, sid), sdp)| Input::Offer { call_id, user, sid, sdp }),
        3 => (call_id(), device(), sdp()).prop_map(|(call_id, (user, sid), sdp)| Input::Answer { call_id, user, sid, sdp }),
        1 => (call_id(), device()).prop_map(|(call_id, (user, sid))| Input::Reject { call_id, user, sid }),
        2 => (call_id(), device()).prop_map(|(call_id, (user, sid))| Input::End { call_id, user, sid }),
        1 => (call_id(), device()).prop_map(|(call_id, (user, sid))| Input::Candidate {
            call_id,
            user,
            sid,
            candidate: json!("candidate:1 1 udp 1 192.0.2.1 9 typ host"),
        }),
        2 => (device(), prop::collection::vec(call_id(), 0..2))
            .prop_map(|((user, sid), resume)| Input::Sync { user, sid, resume }),
        1 => device().prop_map(|(user, sid)| Input::Connected { user, sid }),
        2 => device().prop_map(|(user, sid)| Input::Disconnected { user, sid }),
        // A deadline claimed out of turn (a stale member, another instance's late claim).
        1 => (call_id(), deadline_kind()).prop_map(|(call_id, kind)| Input::Deadline { call_id, kind }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![4 => input().prop_map(Step::Input), 1 => (0..60_000u64).prop_map(Step::Wait)]
}

/// The invariants after every committed step; `before` is each call's state before the step.
fn check(w: &World, before: &BTreeMap<CallId, CallState>) -> Result<(), TestCaseError> {
    for (id, call) in &w.calls {
        if let Some(&was) = before.get(id) {
            prop_assert!(was.is_live() || was == call.state, "{id} left terminal state {was:?} for {:?}", call.state);
        }
        match call.state {
            CallState::Ringing => {
                let ring = Deadline { call_id: id.clone(), kind: DeadlineKind::Ring };
                prop_assert_eq!(
                    w.deadlines.get(&ring),
                    Some(&call.ring_deadline_ms),
                    "ringing {} has no ring deadline",
                    id
                );
            }
            CallState::Accepted => {
                prop_assert!(
                    call.callee_socket.is_some() && call.answered_at_ms.is_some(),
                    "{id} accepted without a device"
                );
            }
            _ => {}
        }
        if call.state.is_live() {
            for party in [&call.caller, &call.callee] {
                prop_assert_eq!(w.slots.get(party), Some(id), "live {} is not in {}'s slot", id, party);
            }
            prop_assert!(call.caller != call.callee, "{id} calls itself");
        } else {
            prop_assert!(
                !w.deadlines.keys().any(|d| &d.call_id == id && d.kind == DeadlineKind::Ring),
                "terminal {id} keeps a ring deadline"
            );
        }
    }
    // One answer wins a call: it is accepted at most once.
    for id in CALL_IDS {
        let accepted = w.moves.iter().filter(|m| m.0 == id && m.2 == CallState::Accepted).count();
        prop_assert!(accepted <= 1, "{id} accepted {accepted} times");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_runs_keep_the_invariants(steps in prop::collection::vec(step(), 1..40)) {
        let mut w = World::default();
        let mut now = 1_700_000_000_000u64;
        for step in steps {
            let before: BTreeMap<CallId, CallState> = w.calls.iter().map(|(id, c)| (id.clone(), c.state)).collect();
            match step {
                Step::Input(input) => {
                    w.run(now, input);
                }
                Step::Wait(ms) => {
                    now += ms;
                    w.fire(now);
                }
            }
            check(&w, &before)?;
        }
    }
}
