//! The real `Os` of the core: processes, pipes, the service directory
//! (nitro's working directory) and the event sockets in `notify/`.

use std::ffi::{CStr, CString};

use crate::core::{self, Bytes, CgroupStats, Fd, Pid, ReadResult, Script, Spawn, SpawnError};
use crate::proto::{NAME_MAX, State};

use super::cgroup::{Cgroups, Unused};
use super::poller::Poller;
use super::spawn::Spawner;
use super::{DirReader, errno, join_path};

pub struct RealOs {
    spawner: Spawner,
    /// What the loop waits on; readiness pipes join it here.
    poller: Poller,
    /// The service directory, opened once (nitro's cwd).
    service_dir: Fd,
    scan: DirReader<Box<[u8]>>,
    /// `notify/`, opened once: read for every event, and the directory the
    /// entries too long for an address are reached from.
    notify_dir: Fd,
    /// Its path, the prefix of the address of each entry: it needs no
    /// `/proc`, which a pid 1 has only once `SYS/setup` mounted it.
    notify_path: CString,
    notify_scan: DirReader<Box<[u8]>>,
    /// Events announced since the last `flush_events`: their datagrams
    /// one after another, sent together after one read of `notify/`.
    events: Box<[u8; EVENTS_HELD]>,
    events_len: usize,
    /// The control socket: events come from it, so that receivers see
    /// `nitro.sock` as the sender, as with the C nitro.
    control: Fd,
    /// How much of its send buffer events may take (half): what a
    /// receiver has not read yet still counts against it, and receivers
    /// that read nothing must not leave no room for the replies.
    events_room: usize,
    /// The services' cgroups, when nitro uses them.
    cgroups: Option<Cgroups>,
    /// Looked for when the first service starts (`Cgroups::later`).
    cgroups_later: bool,
}

/// The poller's key of the cgroup watch; the shell's own keys are above
/// it, the core's readiness tokens below.
pub const CGROUP_KEY: u64 = u64::MAX - 2;

impl RealOs {
    /// `notify_dir` is the path of the `notify/` directory, `control` the
    /// control socket (nitro keeps it open for as long as `RealOs` lives).
    /// No cgroups until `set_up_cgroups`.
    pub fn new(notify_dir: &CStr, control: Fd) -> std::io::Result<RealOs> {
        let open_dir = |path: &CStr| {
            super::open_dir(libc::AT_FDCWD, path).ok_or_else(std::io::Error::last_os_error)
        };
        Ok(RealOs {
            spawner: Spawner::new()?,
            poller: Poller::new()?,
            service_dir: open_dir(c".")?,
            scan: DirReader::new(super::zeroed_bytes::<4096>()),
            notify_dir: open_dir(notify_dir)?,
            notify_path: notify_dir.to_owned(),
            notify_scan: DirReader::new(super::zeroed_bytes::<4096>()),
            events: super::zeroed_bytes(),
            events_len: 0,
            control,
            events_room: send_buffer(control) / 2,
            cgroups: None,
            cgroups_later: false,
        })
    }

    /// Looks for the cgroups services are to run in (docs/cgroups.md)
    /// and says what it found. The real pid 1 of an initramfs has no
    /// `/sys` yet: it looks when the first service starts, once
    /// `SYS/setup` has run.
    pub fn set_up_cgroups(&mut self, real_pid1: bool) {
        if Cgroups::later(real_pid1) {
            self.cgroups_later = true;
            return super::warn(format_args!("cgroups: looked for once SYS/setup has run"));
        }
        self.use_cgroups(Cgroups::setup(real_pid1));
    }

    /// Watches `cgroups` for services that get empty.
    fn watch(&self, cgroups: &Cgroups) -> std::io::Result<()> {
        self.poller
            .add(cgroups.inotify_fd(), CGROUP_KEY)
            .map_err(std::io::Error::from_raw_os_error)
    }

