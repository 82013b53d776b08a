//! Commands that wait for services to reach a state (start, stop, restart,
//! the fast- and wait- variants), and `events`.
//!
//! Each service gets its own socket, bound at `notify/<service>,<pid>_<n>`:
//! nitro sends the reply to our request there, and also every event of
//! that service. The request is answered (OK) only after nitro applied it
//! and announced the state it left the service in, so everything that
//! arrives after the OK describes the service after our request, and
//! nothing before it counts. Right after the OK we ask (QUERY) for the
//! current state, and again whenever nothing arrived for a second: events
//! are best-effort and a dropped one must not make us wait forever. That
//! QUERY also tells whether nitro is still there: one that cannot be sent
//! (nitro removed its socket, or died and left it refusing), or no reply
//! and nothing else from nitro for as long as a plain request waits, ends
//! the command with 4.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use nitro::client::{self, Client, Status};
use nitro::proto::{self, Failure, State};
use nitro::sys::{process, signals};

use crate::exit::{
    EXIT_FAILED, EXIT_OTHER, EXIT_TIMEOUT, EXIT_UNREACHABLE, bound, fail, leave_if_interrupted,
    say, tell,
};
use crate::{Ctl, REPLY_TIMEOUT, listen, words};

/// Ask again when nothing came for this long.
pub const REQUERY: Duration = Duration::from_secs(1);

/// What a waiting command sends and which states end the wait.
#[derive(Clone, Copy)]
pub struct Wait {
    /// The request (UP, DOWN, RESTART); `None` only waits.
    pub request: Option<u8>,
    pub done: fn(State) -> bool,
    /// FATAL ends the wait with a failure (it will not come up by itself).
    pub fatal_fails: bool,
}

pub fn wait_spec(command: &str) -> Option<Wait> {
    let up = |s| matches!(s, State::Up | State::Oneshot);
    let starting = |s| matches!(s, State::Starting | State::Up | State::Oneshot);
    let down = |s| matches!(s, State::Down | State::Fatal);
    let stopping = |s| matches!(s, State::Shutdown | State::Down | State::Fatal);
    let w = |request, done: fn(State) -> bool, fatal_fails| Wait {
        request,
        done,
        fatal_fails,
    };
    Some(match command {
        "start" => w(Some(proto::TAG_UP), up, true),
        "stop" => w(Some(proto::TAG_DOWN), down, false),
        // RESTART takes an UP service out of UP before nitro answers, so an
        // UP seen after the OK is the new one.
        "restart" => w(Some(proto::TAG_RESTART), up, true),
        "fast-start" => w(Some(proto::TAG_UP), starting, true),
        "fast-restart" | "r" => w(Some(proto::TAG_RESTART), starting, true),
        "fast-stop" => w(Some(proto::TAG_DOWN), stopping, false),
        // A one-shot is "up" once ONESHOT (SPEC section 3), as for start.
        "wait-up" => w(None, up, true),
        "wait-down" => w(None, down, false),
        "wait-starting" => w(None, starting, true),
        _ => return None,
    })
}

/// What the tracker asks of its caller after a datagram.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// A state change to print with `-v`.
    pub changed: Option<String>,
    /// The service ended on its own on its way up: a line for stderr
    /// (`crashy: exited 3, restarting in 1s (restart 4)`).
    pub progress: Option<String>,
    /// Send a QUERY now.
    pub query: bool,
}

/// The decisions for one service, apart from its socket.
pub struct Tracker {
    pub name: String,
    wait: Wait,
    /// Our request was applied: what arrives now counts.
    answered: bool,
    /// The last state seen, for `-v`.
    seen: Option<State>,
    /// A start was seen (SETUP or STARTING) since the service last went
    /// down: a DOWN or DELAY now means it ended on its own.
    attempted: bool,
    /// The next QUERY reply tells how the service ended: report it.
    report: bool,
    /// The last QUERY reply: exit, reason and restarts for the messages.
    last: Option<Status>,
    /// The exit status, and the message to print, once decided.
    pub result: Option<(i32, Option<String>)>,
}

impl Tracker {
    pub fn new(name: &str, wait: Wait) -> Tracker {
        Tracker {
            name: name.to_string(),
            wait,
            // Without a request, our first datagram is a QUERY: all counts.
            answered: wait.request.is_none(),
            seen: None,
            attempted: false,
            report: false,
            last: None,
            result: None,
        }
    }

