//! The control protocol on top of SPAT: tag and state numbers, service
//! names, signal letters, and the decoding of requests. Numbers are part of
//! the wire format shared with the C nitro and are never reused.

use crate::spat::{Item, Reader};

pub const TAG_OK: u8 = 80;
pub const TAG_ESRCH: u8 = 81;
pub const TAG_ENOSYS: u8 = 82;
pub const TAG_SERVICE: u8 = 100;
pub const TAG_NAME: u8 = 101;
pub const TAG_STATE: u8 = 102;
pub const TAG_PID: u8 = 103;
pub const TAG_WSTATUS: u8 = 104;
pub const TAG_UPTIME: u8 = 105;
pub const TAG_NITRO_PID: u8 = 106;
pub const TAG_MAX_SERVICE: u8 = 107;
pub const TAG_TOTAL_REAPS: u8 = 108;
pub const TAG_TOTAL_SV_REAPS: u8 = 109;
pub const TAG_UP: u8 = 120;
pub const TAG_DOWN: u8 = 121;
pub const TAG_RESTART: u8 = 122;
pub const TAG_INFO: u8 = 123;
pub const TAG_LIST: u8 = 124;
pub const TAG_QUERY: u8 = 125;
pub const TAG_RESCAN: u8 = 126;
pub const TAG_SHUTDOWN: u8 = 127;
pub const TAG_REBOOT: u8 = 128;
pub const TAG_SIGNAL: u8 = 129;
pub const TAG_READY: u8 = 130;
/// [beyond] Index of the next service when a LIST reply is paged.
pub const TAG_LIST_NEXT: u8 = 180;
/// [beyond] Automatic restarts of a service since it was added.
pub const TAG_RESTARTS: u8 = 181;
/// [beyond] Heap allocations since startup completed.
pub const TAG_ALLOCS: u8 = 182;
/// [beyond] Why a service last failed to start: a `Reason`.
pub const TAG_REASON: u8 = 183;
/// [beyond] CPU time used in the service's cgroup, microseconds (u64).
pub const TAG_CPU_USEC: u8 = 184;
/// [beyond] Memory in use in the service's cgroup, bytes (u64).
pub const TAG_MEMORY_CURRENT: u8 = 185;
/// [beyond] The most memory it ever used, bytes (u64).
pub const TAG_MEMORY_PEAK: u8 = 186;
/// [beyond] Processes in the service's cgroup (u64).
pub const TAG_PIDS_CURRENT: u8 = 187;
/// [beyond] Processes the OOM killer killed in it (u64).
pub const TAG_OOM_KILLS: u8 = 188;

/// Size of the datagrams both sides exchange; the C nitroctl reads 4096.
pub const DATAGRAM_MAX: usize = 4096;
/// Service names are shorter than this many bytes.
pub const NAME_MAX: usize = 64;

/// Service states with their wire numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum State {
    Down = 1,
    Setup = 2,
    Starting = 3,
    Up = 4,
    Oneshot = 5,
    Shutdown = 6,
    Restart = 7,
    Fatal = 8,
    Delay = 9,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Down,
        State::Setup,
        State::Starting,
        State::Up,
        State::Oneshot,
        State::Shutdown,
        State::Restart,
        State::Fatal,
        State::Delay,
    ];

    pub fn from_wire(n: u8) -> Option<State> {
        State::ALL.get((n as usize).wrapping_sub(1)).copied()
    }

    /// The name `nitroctl` prints.
    pub fn name(self) -> &'static str {
        match self {
            State::Down => "DOWN",
            State::Setup => "SETUP",
            State::Starting => "STARTING",
            State::Up => "UP",
            State::Oneshot => "ONESHOT",
            State::Shutdown => "SHUTDOWN",
            State::Restart => "RESTART",
            State::Fatal => "FATAL",
            State::Delay => "DELAY",
        }
    }
}

/// The program of a service a `Reason` is about (its wire number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Program {
    Setup = 1,
    Run = 2,
}

/// What went wrong in a `Reason`, and what its value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Failure {
    /// execve failed; the value is its errno.
    Exec = 1,
    /// The process (or the readiness pipe) could not be created: errno.
    Spawn = 2,
    /// The program ran and failed; the value is its raw wait status
    /// (`setup` exiting 111 is what makes a service FATAL).
    Status = 3,
    /// The service directory is gone; the value is 0.
    Gone = 4,
}

/// The payload of REASON (tag 183): why a service could not be started
/// the last time it was tried, until `run` is launched again. Six bytes:
/// u8 program, u8 failure, i32 value (little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    pub program: Program,
    pub failure: Failure,
    pub value: i32,
}