    /// Takes the cgroups found, watched under `CGROUP_KEY`, and says
    /// below which root services run, or why they run in none.
    fn use_cgroups(&mut self, found: Result<Cgroups, Unused>) {
        let cgroups = match found {
            Ok(cgroups) => cgroups,
            Err(unused) => return super::warn(format_args!("cgroups not used: {}", unused.0)),
        };
        if let Err(e) = self.watch(&cgroups) {
            return super::warn(format_args!(
                "cgroups not used: cannot watch them: {}",
                super::IoText(&e)
            ));
        }
        super::warn(format_args!(
            "services run in cgroups below {}",
            Bytes(cgroups.root().to_bytes())
        ));
        self.cgroups = Some(cgroups);
    }

    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.cgroups.as_ref()
    }

    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    /// The spawner, for the programs the shell runs itself (`SYS/final`).
    pub fn spawner(&self) -> &Spawner {
        &self.spawner
    }

    /// Sends the events held to the sockets in `notify/` that want them
    /// (`ALL,…` every one, `<service>,…` that service's), each socket
    /// in the order they happened. The loop calls it before it waits and
    /// before each reply, so that a reply comes after the events of its
    /// request, as with the C nitro; holding them until then lets one
    /// read of `notify/` serve every event of a wake-up (a shutdown sends
    /// every signal first).
    pub fn flush_events(&mut self) {
        if self.events_len == 0 {
            return;
        }
        self.notify_scan.rewind(self.notify_dir);
        let mut entry = [0u8; 256];
        while let Some(found) = self.notify_scan.next_name() {
            let n = found.len();
            if n >= entry.len() {
                continue;
            }
            entry[..n].copy_from_slice(found);
            let Some(comma) = entry[..n].iter().position(|&b| b == b',') else {
                continue;
            };
            let wants = &entry[..comma];
            let mut at = 0;
            while at < self.events_len {
                let len = usize::from(u16::from_le_bytes([self.events[at], self.events[at + 1]]));
                let event = &self.events[at..at + 3 + len];
                at += 3 + len;
                if (wants == b"ALL" || wants == &event[3..]) && !self.send_event(&entry[..n], event)
                {
                    break;
                }
            }
        }
        self.events_len = 0;
    }

    /// Sends `event` to the socket `notify/<entry>`; removes it if nobody
    /// listens there any more. Whether it is still there.
    fn send_event(&self, entry: &[u8], event: &[u8]) -> bool {
        if unread(self.control) > self.events_room {
            return true;
        }
        let mut name = [0u8; SUN_PATH];
        let Some(name) = join_path(&mut name, entry, b"") else {
            return true;
        };
        let mut path = [0u8; SUN_PATH];
        let refused = match join_path(&mut path, self.notify_path.to_bytes(), entry) {
            Some(path) => self.send_to(path, event),
            None => {
                // The full path does not fit in an address: the entry's
                // name does, seen from inside `notify/` (docs/choices.md).
                // SAFETY: fchdir on directory fds we own; the service
                // directory is nitro's working directory again right after.
                unsafe { libc::fchdir(self.notify_dir) };
                let refused = self.send_to(name, event);
                // SAFETY: as above.
                unsafe { libc::fchdir(self.service_dir) };
                refused
            }
        };
        if refused {
            // SAFETY: name is a valid C string relative to notify_dir.
            unsafe { libc::unlinkat(self.notify_dir, name.as_ptr(), 0) };
        }
        !refused
    }

    /// Sends `event` from the control socket to the socket at `path`,
    /// never blocking; whether it was refused (nobody listens there).
    fn send_to(&self, path: &CStr, event: &[u8]) -> bool {
        // SAFETY: a zeroed sockaddr_un is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, &src) in addr.sun_path.iter_mut().zip(path.to_bytes_with_nul()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: event and addr are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.control,
                event.as_ptr().cast(),
                event.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        sent < 0 && errno() == libc::ECONNREFUSED
    }
}

