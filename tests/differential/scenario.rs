//! Scenarios for the differential test: a service directory drawn from a
//! vocabulary of behaviours, a sequence of steps, the seeded generator that
//! makes them, and how they are written to disk and shown to a human.
//!
//! Timing is kept coarse so that no outcome depends on a race in either
//! supervisor: every timed behaviour lasts 700 ms or more, away from the
//! 1000 ms respawn threshold and the 2000 ms readiness timer, and a step
//! that does not wait for quiet waits `SHORT_WAIT_MS`, far from all of them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The wait after a step that does not settle: well inside every timed
/// behaviour below (the shortest is 700 ms).
pub const SHORT_WAIT_MS: u64 = 250;

/// A small deterministic generator (splitmix64), so a seed means the same
/// scenario everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// Picks an index by weights.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut roll = (self.next() % total as u64) as u32;
        for (i, w) in weights.iter().enumerate() {
            if roll < *w {
                return i;
            }
            roll -= w;
        }
        weights.len() - 1
    }
}

/// What `run` does.
#[derive(Clone, Debug, PartialEq)]
pub enum Run {
    /// Stays up.
    Stay,
    /// On its first `times` starts, exits with `code` after `after_ms`; then stays up.
    Exit { code: u8, after_ms: u32, times: u8 },
    /// On its first `times` starts, kills itself with `sig` after `after_ms`.
    Die { sig: u8, after_ms: u32, times: u8 },
    /// Stays up and ignores SIGTERM (stopped by SIGKILL after 7 s, unless
    /// its down-signal is another one).
    IgnoreTerm,
    /// Reads its stdin line by line into `state/logs/NAME`; stays up on EOF.
    Logger,
}

/// How `run` becomes ready.
#[derive(Clone, Debug, PartialEq)]
pub enum Ready {
    /// No `notification-fd`: UP 2 s after start.
    Timer,
    /// `notification-fd` N, written at once.
    FdNow(u8),
    /// `notification-fd` N, written after some time.
    FdAfter(u8, u32),
    /// `notification-fd` N, never written: STARTING until `nitroctl ready`.
    FdNever(u8),
    /// `notification-fd` N, closed without a newline.
    FdClosed(u8),
}

/// A `setup` or `finish` script.
#[derive(Clone, Debug, PartialEq)]
pub enum Script {
    Ok,
    /// Exits with `code` on its first `times` runs, then 0.
    Fail {
        code: u8,
        times: u8,
    },
    /// Exits 111 on its first `times` runs (FATAL for a setup), then 0.
    Fatal {
        times: u8,
    },
    /// Takes `ms`, then exits 0.
    Long {
        ms: u32,
    },
    /// Kills itself with SIGUSR1 on its first run, then 0.
    Signal,
}

/// One service (or template) directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Svc {
    /// Directory name; a template ends with `@`.
    pub name: String,
    /// `None`: a one-shot (then `setup` is set).
    pub run: Option<Run>,
    pub ready: Ready,
    pub setup: Option<Script>,
    pub finish: Option<Script>,
    pub down: bool,
    pub down_signal: Option<char>,
    /// Directory name the `log` link points to (`../NAME`).
    pub log: Option<String>,
    /// For a template: parameters that have an instance symlink.
    pub instances: Vec<String>,
}