    /// The first datagram to send: the request, or a QUERY.
    pub fn first_request(&self) -> Vec<u8> {
        let tag = self.wait.request.unwrap_or(proto::TAG_QUERY);
        client::request(tag, self.name.as_bytes())
    }

    /// A state from an event, or from a QUERY reply (`queried`, whose
    /// status is in `self.last`).
    fn see(&mut self, state: State, queried: bool, effects: &mut Effects) {
        if self.seen != Some(state) {
            self.seen = Some(state);
            effects.changed = Some(format!("{} {}", state.name(), self.name));
        }
        if !self.answered || self.result.is_some() {
            return;
        }
        if (self.wait.done)(state) {
            self.result = Some((0, None));
            return;
        }
        if !self.wait.fatal_fails {
            return;
        }
        match state {
            // Why it failed is in the QUERY reply.
            State::Fatal if queried => {
                let why = self.last.as_ref().and_then(words::last_exit);
                let message = match why {
                    Some(why) => format!("{}: failed: {why}", self.name),
                    None => format!("{}: failed", self.name),
                };
                self.result = Some((EXIT_FAILED, Some(message)));
            }
            State::Fatal => effects.query = true,
            State::Setup | State::Starting => self.attempted = true,
            State::Down | State::Delay if self.attempted => {
                self.attempted = false;
                self.report = true;
                effects.query = true;
            }
            _ => {}
        }
        if queried && std::mem::take(&mut self.report) {
            effects.progress = self.progress(state);
        }
    }

    /// `crashy: exited 3, restarting in 1s (restart 4)`, from the QUERY
    /// reply after the service went down on its way up.
    fn progress(&self, state: State) -> Option<String> {
        let last = self.last.as_ref()?;
        let exit = words::last_exit(last).unwrap_or_else(|| "ended".to_string());
        let next = match state {
            // nitro waits 2 s after a failed fork or a temporary exec
            // failure, 1 s after anything else (SPEC section 3).
            State::Delay => {
                let retry = matches!(
                    last.reason.map(|r| r.failure),
                    Some(Failure::Exec | Failure::Spawn)
                );
                format!(", restarting in {}s", if retry { 2 } else { 1 })
            }
            State::Setup | State::Starting | State::Up | State::Oneshot => {
                ", restarting".to_string()
            }
            // FATAL has a message of its own.
            State::Fatal => return None,
            State::Down | State::Shutdown | State::Restart => String::new(),
        };
        let count = match last.restarts {
            Some(n) if n > 0 => format!(" (restart {n})"),
            _ => String::new(),
        };
        Some(format!("{}: {exit}{next}{count}", self.name))
    }

    /// `crashy: timeout after 3s: DELAY, exited 3, 5 restarts`: the last
    /// state seen, and the last exit and restarts nitro told.
    pub fn timeout_message(&self, after: Option<Duration>) -> String {
        let mut text = format!("{}: timeout", self.name);
        if let Some(after) = after {
            text.push_str(&format!(" after {}s", after.as_secs_f64()));
        }
        let mut parts = Vec::new();
        if let Some(state) = self.seen {
            parts.push(state.name().to_string());
        }
        if let Some(last) = &self.last {
            parts.extend(words::last_exit(last));
            match last.restarts {
                Some(1) => parts.push("1 restart".to_string()),
                Some(n) if n > 1 => parts.push(format!("{n} restarts")),
                _ => {}
            }
        }
        if !parts.is_empty() {
            text.push_str(&format!(": {}", parts.join(", ")));
        }
        text
    }

    /// Handles one datagram: an event, the reply to the request, or the
    /// reply to a QUERY. Anything else is skipped.
    pub fn receive(&mut self, datagram: &[u8]) -> Effects {
        let mut effects = Effects::default();
        if client::is_event(datagram) {
            if let Some((state, name)) = client::decode_event(datagram)
                && name == self.name
            {
                self.see(state, false, &mut effects);
            }
            return effects;
        }
        match datagram.get(2) {
            Some(&proto::TAG_OK) if !self.answered => {
                self.answered = true;
                effects.query = true;
            }
            Some(&(proto::TAG_ESRCH | proto::TAG_ENOSYS)) => {
                let message = crate::refusal(&self.name, datagram);
                self.result.get_or_insert((EXIT_OTHER, Some(message)));
            }
            Some(&proto::TAG_STATE) => {
                // A QUERY is only sent after the request, and nitro answers
                // in order: its reply describes the service after the
                // request even if the OK got lost.
                if let Some(status) = client::decode_query(&self.name, datagram)
                    && let Some(state) = status.state
                {
                    self.answered = true;
                    self.last = Some(status);
                    self.see(state, true, &mut effects);
                }
            }
            _ => {}
        }
        effects
    }

