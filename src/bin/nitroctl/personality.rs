//! nitroctl's other names: `halt`, `poweroff`, `reboot` (ask nitro to stop
//! the system, or with -f the kernel; -w/-B write a wtmp record) and
//! `init` (as pid 1 become nitro, else `init 0|6|q`).

use std::path::Path;

use nitro::proto;

use crate::exit::{EXIT_OTHER, EXIT_USAGE, fail};
use crate::with_ctl;

/// `halt`, `poweroff`, `reboot`: ask nitro, or with -f the kernel; -w/-B
/// only write a wtmp record.
pub fn halt_personality(name: &str, args: &[String]) -> i32 {
    let (mut force, mut record) = (false, None);
    for arg in args {
        for flag in arg.trim_start_matches('-').chars() {
            match flag {
                'f' => force = true,
                'w' => record = Some(false),
                'B' => record = Some(true),
                _ => fail(EXIT_USAGE, format_args!("usage: {name} [-f] [-w] [-B]")),
            }
        }
    }
    if let Some(boot) = record {
        return write_wtmp(boot);
    }
    let reboot = name == "reboot";
    if force {
        // SAFETY: sync and reboot; this is what -f asks for.
        unsafe {
            libc::sync();
            libc::reboot(match name {
                "reboot" => libc::RB_AUTOBOOT,
                "halt" => libc::RB_HALT_SYSTEM,
                _ => libc::RB_POWER_OFF,
            });
        }
        fail(
            EXIT_OTHER,
            format_args!("reboot: {}", std::io::Error::last_os_error()),
        );
    }
    with_ctl(Vec::new(), |ctl| {
        ctl.system(if reboot {
            proto::TAG_REBOOT
        } else {
            proto::TAG_SHUTDOWN
        })
    })
}

/// Size of a wtmp record on x86_64 Linux (glibc's `struct utmpx`, which
/// `last` reads): type at 0, line at 8, user at 44, the time (32-bit
/// seconds and microseconds) at 340.
const UTMP_SIZE: usize = 384;
const UT_LINE: usize = 8;
const UT_USER: usize = 44;
const UT_TV: usize = 340;

/// Appends a shutdown (`boot` false) or boot record to /var/log/wtmp, as
/// glibc's `updwtmpx` does: only to an existing file, under a write lock,
/// a whole record or nothing. Written by hand so that the layout is the
/// one on disk whatever C library nitroctl is built with.
fn write_wtmp(boot: bool) -> i32 {
    let mut record = [0u8; UTMP_SIZE];
    let kind = if boot { libc::BOOT_TIME } else { libc::RUN_LVL };
    record[..2].copy_from_slice(&kind.to_ne_bytes());
    record[UT_LINE] = b'~';
    let user: &[u8] = if boot { b"reboot" } else { b"shutdown" };
    record[UT_USER..UT_USER + user.len()].copy_from_slice(user);
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    record[UT_TV..UT_TV + 4].copy_from_slice(&(since_epoch.as_secs() as u32).to_ne_bytes());
    record[UT_TV + 4..UT_TV + 8].copy_from_slice(&since_epoch.subsec_micros().to_ne_bytes());
    // SAFETY: plain system calls on a descriptor we own, with valid
    // buffers; a zeroed flock is valid.
    unsafe {
        let fd = libc::open(c"/var/log/wtmp".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let mut lock: libc::flock = std::mem::zeroed();
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(fd, libc::F_SETLKW, &lock);
        let end = libc::lseek(fd, 0, libc::SEEK_END);
        let written = libc::write(fd, record.as_ptr().cast(), record.len());
        if written >= 0 && (written as usize) < record.len() && end >= 0 {
            libc::ftruncate(fd, end);
        }
        lock.l_type = libc::F_UNLCK as libc::c_short;
        libc::fcntl(fd, libc::F_SETLK, &lock);
        libc::close(fd);
    }
    0
}

/// `init`: as pid 1 become nitro; otherwise `init 0|6|q`.
pub fn init_personality(args: &[String]) -> i32 {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == 1 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
        let nitro = exe.with_file_name("nitro");
        let candidates = [
            nitro.as_path(),
            Path::new("/sbin/nitro"),
            Path::new("/usr/sbin/nitro"),
            Path::new("/bin/nitro"),
        ];
        for candidate in candidates {
            let err = std::os::unix::process::CommandExt::exec(
                std::process::Command::new(candidate).args(args),
            );
            eprintln!("nitroctl: cannot exec {}: {err}", candidate.display());
        }
        return EXIT_OTHER;
    }
    let tag = match args.first().map(String::as_str) {
        Some("0") => proto::TAG_SHUTDOWN,
        Some("6") => proto::TAG_REBOOT,
        Some("q" | "Q") => proto::TAG_RESCAN,
        _ => fail(EXIT_USAGE, format_args!("usage: init 0|6|q")),
    };
    with_ctl(Vec::new(), |ctl| ctl.system(tag))
}
