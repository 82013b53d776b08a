//! The client side of the protocol, for `nitroctl`: a datagram socket
//! beside nitro's, decoding of replies, and the output formats (list line,
//! JSON, Prometheus metrics).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::CgroupStats;
use crate::proto::{self, Failure, Program, Reason, State};
use crate::spat::{self, Item, Reader, Writer};
use crate::sys::Errno;

/// One service as a LIST frame or a QUERY reply describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub name: String,
    pub state: Option<State>,
    pub pid: u32,
    pub wstatus: i32,
    pub uptime: u32,
    pub restarts: Option<u32>,
    /// Why it could not be started the last time (REASON, tag 183).
    pub reason: Option<Reason>,
    /// What its cgroup used (tags 184 to 188), as far as nitro sent it.
    pub cgroup: CgroupStats,
}

impl Status {
    /// Applies one packet of a SERVICE frame or QUERY reply; unknown tags
    /// are skipped.
    fn apply(&mut self, tag: u8, payload: &[u8]) {
        match tag {
            proto::TAG_NAME => {
                self.name = String::from_utf8_lossy(proto::request_name(payload)).into_owned()
            }
            proto::TAG_STATE => self.state = payload.first().and_then(|&s| State::from_wire(s)),
            proto::TAG_PID => self.pid = spat::payload_u32(payload).unwrap_or(0),
            proto::TAG_WSTATUS => self.wstatus = spat::payload_i32(payload).unwrap_or(0),
            proto::TAG_UPTIME => self.uptime = spat::payload_u32(payload).unwrap_or(0),
            proto::TAG_RESTARTS => self.restarts = spat::payload_u32(payload),
            proto::TAG_REASON => self.reason = Reason::decode(payload),
            proto::TAG_CPU_USEC => self.cgroup.cpu_usec = spat::payload_u64(payload),
            proto::TAG_MEMORY_CURRENT => self.cgroup.memory_current = spat::payload_u64(payload),
            proto::TAG_MEMORY_PEAK => self.cgroup.memory_peak = spat::payload_u64(payload),
            proto::TAG_PIDS_CURRENT => self.cgroup.pids_current = spat::payload_u64(payload),
            proto::TAG_OOM_KILLS => self.cgroup.oom_kills = spat::payload_u64(payload),
            _ => {}
        }
    }

    fn state_name(&self) -> &'static str {
        self.state.map_or("?", State::name)
    }

    /// The exit code of the last `run`, if it exited.
    pub fn exit_code(&self) -> Option<i32> {
        (self.wstatus != -1 && libc::WIFEXITED(self.wstatus))
            .then(|| libc::WEXITSTATUS(self.wstatus))
    }

    /// The signal that killed the last `run`, if one did.
    pub fn signal(&self) -> Option<i32> {
        (self.wstatus != -1 && libc::WIFSIGNALED(self.wstatus))
            .then(|| libc::WTERMSIG(self.wstatus))
    }

    /// The last exit of `run` in words (`exited 3`, `killed by SIGKILL`),
    /// or why the last start failed, which is more recent; `None` when
    /// there is nothing to tell (a first `run` that is still running).
    pub fn last_exit(&self) -> Option<String> {
        if let Some(reason) = self.reason {
            return Some(reason_words(reason));
        }
        match (self.wstatus, self.restarts) {
            (-1, _) => Some("could not exec run".to_string()),
            (0, None | Some(0)) => None,
            (wstatus, _) => Some(wait_status_words(wstatus)),
        }
    }

    /// `STATE name (pid N) (wstatus N) Ns`, as the C nitroctl prints it.
    pub fn line(&self) -> String {
        let mut line = format!("{} {}", self.state_name(), self.name);
        if self.pid != 0 {
            line.push_str(&format!(" (pid {})", self.pid));
        }
        line.push_str(&format!(" (wstatus {}) {}s", self.wstatus, self.uptime));
        line
    }

    pub fn json(&self) -> String {
        let opt = |v: Option<i32>| v.map_or("null".to_string(), |v| v.to_string());
        let reason = self.reason.map_or("null".to_string(), |r| {
            format!(
                "{{\"program\":\"{}\",\"failure\":\"{}\",\"value\":{},\"text\":{}}}",
                program_name(r.program),
                failure_name(r.failure),
                r.value,
                json_string(&reason_words(r))
            )
        });
        let num = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        let c = self.cgroup;
        format!(
            "{{\"name\":{},\"state\":\"{}\",\"pid\":{},\"wstatus\":{},\"exit_code\":{},\"signal\":{},\"uptime\":{},\"restarts\":{},\"reason\":{},\"cpu_usec\":{},\"memory_current\":{},\"memory_peak\":{},\"pids_current\":{},\"oom_kills\":{}}}",
            json_string(&self.name),
            self.state_name(),
            if self.pid == 0 {
                "null".to_string()
            } else {
                self.pid.to_string()
            },
            self.wstatus,
            opt(self.exit_code()),
            opt(self.signal()),
            self.uptime,
            self.restarts.unwrap_or(0),
            reason,
            num(c.cpu_usec),
            num(c.memory_current),
            num(c.memory_peak),
            num(c.pids_current),
            num(c.oom_kills),
        )
    }
}

