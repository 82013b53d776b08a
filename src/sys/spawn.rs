//! Starting a service's program: clone (sharing memory, parent suspended
//! until exec, as posix_spawn does), give the child exactly its fds,
//! default signal handling and its own session, exec. A failed exec
//! reports its errno through the shared memory, exactly, never guessed.
//! A service's program is created in its cgroup (clone3 with
//! CLONE_INTO_CGROUP, Linux 5.7), or joins it before exec where the
//! kernel cannot do that.

use std::cell::Cell;
use std::ffi::{CString, c_char};

use crate::core::{Bytes, Fd, Pid, Spawn, SpawnError};

use super::{Errno, errno, signals};

/// PATH for children when nitro's environment has none.
const DEFAULT_PATH: &str = "PATH=/usr/bin:/bin:/usr/sbin:/sbin";
/// Room for argv strings: program path, up to three arguments.
const ARG_ROOM: usize = 256;

/// Stack of the child between clone and exec.
const CHILD_STACK: usize = 64 * 1024;

/// What every spawn shares, prepared once at startup.
pub struct Spawner {
    /// The child's stack (written only while nitro waits for the child).
    stack: Box<std::cell::UnsafeCell<[u8; CHILD_STACK]>>,
    /// Keeps the environment strings alive for `envp`.
    _env: Vec<CString>,
    envp: Vec<*const c_char>,
    devnull: Fd,
    /// Signals (bit `n - 1` for signal `n`) whose disposition is not the
    /// default: the ones the child must reset. Read when the spawner is
    /// made, after nitro installed its handlers, and fixed from then on.
    not_default: u64,
    /// Whether clone3 may still create children in their cgroup; off
    /// for good once the kernel said it cannot.
    clone3: Cell<bool>,
}

