//! The relay's workers. Worker 0 runs on the main thread beside the control plane and also serves
//! TCP and TLS; every other worker has a thread and a single-threaded runtime of its own, its own
//! listening sockets (one per address, in the SO_REUSEPORT group `steering` steers) and its own
//! relay sockets, so a datagram is handled start to finish on one core with no lock. What must be
//! one figure relay-wide lives in the `Ledger` their cores share.
//!
//! The control plane reaches the other workers with jobs: a closure sent to the worker's thread
//! and run there between bursts, its result sent back. Scrapes and admin calls are rare, so the
//! main thread simply waits for the answers (each worker answers within one burst).

use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{Listeners, StreamOptions, Worker, WorkerError};
use crate::proto::{Ledger, Server, ServerConfig};

/// How long the control plane waits for a worker thread's answer before going on without it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

type Job = Box<dyn FnOnce(&Worker) + Send>;

/// What a worker thread starts from.
pub struct WorkerSpec {
    pub server: ServerConfig,
    pub ledger: Arc<Ledger>,
    pub seed: [u8; 32],
    pub udp: Vec<std::net::UdpSocket>,
}

pub struct WorkerPool {
    local: Rc<Worker>,
    remote: Vec<UnboundedSender<Job>>,
}

impl WorkerPool {
    /// Starts a thread per spec and waits until each has its sockets registered (so a failure
    /// surfaces at startup, before READY).
    pub fn start(local: Rc<Worker>, specs: Vec<WorkerSpec>) -> Result<Self, WorkerError> {
        let mut remote = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let (jobs, rx) = unbounded_channel();
            let (started_tx, started_rx) = mpsc::sync_channel(1);
            std::thread::Builder::new()
                .name(format!("turn-worker-{}", i + 1))
                .spawn(move || run_thread(spec, rx, started_tx))
                .map_err(WorkerError::Io)?;
            match started_rx.recv() {
                Ok(Ok(())) => remote.push(jobs),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(WorkerError::Io(std::io::Error::other("a worker thread died starting"))),
            }
        }
        Ok(WorkerPool { local, remote })
    }

    /// Worker 0, on this thread (TCP/TLS, certificates).
    pub fn local(&self) -> &Rc<Worker> {
        &self.local
    }

    /// Workers in all.
    pub fn worker_count(&self) -> usize {
        1 + self.remote.len()
    }

    /// Runs `f` on every worker, on its own thread, and returns the answers in worker order; a
    /// worker that does not answer within `ANSWER_TIMEOUT` is left out, with a warning.
    pub fn each<R: Send + 'static>(&self, f: impl Fn(&Worker) -> R + Send + Sync + 'static) -> Vec<R> {
        let f = Arc::new(f);
        let pending: Vec<_> = self
            .remote
            .iter()
            .map(|jobs| {
                let (tx, rx) = mpsc::sync_channel(1);
                let f = f.clone();
                let sent = jobs.send(Box::new(move |w: &Worker| {
                    let _ = tx.send(f(w));
                }));
                (sent.is_ok(), rx)
            })
            .collect();
        let mut answers = vec![f(&self.local)];
        for (i, (sent, rx)) in pending.into_iter().enumerate() {
            match rx.recv_timeout(ANSWER_TIMEOUT) {
                Ok(answer) if sent => answers.push(answer),
                _ => tracing::warn!(worker = i + 1, "a worker did not answer the control plane"),
            }
        }
        answers
    }

    pub fn allocation_count(&self) -> usize {
        self.each(Worker::allocation_count).into_iter().sum()
    }

    pub fn is_draining(&self) -> bool {
        self.local.with_server(Server::is_draining)
    }

    /// Ends every allocation of `user` on every worker; returns how many ended.
    pub fn drop_user(&self, user: &str) -> usize {
        let user = user.to_owned();
        self.each(move |w| w.drop_user(&user)).into_iter().sum()
    }

    pub fn start_drain(&self) {
        self.each(Worker::start_drain);
    }

    pub fn set_fleet_alternates(&self, alternates: Vec<std::net::SocketAddr>) {
        self.each(move |w| w.set_fleet_alternates(alternates.clone()));
    }

    /// Applies a reloaded configuration on every worker; returns what needs a restart.
    pub fn reload_config(&self, server: ServerConfig) -> Vec<&'static str> {
        for jobs in &self.remote {
            let cfg = server.clone();
            let _ = jobs.send(Box::new(move |w: &Worker| {
                w.reload_config(cfg);
            }));
        }
        self.local.reload_config(server)
    }
}

fn run_thread(spec: WorkerSpec, mut jobs: UnboundedReceiver<Job>, started: mpsc::SyncSender<Result<(), WorkerError>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            let _ = started.send(Err(WorkerError::Io(e)));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let server = Server::with_ledger(spec.server, spec.seed, spec.ledger);
        let listeners = Listeners { udp: spec.udp, ..Listeners::default() };
        let worker = match Worker::new(server, listeners, StreamOptions::default()) {
            Ok(w) => w,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        let _ = started.send(Ok(()));
        let serve_jobs = async {
            // Ends when the pool is dropped: the process is stopping.
            while let Some(job) = jobs.recv().await {
                job(&worker);
            }
        };
        tokio::select! {
            () = worker.run() => {}
            () = serve_jobs => {}
        }
    });
}
