//! One cgroup v2 per service (docs/cgroups.md): finding the root nitro
//! may use, the service directories below it, emptiness watched through
//! one inotify descriptor, signalling and killing every member, limits
//! and accounting. Every path after startup is built in a stack buffer,
//! relative to the root's descriptor.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;

use crate::core::{Bytes, CgroupStats, Fd};

use super::{DirReader, Errno, close, errno, join_path, open_dir, read_at, warn};

/// `statfs` magic of a cgroup v2 file system.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// The leaf nitro moves itself into when it sits in the root it uses:
/// a cgroup with members cannot pass controllers on to its children
/// (the no-internal-processes rule). No service can be called this.
const OWN_LEAF: &str = ".nitro";
/// Room for `name/file` below the root.
const REL_PATH: usize = 128;

/// A limit a service directory may hold.
struct Limit {
    /// File in the service directory.
    file: &'static [u8],
    /// File in the service's cgroup.
    knob: &'static [u8],
    /// Controller bit it needs.
    controller: u8,
    /// What the knob is reset to when the file is gone.
    unset: &'static [u8],
}

const LIMITS: [Limit; 5] = [
    Limit {
        file: b"memory-max",
        knob: b"memory.max",
        controller: MEMORY,
        unset: b"max",
    },
    Limit {
        file: b"memory-high",
        knob: b"memory.high",
        controller: MEMORY,
        unset: b"max",
    },
    Limit {
        file: b"pids-max",
        knob: b"pids.max",
        controller: PIDS,
        unset: b"max",
    },
    Limit {
        file: b"cpu-max",
        knob: b"cpu.max",
        controller: CPU,
        unset: b"max",
    },
    Limit {
        file: b"cpu-weight",
        knob: b"cpu.weight",
        controller: CPU,
        unset: b"100",
    },
];
const CPU: u8 = 1;
const MEMORY: u8 = 2;
const PIDS: u8 = 4;
const CONTROLLERS: [(u8, &str); 3] = [(CPU, "cpu"), (MEMORY, "memory"), (PIDS, "pids")];

/// The cgroup nitro puts its services below.
pub struct Cgroups {
    /// The root, opened once; service cgroups are reached from it.
    root_fd: Fd,
    /// Its path, for inotify (which takes no directory descriptor).
    root: CString,
    /// Tells when a service's `cgroup.events` changes (it gets empty).
    inotify: Fd,
    /// Controllers enabled for the services (`cgroup.subtree_control`).
    enabled: u8,
    /// Controllers whose absence was already reported.
    warned: u8,
    /// Whether a watch that could not be added was reported.
    unwatched_told: std::cell::Cell<bool>,
}

impl Drop for Cgroups {
    /// Cgroups found but not used (they cannot be watched) keep no
    /// descriptor.
    fn drop(&mut self) {
        close(self.root_fd);
        close(self.inotify);
    }
}

/// Why nitro does not use cgroups.
pub struct Unused(pub String);

impl Cgroups {
    /// Finds the root (SPEC issue 16, docs/cgroups.md), moves nitro into a
    /// leaf of its own if it sits in it, and enables the controllers it
    /// can.
    pub fn setup(real_pid1: bool) -> Result<Cgroups, Unused> {
        // Counted as start-up, also when it comes after `SYS/setup`.
        super::alloc_count::uncounted(|| Cgroups::find_and_enter(real_pid1))
    }

    /// Whether the set-up must wait for `SYS/setup`: the real pid 1 of
    /// an initramfs starts before anything mounted `/sys`, which its
    /// `SYS/setup` does, so nitro looks for cgroups when the first
    /// service starts.
    pub fn later(real_pid1: bool) -> bool {
        real_pid1
            && std::env::var_os("NITRO_CGROUP").is_none()
            && !std::path::Path::new("/sys/fs/cgroup").is_dir()
    }