impl Spawner {
    pub fn new() -> std::io::Result<Spawner> {
        let mut env: Vec<CString> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut entry = k.into_encoded_bytes();
                entry.push(b'=');
                entry.extend_from_slice(v.as_encoded_bytes());
                CString::new(entry).ok()
            })
            .collect();
        if std::env::var_os("PATH").is_none() {
            env.push(CString::new(DEFAULT_PATH).expect("no NUL"));
        }
        let mut envp: Vec<*const c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let devnull = super::null_fd(true)?;
        Ok(Spawner {
            not_default: signals::not_default(),
            // SAFETY: UnsafeCell is repr(transparent).
            stack: unsafe {
                Box::from_raw(Box::into_raw(super::zeroed_bytes::<CHILD_STACK>()).cast())
            },
            _env: env,
            envp,
            devnull,
            clone3: Cell::new(true),
        })
    }

    /// Starts `spawn`, in the cgroup whose directory is `cgroup` if given.
    pub fn spawn(&self, spawn: &Spawn, cgroup: Option<Fd>) -> Result<Pid, SpawnError> {
        // Everything the child needs is built before fork.
        let mut dir_buf = [0u8; 128];
        let dir = super::join_path(&mut dir_buf, spawn.dir, b"")
            .ok_or(SpawnError::Exec(libc::ENAMETOOLONG))?;
        let mut strings = [0u8; ARG_ROOM];
        let mut argv: [*const c_char; 6] = [std::ptr::null(); 6];
        let mut used = 0;
        let mut prog_path = [0u8; 16];
        let prog = super::join_path(&mut prog_path, b".", spawn.script.file().as_bytes())
            .ok_or(SpawnError::Exec(libc::ENAMETOOLONG))?;
        argv[0] = prog.as_ptr();
        for (n, arg) in spawn.args.iter().take(argv.len() - 2).enumerate() {
            if used + arg.len() + 1 > strings.len() || arg.contains(&0) {
                return Err(SpawnError::Exec(libc::E2BIG));
            }
            strings[used..used + arg.len()].copy_from_slice(arg);
            strings[used + arg.len()] = 0;
            argv[n + 1] = strings[used..].as_ptr().cast();
            used += arg.len() + 1;
        }

        let mut child = Child {
            spawner: self,
            spawn,
            dir: dir.as_ptr(),
            argv: &argv,
            exec_errno: 0,
            started: false,
            join_cgroup: -1,
            cgroup_errno: 0,
        };
        let stack = self.stack.get().cast::<u8>();
        // SAFETY: one past the end of the stack buffer.
        let top = unsafe { stack.add(CHILD_STACK) } as usize & !15;
        let mask = signals::block_all();
        // The child shares our memory and we sleep until it has exec'd or
        // exited (CLONE_VFORK), as posix_spawn does: no page tables to copy,
        // and the reason of a failed exec comes back in `exec_errno`.
        // SAFETY (both clones): the child runs `child_entry` on its own
        // stack, touches only `child` and memory prepared above, and calls
        // only async-signal-safe functions; nitro is single-threaded and
        // all signals are blocked until the child has reset them.
        let mut pid = -1;
        let mut clone_errno = 0;
        if let Some(dir) = cgroup.filter(|_| self.clone3.get()) {
            // SAFETY: as above; `top` is the 16-byte aligned end of the stack.
            let ret = unsafe { clone3_in_cgroup(stack as usize, top, dir, &mut child) };
            // SAFETY: the child is done with `child` (it exec'd or exited).
            if ret >= 0 && !unsafe { std::ptr::read_volatile(&child.started) } {
                // Killed before it ran a single instruction: Linux kills
                // every child cloned into a cgroup that `cgroup.kill`
                // emptied once (by anyone, nitro or not). The child joins
                // it instead, which the kernel lets live.
                // SAFETY: reaping our own child, which has exited.
                unsafe { libc::waitpid(ret as Pid, std::ptr::null_mut(), 0) };
            } else if ret >= 0 {
                pid = ret as Pid;
            } else if matches!(-ret as i32, libc::ENOSYS | libc::E2BIG | libc::EINVAL) {
                // Older than 5.7 (or no clone3 at all): the child joins.
                self.clone3.set(false);
            } else if matches!(-ret as i32, libc::EAGAIN | libc::ENOMEM) {
                // No process for now, in the service's cgroup (its
                // `pids-max`) or at all: a failed fork, not a child made
                // outside the cgroup, beyond its limits.
                clone_errno = -ret as i32;
            }
        }
        if pid < 0 && clone_errno == 0 {
            child.join_cgroup = cgroup.unwrap_or(-1);
            // SAFETY: as above.
            pid = unsafe {
                libc::clone(
                    child_entry,
                    top as *mut libc::c_void,
                    libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                    (&mut child as *mut Child).cast(),
                )
            };
            clone_errno = errno();
        }
        signals::restore(&mask);
        if pid < 0 {
            return Err(SpawnError::Fork(clone_errno));
        }
        // SAFETY: the child is done with `child` (it exec'd or exited).
        let cgroup_errno = unsafe { std::ptr::read_volatile(&child.cgroup_errno) };
        if cgroup_errno != 0 {
            super::warn(format_args!(
                "{}: {} runs outside its cgroup: {}",
                Bytes(spawn.cgroup.unwrap_or_default()),
                spawn.script.file(),
                Errno(cgroup_errno)
            ));
        }
        // SAFETY: the child is done with `child` (it exec'd or exited).
        let exec_errno = unsafe { std::ptr::read_volatile(&child.exec_errno) };
        if exec_errno != 0 {
            // It exits right after exec failed: reap it here so it never
            // shows up as a service exit.
            // SAFETY: pid is our child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            return Err(SpawnError::Exec(exec_errno));
        }
        Ok(pid)
    }

    /// The child side: only async-signal-safe calls, then exec.
    ///
    /// # Safety
    /// Must only be called in the child of `spawn`, with `dir` and `argv`
    /// valid C strings.
    unsafe fn child(&self, spawn: &Spawn, dir: *const c_char, argv: &[*const c_char; 6]) -> i32 {
        // SAFETY: all calls below are async-signal-safe and get valid
        // arguments; on any failure the errno is reported and we _exit.
        unsafe {
            // Nothing nitro holds survives exec, even descriptors nitro
            // inherited without close-on-exec.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            // Handlers must not run here, and ignored signals stay ignored
            // through exec.
            signals::set_all(self.not_default, libc::SIG_DFL);
            signals::unblock_all();
            libc::setsid();
            // Steal the terminal (argument 1), as the C nitro does: as
            // pid 1, nitro's own session holds the console, and without it
            // SYS/setup gets no job control.
            if spawn.controlling_tty && libc::isatty(0) == 1 {
                libc::ioctl(0, libc::TIOCSCTTY, 1);
            }
            let ok = libc::dup2(spawn.stdin.unwrap_or(self.devnull), 0) >= 0
                && spawn.stdout.is_none_or(|fd| libc::dup2(fd, 1) >= 0)
                && (!spawn.stderr_to_stdout || libc::dup2(1, 2) >= 0)
                && spawn.notify.is_none_or(|(target, fd)| {
                    if target == fd {
                        libc::fcntl(fd, libc::F_SETFD, 0) >= 0
                    } else {
                        libc::dup2(fd, target) >= 0
                    }
                })
                && libc::chdir(dir) == 0;
            if ok {
                libc::execve(argv[0], argv.as_ptr(), self.envp.as_ptr());
            }
            errno().max(1)
        }
    }
}

