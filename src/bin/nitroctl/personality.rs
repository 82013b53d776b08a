//! nitroctl's other names: `halt`, `poweroff`, `reboot` (ask nitro to stop
//! the system, or with -f the kernel; -w/-B write a wtmp record) and
//! `init` (as pid 1 become nitro, else `init 0|6|q`).

use std::path::Path;

use nitro::proto;
use nitro::sys::{pid1, wtmp};

use crate::exit::{EXIT_OTHER, EXIT_USAGE, fail, tell};
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
        wtmp::append(boot);
        return 0;
    }
    let reboot = name == "reboot";
    if force {
        // `halt -f` powers off as `halt` does (and the C nitroctl).
        let refused = pid1::sync_and_reboot(if reboot {
            libc::RB_AUTOBOOT
        } else {
            libc::RB_POWER_OFF
        });
        fail(EXIT_OTHER, format_args!("reboot: {refused}"));
    }
    with_ctl(Vec::new(), |ctl| {
        ctl.system(if reboot {
            proto::TAG_REBOOT
        } else {
            proto::TAG_SHUTDOWN
        })
    })
}

/// `init`: as pid 1 become nitro; otherwise `init 0|6|q`.
pub fn init_personality(args: &[String]) -> i32 {
    if std::process::id() == 1 {
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
            tell(&format!(
                "nitroctl: cannot exec {}: {err}",
                candidate.display()
            ));
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
