//! Waiting for datagrams: one poll over the sockets a command reads and
//! the signal pipe, so that a signal ends any wait at once.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use nitro::sys::{poller, signals};

/// Room for the largest datagram nitro sends.
pub const DATAGRAM_MAX: usize = 65536;

/// What ended a `wait`.
pub struct Woken {
    /// Which of the sockets have something to read, in order.
    pub readable: Vec<bool>,
    /// Nothing happened at all: neither a datagram nor a signal.
    pub timed_out: bool,
}

/// Waits up to `timeout` for a datagram on one of `sockets` (`None`, a
/// socket closed already, never has one) or for a signal.
pub fn wait(sockets: &[Option<&UnixDatagram>], timeout: Duration) -> Woken {
    let fds: Vec<i32> = sockets
        .iter()
        .map(|s| s.map_or(-1, AsRawFd::as_raw_fd))
        .chain([signals::interrupt_fd()])
        .collect();
    match poller::poll_input(&fds, timeout) {
        Ok(mut ready) => {
            let timed_out = !ready.contains(&true);
            ready.truncate(sockets.len());
            Woken {
                readable: ready,
                timed_out,
            }
        }
        // Interrupted by a signal: the caller will see it.
        Err(_) => Woken {
            readable: vec![false; sockets.len()],
            timed_out: false,
        },
    }
}
