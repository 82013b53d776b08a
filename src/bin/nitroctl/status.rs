//! `nitroctl status`: the state of services for people, one aligned row
//! each. What nitro does not send (how readiness is signalled, where the
//! output goes) is read from the service directory, which is nitro's
//! working directory (`/proc/PID/cwd`); when that cannot be read (another
//! user's nitro, no /proc) those two columns are left out.

use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nitro::client::Status;
use nitro::proto::{self, State};
use nitro::sys;

use crate::exit::say;
use crate::{Ctl, formats, words};

/// `2h13m`: the two largest units, the smaller one left out when it is 0
/// (`5m`, `3d`), seconds alone below a minute.
pub fn human_duration(seconds: u32) -> String {
    let units = [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let k = units
        .iter()
        .position(|&(size, _)| seconds >= size)
        .unwrap_or(units.len() - 1);
    let (size, unit) = units[k];
    let mut text = format!("{}{unit}", seconds / size);
    if let Some(&(small, small_unit)) = units.get(k + 1) {
        let rest = seconds % size / small;
        if rest > 0 {
            text.push_str(&format!("{rest}{small_unit}"));
        }
    }
    text
}

/// CPU time for people: `0.42s`, `3m12s`.
fn cpu_time(usec: u64) -> String {
    if usec < 60_000_000 {
        format!("{}.{:02}s", usec / 1_000_000, usec % 1_000_000 / 10_000)
    } else {
        human_duration((usec / 1_000_000).min(u32::MAX as u64) as u32)
    }
}

/// Bytes for people, in binary units: `512B`, `12.3M`.
fn bytes(value: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut size = value as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < units.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value}B")
    } else {
        format!("{size:.1}{}", units[unit])
    }
}

/// How the service's `run` tells it is ready, from `notification-fd`, as
/// nitro reads it (SPEC section 2): 32 bytes at most, a descriptor from 3
/// to below nitro's limit of descriptors.
fn readiness(dir: &Path, fd_limit: u64) -> String {
    if !dir.is_dir() {
        return "-".to_string();
    }
    if !dir.join("run").exists() {
        return "one-shot".to_string();
    }
    // Read as nitro reads it: non-blocking (a FIFO there must not hold
    // us), the same 32 bytes.
    let mut text = [0u8; 32];
    let n = match sys::read_at(
        libc::AT_FDCWD,
        dir.as_os_str().as_bytes(),
        b"notification-fd",
        &mut text,
    ) {
        Ok(n) if n > 0 => n,
        _ => return "after 2s".to_string(),
    };
    let digits: String = text[..n]
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    match digits.parse::<u64>() {
        Ok(fd) if (3..fd_limit).contains(&fd) => format!("fd {fd}"),
        _ => "nitroctl ready".to_string(),
    }
}

/// The directory of service `name`: its own, or its template's.
fn dir_of(name: &str) -> &str {
    proto::split_instance(name.as_bytes())
        .map_or(name, |(t, _)| std::str::from_utf8(t).unwrap_or(""))
}

/// Completes a logger name ending in `@` as nitro does: with the instance
/// parameter, or with the service's own name.
fn complete(logger: &str, service: &str) -> String {
    if !logger.ends_with('@') {
        return logger.to_string();
    }
    let param = proto::split_instance(service.as_bytes())
        .map_or(service, |(_, p)| std::str::from_utf8(p).unwrap_or(service));
    format!("{logger}{param}")
}

/// Where the output of service `name` goes (SPEC section 5): its logger,
/// or `console` (nitro's own standard output). A logger is taken only
/// where nitro takes it: a directory with a `run` or a `setup`.
fn log_target(base: &Path, dir: &Path, name: &str, all: &[Status]) -> String {
    let is_service = |logger: &str| {
        ["run", "setup"]
            .iter()
            .any(|f| base.join(dir_of(logger)).join(f).exists())
    };
    if let Ok(target) = std::fs::read_link(dir.join("log"))
        && let Some(last) = target.file_name()
    {
        let logger = complete(&last.to_string_lossy(), name);
        if is_service(&logger) {
            return logger;
        }
    }
    let special = name == "LOG" || name.starts_with("LOG@") || name == "SYS";
    if !special && is_service("LOG@") {
        return complete("LOG@", name);
    }
    let log_runs = name != "LOG"
        && all
            .iter()
            .any(|s| s.name == "LOG" && matches!(s.state, Some(State::Starting | State::Up)));
    if log_runs { "LOG" } else { "console" }.to_string()
}

/// nitro's service directory as nitro sees it (its working directory,
/// reached through /proc, so in nitro's mount namespace) and its limit of
/// descriptors; `None` when that cannot be read, or is not where the
/// services listed are (a nitro in another pid namespace).
fn service_base(ctl: &Ctl, all: &[Status]) -> Option<(PathBuf, u64)> {
    let pid = ctl
        .info()
        .into_iter()
        .find(|(k, _)| k == "nitro_pid")
        .and_then(|(_, v)| v)?;
    let base = PathBuf::from(format!("/proc/{pid}/cwd"));
    let found = all
        .iter()
        .any(|s| s.name != "SYS" && base.join(dir_of(&s.name)).is_dir());
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let fd_limit = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(u64::MAX);
    found.then_some((base, fd_limit))
}