    pub fn query(&self) -> Vec<u8> {
        client::request(proto::TAG_QUERY, self.name.as_bytes())
    }
}

/// One service being waited for: its socket and its tracker.
struct Waiter {
    /// Bound when the first request goes out, closed once decided.
    client: Option<Client>,
    tracker: Tracker,
    last_heard: Instant,
    /// Since when we wait for a reply: set by the oldest request or QUERY
    /// not answered yet, `None` once a reply came.
    asked: Option<Instant>,
}

impl Waiter {
    /// Sends a QUERY, waiting for room in nitro's queue as a request does:
    /// the QUERYs of many waiters go out together each second, more than
    /// the queue holds, and a QUERY dropped every time would leave its
    /// service unknown for good.
    fn send(&mut self, ctl: &Ctl, datagram: &[u8]) {
        let Some(client) = &self.client else { return };
        self.asked.get_or_insert_with(Instant::now);
        ctl.send_request(client, datagram);
    }

    /// Decided: closing the socket frees whatever nitro still sends it.
    fn done(&mut self) {
        self.client = None;
        self.asked = None;
    }

    fn socket(&self) -> Option<&std::os::unix::net::UnixDatagram> {
        self.client.as_ref().map(|c| &c.socket)
    }
}

/// Requests whose replies we have not read yet, at most. nitro sends its
/// replies without blocking, and a reply waiting in one of our sockets
/// still counts against nitro's send buffer (about 270 of them fill it):
/// with more in flight, nitro would have to drop replies.
const IN_FLIGHT: usize = 64;

/// A waiter's socket: in `notify/` when possible. If that fails (a socket
/// directory so deep the path does not fit in `sun_path`, say) the wait
/// still works without events, on an autobound socket that gets the
/// replies, through the QUERY sent every second; whether nitro is there
/// at all is then told by the first send.
fn bind_waiter(ctl: &Ctl, file: String) -> Client {
    bind(ctl, &ctl.notify_dir.join(file)).unwrap_or_else(|_| ctl.client())
}

/// Binds a socket at `path` in `notify/` and registers it for removal.
fn bind(ctl: &Ctl, path: &Path) -> std::io::Result<Client> {
    let client = Client::new(&ctl.server, Some(path.to_owned()))?;
    bound(path.to_owned());
    Ok(client)
}