/// The size of the send buffer of `socket` (0 if unknown: no event is
/// sent then, rather than risk the replies).
fn send_buffer(socket: Fd) -> usize {
    let mut size: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: size and len are valid for getsockopt's int option.
    let got = unsafe {
        libc::getsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if got < 0 { 0 } else { size.max(0) as usize }
}

/// Bytes sent from `socket` that their receivers have not read yet (as
/// the kernel counts them against its send buffer).
fn unread(socket: Fd) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (the same number as TIOCOUTQ, which is all the
    // libc crate names) writes one int.
    unsafe { libc::ioctl(socket, libc::TIOCOUTQ, &mut queued) };
    queued.max(0) as usize
}

/// Room for the events of one wake-up (a few bytes each: a shutdown of
/// 200 services announces 200 at once); more are sent as it fills.
const EVENTS_HELD: usize = 4096;

/// Size of `sun_path`: an address path and its NUL must fit.
const SUN_PATH: usize = 108;

impl core::Os for RealOs {
    fn spawn(&mut self, spawn: &Spawn) -> Result<Pid, SpawnError> {
        if self.cgroups_later && spawn.cgroup.is_some() {
            self.cgroups_later = false;
            self.use_cgroups(Cgroups::setup(true));
        }
        let Some((cgroups, name)) = self.cgroups.as_mut().zip(spawn.cgroup) else {
            return self.spawner.spawn(spawn, None);
        };
        let (dir, made) = match cgroups.open(name, spawn.fresh_cgroup) {
            Ok(opened) => opened,
            // Out of descriptors or memory for now: a failed start, tried
            // again, not a program let out of its cgroup.
            Err(errno) if core::out_of_resources(errno) => {
                return Err(SpawnError::Fork(errno));
            }
            Err(errno) => {
                super::warn(format_args!(
                    "{}: no cgroup, {} runs in nitro's: {}",
                    Bytes(name),
                    spawn.script.file(),
                    super::Errno(errno)
                ));
                return self.spawner.spawn(spawn, None);
            }
        };
        // A `finish` in a cgroup of its own is bound as its `run` was.
        if spawn.script == Script::Run || (spawn.script == Script::Finish && made) {
            cgroups.apply_limits(name, spawn.dir);
        }
        let result = self.spawner.spawn(spawn, Some(dir));
        super::close(dir);
        result
    }

    fn kill(&mut self, pid: Pid, signal: i32) {
        if pid > 0 {
            // SAFETY: signalling a pid has no memory-safety preconditions.
            unsafe { libc::kill(pid, signal) };
        }
    }

    fn pipe(&mut self) -> Result<(Fd, Fd), i32> {
        let mut fds = [0i32; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(errno());
        }
        Ok((fds[0], fds[1]))
    }

    fn close(&mut self, fd: Fd) {
        super::close(fd);
    }

    fn read(&mut self, fd: Fd, buf: &mut [u8]) -> ReadResult {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => ReadResult::Eof,
            n if n > 0 => ReadResult::Data(n as usize),
            _ => ReadResult::Nothing,
        }
    }

    fn watch(&mut self, fd: Fd, token: u64) {
        // Nothing on the event path may block: a stale wake-up, or a
        // writer that wrote and took it back, finds the pipe empty.
        // SAFETY: fcntl on a descriptor we own, with integer arguments.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        if let Err(errno) = self.poller.add(fd, token) {
            super::warn(format_args!(
                "cannot watch a readiness pipe: {}; nitroctl ready still works",
                super::Errno(errno)
            ));
        }
    }

    fn notify(&mut self, name: &[u8], state: State) {
        let len = name.len().min(NAME_MAX);
        if self.events_len + 3 + len > EVENTS_HELD {
            self.flush_events();
        }
        let event = &mut self.events[self.events_len..self.events_len + 3 + len];
        event[..2].copy_from_slice(&(len as u16).to_le_bytes());
        event[2] = state as u8;
        event[3..].copy_from_slice(&name[..len]);
        self.events_len += 3 + len;
    }

    fn fd_limit(&mut self) -> i32 {
        super::process::fd_limit()
    }

    fn warn(&mut self, message: std::fmt::Arguments) {
        super::warn(message);
    }

    fn exists(&mut self, dir: &[u8], file: &[u8]) -> bool {
        let mut buf = [0u8; 256];
        match join_path(&mut buf, dir, file) {
            // SAFETY: path is a valid C string.
            Some(path) => unsafe {
                libc::faccessat(self.service_dir, path.as_ptr(), libc::F_OK, 0) == 0
            },
            None => false,
        }
    }

    fn missing(&mut self, dir: &[u8], file: &[u8]) -> bool {
        let mut buf = [0u8; 256];
        match join_path(&mut buf, dir, file) {
            // SAFETY: path is a valid C string.
            Some(path) => unsafe {
                libc::faccessat(self.service_dir, path.as_ptr(), libc::F_OK, 0) != 0
                    && super::errno() == libc::ENOENT
            },
            None => false,
        }
    }

    fn unreadable_dir(&mut self, dir: &[u8]) -> bool {
        let mut buf = [0u8; 256];
        let Some(path) = join_path(&mut buf, dir, b"") else {
            return false;
        };
        // SAFETY: path is a valid C string; st is written by fstatat.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstatat(self.service_dir, path.as_ptr(), &mut st, 0) == 0
                && st.st_mode & libc::S_IFMT == libc::S_IFDIR
                && libc::faccessat(self.service_dir, path.as_ptr(), libc::R_OK | libc::X_OK, 0) != 0
        }
    }

    fn read_file(&mut self, dir: &[u8], file: &[u8], buf: &mut [u8]) -> Result<usize, i32> {
        super::read_at(self.service_dir, dir, file, buf)
    }

    fn read_link(&mut self, dir: &[u8], file: &[u8], buf: &mut [u8]) -> Option<usize> {
        let mut path = [0u8; 256];
        let path = join_path(&mut path, dir, file)?;
        // SAFETY: path is a valid C string and buf valid for its length.
        let n = unsafe {
            libc::readlinkat(
                self.service_dir,
                path.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 { None } else { Some(n as usize) }
    }

    fn allocations(&self) -> Option<u32> {
        super::alloc_count::allocations()
    }

    fn cgroup_populated(&mut self, name: &[u8]) -> bool {
        self.cgroups.as_ref().is_some_and(|c| c.populated(name))
    }

    fn cgroup_release(&mut self, name: &[u8]) -> bool {
        self.cgroups.as_ref().is_some_and(|c| c.release(name))
    }

    fn cgroup_signal(&mut self, name: &[u8], signal: i32) {
        if let Some(cgroups) = &self.cgroups {
            cgroups.signal(name, signal);
        }
    }

    fn cgroup_kill(&mut self, name: &[u8]) {
        if let Some(cgroups) = &self.cgroups {
            cgroups.kill(name);
        }
    }

    fn cgroup_remove(&mut self, name: &[u8]) {
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove(name);
        }
    }

    fn cgroup_stats(&mut self, name: &[u8]) -> Option<CgroupStats> {
        self.cgroups.as_ref()?.stats(name)
    }

    fn cgroup_oom_kills(&mut self, name: &[u8]) -> u64 {
        self.cgroups.as_ref().map_or(0, |c| c.oom_kills(name))
    }

    fn scan_start(&mut self) {
        self.scan.rewind(self.service_dir);
    }

    fn scan_next(&mut self, buf: &mut [u8; 256]) -> Option<usize> {
        let name = self.scan.next_name()?;
        let n = name.len().min(buf.len());
        buf[..n].copy_from_slice(&name[..n]);
        Some(n)
    }
}