/// Whether to colour: stdout is a terminal and NO_COLOR is not set.
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The SGR colour of a state: green when up, red when failed, yellow when
/// on its way, none when down.
fn state_colour(state: Option<State>) -> Option<&'static str> {
    match state? {
        State::Up | State::Oneshot => Some("32"),
        State::Fatal => Some("31"),
        State::Delay | State::Restart | State::Setup | State::Starting | State::Shutdown => {
            Some("33")
        }
        State::Down => None,
    }
}

/// The rows of `status`, header first; `colour` wraps the state column.
pub fn render(
    services: &[Status],
    base: Option<(&Path, u64)>,
    all: &[Status],
    colour: bool,
) -> Vec<String> {
    // Only when nitro runs its services in cgroups.
    let usage = services.iter().any(|s| s.cgroup.cpu_usec.is_some());
    let mut rows: Vec<Vec<String>> = vec![
        ["NAME", "STATE", "PID", "UPTIME", "RESTARTS"]
            .into_iter()
            .chain(base.map(|_| ["READY", "LOG"]).into_iter().flatten())
            .chain(usage.then_some(["CPU", "MEMORY"]).into_iter().flatten())
            .chain(["LAST EXIT"])
            .map(String::from)
            .collect(),
    ];
    for s in services {
        let mut row = vec![
            s.name.clone(),
            formats::state_name(s).to_string(),
            if s.pid == 0 {
                "-".to_string()
            } else {
                s.pid.to_string()
            },
            human_duration(s.uptime),
            s.restarts.map_or("-".to_string(), |n| n.to_string()),
        ];
        if let Some((base, fd_limit)) = base {
            let dir = base.join(dir_of(&s.name));
            row.push(readiness(&dir, fd_limit));
            row.push(log_target(base, &dir, &s.name, all));
        }
        if usage {
            row.push(s.cgroup.cpu_usec.map_or("-".to_string(), cpu_time));
            row.push(s.cgroup.memory_current.map_or("-".to_string(), bytes));
        }
        let mut exit = words::last_exit(s).unwrap_or_else(|| "-".to_string());
        if let Some(kills @ 1..) = s.cgroup.oom_kills {
            exit += &format!(" (OOM kills: {kills})");
        }
        row.push(exit);
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .enumerate()
        .map(|(n, row)| {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let last = c + 1 == columns;
                let padded = if last {
                    cell.clone()
                } else {
                    format!("{cell:<width$}  ", width = widths[c])
                };
                let paint = (colour && c == 1 && n > 0)
                    .then(|| state_colour(services[n - 1].state))
                    .flatten();
                match paint {
                    Some(sgr) => {
                        line.push_str(&format!("\x1b[{sgr}m{cell}\x1b[0m"));
                        line.push_str(&padded[cell.len()..]);
                    }
                    None => line.push_str(&padded),
                }
            }
            line
        })
        .collect()
}

/// `status [SERVICE…]`: every service in natural order, or the ones named
/// in argument order (an unknown one makes the status 111).
pub fn status(ctl: &Ctl, names: &[String]) -> i32 {
    let all = ctl.list_all();
    let (services, code) = if names.is_empty() {
        (all.clone(), 0)
    } else {
        ctl.query_all(names)
    };
    let base = service_base(ctl, &all);
    let base = base.as_ref().map(|(dir, limit)| (dir.as_path(), *limit));
    for line in render(&services, base, &all, colour()) {
        say(&line);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_people() {
        for (seconds, text) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (61, "1m1s"),
            (3600, "1h"),
            (2 * 3600 + 13 * 60 + 5, "2h13m"),
            (86400 * 3 + 3600 * 4, "3d4h"),
        ] {
            assert_eq!(human_duration(seconds), text);
        }
    }

    #[test]
    fn loggers_are_completed_like_nitro_does() {
        assert_eq!(complete("logger@", "sv@foo"), "logger@foo");
        assert_eq!(complete("logger@", "sv_a"), "logger@sv_a");
        assert_eq!(complete("LOG", "sv"), "LOG");
    }

    #[test]
    fn columns_align_and_only_the_state_is_coloured() {
        let s = |name: &str, state, pid| Status {
            name: name.into(),
            state: Some(state),
            pid,
            restarts: Some(0),
            ..Status::default()
        };
        let services = [s("a", State::Up, 7), s("long-name", State::Fatal, 0)];
        let plain = render(&services, None, &services, false);
        assert_eq!(
            plain,
            [
                "NAME       STATE  PID  UPTIME  RESTARTS  LAST EXIT",
                "a          UP     7    0s      0         -",
                "long-name  FATAL  -    0s      0         -",
            ]
        );
        let painted = render(&services, None, &services, true);
        assert_eq!(painted[0], plain[0]);
        assert_eq!(
            painted[1],
            "a          \x1b[32mUP\x1b[0m     7    0s      0         -"
        );
        assert_eq!(
            painted[2].replace("\x1b[31m", "").replace("\x1b[0m", ""),
            plain[2]
        );
    }
}