pub fn wait_for(ctl: &Ctl, names: &[String], wait: Wait) -> i32 {
    // A socket per service not decided yet, besides a few of our own.
    process::want_fds(names.len() as u64 + 32);
    let pid = std::process::id();
    let deadline = ctl.deadline;
    let mut waiters: Vec<Waiter> = names
        .iter()
        .map(|name| Waiter {
            client: None,
            tracker: Tracker::new(name, wait),
            last_heard: Instant::now(),
            asked: None,
        })
        .collect();
    // Waiters before `started` have sent their first request.
    let mut started = 0;
    // When nitro was last heard from, by any waiter: a reply can be
    // dropped (a socket full of events), and nitro is gone only when it
    // says nothing at all.
    let mut heard = Instant::now();
    let mut buf = vec![0u8; listen::DATAGRAM_MAX];
    // How a start is going goes to a person at a terminal, or with -v.
    let progress = ctl.options.verbose || std::io::stderr().is_terminal();
    loop {
        leave_if_interrupted();
        let mut in_flight = waiters[..started]
            .iter()
            .filter(|w| w.asked.is_some())
            .count();
        while started < waiters.len() && in_flight < IN_FLIGHT {
            let w = &mut waiters[started];
            let client = bind_waiter(ctl, format!("{},{pid}_{started}", w.tracker.name));
            ctl.send_request(&client, &w.tracker.first_request());
            w.client = Some(client);
            w.asked = Some(Instant::now());
            w.last_heard = Instant::now();
            started += 1;
            in_flight += 1;
        }
        let pending: Vec<usize> = (0..started)
            .filter(|&i| waiters[i].tracker.result.is_none())
            .collect();
        if pending.is_empty() && started == waiters.len() {
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            for w in &mut waiters[..] {
                if w.tracker.result.is_none() {
                    let message = w.tracker.timeout_message(ctl.options.timeout);
                    w.tracker.result = Some((EXIT_TIMEOUT, Some(message)));
                }
            }
            break;
        }
        for &i in &pending {
            // No reply for as long as a plain request waits, and nothing
            // else from nitro either (checked at least every second, as
            // the QUERYs go out): nitro is stopped or stuck, as good as
            // absent.
            if waiters[i]
                .asked
                .is_some_and(|t| now.duration_since(t.max(heard)) >= REPLY_TIMEOUT)
            {
                ctl.unreachable(std::io::ErrorKind::TimedOut.into(), deadline);
            }
            if now.duration_since(waiters[i].last_heard) >= REQUERY {
                waiters[i].last_heard = now;
                let query = waiters[i].tracker.query();
                waiters[i].send(ctl, &query);
            }
        }
        // The next requery among the pending, or the deadline.
        let mut timeout = pending
            .iter()
            .map(|&i| (waiters[i].last_heard + REQUERY).saturating_duration_since(now))
            .min()
            .unwrap_or(REQUERY);
        if let Some(d) = deadline {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        let sockets: Vec<_> = pending.iter().map(|&i| waiters[i].socket()).collect();
        let woken = listen::wait(&sockets, timeout);
        for (&i, readable) in pending.iter().zip(woken.readable) {
            if !readable {
                continue;
            }
            let w = &mut waiters[i];
            // Non-blocking: read what is there, then back to poll.
            while let Some(Ok(n)) = w.socket().map(|s| s.recv(&mut buf)) {
                w.last_heard = Instant::now();
                heard = w.last_heard;
                if !client::is_event(&buf[..n]) {
                    w.asked = None;
                }
                let effects = w.tracker.receive(&buf[..n]);
                if let (true, Some(line)) = (ctl.options.verbose, effects.changed) {
                    say(&change_line(ctl, &line));
                }
                if let (true, Some(line)) = (progress, effects.progress) {
                    tell(&line);
                }
                if effects.query {
                    let query = w.tracker.query();
                    w.send(ctl, &query);
                }
                if w.tracker.result.is_some() {
                    w.done();
                }
            }
        }
    }
    let mut status = 0;
    for w in &waiters {
        if let Some((code, message)) = &w.tracker.result {
            if let Some(message) = message {
                tell(&format!("nitroctl: {message}"));
            }
            status = status.max(*code);
        }
    }
    status
}

/// `events`: print every state change, or only those of the services
/// named (exact names: `sv@` does not stand for its instances), until
/// interrupted (then exit 0), or until nitro is gone (4). One socket for
/// all services keeps the lines in the order nitro sent them.
pub fn events(ctl: &Ctl, names: &[String]) -> i32 {
    let path = ctl.notify_dir.join(format!("ALL,{}", std::process::id()));
    let client = bind(ctl, &path).unwrap_or_else(|e| {
        fail(
            EXIT_UNREACHABLE,
            format_args!("cannot bind {}: {e}", path.display()),
        )
    });
    let _ = client.socket.set_nonblocking(true);
    let mut buf = vec![0u8; listen::DATAGRAM_MAX];
    loop {
        if listen::wait(&[Some(&client.socket)], REQUERY).timed_out
            && let Err(e) = still_there(&ctl.server)
        {
            ctl.unreachable(e, None);
        }
        // Print what has arrived, even when interrupted: those events
        // happened before the interruption.
        while let Ok(n) = client.socket.recv(&mut buf) {
            if let Some((state, name)) = client::decode_event(&buf[..n])
                && (names.is_empty() || names.contains(&name))
            {
                say(&change_line(ctl, &format!("{} {}", state.name(), name)));
            }
        }
        if signals::interruption().is_some() {
            return 0;
        }
    }
}

/// A state change line of `events` or `-v`; with `-T`, the moment it
/// arrived goes first.
fn change_line(ctl: &Ctl, line: &str) -> String {
    if ctl.options.timestamps {
        format!("{} {line}", utc_timestamp(SystemTime::now()))
    } else {
        line.to_string()
    }
}

/// ISO 8601 in UTC with milliseconds, `2026-11-24T09:05:03.042Z`: sorts
/// as text, and means the same moment wherever it is read.
fn utc_timestamp(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (days, seconds) = (since.as_secs() / 86400, since.as_secs() % 86400);
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        since.subsec_millis()
    )
}

