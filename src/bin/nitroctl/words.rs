//! Exits, signals and failed starts in words (`exited 3`, `killed by
//! SIGKILL`, `could not exec run: Permission denied`), for every output
//! of nitroctl that tells them.

use nitro::client::Status;
use nitro::proto::{Failure, Program, Reason};
use nitro::sys::Errno;

/// The last exit of `run` in words (`exited 3`, `killed by SIGKILL`),
/// or why the last start failed, which is more recent; `None` when
/// there is nothing to tell (a first `run` that is still running).
pub fn last_exit(status: &Status) -> Option<String> {
    if let Some(reason) = status.reason {
        return Some(reason_words(reason));
    }
    match (status.wstatus, status.restarts) {
        // Ours says -1 only when `run` could not be executed (RESTARTS
        // tells it is ours); the C nitro for a `setup` exiting 111 too,
        // with no REASON to tell which.
        (-1, Some(_)) => Some("could not exec run".to_string()),
        (-1, None) => Some("setup exited 111 or run could not be executed".to_string()),
        (0, None | Some(0)) => None,
        (wstatus, _) => Some(wait_status_words(wstatus)),
    }
}

/// A program as JSON and the metrics name it.
pub fn program_name(program: Program) -> &'static str {
    match program {
        Program::Setup => "setup",
        Program::Run => "run",
    }
}

/// A kind of failed start as JSON and the metrics name it.
pub fn failure_name(failure: Failure) -> &'static str {
    match failure {
        Failure::Exec => "exec",
        Failure::Spawn => "spawn",
        Failure::Status => "status",
        Failure::Gone => "gone",
    }
}

/// A REASON in words: `could not exec run: Permission denied`,
/// `setup exited 111`.
pub fn reason_words(reason: Reason) -> String {
    let program = program_name(reason.program);
    match reason.failure {
        Failure::Exec => format!("could not exec {program}: {}", Errno(reason.value)),
        Failure::Spawn => format!("could not start {program}: {}", Errno(reason.value)),
        Failure::Status => format!("{program} {}", wait_status_words(reason.value)),
        Failure::Gone => "the service directory is gone".to_string(),
    }
}

/// A raw wait status in words: `exited 3`, `killed by SIGKILL`.
fn wait_status_words(wstatus: i32) -> String {
    if libc::WIFSIGNALED(wstatus) {
        format!("killed by {}", signal_name(libc::WTERMSIG(wstatus)))
    } else {
        format!("exited {}", libc::WEXITSTATUS(wstatus))
    }
}

/// `SIGKILL` for 9; `signal N` for a number without a name here.
fn signal_name(signal: i32) -> String {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    match NAMES.get((signal as usize).wrapping_sub(1)) {
        Some(name) => format!("SIG{name}"),
        None => format!("signal {signal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_and_reasons_in_words() {
        let status = |wstatus, restarts, reason| Status {
            wstatus,
            restarts,
            reason,
            ..Status::default()
        };
        assert_eq!(last_exit(&status(0, Some(0), None)), None, "never ended");
        assert_eq!(last_exit(&status(0, None, None)), None);
        assert_eq!(last_exit(&status(0, Some(1), None)).unwrap(), "exited 0");
        assert_eq!(
            last_exit(&status(3 << 8, Some(4), None)).unwrap(),
            "exited 3"
        );
        assert_eq!(
            last_exit(&status(9, None, None)).unwrap(),
            "killed by SIGKILL"
        );
        assert_eq!(
            last_exit(&status(-1, None, None)).unwrap(),
            "setup exited 111 or run could not be executed"
        );
        assert_eq!(
            last_exit(&status(-1, Some(0), None)).unwrap(),
            "could not exec run"
        );
        assert_eq!(signal_name(64), "signal 64");
        let exec = Reason {
            program: Program::Run,
            failure: Failure::Exec,
            value: libc::EACCES,
        };
        assert_eq!(
            last_exit(&status(-1, Some(0), Some(exec))).unwrap(),
            "could not exec run: Permission denied"
        );
        let setup = Reason {
            program: Program::Setup,
            failure: Failure::Status,
            value: 111 << 8,
        };
        assert_eq!(reason_words(setup), "setup exited 111");
    }
}
