//! nitroctl: the control client of nitro (SPEC section 9), and its other
//! names halt, poweroff, reboot and init.
//!
//! - `args`: options and service arguments;
//! - `exit`: exit statuses, signals, removal of our sockets, output;
//! - `listen`: waiting for datagrams or a signal;
//! - `wait`: commands that wait for a state, and `events`;
//! - `personality`: the halt/poweroff/reboot/init names;
//! - `status`: the view for people;
//! - `formats`: natural order, the list line, JSON and metrics;
//! - `words`: exits and failed starts in words;
//! - here: the commands that send one request per service or per call.
//!
//! Requests and the decoding of replies live in `nitro::client`.

mod args;
mod exit;
mod formats;
mod listen;
mod personality;
mod status;
mod wait;
mod words;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nitro::client::{self, Client, Status};
use nitro::proto;
use nitro::sys::sockpath;

use args::{HELP, Options, USAGE};
use exit::{
    EXIT_FAILED, EXIT_OTHER, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_USAGE, fail, leave,
    leave_if_interrupted, say, tell,
};

/// How long a request waits for its reply when no `-t` says otherwise: a
/// nitro that does not answer in this time is as good as absent.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest write timeout: zero means "forever".
const MIN_WAIT: Duration = Duration::from_millis(1);

pub struct Ctl {
    server: PathBuf,
    notify_dir: PathBuf,
    options: Options,
    /// When `-t` runs out.
    deadline: Option<Instant>,
}

impl Ctl {
    /// How long the next send or receive may block: up to REPLY_TIMEOUT,
    /// and not past `-t`.
    fn reply_limit(&self) -> Duration {
        let left = self.deadline.map_or(REPLY_TIMEOUT, |d| {
            d.saturating_duration_since(Instant::now())
        });
        left.min(REPLY_TIMEOUT)
    }