impl Svc {
    pub fn is_template(&self) -> bool {
        self.name.ends_with('@')
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `nitroctl VERB NAME`: up, down, restart, ready, or a signal command
    /// (term, hup, kill, 1, 2, alarm, interrupt).
    Ctl(String, String),
    Rescan,
    /// Creates a service directory.
    Add(Svc),
    /// Removes a directory (service or template) or an instance link.
    Remove(String),
    /// Renames a template directory.
    Rename(String, String),
    AddDown(String),
    RemoveDown(String),
    /// Sets `DIR/log -> ../TARGET`.
    SetLog(String, String),
    RemoveLog(String),
    /// Adds the symlink `T@PARAM -> T@`.
    AddInstance(String, String),
    Pause(u32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimedStep {
    pub step: Step,
    /// Wait for quiet afterwards (else `SHORT_WAIT_MS`).
    pub settle: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    pub services: Vec<Svc>,
    pub steps: Vec<TimedStep>,
}

/// Feature switches of the generator: the default is everything; a switch
/// turned off keeps scenarios away from an area (see `Features::default_run`).
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub logging: bool,
    pub self_log: bool,
    pub templates: bool,
    pub setup_signal: bool,
    /// Remove or rename directories that are log targets (see `removable`).
    pub remove_loggers: bool,
    /// Remove or rename template directories.
    pub remove_templates: bool,
    /// A `down` file on a service with a `log` link (see `generate`).
    pub down_writers: bool,
    /// Steps that set a `log` link on an existing directory.
    pub relink: bool,
    /// Remove the directory of a one-shot (or rename a one-shot template).
    pub remove_oneshots: bool,
    /// Link a `log` to a directory added since the last rescan.
    pub link_to_new: bool,
}

impl Features {
    pub const ALL: Features = Features {
        logging: true,
        self_log: true,
        templates: true,
        setup_signal: true,
        remove_loggers: true,
        remove_templates: true,
        down_writers: true,
        relink: true,
        remove_oneshots: true,
        link_to_new: true,
    };
}

const PLAIN_NAMES: [&str; 14] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "m", "n", "p",
];
const TEMPLATE_NAMES: [&str; 4] = ["t@", "u@", "v@", "w@"];
const PARAMS: [&str; 3] = ["x", "y", "z"];
pub const SIGNAL_VERBS: [&str; 7] = ["term", "hup", "kill", "1", "2", "alarm", "interrupt"];
const DOWN_SIGNALS: [char; 5] = ['h', 'i', '1', '2', 'a'];

struct Gen<'a> {
    rng: &'a mut Rng,
    features: Features,
}

impl Gen<'_> {
    fn fd(&mut self) -> u8 {
        *self.rng.pick(&[3u8, 4, 7])
    }

    fn ready(&mut self) -> Ready {
        match self.rng.weighted(&[20, 45, 10, 15, 10]) {
            0 => Ready::Timer,
            1 => Ready::FdNow(self.fd()),
            2 => Ready::FdAfter(self.fd(), 700),
            3 => Ready::FdNever(self.fd()),
            _ => Ready::FdClosed(self.fd()),
        }
    }

    fn run(&mut self) -> Run {
        let after_ms = *self.rng.pick(&[700u32, 1600, 2600]);
        let times = 1 + self.rng.below(2) as u8;
        match self.rng.weighted(&[45, 20, 15, 5, 15]) {
            0 => Run::Stay,
            1 => Run::Exit {
                code: *self.rng.pick(&[0u8, 1, 3, 111]),
                after_ms,
                times,
            },
            2 => Run::Die {
                sig: *self.rng.pick(&[libc::SIGUSR1 as u8, libc::SIGALRM as u8]),
                after_ms,
                times,
            },
            3 => Run::IgnoreTerm,
            _ => Run::Logger,
        }
    }

    fn setup(&mut self) -> Option<Script> {
        let signal = if self.features.setup_signal { 3 } else { 0 };
        match self.rng.weighted(&[60, 15, 10, 5, 7, signal]) {
            0 => None,
            1 => Some(Script::Ok),
            2 => Some(Script::Fail {
                code: *self.rng.pick(&[1u8, 2]),
                times: 1 + self.rng.below(2) as u8,
            }),
            3 => Some(Script::Fatal { times: 1 }),
            4 => Some(Script::Long { ms: 1500 }),
            _ => Some(Script::Signal),
        }
    }

    fn finish(&mut self) -> Option<Script> {
        match self.rng.weighted(&[60, 20, 10, 10]) {
            0 => None,
            1 => Some(Script::Ok),
            2 => Some(Script::Fail { code: 1, times: 9 }),
            _ => Some(Script::Long { ms: 1500 }),
        }
    }

    fn service(&mut self, name: &str) -> Svc {
        let oneshot = self.rng.chance(12);
        let mut run = if oneshot { None } else { Some(self.run()) };
        let mut setup = self.setup();
        if run.is_none() && setup.is_none() {
            setup = Some(Script::Ok);
        }
        if name == "LOG" || name == "LOG@" {
            run = Some(Run::Logger);
            setup = None;
        }
        let down_signal = if run == Some(Run::IgnoreTerm) {
            self.rng.chance(60).then(|| *self.rng.pick(&DOWN_SIGNALS))
        } else {
            self.rng.chance(12).then(|| *self.rng.pick(&DOWN_SIGNALS))
        };
        let instances = if name.ends_with('@') && !name.starts_with("LOG") {
            PARAMS
                .iter()
                .filter(|_| self.rng.chance(40))
                .map(|p| p.to_string())
                .collect()
        } else {
            vec![]
        };
        Svc {
            name: name.to_string(),
            run,
            ready: self.ready(),
            setup,
            finish: self.finish(),
            down: self.rng.chance(15),
            down_signal,
            log: None,
            instances,
        }
    }

    /// A log target for `from` among `dirs`.
    fn log_target(&mut self, from: &str, dirs: &[String]) -> Option<String> {
        let others: Vec<&String> = dirs
            .iter()
            .filter(|d| d.as_str() != from && d.as_str() != "LOG@")
            .collect();
        if self.features.self_log && self.rng.chance(5) {
            return Some(from.to_string());
        }
        if others.is_empty() {
            return None;
        }
        Some(self.rng.pick(&others).to_string())
    }
}