impl Reason {
    pub fn encode(self) -> [u8; 6] {
        let v = self.value.to_le_bytes();
        [
            self.program as u8,
            self.failure as u8,
            v[0],
            v[1],
            v[2],
            v[3],
        ]
    }

    /// `None` for a payload of another size or unknown numbers.
    pub fn decode(payload: &[u8]) -> Option<Reason> {
        let &[program, failure, a, b, c, d] = payload else {
            return None;
        };
        let program = match program {
            1 => Program::Setup,
            2 => Program::Run,
            _ => return None,
        };
        let failure = match failure {
            1 => Failure::Exec,
            2 => Failure::Spawn,
            3 => Failure::Status,
            4 => Failure::Gone,
            _ => return None,
        };
        Some(Reason {
            program,
            failure,
            value: i32::from_le_bytes([a, b, c, d]),
        })
    }
}

/// The part of a requested name that counts: the bytes up to the first NUL.
pub fn request_name(payload: &[u8]) -> &[u8] {
    match payload.iter().position(|&b| b == 0) {
        Some(end) => &payload[..end],
        None => payload,
    }
}

/// Whether `name` may name a service directory (or a template, ending in
/// `@`): nothing that could leave the service directory or break the
/// `notify/<name>,…` convention.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() < NAME_MAX
        && name[0] != b'.'
        && name != b"SYS"
        && !name.iter().any(|&b| matches!(b, b'/' | b',' | b'\n' | 0))
}

/// Splits `NAME@PARAM` into the template `NAME@` and `PARAM`; `None` for a
/// name without `@` or a template itself (empty parameter).
pub fn split_instance(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = name.iter().position(|&b| b == b'@')?;
    let (template, param) = name.split_at(at + 1);
    if param.is_empty() {
        None
    } else {
        Some((template, param))
    }
}

/// Signals by their letter, as used by `down-signal` and `nitroctl`.
pub const SIGNAL_LETTERS: [(u8, &str, libc::c_int); 10] = [
    (b'p', "pause", libc::SIGSTOP),
    (b'c', "cont", libc::SIGCONT),
    (b'h', "hup", libc::SIGHUP),
    (b'a', "alarm", libc::SIGALRM),
    (b'i', "interrupt", libc::SIGINT),
    (b'q', "quit", libc::SIGQUIT),
    (b't', "term", libc::SIGTERM),
    (b'k', "kill", libc::SIGKILL),
    (b'1', "1", libc::SIGUSR1),
    (b'2', "2", libc::SIGUSR2),
];

/// The signal a letter stands for.
pub fn signal_for_letter(letter: u8) -> Option<libc::c_int> {
    SIGNAL_LETTERS
        .iter()
        .find(|(l, _, _)| *l == letter)
        .map(|&(_, _, sig)| sig)
}