    fn find_and_enter(real_pid1: bool) -> Result<Cgroups, Unused> {
        let root = match std::env::var_os("NITRO_CGROUP") {
            Some(value) if value == "off" => return Err(Unused("NITRO_CGROUP=off".into())),
            Some(value) if value.as_bytes().starts_with(b"/") => {
                let path = std::path::PathBuf::from(value);
                if !is_cgroup2(&path) {
                    return Err(Unused(format!(
                        "NITRO_CGROUP={} is not a cgroup v2 directory",
                        path.display()
                    )));
                }
                path
            }
            Some(value) if !value.is_empty() => {
                return Err(Unused(format!(
                    "NITRO_CGROUP={:?} is neither off nor an absolute path",
                    value
                )));
            }
            _ => own_cgroup(real_pid1)?,
        };
        let root_c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| Unused("the cgroup path holds a NUL".into()))?;
        // SAFETY: root_c is a valid C string.
        if unsafe { libc::access(root_c.as_ptr(), libc::W_OK) } != 0 {
            return Err(Unused(format!(
                "{} is not writable: {}",
                root.display(),
                Errno(errno())
            )));
        }
        if listed(&root, std::process::id()) {
            let leaf = root.join(OWN_LEAF);
            let moved = match std::fs::create_dir(&leaf) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => std::fs::write(leaf.join("cgroup.procs"), "0"),
            };
            if let Err(e) = moved {
                return Err(Unused(format!(
                    "cannot move nitro into {}: {}",
                    leaf.display(),
                    super::IoText(&e)
                )));
            }
        }
        let available = controllers(&root.join("cgroup.controllers"));
        for (bit, name) in CONTROLLERS {
            if available & bit != 0 {
                // Refused when something else still sits in the root; the
                // limits that need it then say so.
                let _ = std::fs::write(root.join("cgroup.subtree_control"), format!("+{name}"));
            }
        }
        let enabled = controllers(&root.join("cgroup.subtree_control"));
        let root_fd = open_dir(libc::AT_FDCWD, &root_c).unwrap_or(-1);
        // SAFETY: flags only.
        let inotify = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if root_fd < 0 || inotify < 0 {
            let reason = Unused(format!(
                "cannot watch {}: {}",
                root.display(),
                Errno(errno())
            ));
            for fd in [root_fd, inotify].into_iter().filter(|&fd| fd >= 0) {
                close(fd);
            }
            return Err(reason);
        }
        Ok(Cgroups {
            root_fd,
            root: root_c,
            inotify,
            enabled,
            warned: 0,
            unwatched_told: Default::default(),
        })
    }

    pub fn root(&self) -> &CStr {
        &self.root
    }

    /// The descriptor to wait on: readable when a service cgroup may
    /// have become empty.
    pub fn inotify_fd(&self) -> Fd {
        self.inotify
    }

    /// Empties the inotify queue; which cgroup changed does not matter,
    /// the core looks at every service waiting for its cgroup.
    pub fn drain(&self) {
        let mut buf = [0u8; 4096];
        // SAFETY: buf is valid for its length; the descriptor is non-blocking.
        while unsafe { libc::read(self.inotify, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    /// The cgroup of `name`, as a descriptor to start a program in, made
    /// anew first when `fresh` and nothing is left in it (one that cannot
    /// be removed is reused, not leaked), or when it is gone (the system
    /// going down removes it once empty). Also whether it was made now.
    pub fn open(&self, name: &[u8], fresh: bool) -> Result<(Fd, bool), i32> {
        let mut rel = [0u8; REL_PATH];
        let dir = join_path(&mut rel, name, b"").ok_or(libc::ENAMETOOLONG)?;
        if fresh {
            self.remove(name);
        }
        // SAFETY: dir is a valid C string relative to our root descriptor.
        let made = unsafe { libc::mkdirat(self.root_fd, dir.as_ptr(), 0o755) } == 0;
        if !made && errno() != libc::EEXIST {
            return Err(errno());
        }
        let fd = open_dir(self.root_fd, dir).ok_or_else(errno)?;
        Ok((fd, made))
    }

    /// Writes the limits of the service directory `dir` into the cgroup
    /// of `name`; a limit file that is gone is reset. Controllers that
    /// are not enabled are reported once.
    pub fn apply_limits(&mut self, name: &[u8], dir: &[u8]) {
        for Limit {
            file,
            knob,
            controller,
            unset,
        } in LIMITS
        {
            let mut value = [0u8; 64];
            let len = read_at(libc::AT_FDCWD, dir, file, &mut value).ok();
            if self.enabled & controller == 0 {
                if len.is_some() && self.warned & controller == 0 {
                    self.warned |= controller;
                    let controller = CONTROLLERS
                        .iter()
                        .find(|(bit, _)| *bit == controller)
                        .map_or("", |(_, n)| n);
                    warn(format_args!(
                        "{}: the {} controller is not available in {}, limits that need it are not applied",
                        Bytes(name),
                        controller,
                        Bytes(self.root.to_bytes())
                    ));
                }
                continue;
            }
            let text = match len {
                Some(n) => value[..n].trim_ascii(),
                None => unset,
            };
            if let Err(errno) = write_at(self.root_fd, name, knob, text) {
                warn(format_args!(
                    "{}: cannot set {} to \"{}\": {}",
                    Bytes(name),
                    Bytes(knob),
                    Bytes(text),
                    Errno(errno)
                ));
            }
        }
    }

    /// Whether a process is left in the cgroup of `name`. If so, its
    /// `cgroup.events` is watched from now on (until the directory is made
    /// anew), so that the loop hears when it gets empty: only cgroups
    /// waited for wake nitro up.
    pub fn populated(&self, name: &[u8]) -> bool {
        if !self.read_populated(name) {
            return false;
        }
        let mut abs = [0u8; 512];
        let mut dir_abs = [0u8; 512];
        let events = join_path(&mut dir_abs, self.root.to_bytes(), name)
            .map(|p| p.to_bytes().len())
            .and_then(|len| join_path(&mut abs, &dir_abs[..len], b"cgroup.events"));
        // Adding it again is harmless, and rmdir drops it.
        // SAFETY: events is a valid C string.
        let watched = events.is_some_and(|events| unsafe {
            libc::inotify_add_watch(self.inotify, events.as_ptr(), libc::IN_MODIFY) >= 0
        });
        if !watched && !self.unwatched_told.replace(true) {
            warn(format_args!(
                "{}: cannot watch its cgroup: {}; its end is seen late, once its timeout-kill is over",
                Bytes(name),
                Errno(if events.is_some() {
                    errno()
                } else {
                    libc::ENAMETOOLONG
                })
            ));
        }
        // It may have got empty before the watch was there.
        self.read_populated(name)
    }

    /// A cgroup whose `cgroup.events` cannot be read for now (no
    /// descriptor, no memory left) counts as populated: a stop ends only
    /// once it was seen empty. One that is not there is empty.
    fn read_populated(&self, name: &[u8]) -> bool {
        let mut buf = [0u8; 128];
        match read_at(self.root_fd, name, b"cgroup.events", &mut buf) {
            Ok(n) => buf[..n]
                .split(|&b| b == b'\n')
                .any(|line| line == b"populated 1"),
            Err(errno) => crate::core::out_of_resources(errno),
        }
    }

    /// Sends `signal` to every member of the cgroup of `name`, and of the
    /// cgroups its programs made below it (a container runtime, a nested
    /// nitro), as `cgroup.kill` reaches them too.
    pub fn signal(&self, name: &[u8], signal: i32) {
        let mut rel = [0u8; REL_PATH];
        if let Some(fd) = join_path(&mut rel, name, b"").and_then(|dir| open_dir(self.root_fd, dir))
        {
            signal_tree(fd, signal, DEPTH);
            close(fd);
        }
    }

    /// SIGKILL to every member, at once (`cgroup.kill`, Linux 5.14), or
    /// one by one where that is missing.
    pub fn kill(&self, name: &[u8]) {
        if write_at(self.root_fd, name, b"cgroup.kill", b"1").is_err() {
            self.signal(name, libc::SIGKILL);
        }
    }

    /// Removes the cgroup of `name`; one still busy stays, to be reused.
    /// Whether it is gone (or was not there).
    pub fn remove(&self, name: &[u8]) -> bool {
        let mut rel = [0u8; REL_PATH];
        let Some(dir) = join_path(&mut rel, name, b"") else {
            return true;
        };
        if remove_dir(self.root_fd, dir) {
            return true;
        }
        // Busy: with processes, or only with cgroups its programs made
        // below it, which go first then.
        errno() == libc::EBUSY
            && !self.read_populated(name)
            && remove_tree(self.root_fd, dir, DEPTH)
    }

    /// Whether a process is left in the cgroup of `name`, which is
    /// removed when there is none: one `rmdir` instead of a read, and
    /// none later. One that cannot be removed is looked at as by
    /// `populated`.
    pub fn release(&self, name: &[u8]) -> bool {
        !self.remove(name) && self.populated(name)
    }

    /// Processes of the cgroup of `name` the OOM killer killed (0 without
    /// the memory controller).
    pub fn oom_kills(&self, name: &[u8]) -> u64 {
        if self.enabled & MEMORY == 0 {
            return 0;
        }
        let mut buf = [0u8; 256];
        read_at(self.root_fd, name, b"memory.events", &mut buf)
            .ok()
            .and_then(|n| keyed(&buf[..n], b"oom_kill "))
            .unwrap_or(0)
    }

    /// What the cgroup of `name` used; `None` when it has none.
    pub fn stats(&self, name: &[u8]) -> Option<CgroupStats> {
        let mut buf = [0u8; 512];
        let n = read_at(self.root_fd, name, b"cpu.stat", &mut buf).ok()?;
        let cpu_usec = keyed(&buf[..n], b"usage_usec ");
        let value = |file: &[u8]| {
            let mut buf = [0u8; 32];
            read_at(self.root_fd, name, file, &mut buf)
                .ok()
                .and_then(|n| number(&buf[..n]))
        };
        let memory_current = value(b"memory.current");
        let memory_peak = value(b"memory.peak");
        let pids_current = value(b"pids.current");
        let oom_kills = (self.enabled & MEMORY != 0).then(|| self.oom_kills(name));
        Some(CgroupStats {
            cpu_usec,
            memory_current,
            memory_peak,
            pids_current,
            oom_kills,
        })
    }
}

/// How deep below a service's cgroup nitro goes into cgroups its
/// programs made.
const DEPTH: usize = 8;

/// Removes the directory `name` below `at`: whether it is gone (or was
/// not there).
fn remove_dir(at: Fd, name: &CStr) -> bool {
    // SAFETY: name is a valid C string relative to `at`.
    unsafe { libc::unlinkat(at, name.as_ptr(), libc::AT_REMOVEDIR) == 0 || errno() == libc::ENOENT }
}

/// Sends `signal` to every process of the cgroup `dir` and of the cgroups
/// below it, `depth` levels down.
fn signal_tree(dir: Fd, signal: i32, depth: usize) {
    if let Some(procs) = open_file(dir, c"cgroup.procs") {
        let mut buf = [0u8; 4096];
        let mut pid: i32 = 0;
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(procs, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            for &b in &buf[..n as usize] {
                if b.is_ascii_digit() {
                    pid = pid.saturating_mul(10).saturating_add(i32::from(b - b'0'));
                } else {
                    if pid > 0 {
                        // SAFETY: kill has no memory preconditions.
                        unsafe { libc::kill(pid, signal) };
                    }
                    pid = 0;
                }
            }
        }
        close(procs);
    }
    if depth == 0 {
        return;
    }
    let mut below = DirReader::new([0u8; 1024]);
    below.rewind(dir);
    while let Some(name) = below.next_dir() {
        let mut path = [0u8; 256];
        if let Some(sub) = join_path(&mut path, name, b"").and_then(|c| open_dir(dir, c)) {
            signal_tree(sub, signal, depth - 1);
            close(sub);
        }
    }
}

/// Removes the cgroup `name` below `at` with the (empty) cgroups below
/// it, deepest first, `depth` levels down: whether it is gone.
fn remove_tree(at: Fd, name: &CStr, depth: usize) -> bool {
    if remove_dir(at, name) {
        return true;
    }
    let Some(dir) = open_dir(at, name).filter(|_| depth > 0) else {
        return false;
    };
    let mut below = DirReader::new([0u8; 1024]);
    let mut emptied = true;
    while emptied {
        below.rewind(dir);
        let Some(sub) = below.next_dir() else {
            break;
        };
        let mut path = [0u8; 256];
        emptied = join_path(&mut path, sub, b"").is_some_and(|c| remove_tree(dir, c, depth - 1));
    }
    close(dir);
    emptied && remove_dir(at, name)
}

/// Opens `file` of the cgroup `dir` for reading.
fn open_file(dir: Fd, file: &CStr) -> Option<Fd> {
    // SAFETY: file is a valid C string relative to `dir`.
    let fd = unsafe { libc::openat(dir, file.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    (fd >= 0).then_some(fd)
}

/// The decimal number in `bytes` (surrounding white space allowed).
fn number(bytes: &[u8]) -> Option<u64> {
    core::str::from_utf8(bytes.trim_ascii()).ok()?.parse().ok()
}

/// The number on the line of `text` that starts with `key`.
fn keyed(text: &[u8], key: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(key))
        .and_then(number)
}

/// Writes `value` into `dir/file` relative to `at`, or errno.
fn write_at(at: Fd, dir: &[u8], file: &[u8], value: &[u8]) -> Result<(), i32> {
    let mut rel = [0u8; REL_PATH];
    let path = join_path(&mut rel, dir, file).ok_or(libc::ENAMETOOLONG)?;
    // SAFETY: path is a valid C string.
    let fd = unsafe { libc::openat(at, path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: value is valid for its length.
    let n = unsafe { libc::write(fd, value.as_ptr().cast(), value.len()) };
    let result = if n < 0 { Err(errno()) } else { Ok(()) };
    close(fd);
    result
}

/// Whether `path` is a directory of a cgroup v2 file system.
fn is_cgroup2(path: &std::path::Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is valid; c is a valid C string.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut fs) == 0 && fs.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

/// Whether `pid` is a member of the cgroup at `dir`.
fn listed(dir: &std::path::Path, pid: u32) -> bool {
    let pid = pid.to_string();
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .is_ok_and(|procs| procs.lines().any(|line| line == pid))
}

/// Controller bits named in a `cgroup.controllers`-style file.
fn controllers(file: &std::path::Path) -> u8 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.split_whitespace()
        .filter_map(|word| CONTROLLERS.iter().find(|(_, n)| *n == word))
        .fold(0, |bits, (bit, _)| bits | bit)
}

/// nitro's own cgroup, when it may take it: always as the real pid 1,
/// otherwise only when nitro is alone in it (a container's cgroup
/// namespace, a delegated subtree): a cgroup shared with a login shell,
/// or a container's without a cgroup namespace of its own, is not
/// nitro's to fill.
fn own_cgroup(real_pid1: bool) -> Result<std::path::PathBuf, Unused> {
    let mount = std::path::Path::new("/sys/fs/cgroup");
    if real_pid1 && mount.is_dir() && !super::pid1::is_mount_point(c"/sys/fs/cgroup", c"/sys/fs") {
        // SAFETY: valid C strings; a failure only leaves it unmounted.
        unsafe {
            libc::mount(
                c"cgroup2".as_ptr(),
                c"/sys/fs/cgroup".as_ptr(),
                c"cgroup2".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            );
        }
    }
    let unified = mount.join("unified");
    let mount = if is_cgroup2(mount) {
        mount
    } else if is_cgroup2(&unified) {
        unified.as_path()
    } else {
        return Err(Unused("no cgroup v2 file system at /sys/fs/cgroup".into()));
    };
    if real_pid1 {
        // The first process of the machine sits in the root cgroup.
        return Ok(mount.to_path_buf());
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("0::").map(str::to_owned))
        })
        .ok_or_else(|| Unused("no cgroup v2 entry in /proc/self/cgroup".into()))?;
    let mut dir = mount.join(own.trim_start_matches('/'));
    let pid = std::process::id();
    // Without a cgroup namespace of its own, a container sees its cgroup
    // mounted at the top, under a path of the host's.
    if !listed(&dir, pid) && listed(mount, pid) {
        dir = mount.to_path_buf();
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    if procs.lines().any(|line| line != pid.to_string()) {
        return Err(Unused(format!(
            "nitro shares its cgroup {} with other processes (start it in a cgroup of its own, or set NITRO_CGROUP)",
            dir.display()
        )));
    }
    Ok(dir)
}