fn program_name(program: Program) -> &'static str {
    match program {
        Program::Setup => "setup",
        Program::Run => "run",
    }
}

fn failure_name(failure: Failure) -> &'static str {
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
pub fn wait_status_words(wstatus: i32) -> String {
    if libc::WIFSIGNALED(wstatus) {
        format!("killed by {}", signal_name(libc::WTERMSIG(wstatus)))
    } else {
        format!("exited {}", libc::WEXITSTATUS(wstatus))
    }
}

/// `SIGKILL` for 9; `signal N` for a number without a name here.
pub fn signal_name(signal: i32) -> String {
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

/// Natural order of names: runs of digits compare as numbers, so
/// `svc-2` comes before `svc-10`; equal numbers with more leading zeros
/// come later, and ties are broken bytewise, so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let run = |s: &[u8], k: usize| {
                let end = k + s[k..].iter().take_while(|c| c.is_ascii_digit()).count();
                let start = k + s[k..end].iter().take_while(|&&c| c == b'0').count();
                (start, end)
            };
            let ((xs, xe), (ys, ye)) = (run(x, i), run(y, j));
            let order = (xe - xs)
                .cmp(&(ye - ys))
                .then_with(|| x[xs..xe].cmp(&y[ys..ye]))
                .then_with(|| (xe - i).cmp(&(ye - j)));
            if order != Ordering::Equal {
                return order;
            }
            (i, j) = (xe, ye);
        } else {
            if x[i] != y[j] {
                return x[i].cmp(&y[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| x.cmp(y))
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Prometheus label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The SERVICE frames of a LIST page, and LIST_NEXT if more remain.
/// Unknown packets are skipped, and unknown frames (at any level) with
/// everything inside them, so a nested NAME cannot rename a service.
pub fn decode_list(reply: &[u8]) -> (Vec<Status>, Option<u32>) {
    let mut services = Vec::new();
    let mut next = None;
    let mut current: Option<Status> = None;
    // Depth inside frames we do not know (or a SERVICE inside a SERVICE).
    let mut unknown = 0usize;
    for item in Reader::new(reply) {
        let Ok(item) = item else { break };
        match item {
            Item::Open(tag) if unknown > 0 || tag != proto::TAG_SERVICE || current.is_some() => {
                unknown += 1
            }
            Item::Close(_) if unknown > 0 => unknown -= 1,
            Item::Open(_) => current = Some(Status::default()),
            Item::Close(proto::TAG_SERVICE) => services.extend(current.take()),
            Item::Close(_) => {}
            Item::Packet { .. } if unknown > 0 => {}
            Item::Packet { tag, payload } => match current.as_mut() {
                Some(status) => status.apply(tag, payload),
                None if tag == proto::TAG_LIST_NEXT => next = spat::payload_u32(payload),
                None => {}
            },
        }
    }
    (services, next)
}

/// A QUERY reply; `None` for ESRCH or garbage. Packets inside frames are
/// not part of a QUERY reply and are skipped.
pub fn decode_query(name: &str, reply: &[u8]) -> Option<Status> {
    let mut status = Status {
        name: name.to_string(),
        ..Status::default()
    };
    let mut depth = 0usize;
    for item in Reader::new(reply) {
        match item {
            Ok(Item::Packet {
                tag: proto::TAG_ESRCH,
                ..
            })
            | Err(_) => return None,
            Ok(Item::Packet { tag, payload }) if depth == 0 => status.apply(tag, payload),
            Ok(Item::Packet { .. }) => {}
            Ok(Item::Open(_)) => depth += 1,
            Ok(Item::Close(_)) => depth = depth.saturating_sub(1),
        }
    }
    status.state.map(|_| status)
}

/// INFO as `(key, value)` pairs, unknown tags as `# unknown tag 0xNN`
/// (a frame once, for its opening, with its contents skipped).
pub fn decode_info(reply: &[u8]) -> Vec<(String, Option<u32>)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for item in Reader::new(reply) {
        let (tag, payload) = match item {
            Ok(Item::Open(tag)) => {
                depth += 1;
                if depth == 1 {
                    out.push((format!("# unknown tag 0x{tag:02x}"), None));
                }
                continue;
            }
            Ok(Item::Close(_)) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            Ok(Item::Packet { tag, payload }) if depth == 0 => (tag, payload),
            Ok(Item::Packet { .. }) => continue,
            Err(_) => break,
        };
        let key = match tag {
            proto::TAG_NITRO_PID => "nitro_pid",
            proto::TAG_PID => "pid",
            proto::TAG_MAX_SERVICE => "max_service",
            proto::TAG_TOTAL_REAPS => "total_reaps",
            proto::TAG_TOTAL_SV_REAPS => "total_sv_reaps",
            proto::TAG_ALLOCS => "allocs",
            _ => {
                out.push((format!("# unknown tag 0x{tag:02x}"), None));
                continue;
            }
        };
        out.push((key.to_string(), spat::payload_u32(payload)));
    }
    out
}

/// `info` as one JSON object.
pub fn info_json(info: &[(String, Option<u32>)]) -> String {
    let fields: Vec<String> = info
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{}:{}", json_string(k), v)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The Prometheus text exposition of every service and of INFO.
pub fn metrics(services: &[Status], info: &[(String, Option<u32>)]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let per = |f: &dyn Fn(&Status) -> String| -> Vec<(String, String)> {
        services
            .iter()
            .map(|s| (format!("{{service=\"{}\"}}", label(&s.name)), f(s)))
            .collect()
    };
    let mut states = Vec::new();
    for s in services {
        for state in State::ALL {
            let on = u8::from(s.state == Some(state));
            states.push((
                format!(
                    "{{service=\"{}\",state=\"{}\"}}",
                    label(&s.name),
                    state.name()
                ),
                on.to_string(),
            ));
        }
    }
    family(
        "nitro_service_state",
        "gauge",
        "1 for the state the service is in, 0 for the others.",
        states,
    );
    family(
        "nitro_service_up",
        "gauge",
        "1 when the service is UP or ONESHOT.",
        per(&|s| u8::from(matches!(s.state, Some(State::Up | State::Oneshot))).to_string()),
    );
    family(
        "nitro_service_uptime_seconds",
        "gauge",
        "Seconds since the service last started or stopped.",
        per(&|s| s.uptime.to_string()),
    );
    family(
        "nitro_service_pid",
        "gauge",
        "Process id of run, 0 when none.",
        per(&|s| s.pid.to_string()),
    );
    family(
        "nitro_service_last_exit_status",
        "gauge",
        "Exit code of the last run, 128+signal if it was killed, -1 if it could not be executed.",
        per(&|s| match (s.exit_code(), s.signal()) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => (128 + signal).to_string(),
            _ => "-1".to_string(),
        }),
    );
    // Only what nitro sent: the C nitro has no RESTARTS (tag 181).
    let restarts: Vec<(String, String)> = services
        .iter()
        .filter_map(|s| {
            let n = s.restarts?;
            Some((format!("{{service=\"{}\"}}", label(&s.name)), n.to_string()))
        })
        .collect();
    if !restarts.is_empty() {
        family(
            "nitro_service_restarts_total",
            "counter",
            "Automatic restarts since the service was added.",
            restarts,
        );
    }
    let failures: Vec<(String, String)> = services
        .iter()
        .filter_map(|s| {
            let r = s.reason?;
            let labels = format!(
                "{{service=\"{}\",program=\"{}\",failure=\"{}\",text=\"{}\"}}",
                label(&s.name),
                program_name(r.program),
                failure_name(r.failure),
                label(&reason_words(r))
            );
            Some((labels, r.value.to_string()))
        })
        .collect();
    if !failures.is_empty() {
        family(
            "nitro_service_start_failure",
            "gauge",
            "Why the last start failed (REASON): errno, or the raw wait status for failure=\"status\".",
            failures,
        );
    }
    // What the services' cgroups used: only for those nitro sent it for.
    let usage = |field: &dyn Fn(&CgroupStats) -> Option<String>| -> Vec<(String, String)> {
        services
            .iter()
            .filter_map(|s| {
                let value = field(&s.cgroup)?;
                Some((format!("{{service=\"{}\"}}", label(&s.name)), value))
            })
            .collect()
    };
    let cpu_seconds = |usec: u64| format!("{}.{:06}", usec / 1_000_000, usec % 1_000_000);
    for (name, kind, help, samples) in [
        (
            "nitro_service_cpu_seconds_total",
            "counter",
            "CPU time used in the service's cgroup since its last start.",
            usage(&|c| c.cpu_usec.map(cpu_seconds)),
        ),
        (
            "nitro_service_memory_bytes",
            "gauge",
            "Memory in use in the service's cgroup.",
            usage(&|c| c.memory_current.map(|v| v.to_string())),
        ),
        (
            "nitro_service_memory_peak_bytes",
            "gauge",
            "The most memory the service's cgroup used since its last start.",
            usage(&|c| c.memory_peak.map(|v| v.to_string())),
        ),
        (
            "nitro_service_processes",
            "gauge",
            "Processes in the service's cgroup.",
            usage(&|c| c.pids_current.map(|v| v.to_string())),
        ),
        (
            "nitro_service_oom_kills_total",
            "counter",
            "Processes of the service the OOM killer killed since its last start.",
            usage(&|c| c.oom_kills.map(|v| v.to_string())),
        ),
    ] {
        if !samples.is_empty() {
            family(name, kind, help, samples);
        }
    }
    let global = |key: &str| info.iter().find(|(k, _)| k == key).and_then(|(_, v)| *v);
    family(
        "nitro_services",
        "gauge",
        "Services known to nitro.",
        vec![(String::new(), services.len().to_string())],
    );
    for (key, name, help) in [
        (
            "total_reaps",
            "nitro_reaps_total",
            "Child processes reaped.",
        ),
        (
            "total_sv_reaps",
            "nitro_service_reaps_total",
            "Service processes reaped.",
        ),
    ] {
        if let Some(v) = global(key) {
            family(name, "counter", help, vec![(String::new(), v.to_string())]);
        }
    }
    if let Some(v) = global("allocs") {
        family(
            "nitro_allocations_since_start",
            "gauge",
            "Heap allocations by nitro since its startup completed.",
            vec![(String::new(), v.to_string())],
        );
    }
    out
}

/// A request datagram: one packet.
pub fn request(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; spat::HEADER_LEN + payload.len()];
    let mut w = Writer::new(&mut buf);
    w.packet(tag, payload).expect("sized to fit");
    buf
}

/// A socket to talk to nitro from, bound (for replies) and removed on drop.
pub struct Client {
    pub socket: UnixDatagram,
    bound: Option<PathBuf>,
    server: PathBuf,
}

impl Client {
    /// Binds at `path` (a name in `notify/`, so events for it arrive too),
    /// or to an abstract address when `path` is `None`.
    pub fn new(server: &Path, path: Option<PathBuf>) -> io::Result<Client> {
        let socket = match &path {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                UnixDatagram::bind(path)?
            }
            None => autobind()?,
        };
        Ok(Client {
            socket,
            bound: path,
            server: server.to_owned(),
        })
    }

    pub fn send(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, &self.server).map(|_| ())
    }

    /// Sends and waits for a reply (skipping events), up to `timeout`.
    pub fn call(&self, datagram: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
        self.send(datagram)?;
        self.socket.set_read_timeout(Some(timeout))?;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = self.socket.recv(&mut buf)?;
            if !is_event(&buf[..n]) {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(path) = &self.bound {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether a datagram is an event `[len, 0, state, name]` (tags 1–9).
pub fn is_event(datagram: &[u8]) -> bool {
    datagram.len() >= 3 && (1..=9).contains(&datagram[2])
}

/// Decodes an event into (state, name).
pub fn decode_event(datagram: &[u8]) -> Option<(State, String)> {
    match Reader::new(datagram).next()? {
        Ok(Item::Packet { tag, payload }) => Some((
            State::from_wire(tag)?,
            String::from_utf8_lossy(proto::request_name(payload)).into_owned(),
        )),
        _ => None,
    }
}

/// A datagram socket bound to a kernel-chosen abstract address, so nitro
/// can reply without a file left behind.
fn autobind() -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    // SAFETY: binding with only the address family asks Linux to autobind;
    // the fd stays owned by `socket`.
    let rc = unsafe {
        let addr = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; 108],
        };
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The LIST reply of PROTOCOL-VECTORS.md (C nitro, names with NUL).
    const C_LIST: &[u8] = &[
        0xff, 0xff, 0x64, 0x07, 0x00, 0x65, b'b', b'e', b't', b'a', b'@', b'x', 0x00, 0x01, 0x00,
        0x66, 0x04, 0x04, 0x00, 0x67, 0xa6, 0x0b, 0x00, 0x00, 0x04, 0x00, 0x68, 0x00, 0x00, 0x00,
        0x00, 0x04, 0x00, 0x69, 0x03, 0x00, 0x00, 0x00, 0xfe, 0xff, 0x64, 0xff, 0xff, 0x64, 0x06,
        0x00, 0x65, b'a', b'l', b'p', b'h', b'a', 0x00, 0x01, 0x00, 0x66, 0x04, 0x04, 0x00, 0x67,
        0xa7, 0x0b, 0x00, 0x00, 0x04, 0x00, 0x68, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x69, 0x03,
        0x00, 0x00, 0x00, 0xfe, 0xff, 0x64,
    ];

    #[test]
    fn decodes_the_c_list_reply() {
        let (services, next) = decode_list(C_LIST);
        assert_eq!(next, None);
        assert_eq!(services.len(), 2);
        assert_eq!(services[0].name, "beta@x");
        assert_eq!(services[0].line(), "UP beta@x (pid 2982) (wstatus 0) 3s");
        assert_eq!(services[1].line(), "UP alpha (pid 2983) (wstatus 0) 3s");
    }

    #[test]
    fn decodes_query_and_info() {
        let q = [
            1, 0, 0x66, 4, 4, 0, 0x67, 0xa7, 0x0b, 0, 0, 4, 0, 0x68, 0, 0, 0, 0, 4, 0, 0x69, 2, 0,
            0, 0,
        ];
        let s = decode_query("alpha", &q).unwrap();
        assert_eq!((s.state, s.pid, s.uptime), (Some(State::Up), 2983, 2));
        assert_eq!(decode_query("x", &[0, 0, 0x51]), None);
        let info = [
            4, 0, 0x6a, 0xa5, 0x0b, 0, 0, 4, 0, 0x67, 0xa5, 0x0b, 0, 0, 4, 0, 0x6b, 2, 0, 0, 0, 4,
            0, 0x6c, 0, 0, 0, 0, 4, 0, 0x6d, 0, 0, 0, 0, 0, 0, 0xc8,
        ];
        let decoded = decode_info(&info);
        assert_eq!(decoded[0], ("nitro_pid".to_string(), Some(2981)));
        assert_eq!(decoded[2], ("max_service".to_string(), Some(2)));
        assert_eq!(decoded[5], ("# unknown tag 0xc8".to_string(), None));
        let framed = [0xff, 0xff, 0xc9, 4, 0, 0x6a, 1, 0, 0, 0, 0xfe, 0xff, 0xc9];
        assert_eq!(
            decode_info(&framed),
            [("# unknown tag 0xc9".to_string(), None)],
            "a frame once, its contents skipped"
        );
        assert_eq!(
            info_json(&decoded[..2]),
            "{\"nitro_pid\":2981,\"pid\":2981}"
        );
    }

    #[test]
    fn list_pages_and_unknown_frames_are_skipped_whole() {
        let mut page = Vec::new();
        page.extend_from_slice(&[0, 0, 200]); // unknown top-level packet
        page.extend_from_slice(&[0xff, 0xff, 100]);
        page.extend_from_slice(&[5, 0, 101, b'g', b'a', b'm', b'm', b'a']);
        page.extend_from_slice(&[1, 0, 102, 9]);
        // An unknown frame inside, with a NAME and a SERVICE of its own.
        page.extend_from_slice(&[0xff, 0xff, 200, 4, 0, 101, b'e', b'v', b'i', b'l']);
        page.extend_from_slice(&[0xff, 0xff, 100, 1, 0, 101, b'x', 0xfe, 0xff, 100]);
        page.extend_from_slice(&[0xfe, 0xff, 200]);
        page.extend_from_slice(&[4, 0, 181, 7, 0, 0, 0]); // RESTARTS
        page.extend_from_slice(&[0xfe, 0xff, 100]);
        // A LIST_NEXT inside an unknown frame does not count; the last does.
        page.extend_from_slice(&[0xff, 0xff, 201, 4, 0, 180, 9, 0, 0, 0, 0xfe, 0xff, 201]);
        page.extend_from_slice(&[4, 0, 180, 2, 0, 0, 0]);
        let (services, next) = decode_list(&page);
        assert_eq!(next, Some(2));
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].name, "gamma");
        assert_eq!(services[0].state, Some(State::Delay));
        assert_eq!(services[0].restarts, Some(7));
        // Truncated replies keep what was whole.
        let (services, _) = decode_list(&C_LIST[..C_LIST.len() - 5]);
        assert_eq!(services.len(), 1);
        for n in 0..C_LIST.len() {
            let _ = decode_list(&C_LIST[..n]);
        }
    }

    #[test]
    fn events_with_or_without_nul() {
        assert_eq!(
            decode_event(&[5, 0, 4, b'a', b'l', b'p', b'h', b'a']),
            Some((State::Up, "alpha".to_string()))
        );
        assert_eq!(
            decode_event(&[3, 0, 1, b'a', b'b', 0]),
            Some((State::Down, "ab".to_string()))
        );
        assert_eq!(decode_event(&[0, 0, 10]), None);
        assert_eq!(decode_event(&[6, 0, 1, b'a']), None);
    }

    #[test]
    fn metrics_show_only_what_nitro_sent() {
        let (services, _) = decode_list(C_LIST);
        let m = metrics(&services, &[]);
        assert!(!m.contains("restarts"), "the C nitro sends no RESTARTS");
        assert!(!m.contains("nitro_reaps_total"));
        assert!(m.contains("nitro_services 2\n"));
    }

    #[test]
    fn json_and_metrics_formats() {
        let s = Status {
            name: "we\"ird\n".into(),
            state: Some(State::Down),
            pid: 0,
            wstatus: 9,
            uptime: 5,
            restarts: Some(2),
            reason: None,
            cgroup: CgroupStats::default(),
        };
        assert_eq!(
            s.json(),
            "{\"name\":\"we\\\"ird\\n\",\"state\":\"DOWN\",\"pid\":null,\"wstatus\":9,\"exit_code\":null,\"signal\":9,\"uptime\":5,\"restarts\":2,\"reason\":null,"
                .to_owned()
                + "\"cpu_usec\":null,\"memory_current\":null,\"memory_peak\":null,\"pids_current\":null,\"oom_kills\":null}"
        );
        let m = metrics(&[s], &[("total_reaps".into(), Some(4))]);
        assert!(m.contains("nitro_service_state{service=\"we\\\"ird\\n\",state=\"DOWN\"} 1\n"));
        assert!(m.contains("nitro_service_last_exit_status{service=\"we\\\"ird\\n\"} 137\n"));
        assert!(m.contains("# TYPE nitro_reaps_total counter\nnitro_reaps_total 4\n"));
        assert!(!m.contains("nitro_allocations_since_start"));
    }

    #[test]
    fn natural_order() {
        let mut names = vec![
            "svc-10", "svc-2", "svc-1", "b", "a10b", "a2b", "svc-02", "svc-", "A",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "A", "a2b", "a10b", "b", "svc-", "svc-1", "svc-2", "svc-02", "svc-10"
            ]
        );
        assert_eq!(natural_cmp("x1", "x1"), std::cmp::Ordering::Equal);
        assert_eq!(natural_cmp("x01", "x1"), std::cmp::Ordering::Greater);
    }

    #[test]
    fn exits_and_reasons_in_words() {
        let status = |wstatus, restarts, reason| Status {
            wstatus,
            restarts,
            reason,
            ..Status::default()
        };
        assert_eq!(status(0, Some(0), None).last_exit(), None, "never ended");
        assert_eq!(status(0, None, None).last_exit(), None);
        assert_eq!(status(0, Some(1), None).last_exit().unwrap(), "exited 0");
        assert_eq!(
            status(3 << 8, Some(4), None).last_exit().unwrap(),
            "exited 3"
        );
        assert_eq!(
            status(9, None, None).last_exit().unwrap(),
            "killed by SIGKILL"
        );
        assert_eq!(
            status(-1, None, None).last_exit().unwrap(),
            "could not exec run"
        );
        assert_eq!(signal_name(64), "signal 64");
        let exec = Reason {
            program: Program::Run,
            failure: Failure::Exec,
            value: libc::EACCES,
        };
        assert_eq!(
            status(-1, Some(0), Some(exec)).last_exit().unwrap(),
            "could not exec run: Permission denied"
        );
        let setup = Reason {
            program: Program::Setup,
            failure: Failure::Status,
            value: 111 << 8,
        };
        assert_eq!(reason_words(setup), "setup exited 111");
        let json = status(0, Some(0), Some(setup)).json();
        assert!(
            json.contains(
                "\"reason\":{\"program\":\"setup\",\"failure\":\"status\",\"value\":28416,\"text\":\"setup exited 111\"},"
            ),
            "{json}"
        );
        let m = metrics(
            &[Status {
                name: "x".into(),
                reason: Some(exec),
                ..Status::default()
            }],
            &[],
        );
        assert!(
            m.contains("nitro_service_start_failure{service=\"x\",program=\"run\",failure=\"exec\",text=\"could not exec run: Permission denied\"} 13\n"),
            "{m}"
        );
    }
}
