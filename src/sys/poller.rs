//! The descriptors the loop waits on, in one epoll set: registered once
//! when they are made (a readiness pipe when its `run` starts), dropped
//! by the kernel when they are closed. Waiting costs the same with five
//! or five thousand pipes open. And for nitroctl, which waits on a few
//! sockets at a time, a plain poll.

use crate::core::Fd;

pub struct Poller {
    fd: Fd,
}

impl Poller {
    pub fn new() -> std::io::Result<Poller> {
        // SAFETY: epoll_create1 takes only flags.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Poller { fd })
    }

    /// Watches `fd` for input; `key` comes back with its events. Errno on
    /// failure.
    pub fn add(&self, fd: Fd, key: u64) -> Result<(), i32> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: key,
        };
        // SAFETY: event is a valid epoll_event.
        if unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            return Err(super::errno());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1: no limit) and returns the keys of the
    /// descriptors that have input, in `keys`.
    pub fn wait<'k>(
        &self,
        events: &mut [libc::epoll_event],
        keys: &'k mut [u64],
        timeout_ms: i32,
    ) -> &'k [u64] {
        let room = events.len().min(keys.len());
        // SAFETY: events is valid for `room` entries.
        let n = unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), room as i32, timeout_ms) };
        let n = n.max(0) as usize;
        for (key, event) in keys.iter_mut().zip(&events[..n]) {
            *key = event.u64;
        }
        &keys[..n]
    }
}

/// Waits up to `timeout` (rounded up to the millisecond: never early) for
/// input on any of `fds`, a negative one being skipped: which of them can
/// be read (or hung up, or failed), in order; the error of poll (EINTR
/// when a signal came) otherwise.
pub fn poll_input(fds: &[i32], timeout: std::time::Duration) -> std::io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout_ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    // SAFETY: pollfds is a valid array of its length.
    let rc = unsafe {
        libc::poll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            timeout_ms,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(pollfds.iter().map(|p| p.revents != 0).collect())
}