/// What the child needs; `exec_errno` is how it reports a failed exec.
struct Child<'a> {
    spawner: &'a Spawner,
    spawn: &'a Spawn<'a>,
    dir: *const c_char,
    argv: &'a [*const c_char; 6],
    exec_errno: i32,
    /// Set by the child first thing: a child that never ran was killed
    /// as it was made.
    started: bool,
    /// The cgroup directory to move into before anything else, -1 when
    /// none (or the child was created in it).
    join_cgroup: Fd,
    /// Why joining it failed; the program runs all the same.
    cgroup_errno: i32,
}

extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Child` the parent passed to clone, alive while
    // the parent waits for us; openat, write and close are
    // async-signal-safe.
    unsafe {
        let child = &mut *arg.cast::<Child>();
        std::ptr::write_volatile(&mut child.started, true);
        if child.join_cgroup >= 0 {
            // "0" moves the writer itself.
            let procs = libc::openat(
                child.join_cgroup,
                c"cgroup.procs".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if procs < 0 || libc::write(procs, c"0".as_ptr().cast(), 1) != 1 {
                std::ptr::write_volatile(&mut child.cgroup_errno, errno().max(1));
            }
            if procs >= 0 {
                libc::close(procs);
            }
        }
        let errno = child.spawner.child(child.spawn, child.dir, child.argv);
        std::ptr::write_volatile(&mut child.exec_errno, errno);
        libc::_exit(111)
    }
}

/// `struct clone_args` of clone3 (Linux 5.7 layout, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3 as `libc::clone` does clone: a vfork-style child in the cgroup
/// `dir`, running `child_entry(child)` on the stack from `stack` to `top`.
/// Returns the child's pid or `-errno`. The C library has no wrapper: the
/// child comes back from the system call on the new stack, so the call
/// of the entry function must be made in the same assembly, before
/// anything touches that stack.
///
/// # Safety
/// `stack..top` must be memory nobody else uses while the child runs,
/// `top` 16-byte aligned; `child` must stay valid until the call returns.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_in_cgroup(stack: usize, top: usize, dir: Fd, child: &mut Child) -> isize {
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: (top - stack) as u64,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    let ret: isize;
    // SAFETY: the parent only gets rax (and the clobbered rcx, r11) back.
    // The child starts after `syscall` with rax = 0 and rsp = `top`,
    // every other register as the parent had it: it calls the entry with
    // the `Child` pointer from r12 (the stack aligned as the ABI wants)
    // and exits with its result, never returning into Rust code.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") core::mem::size_of::<CloneArgs>(),
            in("r12") (child as *mut Child).cast::<libc::c_void>(),
            in("r13") child_entry as extern "C" fn(*mut libc::c_void) -> libc::c_int,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Elsewhere the child always joins its cgroup itself.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_in_cgroup(_stack: usize, _top: usize, _dir: Fd, _child: &mut Child) -> isize {
    -(libc::ENOSYS as isize)
}