    /// nitro did not take or did not answer a request: 3 if `-t` ran out,
    /// else 4.
    fn unreachable(&self, e: std::io::Error, deadline: Option<Instant>) -> ! {
        let timed_out = matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        );
        if timed_out && deadline.is_some_and(|d| Instant::now() >= d) {
            fail(EXIT_TIMEOUT, format_args!("timeout"));
        }
        if timed_out {
            fail(
                EXIT_UNREACHABLE,
                format_args!("cannot reach nitro at {}: no reply", self.server.display()),
            );
        }
        fail(
            EXIT_UNREACHABLE,
            format_args!("cannot reach nitro at {}: {e}", self.server.display()),
        )
    }

    /// A socket for requests that need no events. It is bound to an
    /// abstract address the kernel picks (Linux autobind), not to a file
    /// `notify/.nitroctl,<pid>`: nitro can reply to it all the same, no
    /// event ever reaches it, and nothing is left behind even when
    /// nitroctl is killed with SIGKILL.
    pub fn client(&self) -> Client {
        Client::new(&self.server, None)
            .unwrap_or_else(|e| fail(EXIT_OTHER, format_args!("socket: {e}")))
    }

    /// Sends a request, blocking up to the reply limit: nitro's queue
    /// holds only a few datagrams, and many requests at once must wait for
    /// room. A signal interrupts it (EINTR). Exits as `call` does when it
    /// cannot be sent. The socket is left non-blocking: replies are read
    /// until it is empty, then `listen::wait` waits for more.
    fn send_request(&self, client: &Client, datagram: &[u8]) {
        let socket = &client.socket;
        let _ = socket.set_nonblocking(false);
        let _ = socket.set_write_timeout(Some(self.reply_limit().max(MIN_WAIT)));
        if let Err(e) = client.send(datagram) {
            leave_if_interrupted();
            self.unreachable(e, self.deadline);
        }
        let _ = socket.set_nonblocking(true);
    }

    /// A request and its reply (events are skipped). Exits 4 when nitro
    /// cannot be reached, 3 when `-t` runs out, 128+N on signal N.
    fn call(&self, client: &Client, datagram: &[u8]) -> Vec<u8> {
        let limit = Instant::now() + self.reply_limit();
        self.send_request(client, datagram);
        let mut buf = vec![0u8; listen::DATAGRAM_MAX];
        loop {
            leave_if_interrupted();
            match client.socket.recv(&mut buf) {
                Ok(n) if !client::is_event(&buf[..n]) => {
                    buf.truncate(n);
                    return buf;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => self.unreachable(e, self.deadline),
            }
            let now = Instant::now();
            if now >= limit {
                self.unreachable(std::io::ErrorKind::TimedOut.into(), self.deadline);
            }
            listen::wait(&[Some(&client.socket)], limit - now);
        }
    }

    /// Every service, following LIST_NEXT pages, in natural order of
    /// names (`svc-2` before `svc-10`).
    fn list_all(&self) -> Vec<Status> {
        let client = self.client();
        let mut all = Vec::new();
        let mut start = 0u32;
        loop {
            // The first request has no index, as the C nitroctl sends it.
            let index = start.to_le_bytes();
            let payload: &[u8] = if start == 0 { &[] } else { &index };
            let reply = self.call(&client, &client::request(proto::TAG_LIST, payload));
            let (page, next) = client::decode_list(&reply);
            let empty = page.is_empty();
            all.extend(page);
            // Only forward, and only while pages hold something: a broken
            // server cannot keep us asking.
            match next {
                Some(n) if n > start && !empty => start = n,
                _ => break,
            }
        }
        all.sort_by(|a, b| formats::natural_cmp(&a.name, &b.name));
        all
    }

    /// Statuses of the named services in argument order; the others are
    /// reported and make the exit status 111.
    fn query_all(&self, names: &[String]) -> (Vec<Status>, i32) {
        let client = self.client();
        let mut status = 0;
        let mut found = Vec::new();
        for name in names {
            let request = client::request(proto::TAG_QUERY, name.as_bytes());
            let reply = self.call(&client, &request);
            match client::decode_query(name, &reply) {
                Some(s) => found.push(s),
                None => {
                    tell(&format!("nitroctl: {}", refusal(name, &reply)));
                    status = EXIT_OTHER;
                }
            }
        }
        (found, status)
    }

    fn info(&self) -> Vec<(String, Option<u32>)> {
        let client = self.client();
        client::decode_info(&self.call(&client, &client::request(proto::TAG_INFO, &[])))
    }

    /// Sends one command per service; OK is success, anything else 111.
    fn each(&self, names: &[String], request: impl Fn(&str) -> Vec<u8>) -> i32 {
        let client = self.client();
        let mut status = 0;
        for name in names {
            let reply = self.call(&client, &request(name));
            if reply.get(2) != Some(&proto::TAG_OK) {
                tell(&format!("nitroctl: {}", refusal(name, &reply)));
                status = EXIT_OTHER;
            }
        }
        status
    }

    /// Sends `signal` to each service's `run`. nitro answers ESRCH both
    /// for an unknown service and for one without a process; a QUERY tells
    /// them apart: `not running` is a failure (1), not an error (111).
    fn signal(&self, names: &[String], signal: libc::c_int) -> i32 {
        let client = self.client();
        let mut status = 0;
        for name in names {
            let mut payload = vec![signal as u8];
            payload.extend_from_slice(name.as_bytes());
            let reply = self.call(&client, &client::request(proto::TAG_SIGNAL, &payload));
            if reply.get(2) == Some(&proto::TAG_OK) {
                continue;
            }
            let query = client::request(proto::TAG_QUERY, name.as_bytes());
            let known = reply.get(2) == Some(&proto::TAG_ESRCH)
                && client::decode_query(name, &self.call(&client, &query)).is_some();
            if known {
                tell(&format!("nitroctl: {name}: not running"));
                status = status.max(EXIT_FAILED);
            } else {
                tell(&format!("nitroctl: {}", refusal(name, &reply)));
                status = EXIT_OTHER;
            }
        }
        status
    }

    /// A request about the whole system (rescan, shutdown, reboot).
    pub fn system(&self, tag: u8) -> i32 {
        self.each(&["nitro".to_string()], |_| client::request(tag, &[]))
    }
}

/// Why nitro did not do what was asked about `name`.
fn refusal(name: &str, reply: &[u8]) -> String {
    match reply.get(2) {
        Some(&proto::TAG_ESRCH) => format!("{name}: no such service"),
        Some(&proto::TAG_ENOSYS) => format!("{name}: not implemented by this nitro"),
        _ => format!("{name}: unexpected reply"),
    }
}

fn signal_for(command: &str) -> Option<libc::c_int> {
    proto::SIGNAL_LETTERS
        .iter()
        .find(|(letter, name, _)| {
            *name == command || (command.len() == 1 && command.as_bytes()[0] == *letter)
        })
        .map(|&(_, _, signal)| signal)
}

/// How many service arguments a command takes.
#[derive(Debug, PartialEq)]
enum Arity {
    NoService,
    Required,
    Optional,
}

fn arity(command: &str) -> Option<Arity> {
    if wait::wait_spec(command).is_some() || signal_for(command).is_some() {
        return Some(Arity::Required);
    }
    Some(match command {
        "list" | "l" | "status" | "events" => Arity::Optional,
        "up" | "u" | "down" | "d" | "ready" | "pidof" | "check" => Arity::Required,
        "info" | "metrics" | "scan" | "s" | "rescan" | "Shutdown" | "Reboot" => Arity::NoService,
        _ => return None,
    })
}