/// Whether `from/log -> to` would close a loop of log links (`to` logs,
/// through its chain, back into `from`). The C nitro recurses along such
/// a loop until it crashes (docs/choices.md).
fn closes_loop(log_of: &HashMap<String, String>, from: &str, to: &str) -> bool {
    let mut at = to;
    for _ in 0..=log_of.len() {
        if at == from {
            return true;
        }
        match log_of.get(at) {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

/// Generates the scenario of a seed.
pub fn generate(seed: u64, features: Features) -> Scenario {
    let mut rng = Rng::new(seed);
    let mut g = Gen {
        rng: &mut rng,
        features,
    };
    let count = 1 + g.rng.weighted(&[10, 14, 14, 12, 10, 8, 6, 5, 4, 3, 3, 3]);
    let mut plain: Vec<&str> = PLAIN_NAMES.to_vec();
    let mut names = Vec::new();
    for _ in 0..count {
        let name = if features.templates && g.rng.chance(15) {
            g.rng.pick(&TEMPLATE_NAMES).to_string()
        } else {
            plain.remove(g.rng.below(plain.len())).to_string()
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if features.logging && g.rng.chance(8) && names.len() < 12 {
        names.push("LOG".into());
    }
    if features.logging && features.templates && g.rng.chance(5) && names.len() < 12 {
        names.push("LOG@".into());
    }
    let mut services: Vec<Svc> = names.iter().map(|n| g.service(n)).collect();
    // Who logs into whom, to keep loops out unless `self_log` allows.
    let mut log_of: HashMap<String, String> = HashMap::new();
    // Services whose `setup` kills itself: we retry it (a deliberate
    // difference, rule SETUP_KILLED_BY_SIGNAL_IS_RETRIED), and the retry
    // starts the writer's logger again, which the C nitro never does:
    // such a service gets no `log` link.
    let mut retried: HashSet<String> = services
        .iter()
        .filter(|s| s.setup == Some(Script::Signal))
        .map(|s| s.name.clone())
        .collect();
    let may_log =
        |log_of: &HashMap<String, String>, retried: &HashSet<String>, from: &str, to: &str| {
            (features.self_log || !closes_loop(log_of, from, to)) && !retried.contains(from)
        };
    if features.logging {
        for svc in services.iter_mut() {
            if svc.name.starts_with("LOG") || !g.rng.chance(20) {
                continue;
            }
            svc.log = g
                .log_target(&svc.name.clone(), &names)
                .filter(|t| may_log(&log_of, &retried, &svc.name, t));
            if let Some(t) = &svc.log {
                log_of.insert(svc.name.clone(), t.clone());
            }
            // The C nitro creates a logger DOWN when the scan meets its
            // writer first and never starts it if the writer is down (a C
            // defect, docs/choices.md).
            if !features.down_writers {
                svc.down = false;
            }
        }
    }

    // The steps, generated against a model of what is on disk.
    let mut dirs: Vec<String> = names.clone();
    let mut links: Vec<String> = services
        .iter()
        .flat_map(|s| s.instances.iter().map(|p| format!("{}{p}", s.name)))
        .collect();
    let mut log_targets: Vec<String> = services.iter().filter_map(|s| s.log.clone()).collect();
    let mut oneshots: Vec<String> = services
        .iter()
        .filter(|s| s.run.is_none())
        .map(|s| s.name.clone())
        .collect();
    // Added since the last rescan, and not named in a request since.
    let mut unscanned: Vec<String> = Vec::new();
    let step_count = if g.rng.chance(10) {
        5 + g.rng.below(26)
    } else {
        5 + g.rng.below(8)
    };
    let mut steps = Vec::new();
    while steps.len() < step_count {
        let templates: Vec<String> = dirs.iter().filter(|d| d.ends_with('@')).cloned().collect();
        let plain_dirs: Vec<String> = dirs.iter().filter(|d| !d.ends_with('@')).cloned().collect();
        let step = match g.rng.weighted(&[34, 5, 12, 15, 6, 4, 3, 3, 5, 4, 4, 5]) {
            0 => {
                let verb = *g.rng.pick(&["up", "down", "restart"]);
                Step::Ctl(verb.into(), target(g.rng, &dirs, &links))
            }
            1 => Step::Ctl("ready".into(), target(g.rng, &dirs, &links)),
            2 => {
                let verb = *g.rng.pick(&SIGNAL_VERBS);
                Step::Ctl(verb.into(), target(g.rng, &dirs, &links))
            }
            3 => Step::Rescan,
            4 => {
                let free: Vec<&str> = PLAIN_NAMES
                    .iter()
                    .copied()
                    .filter(|n| !dirs.iter().any(|d| d == n))
                    .collect();
                if free.is_empty() {
                    continue;
                }
                let name = g.rng.pick(&free).to_string();
                let mut svc = g.service(&name);
                if svc.setup == Some(Script::Signal) {
                    retried.insert(name.clone());
                }
                if features.logging && g.rng.chance(20) {
                    svc.log = g
                        .log_target(&name, &dirs)
                        .filter(|t| may_log(&log_of, &retried, &name, t));
                    if let Some(t) = &svc.log {
                        log_of.insert(name.clone(), t.clone());
                    }
                    if !features.down_writers {
                        svc.down = false;
                    }
                }
                log_targets.extend(svc.log.clone());
                if svc.run.is_none() {
                    oneshots.push(name.clone());
                }
                unscanned.push(name.clone());
                dirs.push(name);
                Step::Add(svc)
            }
            5 => {
                if dirs.is_empty() {
                    continue;
                }
                let name = dirs[g.rng.below(dirs.len())].clone();
                if !removable(&name, &log_targets, features)
                    || (!features.remove_oneshots && oneshots.contains(&name))
                {
                    continue;
                }
                dirs.retain(|d| *d != name);
                Step::Remove(name)
            }
            6 => {
                if templates.is_empty() {
                    continue;
                }
                let from = g.rng.pick(&templates).clone();
                if !removable(&from, &log_targets, features)
                    || (!features.remove_oneshots && oneshots.contains(&from))
                {
                    continue;
                }
                let Some(to) = TEMPLATE_NAMES
                    .iter()
                    .find(|t| !dirs.iter().any(|d| d == *t))
                else {
                    continue;
                };
                dirs.retain(|d| *d != from);
                dirs.push(to.to_string());
                // The template's own log link goes with it: a link to the
                // new name must not close a loop through it (seed 7826).
                if let Some(target) = log_of.remove(&from) {
                    log_of.insert(to.to_string(), target);
                }
                if retried.remove(&from) {
                    retried.insert(to.to_string());
                }
                Step::Rename(from, to.to_string())
            }
            7 => {
                if templates.is_empty() || !features.templates {
                    continue;
                }
                let t = g.rng.pick(&templates).clone();
                if t.starts_with("LOG") {
                    continue;
                }
                let p = g.rng.pick(&PARAMS).to_string();
                let link = format!("{t}{p}");
                if links.contains(&link) {
                    Step::Remove(link.clone())
                } else {
                    links.push(link);
                    Step::AddInstance(t, p)
                }
            }
            8 => {
                if plain_dirs.is_empty() {
                    continue;
                }
                let d = g.rng.pick(&plain_dirs).clone();
                if g.rng.chance(50) {
                    Step::AddDown(d)
                } else {
                    Step::RemoveDown(d)
                }
            }
            9 => {
                if dirs.is_empty() || !features.logging || !features.relink {
                    continue;
                }
                let d = g.rng.pick(&dirs).clone();
                match g.log_target(&d, &dirs) {
                    Some(t)
                        if !d.starts_with("LOG")
                            && may_log(&log_of, &retried, &d, &t)
                            && (features.link_to_new || !unscanned.contains(&t)) =>
                    {
                        log_targets.push(t.clone());
                        log_of.insert(d.clone(), t.clone());
                        Step::SetLog(d, t)
                    }
                    _ => continue,
                }
            }
            10 => {
                if dirs.is_empty() || !features.logging {
                    continue;
                }
                let d = g.rng.pick(&dirs).clone();
                log_of.remove(&d);
                Step::RemoveLog(d)
            }
            _ => Step::Pause(*g.rng.pick(&[500u32, 1000])),
        };
        if let Step::Remove(name) = &step {
            links.retain(|l| l != name);
        }
        match &step {
            Step::Rescan => unscanned.clear(),
            Step::Ctl(verb, name) if verb == "up" || verb == "restart" => {
                unscanned.retain(|u| u != name)
            }
            _ => {}
        }
        let settle = !matches!(step, Step::Pause(_)) && !g.rng.chance(25);
        steps.push(TimedStep { step, settle });
    }
    Scenario {
        seed,
        services,
        steps,
    }
}

/// Whether a step may remove (or rename) directory `name`. Not a log target
/// unless `remove_loggers`: the C nitro keeps supervising a logger whose
/// directory is gone as long as a writer links to it (a C defect, written
/// in docs/choices.md), which would differ from us in every scenario that
/// does it.
fn removable(name: &str, log_targets: &[String], features: Features) -> bool {
    (features.remove_templates || !name.ends_with('@'))
        && (features.remove_loggers
            || !(name.starts_with("LOG") || log_targets.iter().any(|t| t == name)))
}

/// A name for a command: a service, an instance (linked or not), the
/// template itself, or nothing that exists.
fn target(rng: &mut Rng, dirs: &[String], links: &[String]) -> String {
    match rng.weighted(&[70, 10, 10, 5, 5]) {
        0 if !dirs.is_empty() => rng.pick(dirs).clone(),
        1 if !links.is_empty() => rng.pick(links).clone(),
        2 => {
            let templates: Vec<&String> = dirs.iter().filter(|d| d.ends_with('@')).collect();
            if templates.is_empty() {
                "zz".into()
            } else {
                format!("{}{}", rng.pick(&templates), rng.pick(&PARAMS))
            }
        }
        3 if !dirs.is_empty() => rng.pick(dirs).clone(),
        _ => "zz".into(),
    }
}

// ---- writing to disk ----

fn executable(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The shell prelude of every script: the service's name in `N`, a line in
/// `state/runs/N` (the script-run trace), a run counter in `c`, and the
/// busy marker path in `B` (`state/busy/PID`: the harness waits while a
/// live process holds one).
fn prelude(svc: &Svc, script: &str) -> String {
    let name = if svc.is_template() {
        let arg = if script == "finish" { "$3" } else { "$1" };
        format!("N=\"{}{arg}\"", svc.name)
    } else {
        format!("N={}", svc.name)
    };
    format!(
        "{name}\n\
         echo \"{script} $*\" >> \"$DIFF_STATE/runs/$N\"\n\
         f=\"$DIFF_STATE/count/$N.{script}\"\n\
         c=$(( $(cat \"$f\" 2>/dev/null || echo 0) + 1 )); echo $c > \"$f\"\n\
         B=\"$DIFF_STATE/busy/$$\"\n\
         echo \"$N {script} $c\"\n"
    )
}

fn script_body(svc: &Svc, which: &str, script: &Script) -> String {
    let mut s = prelude(svc, which);
    match script {
        Script::Ok => s.push_str("exit 0\n"),
        Script::Fail { code, times } => {
            s.push_str(&format!("[ $c -le {times} ] && exit {code}\nexit 0\n"))
        }
        Script::Fatal { times } => s.push_str(&format!("[ $c -le {times} ] && exit 111\nexit 0\n")),
        Script::Long { ms } => s.push_str(&format!(
            ": > \"$B\"\nsleep {}\nrm -f \"$B\"\nexit 0\n",
            secs(*ms)
        )),
        Script::Signal => s.push_str("[ $c -le 1 ] && kill -USR1 $$\nexit 0\n"),
    }
    s
}

fn secs(ms: u32) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn run_body(svc: &Svc, run: &Run) -> String {
    let mut s = prelude(svc, "run");
    // A readiness write that fails (EPIPE: nitro closed the pipe) leaves
    // the run's number in `state/epipe/N` instead of killing the script.
    let write = |n: u8| {
        format!(
            "if ! (trap '' PIPE; echo >&{n}) 2>/dev/null; then echo $c > \"$DIFF_STATE/epipe/$N\"; fi\n"
        )
    };
    let ready = match svc.ready {
        Ready::Timer | Ready::FdNever(_) => String::new(),
        Ready::FdNow(n) => write(n),
        Ready::FdAfter(n, ms) => {
            format!(": > \"$B\"\nsleep {}\n{}rm -f \"$B\"\n", secs(ms), write(n))
        }
        Ready::FdClosed(n) => format!("exec {n}>&-\n"),
    };
    let stay = match run {
        Run::IgnoreTerm => "trap '' TERM\nexec sleep 3600\n".to_string(),
        Run::Logger => {
            "while read -r l; do echo \"$l\" >> \"$DIFF_STATE/logs/$N\"; done\nexec sleep 3600\n"
                .to_string()
        }
        _ => "exec sleep 3600\n".to_string(),
    };
    match run {
        Run::Exit {
            code,
            after_ms,
            times,
        } => s.push_str(&format!(
            "if [ $c -le {times} ]; then {}: > \"$B\"; sleep {}; rm -f \"$B\"; exit {code}; fi\n",
            ready.replace('\n', "; "),
            secs(*after_ms)
        )),
        Run::Die {
            sig,
            after_ms,
            times,
        } => s.push_str(&format!(
            "if [ $c -le {times} ]; then {}: > \"$B\"; sleep {}; rm -f \"$B\"; kill -{sig} $$; fi\n",
            ready.replace('\n', "; "),
            secs(*after_ms)
        )),
        _ => {}
    }
    s.push_str(&ready);
    s.push_str(&stay);
    s
}

/// Writes one service directory (and its instance links) into `sv`.
pub fn write_service(sv: &Path, svc: &Svc) {
    let dir = sv.join(&svc.name);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(run) = &svc.run {
        executable(&dir.join("run"), &run_body(svc, run));
        match svc.ready {
            Ready::Timer => {}
            Ready::FdNow(n) | Ready::FdAfter(n, _) | Ready::FdNever(n) | Ready::FdClosed(n) => {
                std::fs::write(dir.join("notification-fd"), format!("{n}\n")).unwrap()
            }
        }
    }
    if let Some(setup) = &svc.setup {
        executable(&dir.join("setup"), &script_body(svc, "setup", setup));
    }
    if let Some(finish) = &svc.finish {
        executable(&dir.join("finish"), &script_body(svc, "finish", finish));
    }
    if svc.down {
        std::fs::write(dir.join("down"), "").unwrap();
    }
    if let Some(sig) = svc.down_signal {
        std::fs::write(dir.join("down-signal"), format!("{sig}\n")).unwrap();
    }
    if let Some(target) = &svc.log {
        std::os::unix::fs::symlink(format!("../{target}"), dir.join("log")).unwrap();
    }
    for p in &svc.instances {
        std::os::unix::fs::symlink(&svc.name, sv.join(format!("{}{p}", svc.name))).unwrap();
    }
}

/// Applies a file-system step; other steps are not for this function.
pub fn apply_fs(sv: &Path, step: &Step) {
    let remove = |p: &Path| {
        if p.is_symlink() || p.is_file() {
            let _ = std::fs::remove_file(p);
        } else {
            let _ = std::fs::remove_dir_all(p);
        }
    };
    match step {
        Step::Add(svc) => {
            remove(&sv.join(&svc.name));
            write_service(sv, svc)
        }
        Step::Remove(name) => remove(&sv.join(name)),
        Step::Rename(from, to) => {
            remove(&sv.join(to));
            let _ = std::fs::rename(sv.join(from), sv.join(to));
        }
        Step::AddDown(d) => {
            if sv.join(d).is_dir() {
                let _ = std::fs::write(sv.join(d).join("down"), "");
            }
        }
        Step::RemoveDown(d) => {
            let _ = std::fs::remove_file(sv.join(d).join("down"));
        }
        Step::SetLog(d, t) => {
            if sv.join(d).is_dir() {
                let _ = std::fs::remove_file(sv.join(d).join("log"));
                let _ = std::os::unix::fs::symlink(format!("../{t}"), sv.join(d).join("log"));
            }
        }
        Step::RemoveLog(d) => {
            let _ = std::fs::remove_file(sv.join(d).join("log"));
        }
        Step::AddInstance(t, p) => {
            let _ = std::os::unix::fs::symlink(t, sv.join(format!("{t}{p}")));
        }
        Step::Ctl(..) | Step::Rescan | Step::Pause(_) => unreachable!("not a file-system step"),
    }
}

// ---- showing ----

impl fmt::Display for Svc {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:", self.name)?;
        match &self.run {
            None => write!(f, " one-shot")?,
            Some(run) => write!(f, " run={run:?} ready={:?}", self.ready)?,
        }
        if let Some(s) = &self.setup {
            write!(f, " setup={s:?}")?;
        }
        if let Some(s) = &self.finish {
            write!(f, " finish={s:?}")?;
        }
        if self.down {
            write!(f, " down")?;
        }
        if let Some(s) = self.down_signal {
            write!(f, " down-signal={s}")?;
        }
        if let Some(l) = &self.log {
            write!(f, " log->{l}")?;
        }
        if !self.instances.is_empty() {
            write!(f, " instances={:?}", self.instances)?;
        }
        Ok(())
    }
}

impl fmt::Display for TimedStep {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.step {
            Step::Ctl(verb, name) => write!(f, "nitroctl {verb} {name}")?,
            Step::Rescan => write!(f, "nitroctl rescan")?,
            Step::Add(svc) => write!(f, "add {svc}")?,
            Step::Remove(n) => write!(f, "rm -r {n}")?,
            Step::Rename(a, b) => write!(f, "mv {a} {b}")?,
            Step::AddDown(d) => write!(f, "touch {d}/down")?,
            Step::RemoveDown(d) => write!(f, "rm {d}/down")?,
            Step::SetLog(d, t) => write!(f, "ln -sf ../{t} {d}/log")?,
            Step::RemoveLog(d) => write!(f, "rm {d}/log")?,
            Step::AddInstance(t, p) => write!(f, "ln -s {t} {t}{p}")?,
            Step::Pause(ms) => write!(f, "sleep {ms} ms")?,
        }
        if !self.settle && !matches!(self.step, Step::Pause(_)) {
            write!(f, "  (then {SHORT_WAIT_MS} ms, not settled)")?;
        }
        Ok(())
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "scenario of seed {}:", self.seed)?;
        for s in &self.services {
            writeln!(f, "  service {s}")?;
        }
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "  step {}: {s}", i + 1)?;
        }
        Ok(())
    }
}