/// A decoded control request. Names are raw bytes up to the first NUL and
/// still have to be validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Up(&'a [u8]),
    Down(&'a [u8]),
    Restart(&'a [u8]),
    Info,
    List { start: u32 },
    Query(&'a [u8]),
    Rescan,
    Shutdown,
    Reboot,
    Signal { signal: u8, name: &'a [u8] },
    Ready(&'a [u8]),
    Unknown,
}

/// Decodes the command in the first packet of a datagram; `None` when the
/// datagram is malformed (it is then dropped without a reply).
pub fn parse_request(datagram: &[u8]) -> Option<Request<'_>> {
    let (tag, payload) = match Reader::new(datagram).next()?.ok()? {
        Item::Packet { tag, payload } => (tag, payload),
        // A frame marker read as a length runs past any datagram: dropped,
        // as the C nitro drops it.
        Item::Open(_) | Item::Close(_) => return None,
    };
    // A payload of NAME_MAX bytes or more names nothing, whatever NUL is
    // in it (the C nitro reads it as the empty name): ESRCH, not a
    // service named by its first bytes.
    let long = payload.len() >= NAME_MAX;
    let name = if long { &[][..] } else { request_name(payload) };
    Some(match tag {
        TAG_UP => Request::Up(name),
        TAG_DOWN => Request::Down(name),
        TAG_RESTART => Request::Restart(name),
        TAG_INFO => Request::Info,
        TAG_LIST => Request::List {
            start: crate::spat::payload_u32(payload).unwrap_or(0),
        },
        TAG_QUERY => Request::Query(name),
        TAG_RESCAN => Request::Rescan,
        TAG_SHUTDOWN => Request::Shutdown,
        TAG_REBOOT => Request::Reboot,
        TAG_SIGNAL => match payload.split_first() {
            Some((&signal, rest)) => Request::Signal {
                signal,
                name: if long { &[] } else { request_name(rest) },
            },
            None => Request::Signal {
                signal: 0,
                name: &[],
            },
        },
        TAG_READY => Request::Ready(name),
        _ => Request::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_numbers_are_the_wire_numbers() {
        for (i, s) in State::ALL.iter().enumerate() {
            assert_eq!(*s as u8 as usize, i + 1);
            assert_eq!(State::from_wire(i as u8 + 1), Some(*s));
        }
        assert_eq!(State::from_wire(0), None);
        assert_eq!(State::from_wire(10), None);
    }

    #[test]
    fn names() {
        assert!(valid_name(b"alpha"));
        assert!(valid_name(b"beta@x y"));
        assert!(valid_name(&[b'a'; 63]));
        assert!(!valid_name(&[b'a'; 64]));
        for bad in [
            &b""[..],
            b".hidden",
            b"..",
            b"SYS",
            b"a/b",
            b"a,b",
            b"a\nb",
            b"../x@y",
        ] {
            assert!(!valid_name(bad), "{:?}", bad);
        }
        assert_eq!(request_name(b"ab\0cd"), b"ab");
        assert_eq!(split_instance(b"sv@a@b"), Some((&b"sv@"[..], &b"a@b"[..])));
        assert_eq!(split_instance(b"sv@"), None);
        assert_eq!(split_instance(b"sv"), None);
    }

    #[test]
    fn requests_from_the_c_nitroctl() {
        // Byte vectors from PROTOCOL-VECTORS.md.
        assert_eq!(
            parse_request(&[0x05, 0x00, 0x7d, b'a', b'l', b'p', b'h', b'a']),
            Some(Request::Query(b"alpha"))
        );
        assert_eq!(
            parse_request(&[0x00, 0x00, 0x7c]),
            Some(Request::List { start: 0 })
        );
        assert_eq!(parse_request(&[0x00, 0x00, 0x7b]), Some(Request::Info));
        assert_eq!(
            parse_request(&[0x06, 0x00, 0x79, b'b', b'e', b't', b'a', b'@', b'x']),
            Some(Request::Down(b"beta@x"))
        );
        assert_eq!(
            parse_request(&[0x06, 0x00, 0x81, 0x01, b'a', b'l', b'p', b'h', b'a']),
            Some(Request::Signal {
                signal: 1,
                name: b"alpha"
            })
        );
        assert_eq!(parse_request(&[0x00, 0x00, 0xc8]), Some(Request::Unknown));
        assert_eq!(
            parse_request(&[0x04, 0x00, 0x7c, 3, 0, 0, 0]),
            Some(Request::List { start: 3 })
        );
    }

    /// A name payload of 64 bytes or more names nothing, even with a NUL
    /// early in it, as the C nitro reads it (vectors of a review against it).
    #[test]
    fn a_name_payload_of_name_max_bytes_or_more_is_the_empty_name() {
        let mut query = vec![0x42, 0x00, TAG_QUERY];
        query.extend_from_slice(b"alpha\0");
        query.resize(3 + 0x42, b'z');
        assert_eq!(parse_request(&query), Some(Request::Query(b"")));
        let mut signal = vec![0x42, 0x00, TAG_SIGNAL, 0x12];
        signal.extend_from_slice(b"alpha");
        signal.resize(3 + 0x42, 0);
        assert_eq!(
            parse_request(&signal),
            Some(Request::Signal {
                signal: 0x12,
                name: b""
            })
        );
        let mut fits = vec![0x3f, 0x00, TAG_DOWN];
        fits.extend_from_slice(b"alpha\0");
        fits.resize(3 + 0x3f, b'z');
        assert_eq!(parse_request(&fits), Some(Request::Down(b"alpha")));
    }

    #[test]
    fn reasons_round_trip_and_reject_garbage() {
        let r = Reason {
            program: Program::Run,
            failure: Failure::Exec,
            value: libc::EACCES,
        };
        assert_eq!(r.encode(), [2, 1, 13, 0, 0, 0]);
        assert_eq!(Reason::decode(&r.encode()), Some(r));
        let setup = Reason::decode(&[1, 3, 0, 0x6f, 0, 0]).unwrap();
        assert_eq!(
            (setup.program, setup.failure),
            (Program::Setup, Failure::Status)
        );
        assert_eq!(setup.value, 111 << 8);
        for bad in [
            &[][..],
            &[2, 1, 13, 0, 0],
            &[0, 1, 0, 0, 0, 0],
            &[2, 5, 0, 0, 0, 0],
        ] {
            assert_eq!(Reason::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn malformed_requests_are_dropped() {
        assert_eq!(parse_request(&[]), None);
        assert_eq!(parse_request(&[0x00, 0x00]), None);
        assert_eq!(parse_request(&[0x05, 0x00, 0x79]), None);
    }
}