/// Checks the command and its arguments, and turns path arguments into
/// service names: all before anything is sent.
fn command_line(args: &[String]) -> Result<(String, Vec<String>), (i32, String)> {
    let usage = |m: String| (EXIT_USAGE, format!("{m}\n{USAGE}"));
    let command = args.first().map_or("list", String::as_str);
    let rest = args.get(1..).unwrap_or_default();
    match arity(command) {
        None => return Err(usage(format!("unknown command {command}"))),
        Some(Arity::Required) if rest.is_empty() => {
            return Err(usage(format!("{command} needs a service")));
        }
        Some(Arity::NoService) if !rest.is_empty() => {
            return Err(usage(format!("{command} takes no service")));
        }
        _ => {}
    }
    let names = rest
        .iter()
        .map(|a| args::service_name(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| (EXIT_OTHER, m))?;
    Ok((command.to_string(), names))
}

fn run(ctl: &Ctl, command: &str, names: &[String]) -> i32 {
    if let Some(wait) = wait::wait_spec(command) {
        return wait::wait_for(ctl, names, wait);
    }
    match command {
        "list" | "l" => {
            let (services, status) = if names.is_empty() {
                (ctl.list_all(), 0)
            } else {
                ctl.query_all(names)
            };
            if ctl.options.json {
                let items: Vec<String> = services.iter().map(formats::json).collect();
                say(&format!("[{}]", items.join(",")));
            } else {
                for s in &services {
                    say(&formats::line(s));
                }
            }
            status
        }
        "status" => status::status(ctl, names),
        "info" => {
            let info = ctl.info();
            if ctl.options.json {
                say(&formats::info_json(&info));
            } else {
                for (key, value) in info {
                    match value {
                        Some(v) => say(&format!("{key} {v}")),
                        // `# unknown tag 0xNN`; a known tag with a
                        // malformed value is left out.
                        None if key.starts_with('#') => say(&key),
                        None => {}
                    }
                }
            }
            0
        }
        "metrics" => {
            let services = ctl.list_all();
            let text = formats::metrics(&services, &ctl.info());
            say(text.trim_end_matches('\n'));
            0
        }
        "scan" | "s" | "rescan" => ctl.system(proto::TAG_RESCAN),
        "Shutdown" => ctl.system(proto::TAG_SHUTDOWN),
        "Reboot" => ctl.system(proto::TAG_REBOOT),
        "up" | "u" | "down" | "d" | "ready" => {
            let tag = match command {
                "up" | "u" => proto::TAG_UP,
                "down" | "d" => proto::TAG_DOWN,
                _ => proto::TAG_READY,
            };
            ctl.each(names, |name| client::request(tag, name.as_bytes()))
        }
        "pidof" | "check" => {
            let (services, mut status) = ctl.query_all(names);
            for s in &services {
                if s.pid == 0 {
                    if command == "pidof" {
                        tell(&format!("nitroctl: {}: no process", s.name));
                    }
                    status = status.max(EXIT_FAILED);
                } else if command == "pidof" {
                    say(&s.pid.to_string());
                }
            }
            status
        }
        "events" => wait::events(ctl, names),
        _ => {
            let signal = signal_for(command)
                .unwrap_or_else(|| fail(EXIT_USAGE, format_args!("unknown command {command}")));
            ctl.signal(names, signal)
        }
    }
}

/// Parses the options and finds the socket, then runs `f`.
pub fn with_ctl(args: Vec<String>, f: impl FnOnce(&Ctl) -> i32) -> i32 {
    let options = args::parse_options(args)
        .unwrap_or_else(|m| fail(EXIT_USAGE, format_args!("{m}\n{USAGE}")));
    if options.help {
        say(HELP.strip_suffix('\n').unwrap_or(HELP));
        return 0;
    }
    let server =
        sockpath::socket_path().unwrap_or_else(|e| fail(EXIT_UNREACHABLE, format_args!("{e}")));
    let notify_dir = server.parent().unwrap_or(Path::new(".")).join("notify");
    // A timeout too long for the clock is no timeout.
    let deadline = options.timeout.and_then(|t| Instant::now().checked_add(t));
    f(&Ctl {
        server,
        notify_dir,
        options,
        deadline,
    })
}

fn main() {
    exit::catch_signals();
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    let personality = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Names are handled as text: one that is not UTF-8 is refused with a
    // clear error, not a panic.
    let rest: Vec<String> = argv
        .map(|arg| {
            arg.into_string().unwrap_or_else(|arg| {
                fail(
                    EXIT_USAGE,
                    format_args!("{}: not UTF-8, not handled", arg.to_string_lossy()),
                )
            })
        })
        .collect();
    let status = match personality.as_str() {
        "halt" | "poweroff" | "reboot" => personality::halt_personality(&personality, &rest),
        "init" => personality::init_personality(&rest),
        _ => with_ctl(rest, |ctl| match command_line(&ctl.options.args) {
            Ok((command, names)) => run(ctl, &command, &names),
            Err((status, message)) => fail(status, format_args!("{message}")),
        }),
    };
    leave(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> Result<(String, Vec<String>), i32> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        command_line(&args).map_err(|(status, _)| status)
    }

    #[test]
    fn every_command_of_the_table() {
        for c in [
            "list",
            "l",
            "status",
            "events",
            "start",
            "stop",
            "restart",
            "fast-start",
            "fast-restart",
            "r",
            "fast-stop",
            "wait-up",
            "wait-down",
            "wait-starting",
            "up",
            "u",
            "down",
            "d",
            "ready",
            "pidof",
            "check",
            "pause",
            "cont",
            "hup",
            "alarm",
            "interrupt",
            "quit",
            "term",
            "kill",
            "1",
            "2",
            "p",
            "c",
            "h",
            "a",
            "i",
            "q",
            "t",
            "k",
        ] {
            assert_eq!(line(&[c, "x"]), Ok((c.to_string(), vec!["x".to_string()])));
        }
        for c in [
            "info", "metrics", "scan", "s", "rescan", "Shutdown", "Reboot",
        ] {
            assert!(line(&[c]).is_ok(), "{c}");
            assert_eq!(line(&[c, "x"]), Err(EXIT_USAGE), "{c} x");
        }
        assert_eq!(line(&[]), Ok(("list".to_string(), vec![])));
    }

    #[test]
    fn usage_errors_and_bad_paths() {
        assert_eq!(line(&["bogus"]), Err(EXIT_USAGE));
        assert_eq!(
            line(&["shutdown"]),
            Err(EXIT_USAGE),
            "Shutdown is capitalised"
        );
        assert_eq!(line(&["start"]), Err(EXIT_USAGE));
        assert_eq!(line(&["kill"]), Err(EXIT_USAGE));
        assert_eq!(line(&["up", "a", "./no/such/dir"]), Err(EXIT_OTHER));
    }

    #[test]
    fn signals_by_name_and_letter() {
        assert_eq!(signal_for("hup"), Some(libc::SIGHUP));
        assert_eq!(signal_for("h"), Some(libc::SIGHUP));
        assert_eq!(signal_for("pause"), Some(libc::SIGSTOP));
        assert_eq!(signal_for("2"), Some(libc::SIGUSR2));
        assert_eq!(signal_for("x"), None);
        assert_eq!(signal_for("hu"), None);
    }

    /// The commands `--help` lists: the first column of its indented
    /// lines, up to a parenthesis (`(default)`, `(or first letter)`).
    fn commands_of_the_help() -> Vec<&'static str> {
        HELP.lines()
            .filter_map(|l| l.strip_prefix("  "))
            .filter(|l| !l.starts_with([' ', '-']))
            .flat_map(|l| {
                l.split("  ")
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .take_while(|w| !w.starts_with('('))
            })
            .map(|w| w.trim_end_matches(','))
            .filter(|w| *w != "/" && !w.starts_with('['))
            .collect()
    }

    #[test]
    fn every_command_and_option_of_the_help_is_in_the_manual() {
        let manual = include_str!("../../../man/nitroctl.1");
        // `.It Cm list , Cm l Op Ar service ...`: the words up to the
        // arguments.
        let documented: Vec<&str> = manual
            .lines()
            .filter_map(|l| l.strip_prefix(".It Cm "))
            .flat_map(|l| {
                l.split_whitespace()
                    .take_while(|w| !matches!(*w, "Op" | "Ar"))
                    .filter(|w| !matches!(*w, "," | "Cm"))
            })
            .collect();
        let commands = commands_of_the_help();
        assert!(commands.len() > 30, "{commands:?}");
        for command in commands {
            assert!(arity(command).is_some(), "--help lists {command}");
            assert!(documented.contains(&command), "{command} not in nitroctl.1");
        }
        let options = HELP
            .lines()
            .filter_map(|l| l.strip_prefix("  -"))
            .map(|l| l.split_whitespace().next().unwrap_or_default());
        for option in options {
            let entry = format!(".It Fl {option}");
            assert!(
                manual.lines().any(|l| l.starts_with(&entry)),
                "-{option} not in nitroctl.1"
            );
        }
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(refusal("a", &[0, 0, 0x51]), "a: no such service");
        assert_eq!(
            refusal("a", &[0, 0, 0x52]),
            "a: not implemented by this nitro"
        );
        assert_eq!(refusal("a", &[]), "a: unexpected reply");
    }
}
