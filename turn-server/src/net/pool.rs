//! The relay's workers. Every datagram worker has a thread of its own with no runtime
//! (`udp_thread`), its own listening sockets (one per address, in the SO_REUSEPORT group
//! `steering` steers) and its own relay sockets, so a datagram is handled start to finish on one
//! core with no lock. The stream worker (TCP and TLS clients) runs on the main thread beside the
//! control plane. What must be one figure relay-wide lives in the `Ledger` their cores share.
//!
//! The control plane reaches the datagram workers with jobs: a closure sent to the worker's thread
//! (a channel, and an eventfd in the worker's epoll set to wake it) and run there between bursts,
//! its result sent back. Scrapes and admin calls are rare, so the main thread simply waits for the
//! answers (each worker answers within one burst).

use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::{Listeners, StreamOptions, Worker, WorkerError};
use crate::proto::{Ledger, Server, ServerConfig};
use udp_batch::Wakeup;

/// How long the control plane waits for a worker thread's answer before going on without it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

type Job = Box<dyn FnOnce(&Worker) + Send>;

/// What a worker thread starts from.
pub struct WorkerSpec {
    pub server: ServerConfig,
    pub ledger: Arc<Ledger>,
    pub seed: [u8; 32],
    pub udp: Vec<std::net::UdpSocket>,
    /// The kernel fast path, shared by every worker (each mirrors its own channels into it).
    pub offload: Option<Arc<crate::offload::Offload>>,
}

pub struct WorkerPool {
    local: Rc<Worker>,
    remote: Vec<Remote>,
}

/// The control plane's end of a datagram worker's job channel.
struct Remote {
    /// `None` only while dropping: the thread stops when the channel has closed and it is woken.
    jobs: Option<mpsc::Sender<Job>>,
    wakeup: Arc<Wakeup>,
}

impl Remote {
    fn send(&self, job: Job) -> bool {
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok());
        self.wakeup.ring();
        sent
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.jobs = None;
        self.wakeup.ring();
    }
}

impl WorkerPool {
    /// Starts a datagram worker thread per spec, named `turn-udp-N` (worker `udp-N`), and waits
    /// until each has its sockets registered (so a failure surfaces at startup, before READY).
    /// `local` is the stream worker, on this thread.
    pub fn start(local: Rc<Worker>, specs: Vec<WorkerSpec>) -> Result<Self, WorkerError> {
        let mut remote = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let (jobs, rx) = mpsc::channel();
            let wakeup = Arc::new(Wakeup::new()?);
            let (started_tx, started_rx) = mpsc::sync_channel(1);
            let thread_wakeup = wakeup.clone();
            std::thread::Builder::new()
                .name(format!("turn-udp-{i}"))
                .spawn(move || run_thread(format!("udp-{i}"), spec, rx, &thread_wakeup, started_tx))
                .map_err(WorkerError::Io)?;
            match started_rx.recv() {
                Ok(Ok(())) => remote.push(Remote { jobs: Some(jobs), wakeup }),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(WorkerError::Io(std::io::Error::other("a worker thread died starting"))),
            }
        }
        Ok(WorkerPool { local, remote })
    }

    /// The stream worker, on this thread (TCP/TLS, certificates).
    pub fn local(&self) -> &Rc<Worker> {
        &self.local
    }

    /// Datagram workers (threads serving UDP clients).
    pub fn datagram_workers(&self) -> usize {
        self.remote.len()
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
                (sent, rx)
            })
            .collect();
        let mut answers = vec![f(&self.local)];
        for (i, (sent, rx)) in pending.into_iter().enumerate() {
            match rx.recv_timeout(ANSWER_TIMEOUT) {
                Ok(answer) if sent => answers.push(answer),
                _ => tracing::warn!(worker = %format_args!("udp-{i}"), "a worker did not answer the control plane"),
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
            jobs.send(Box::new(move |w: &Worker| {
                w.reload_config(cfg);
            }));
        }
        self.local.reload_config(server)
    }
}

fn run_thread(
    name: String,
    spec: WorkerSpec,
    jobs: mpsc::Receiver<Job>,
    wakeup: &Wakeup,
    started: mpsc::SyncSender<Result<(), WorkerError>>,
) {
    let server = Server::with_ledger(spec.server, spec.seed, spec.ledger);
    let listeners = Listeners { udp: spec.udp, ..Listeners::default() };
    let worker = match Worker::new(name.clone(), server, listeners, StreamOptions::default(), spec.offload)
        .and_then(|w| w.watch_wakeup(wakeup).map(|()| w).map_err(WorkerError::Io))
    {
        Ok(w) => w,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    // Every job waiting when the doorbell rang runs now; the thread ends when the pool is
    // dropped (the process is stopping).
    let serve_jobs = || {
        wakeup.clear();
        loop {
            match jobs.try_recv() {
                Ok(job) => job(&worker),
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    };
    let _ = started.send(Ok(()));
    let why = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.serve_datagrams(serve_jobs))) {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("its sockets cannot be polled: {e}"),
        Err(_) => "it panicked (the message is above)".to_owned(),
    };
    // A relay with a dead worker would fail that worker's share of clients while looking alive:
    // stop, so the service manager restarts it (the unit says Restart=on-failure).
    tracing::error!(worker = %name, "a datagram worker stopped: {why}; stopping the relay");
    std::process::exit(EXIT_WORKER_DIED);
}

/// `EX_SOFTWARE` from sysexits.h: an internal error.
const EXIT_WORKER_DIED: i32 = 70;
