//! The client side of the protocol, for `nitroctl` and the tests: a
//! datagram socket beside nitro's, request datagrams, and decoding of
//! replies and events. How nitroctl shows them is its own business.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::core::CgroupStats;
use crate::proto::{self, Reason, State};
use crate::spat::{self, Item, Reader, Writer};
use crate::sys;

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
            None => sys::control::autobind()?,
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
        let fields = |s: &Status| (s.name.clone(), s.state, s.pid, s.wstatus, s.uptime);
        assert_eq!(
            fields(&services[0]),
            ("beta@x".to_string(), Some(State::Up), 2982, 0, 3)
        );
        assert_eq!(
            fields(&services[1]),
            ("alpha".to_string(), Some(State::Up), 2983, 0, 3)
        );
        assert_eq!(services[1].restarts, None, "the C nitro sends no RESTARTS");
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
}
