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

unsafe extern "C" {
    /// glibc: appends a record to a wtmp file.
    fn updwtmpx(file: *const libc::c_char, record: *const libc::utmpx);
}

/// Appends a shutdown (`boot` false) or boot record to /var/log/wtmp.
fn write_wtmp(boot: bool) -> i32 {
    // SAFETY: a zeroed utmpx is valid; the strings copied in are short
    // literals; updwtmpx gets a valid path and record.
    unsafe {
        let mut record: libc::utmpx = std::mem::zeroed();
        record.ut_type = if boot { libc::BOOT_TIME } else { libc::RUN_LVL };
        for (dst, src) in record.ut_line.iter_mut().zip(b"~\0") {
            *dst = *src as libc::c_char;
        }
        let user: &[u8] = if boot { b"reboot\0" } else { b"shutdown\0" };
        for (dst, src) in record.ut_user.iter_mut().zip(user) {
            *dst = *src as libc::c_char;
        }
        let mut now = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        libc::gettimeofday(&mut now, std::ptr::null_mut());
        record.ut_tv.tv_sec = now.tv_sec as i32;
        record.ut_tv.tv_usec = now.tv_usec as i32;
        updwtmpx(c"/var/log/wtmp".as_ptr(), &record);
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