/// The Gregorian date `days` after 1970-01-01. Counted from 0000-03-01,
/// so that the leap day ends a year: eras of 400 years have 146097
/// days, and in a year from March the months have 153 days per five.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468; // 0000-03-01 to 1970-01-01
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// Whether nitro still has its socket, without making it do anything: a
/// connect only looks the socket up. It fails when nitro removed the
/// socket on exit, and is refused when nitro died and left it behind. A
/// stopped nitro passes: `events` waits for nothing in particular, and a
/// nitro continued later (or one started anew on the same socket) goes on
/// sending it events.
fn still_there(server: &Path) -> std::io::Result<()> {
    std::os::unix::net::UnixDatagram::unbound()?.connect(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(state: u8, name: &str) -> Vec<u8> {
        let mut d = vec![name.len() as u8, 0, state];
        d.extend_from_slice(name.as_bytes());
        d
    }

    /// The QUERY reply of PROTOCOL-VECTORS.md with another state.
    fn state_reply(state: u8) -> Vec<u8> {
        let mut d = vec![1, 0, 0x66, state];
        d.extend_from_slice(&[4, 0, 0x67, 0xa7, 0x0b, 0, 0]);
        d.extend_from_slice(&[4, 0, 0x68, 0, 0, 0, 0, 4, 0, 0x69, 2, 0, 0, 0]);
        d
    }

    const OK: &[u8] = &[0, 0, 0x50];

    fn tracker(command: &str) -> Tracker {
        Tracker::new("alpha", wait_spec(command).unwrap())
    }

    #[test]
    fn first_requests_are_the_c_bytes() {
        assert_eq!(
            tracker("start").first_request(),
            [5, 0, 0x78, b'a', b'l', b'p', b'h', b'a']
        );
        assert_eq!(tracker("stop").first_request()[2], 0x79);
        assert_eq!(tracker("r").first_request()[2], 0x7a);
        assert_eq!(
            tracker("wait-up").first_request(),
            [5, 0, 0x7d, b'a', b'l', b'p', b'h', b'a'],
            "QUERY alpha"
        );
    }

    #[test]
    fn nothing_before_the_ok_counts() {
        let mut t = tracker("start");
        // The echo of the previous state, and stale events.
        t.receive(&event(4, "alpha"));
        assert_eq!(t.result, None);
        let effects = t.receive(OK);
        assert!(effects.query, "asks for the state right after the OK");
        assert_eq!(
            t.receive(&state_reply(3)).changed.unwrap(),
            "STARTING alpha"
        );
        assert_eq!(t.result, None);
        t.receive(&event(4, "other"));
        assert_eq!(t.result, None, "another service's event");
        assert_eq!(t.receive(&event(4, "alpha")).changed.unwrap(), "UP alpha");
        assert_eq!(t.result, Some((0, None)));
    }

    #[test]
    fn restart_waits_for_up_again() {
        let mut t = tracker("restart");
        t.receive(&event(4, "alpha"));
        t.receive(&event(7, "alpha"));
        t.receive(OK);
        t.receive(&state_reply(7));
        t.receive(&event(3, "alpha"));
        assert_eq!(t.result, None);
        t.receive(&event(4, "alpha"));
        assert_eq!(t.result, Some((0, None)));
    }

    #[test]
    fn a_lost_ok_is_made_up_by_a_query_reply() {
        let mut t = tracker("restart");
        t.receive(&state_reply(4));
        assert_eq!(t.result, Some((0, None)));
    }

    #[test]
    fn fatal_fails_a_start_but_ends_a_stop() {
        let mut t = tracker("start");
        t.receive(OK);
        assert!(t.receive(&event(8, "alpha")).query, "asks why");
        assert_eq!(t.result, None);
        t.receive(&state_reply(8));
        assert_eq!(
            t.result.unwrap(),
            (EXIT_FAILED, Some("alpha: failed".to_string()))
        );
        let mut t = tracker("stop");
        t.receive(OK);
        t.receive(&event(6, "alpha"));
        assert_eq!(t.result, None);
        t.receive(&event(8, "alpha"));
        assert_eq!(t.result, Some((0, None)));
        let mut t = tracker("fast-stop");
        t.receive(OK);
        t.receive(&event(6, "alpha"));
        assert_eq!(t.result, Some((0, None)));
    }

    #[test]
    fn waits_count_from_the_first_datagram() {
        let mut t = tracker("wait-down");
        t.receive(&state_reply(1));
        assert_eq!(t.result, Some((0, None)));
        let mut t = tracker("wait-starting");
        t.receive(&event(5, "alpha"));
        assert_eq!(t.result, Some((0, None)), "ONESHOT is starting too");
        let mut t = tracker("fast-start");
        t.receive(OK);
        t.receive(&event(3, "alpha"));
        assert_eq!(t.result, Some((0, None)));
    }

    #[test]
    fn errors_and_garbage() {
        let mut t = tracker("start");
        t.receive(&[0, 0, 0x51]);
        assert_eq!(t.result.as_ref().unwrap().0, EXIT_OTHER);
        let mut t = tracker("start");
        t.receive(&[0, 0, 0x52]);
        assert_eq!(t.result.as_ref().unwrap().0, EXIT_OTHER);
        let mut t = tracker("wait-up");
        for junk in [&[][..], &[1], &[9, 0, 4], &[0, 0, 200], &[0xff, 0xff, 0x66]] {
            assert_eq!(t.receive(junk), Effects::default(), "{junk:?}");
        }
        assert_eq!(t.result, None);
    }

    #[test]
    fn verbose_lines_only_for_changes() {
        let mut t = tracker("wait-up");
        assert!(t.receive(&state_reply(3)).changed.is_some());
        assert_eq!(t.receive(&state_reply(3)).changed, None, "requery");
        assert_eq!(t.receive(&event(3, "alpha")).changed, None);
    }

    /// A QUERY reply with a wait status, RESTARTS and maybe REASON.
    fn reply(state: u8, wstatus: i32, restarts: u32, reason: Option<[u8; 6]>) -> Vec<u8> {
        let mut d = vec![1, 0, 0x66, state, 4, 0, 0x67, 0, 0, 0, 0, 4, 0, 0x68];
        d.extend_from_slice(&wstatus.to_le_bytes());
        d.extend_from_slice(&[4, 0, 0x69, 0, 0, 0, 0, 4, 0, 181]);
        d.extend_from_slice(&restarts.to_le_bytes());
        if let Some(r) = reason {
            d.extend_from_slice(&[6, 0, 183]);
            d.extend_from_slice(&r);
        }
        d
    }

    #[test]
    fn a_start_tells_each_end_on_the_way_up() {
        let mut t = tracker("start");
        t.receive(OK);
        t.receive(&reply(3, 0, 0, None));
        assert!(t.receive(&event(1, "alpha")).query, "DOWN: asks how");
        let e = t.receive(&event(9, "alpha"));
        assert!(!e.query && e.progress.is_none(), "one line per end");
        let e = t.receive(&reply(9, 3 << 8, 4, None));
        assert_eq!(
            e.progress.unwrap(),
            "alpha: exited 3, restarting in 1s (restart 4)"
        );
        t.receive(&event(3, "alpha"));
        t.receive(&event(1, "alpha"));
        let e = t.receive(&reply(3, 9, 5, None));
        assert_eq!(
            e.progress.unwrap(),
            "alpha: killed by SIGKILL, restarting (restart 5)"
        );
        assert_eq!(
            t.timeout_message(Some(Duration::from_secs(3))),
            "alpha: timeout after 3s: STARTING, killed by SIGKILL, 5 restarts"
        );
        assert_eq!(t.result, None);
        // A setup that fails: SETUP then DELAY.
        t.receive(&event(2, "alpha"));
        t.receive(&event(9, "alpha"));
        let e = t.receive(&reply(9, 9, 5, Some([1, 3, 0, 2, 0, 0])));
        assert_eq!(
            e.progress.unwrap(),
            "alpha: setup exited 2, restarting in 1s (restart 5)"
        );
        // An exec that fails for good.
        t.receive(&event(3, "alpha"));
        t.receive(&event(8, "alpha"));
        let e = t.receive(&reply(8, -1, 5, Some([2, 1, 13, 0, 0, 0])));
        assert_eq!(e.progress, None);
        assert_eq!(
            t.result.unwrap(),
            (
                EXIT_FAILED,
                Some("alpha: failed: could not exec run: Permission denied".to_string())
            )
        );
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let at = |ms: u64| utc_timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            at(951_782_400_007),
            "2000-02-29T00:00:00.007Z",
            "a leap day"
        );
    }

    #[test]
    fn a_requested_restart_is_not_an_end_on_its_own() {
        let mut t = tracker("restart");
        t.receive(OK);
        t.receive(&reply(7, 0, 0, None));
        assert!(!t.receive(&event(1, "alpha")).query);
        assert_eq!(
            t.timeout_message(Some(Duration::from_millis(500))),
            "alpha: timeout after 0.5s: DOWN"
        );
        assert_eq!(t.timeout_message(None), "alpha: timeout: DOWN");
    }
}
