//! The Socket.IO gateway (socketioxide, protocol v5): authenticates the handshake, puts each
//! socket in its user's room and its own room, turns client events into state machine inputs,
//! and performs the resulting effects through the adapter (so with Redis, rooms span instances).

mod connect;
pub mod conns;
mod effects;
pub mod guard;
pub mod limits;
mod overflow;
mod request;

use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event as EventName, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use socketioxide_core::adapter::DefinedAdapter;
use tokio::sync::mpsc;

use crate::auth::Authenticator;
use crate::calls::{ErrorCode, Event, Input, Reply};
use crate::store::{Engine, KvStore};
use crate::webhook::Webhook;

pub use overflow::{verdict, DropReason, Verdict};
pub use request::{parse, ClientEvent};

/// Room holding every socket of `user`.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// Everything the handlers share.
pub struct Gateway<S, A: Adapter> {
    /// Call state.
    pub engine: Engine<S>,
    /// Emitting and room queries.
    pub io: SocketIo<A>,
    /// Token checks.
    pub auth: Authenticator,
    /// Allowed browser origins (`*` = any).
    pub origins: Vec<String>,
    /// Largest accepted payload.
    pub max_event_bytes: usize,
    /// Push notifications.
    pub webhook: Webhook,
    /// One clone per live socket task; shutdown waits for them to finish so every socket's
    /// disconnect (which starts its calls' reconnect grace) reaches the store before exit.
    pub tasks: Arc<()>,
    /// With Redis: where this instance records its sockets, so another can reap them if it dies.
    pub nodes: Option<crate::cluster::NodeRegistry>,
    /// Sockets gauge, handshake refusals, adapter and registry errors.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Pre-upgrade checks and per-source limits; the handshake records its refusals there.
    pub guard: Arc<guard::Guard>,
}

/// Registers the default namespace with auth middleware and event handlers. The result is the
/// adapter's initialisation: `()` in memory, a future to await (Redis subscriptions) otherwise.
pub fn register<S: KvStore, A: Adapter + DefinedAdapter>(gateway: Arc<Gateway<S, A>>) -> A::InitRes {
    let io = gateway.io.clone();
    // socketioxide 0.18 only takes async handlers and spawns the future they return, but it
    // calls the closure itself inline: the work is done there (see `Gateway::connected`) and the
    // future is empty.
    let on_connect = {
        let gw = gateway.clone();
        move |s: SocketRef<A>| {
            gw.clone().connected(s);
            std::future::ready(())
        }
    };
    let middleware = {
        let gw = gateway.clone();
        move |s: SocketRef<A>, TryData(auth): TryData<Value>| {
            let gw = gw.clone();
            async move {
                gw.authenticate(&s, auth.ok())?;
                // Here, not in the connect handler: socketioxide sends CONNECT before it calls
                // that handler, from another task, and drops an event that finds no handler, so
                // a client emitting on `connect` (the web client's `call:sync`) could lose its
                // first request and never get the ack. The middleware runs before CONNECT.
                gw.listen(&s);
                Ok::<(), connect::Refused>(())
            }
        }
    };
    io.ns("/", on_connect.with(middleware))
}

/// Requests a socket may have queued before it is told to slow down.
const QUEUE_DEPTH: usize = 64;

/// Work for a socket's serial task.
enum Job<A: Adapter> {
    Request(ClientEvent, Option<Value>, AckSender<A>),
    Gone,
}

/// The sending end of a socket's queue, kept in its extensions.
struct Queue<A: Adapter>(mpsc::Sender<Job<A>>);

impl<A: Adapter> Clone for Queue<A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// The receiving end, parked in the extensions from the middleware until the connect handler
/// starts the socket's task; a socket that never completes its connect drops it unserved.
struct Parked<A: Adapter>(Arc<std::sync::Mutex<Option<mpsc::Receiver<Job<A>>>>>);

impl<A: Adapter> Clone for Parked<A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: KvStore, A: Adapter> Gateway<S, A> {
    /// Handlers push onto a per-socket queue served by one task, so a client's events are
    /// handled in the order it sent them (socketioxide spawns async handlers concurrently, which
    /// could run a `call:offer` before the `call:initiate` sent just before it), and the
    /// disconnect is handled after everything the socket sent. Registered by the middleware;
    /// what arrives before [`Gateway::serve`] starts the task waits in the queue.
    fn listen(self: &Arc<Self>, s: &SocketRef<A>) {
        let (tx, rx) = mpsc::channel::<Job<A>>(QUEUE_DEPTH);
        s.extensions.insert(Queue(tx));
        s.extensions.insert(Parked(Arc::new(std::sync::Mutex::new(Some(rx)))));
        // As for the connect handler, the closures enqueue inline (socketioxide calls them as
        // the packets arrive, in order) and return an empty future: enqueueing inside the
        // future would race, as socketioxide spawns each one.
        for event in ClientEvent::ALL {
            let gw = self.clone();
            s.on(event.name(), move |s: SocketRef<A>, TryData(data): TryData<Value>, ack: AckSender<A>| {
                gw.enqueue(&s, event, data.ok(), ack);
                std::future::ready(())
            });
        }
        // Any other event name: refused at once with an error ack (it touches no state, so it
        // need not wait in the queue).
        let gw = self.clone();
        s.on_fallback(move |s: SocketRef<A>, EventName(name): EventName, ack: AckSender<A>| {
            gw.unknown_event(&s, &name, ack);
            std::future::ready(())
        });
    }

