//! A datagram worker's thread. It has no async runtime: the thread sleeps in `epoll_wait` on its
//! own socket set, so a datagram costs one wake-up, one `epoll_wait` and its share of a
//! `recvmmsg`/`sendmmsg`, with no reactor between the socket and the core (a runtime watching the
//! set would add a second, nested epoll and its scheduler to every wake-up). Timers become the
//! wait's timeout; the control plane reaches the thread through an eventfd in the same set.

use std::io;

use super::clock;
use super::datagram::{DatagramSide, NoStreams};
use super::udp::DatagramPath;

/// Serves the worker's sockets and timers until `on_wakeup` returns false (`Ok`) or the set
/// breaks (`Err`). `on_wakeup` runs whenever the wake-up fd was readable.
pub(super) fn serve(side: &DatagramSide, mut on_wakeup: impl FnMut() -> bool) -> io::Result<()> {
    let mut path = DatagramPath::new();
    let mut next_timer = side.run_timers(&NoStreams);
    loop {
        let timeout = clock::until(next_timer);
        // Only a broken epoll fd fails here (EINTR comes back as an empty list).
        side.relays.borrow_mut().wait(&mut path.ready, timeout)?;
        // Level-triggered: a socket left with datagrams after its batch is listed again by the
        // next wait, which then does not sleep, so every ready socket gets its turn in order.
        let round = path.serve_ready(side, &NoStreams);
        if round.woken && !on_wakeup() {
            return Ok(());
        }
        // The round's own clock read, taken as the wait returned, serves the timers too.
        if round.at >= next_timer {
            next_timer = side.run_timers(&NoStreams);
        }
    }
}