    /// Starts the socket's serial task (once connected and in its rooms, so the effects of its
    /// first requests reach it).
    fn serve(self: &Arc<Self>, s: &SocketRef<A>, user: String) {
        let parked = s.extensions.get::<Parked<A>>();
        let Some(mut rx) = parked.and_then(|p| p.0.lock().ok().and_then(|mut rx| rx.take())) else {
            tracing::error!(sid = %s.id, "socket connected without its request queue");
            return;
        };
        let gw = self.clone();
        let socket = s.clone();
        let alive = self.tasks.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let sid = socket.id.to_string();
            if let Some(nodes) = &gw.nodes {
                if let Err(e) = nodes.add(&sid, &user).await {
                    gw.metrics.redis_error(crate::metrics::RedisComponent::Nodes);
                    tracing::warn!(error = %e, "node registry: socket not recorded");
                }
            }
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Request(event, data, ack) => gw.request(&socket, &user, &sid, event, data, ack).await,
                    Job::Gone => {
                        gw.run(Input::Disconnected { user: user.clone(), sid: sid.clone() }).await;
                        if let Some(nodes) = &gw.nodes {
                            let _ = nodes.remove(&sid).await;
                        }
                        break;
                    }
                }
            }
        });
    }

    async fn request(
        &self,
        s: &SocketRef<A>,
        user: &str,
        sid: &str,
        event: ClientEvent,
        data: Option<Value>,
        ack: AckSender<A>,
    ) {
        let reply = match parse(event, user, sid, data, self.max_event_bytes) {
            Ok(input) => self.run(input).await,
            Err(reply) => reply,
        };
        if let Reply::Err { code, call_id, .. } = &reply {
            tracing::info!(%user, %sid, event = event.name(), error = code.as_str(), call = ?call_id, "request refused");
            let mut data = reply.to_json();
            data["code"] = data["error"].clone();
            self.send(s, Event::Error.name(), &data);
        }
        if let Err(e) = ack.send(&reply.to_json()) {
            self.send_failed(s, "ack", &e);
        }
    }

    /// Queues the socket's disconnect behind its pending requests.
    async fn gone(&self, s: &SocketRef<A>) {
        if let Some(queue) = s.extensions.get::<Queue<A>>() {
            let _ = queue.0.send(Job::Gone).await;
        }
    }

    /// Runs an input through the engine and performs its effects.
    pub async fn run(&self, input: Input) -> Reply {
        match self.engine.run(now_ms(), input).await {
            Ok((reply, effects)) => {
                self.perform(effects).await;
                reply
            }
            Err(e) => {
                tracing::error!(error = %e, "call store failed");
                Reply::Err { code: ErrorCode::Unavailable, call_id: None, winner: None }
            }
        }
    }
}

/// Longest event name logged as is.
const LOGGED_NAME_CHARS: usize = 64;

impl<S: KvStore, A: Adapter> Gateway<S, A> {
    /// Puts a request on the socket's queue, or refuses it if the queue is full.
    fn enqueue(&self, s: &SocketRef<A>, event: ClientEvent, data: Option<Value>, ack: AckSender<A>) {
        let Some(queue) = s.extensions.get::<Queue<A>>() else { return };
        if let Err(mpsc::error::TrySendError::Full(Job::Request(_, _, ack))) =
            queue.0.try_send(Job::Request(event, data, ack))
        {
            tracing::warn!(sid = %s.id, "request queue full: refusing");
            let reply = Reply::Err { code: ErrorCode::Unavailable, call_id: None, winner: None };
            if let Err(e) = ack.send(&reply.to_json()) {
                self.send_failed(s, "ack", &e);
            }
        }
    }

    /// Acknowledges an event name the service does not handle with `unknown_event` (if the
    /// client asked for an ack) and logs it.
    fn unknown_event(&self, s: &SocketRef<A>, name: &str, ack: AckSender<A>) {
        let user = s.extensions.get::<crate::auth::Principal>().map(|p| p.user.clone()).unwrap_or_default();
        let event: String = name.chars().take(LOGGED_NAME_CHARS).collect();
        tracing::info!(%user, sid = %s.id, %event, error = ErrorCode::UnknownEvent.as_str(), "request refused");
        let reply = Reply::Err { code: ErrorCode::UnknownEvent, call_id: None, winner: None };
        if let Err(e) = ack.send(&reply.to_json()) {
            self.send_failed(s, "ack", &e);
        }
    }
}

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
