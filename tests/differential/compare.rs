//! The comparison of two traces of one scenario. What may legitimately
//! differ is normalized away by named rules (each one a deliberate
//! difference of ours, written in the SPEC's [beyond] parts or in
//! docs/choices.md); everything else must match:
//! - the exit status of every command;
//! - `nitroctl list` after every step both systems settled: state, whether
//!   there is a pid, the raw wait status (pids and uptimes differ);
//! - per service, the C nitro's events must be a subsequence of ours
//!   (rule `SUPERSET_OF_EVENTS`): the order of state changes counts,
//!   absolute times do not;
//! - per service, the scripts that ran and their arguments;
//! - what each logger received;
//! - nitro's exit status and the processes left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use nitro::proto::State;

use super::runner::{Event, Trace};
use super::scenario::{Ready, Run, SIGNAL_VERBS, Scenario, Script, Step, Svc};

/// The rules, by name. Each is applied in one place below.
pub const RULES: &[(&str, &str)] = &[
    (
        "SUPERSET_OF_EVENTS",
        "we announce every state change (SPEC 3 [beyond]); the C nitro only some \
         (never DELAY, SETUP only with a setup script, SHUTDOWN/RESTART only during \
         finish or as the echo of a request): its events of a service must be a \
         subsequence of ours",
    ),
    (
        "ONESHOT_FINISH_SHOWN_AS_SHUTDOWN",
        "a one-shot taken down runs finish in SHUTDOWN for us; the C nitro keeps \
         showing ONESHOT (SPEC 3): a C ONESHOT event may match our SHUTDOWN (the \
         service is a one-shot then, also one whose directory replaced a service \
         with a run)",
    ),
    (
        "C_READINESS_PIPE_CLOSED_BY_STALE_POLL",
        "a C nitro defect (docs/choices.md): when a run is relaunched in the same \
         loop turn that saw its previous run's readiness pipe hang up, the new pipe \
         gets the old descriptor number and the stale POLLHUP closes it; the new run's \
         readiness write fails (EPIPE, recorded by the script), or, when it came \
         before the close, is lost with the pipe, and the service stays STARTING: a C \
         STARTING may match our UP for a service whose current run recorded that, or \
         that writes its readiness at once and whose run ends on its own or by a \
         step's restart or signal (then with the same WSTATUS, not 0); a C nitro \
         that does not settle only because of such services counts as settled",
    ),
    (
        "REQUESTED_RESTART_NOT_DELAYED",
        "a restart we were asked for starts again at once, even if run lived less \
         than a second (docs/choices.md); the C nitro waits in DELAY, which it \
         announces only as the echo of a request: C DELAY events are not matched",
    ),
    (
        "WSTATUS_OF_SETUP_FATAL",
        "a setup exiting 111 makes the service FATAL; the C nitro then sets WSTATUS \
         to -1, we keep the wait status of the last run (SPEC 3: -1 means exec \
         failed; docs/choices.md); a one-shot that later came up and is taken down \
         then gets `finish 111 0` from the C nitro (its -1 read as an exec failure), \
         `finish 0 0` from us (SPEC 2)",
    ),
    (
        "C_DOWN_BEFORE_FATAL_OF_A_GONE_DIRECTORY",
        "when a start finds the service directory gone, the C nitro announces DOWN \
         then FATAL, also where the service was DOWN or FATAL already, or comes from \
         a `setup` that ended after the directory went; we announce what changed: \
         for a service whose directory a step removed or renamed, a C DOWN directly \
         before a FATAL is not matched (also as the first event of a service added \
         down), nor a C DOWN and FATAL right after a FATAL",
    ),
    (
        "C_STALE_WSTATUS_OF_A_REUSED_SLOT",
        "a C nitro defect: a service that takes the slot of a forgotten one keeps \
         its predecessor's WSTATUS until its own run ends (also a service of the \
         same name, forgotten and added again): a C WSTATUS is not compared with our \
         0 while no run of the service has ended in our trace since it was added (had \
         one ended in the C trace only, the events would differ)",
    ),
    (
        "SETUP_KILLED_BY_SIGNAL_IS_RETRIED",
        "a setup killed by a signal is DELAY then retried for us, success for the C \
         nitro (SPEC 2): our retry's `setup` run is not in the C trace, nor the line \
         it wrote to a logger (`NAME setup 2`; our later setups count one more); a \
         signal or `ready` step to such a service may find us in that DELAY (right \
         after a step that did not settle), with no run to signal or make ready, or \
         our run, started a retry later, younger than a second where the C run is \
         older (then ours waits in DELAY before its restart, the C one restarts at \
         once; seed 14633): that step's status and the service's events, scripts and \
         later entries are not compared",
    ),
    (
        "C_GLOBAL_LOG_OFF_AFTER_LOG_RESTART",
        "a C nitro defect (docs/choices.md): it turns its global log on and off at \
         every launch and every stop of LOG, so once LOG's run ends on its own and is \
         launched again, the global log is off while LOG runs (services without a \
         logger write to the console, LOG's own finish into LOG) and on while LOG is \
         down (their lines wait in the pipe for the next LOG): in a scenario where LOG \
         may end on its own (a signal sent to it, or a run that exits), what LOG \
         received is not compared",
    ),
    (
        "C_HANGS_WHEN_A_ONESHOT_LOGGER_STOPS_LAST",
        "a C nitro defect (docs/choices.md): when a one-shot is a logger, the \
         shutdown takes it down last and at once, after the check for the end, and \
         then waits for an event that never comes: where a log link points at a \
         one-shot, a C nitro that never ended is not compared with our exit",
    ),
    (
        "C_LOGGER_INSTANCE_OF_A_REMOVED_WRITER_KEPT",
        "a removed writer P (or U@P: its template or its instance link removed) is \
         stopped by the rescan that finds it gone, \
         and its logger instance T@P is still in use when that rescan looks for \
         unused instances; the C nitro then keeps it, DOWN, until the next rescan, we \
         forget it with its writer (SPEC 4: logger instances exist only while used): \
         a C DOWN instance T@P that ours no longer lists is not compared when a step \
         removed the directory P or a template",
    ),
    (
        "C_READY_WHILE_FINISH_RUNS",
        "`nitroctl ready` while the finish of a STARTING service runs (its run has \
         ended) makes the C nitro announce UP (twice: the change and the echo) with \
         nothing running, then DOWN when finish ends; we stay STARTING \
         (docs/choices.md): for a service with a finish script that a step asks \
         ready, C UP events directly before a DOWN are not matched",
    ),
];

/// A service definition of the scenario that `name` (a service or instance)
/// comes from, in any of its versions, also under the name a renamed
/// template had before.
fn definitions<'a>(scenario: &'a Scenario, name: &str) -> Vec<&'a Svc> {
    let mut dirs = vec![match name.find('@') {
        Some(at) => name[..=at].to_string(),
        None => name.to_string(),
    }];
    // Renames, followed backwards (a rename never targets a name in use).
    for step in scenario.steps.iter().rev() {
        if let Step::Rename(from, to) = &step.step
            && dirs.contains(to)
            && !dirs.contains(from)
        {
            dirs.push(from.clone());
        }
    }
    let added = scenario.steps.iter().filter_map(|s| match &s.step {
        Step::Add(svc) => Some(svc),
        _ => None,
    });
    scenario
        .services
        .iter()
        .chain(added)
        .filter(|s| dirs.contains(&s.name))
        .collect()
}

/// C_LOGGER_INSTANCE_OF_A_REMOVED_WRITER_KEPT: whether the writer of a
/// logger instance `T@P` may have gone from disk: the service `P`, or an
/// instance `U@P` of a template that a step removes or renames, or whose
/// instance link a step removes.
fn writer_removed(scenario: &Scenario, param: &str) -> bool {
    directory_removed(scenario, param)
        || scenario.steps.iter().any(|s| match &s.step {
            Step::Remove(d) | Step::Rename(d, _) => {
                d.ends_with('@') || d.strip_suffix(param).is_some_and(|u| u.ends_with('@'))
            }
            _ => false,
        })
}

/// Whether a step removes or renames the directory of `name` (a service,
/// or the template of an instance).
fn directory_removed(scenario: &Scenario, name: &str) -> bool {
    let dir = match name.find('@') {
        Some(at) => &name[..=at],
        None => name,
    };
    scenario.steps.iter().any(|s| match &s.step {
        Step::Remove(d) | Step::Rename(d, _) => d == dir,
        _ => false,
    })
}

/// C_READY_WHILE_FINISH_RUNS: whether a step asks `name` ready and it
/// has a finish script.
fn asked_ready_with_finish(scenario: &Scenario, name: &str) -> bool {
    definitions(scenario, name)
        .iter()
        .any(|d| d.finish.is_some())
        && scenario
            .steps
            .iter()
            .any(|s| matches!(&s.step, Step::Ctl(verb, n) if verb == "ready" && n == name))
}

/// Whether a `log` link of the scenario points at a one-shot.
fn logs_into_a_oneshot(scenario: &Scenario) -> bool {
    let links = scenario.steps.iter().filter_map(|s| match &s.step {
        Step::Add(svc) => svc.log.as_ref(),
        Step::SetLog(_, target) => Some(target),
        _ => None,
    });
    scenario
        .services
        .iter()
        .filter_map(|s| s.log.as_ref())
        .chain(links)
        .any(|target| is_oneshot(scenario, target))
}

fn is_oneshot(scenario: &Scenario, name: &str) -> bool {
    let defs = definitions(scenario, name);
    !defs.is_empty() && defs.iter().all(|s| s.run.is_none())
}

/// C_READINESS_PIPE_CLOSED_BY_STALE_POLL, the write that comes first:
/// whether the service writes its readiness at once and its run may be
/// started again right after it ended (it ends on its own, or a step
/// restarts it or sends it a signal).
fn ready_lost_with_pipe(scenario: &Scenario, name: &str) -> bool {
    let defs = definitions(scenario, name);
    let at_once = defs.iter().any(|d| matches!(d.ready, Ready::FdNow(_)));
    let ends = defs
        .iter()
        .any(|d| matches!(d.run, Some(Run::Exit { .. } | Run::Die { .. })));
    let ended = scenario.steps.iter().any(|s| {
        matches!(&s.step, Step::Ctl(verb, n)
            if n == name
                && (verb == "restart" || super::scenario::SIGNAL_VERBS.contains(&verb.as_str())))
    });
    at_once && (ends || ended)
}

/// Whether the C event `c` may stand for our event `ours`; `lost_ready`:
/// some C run of the service lost its readiness pipe.
fn matches(lost_ready: bool, c: State, ours: State) -> bool {
    c == ours
        // ONESHOT_FINISH_SHOWN_AS_SHUTDOWN: only a one-shot is ONESHOT,
        // whatever the service was before (seed 6880).
        || (c == State::Oneshot && ours == State::Shutdown)
        // C_READINESS_PIPE_CLOSED_BY_STALE_POLL: the echo of a command shows
        // STARTING where ours is UP.
        || (c == State::Starting && ours == State::Up && lost_ready)
}

/// Whether `c` is a subsequence of `ours` (greedy matching is exact for
/// subsequences under a fixed relation).
fn subsequence(lost_ready: bool, c: &[State], ours: &[State]) -> bool {
    let mut it = ours.iter();
    c.iter()
        .all(|&ce| it.by_ref().any(|&oe| matches(lost_ready, ce, oe)))
}

/// Whether a `run` of `name` started and ended in a trace by the end of
/// step `step`: DOWN after STARTING, since the service was last added (a
/// service of the same name forgotten before is another one).
fn ran_and_ended(trace: &Trace, name: &str, step: usize) -> bool {
    let forgotten = (0..step).rev().find(|&k| {
        trace.snapshots[k]
            .as_ref()
            .is_some_and(|list| !list.contains_key(name))
    });
    trace
        .events
        .iter()
        .filter(|e| e.name == name && e.step <= step && forgotten.is_none_or(|k| e.step > k))
        .skip_while(|e| e.state != State::Starting)
        .any(|e| e.state == State::Down)
}

fn states_of(events: &[Event], name: &str) -> Vec<State> {
    events
        .iter()
        .filter(|e| e.name == name)
        .map(|e| e.state)
        .collect()
}

fn names(xs: &[State]) -> String {
    xs.iter().map(|s| s.name()).collect::<Vec<_>>().join(" ")
}

/// SETUP_KILLED_BY_SIGNAL_IS_RETRIED: where our script-run trace of a
/// service shows the retry of a setup that killed itself (on the first
/// `setup` run of that name only): the `setup` line right after the
/// first one.
fn setup_retry(scenario: &Scenario, name: &str, runs: &[String]) -> Option<usize> {
    let signals = definitions(scenario, name)
        .iter()
        .any(|s| s.setup == Some(Script::Signal));
    let first = runs.iter().position(|r| r.starts_with("setup"))?;
    (signals && runs.get(first + 1).is_some_and(|r| r.starts_with("setup"))).then_some(first + 1)
}

/// SETUP_KILLED_BY_SIGNAL_IS_RETRIED: the steps that send a signal to a
/// service whose `setup` kills itself, or ask it ready (our retry may not
/// have come yet, or our run is the younger), with that service.
fn signalled_before_retry(scenario: &Scenario) -> Vec<(usize, &str)> {
    let steps = &scenario.steps;
    steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.step {
            Step::Ctl(verb, name)
                if (SIGNAL_VERBS.contains(&verb.as_str()) || verb == "ready")
                    && definitions(scenario, name)
                        .iter()
                        .any(|d| d.setup == Some(Script::Signal)) =>
            {
                Some((i, name.as_str()))
            }
            _ => None,
        })
        .collect()
}

/// Our script-run trace of a service after the rules.
fn normalized_runs(scenario: &Scenario, name: &str, runs: &[String]) -> Vec<String> {
    let mut runs = runs.to_vec();
    if let Some(retry) = setup_retry(scenario, name, &runs) {
        runs.remove(retry);
    }
    runs
}

/// C_GLOBAL_LOG_OFF_AFTER_LOG_RESTART: whether LOG's run may end on its
/// own in the scenario.
fn global_log_may_restart(scenario: &Scenario) -> bool {
    let signalled = scenario.steps.iter().any(|s| {
        matches!(&s.step, Step::Ctl(verb, name)
            if name == "LOG" && super::scenario::SIGNAL_VERBS.contains(&verb.as_str()))
    });
    let ends = definitions(scenario, "LOG")
        .iter()
        .any(|s| matches!(s.run, Some(Run::Exit { .. } | Run::Die { .. })));
    signalled || ends
}

/// What our loggers received after the rules.
fn normalized_logs(scenario: &Scenario, ours: &Trace) -> BTreeMap<String, Vec<String>> {
    let mut logs = ours.logs.clone();
    for (name, runs) in &ours.runs {
        if setup_retry(scenario, name, runs).is_none() {
            continue;
        }
        // SETUP_KILLED_BY_SIGNAL_IS_RETRIED: the retry wrote `NAME setup
        // 2`; the setups after it count one more than the C nitro's.
        let prefix = format!("{name} setup ");
        for lines in logs.values_mut() {
            lines.retain(|line| line != &format!("{prefix}2"));
            for line in lines.iter_mut() {
                let count = line
                    .strip_prefix(&prefix)
                    .and_then(|n| n.parse::<u32>().ok());
                if let Some(n) = count.filter(|&n| n > 2) {
                    *line = format!("{prefix}{}", n - 1);
                }
            }
            lines.sort();
        }
    }
    logs
}

/// The differences between the C trace and ours, as readable lines; empty
/// when they agree.
pub fn compare(scenario: &Scenario, c: &Trace, ours: &Trace) -> Vec<String> {
    let mut diffs = Vec::new();
    let before_retry = signalled_before_retry(scenario);
    // From which snapshot on a service is not compared.
    let skipped_from = |name: &str| {
        before_retry
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(i, _)| i + 1)
            .min()
    };

    for (i, (a, b)) in c.statuses.iter().zip(&ours.statuses).enumerate() {
        if a != b && !before_retry.iter().any(|(step, _)| *step == i) {
            diffs.push(format!(
                "step {}: `{}` exited {a:?} with the C nitro, {b:?} with ours",
                i + 1,
                scenario.steps[i]
            ));
        }
    }

    for (i, (a, b)) in c.snapshots.iter().zip(&ours.snapshots).enumerate() {
        let when = if i == 0 {
            "after boot".to_string()
        } else {
            format!("after step {i}")
        };
        // C_READINESS_PIPE_CLOSED_BY_STALE_POLL: a service left STARTING
        // keeps the C nitro from settling; its entry is compared below.
        // Services STARTING in both are not what kept only the C nitro
        // from settling (seed 6412: instances whose readiness never
        // comes, beside the stuck one).
        let starting_in_ours = |name: &String| {
            b.as_ref()
                .and_then(|list| list.get(name))
                .is_some_and(|e| e.state == "STARTING")
        };
        let stuck_starting = !c.settled[i]
            && ours.settled[i]
            && a.as_ref().is_some_and(|list| {
                list.iter()
                    .filter(|(name, e)| e.state == "STARTING" && !starting_in_ours(name))
                    .all(|(name, _)| {
                        c.lost_ready[i].contains(name.as_str())
                            || ready_lost_with_pipe(scenario, name)
                    })
            });
        if c.settled[i] != ours.settled[i] && !stuck_starting {
            diffs.push(format!(
                "{when}: the C nitro {} settled, ours {}",
                if c.settled[i] { "" } else { "never" },
                if ours.settled[i] { "did" } else { "never did" }
            ));
            continue;
        }
        let (Some(a), Some(b)) = (a, b) else {
            if a.is_some() != b.is_some() {
                diffs.push(format!("{when}: `nitroctl list` failed for one of them"));
            }
            continue;
        };
        let all: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for name in all {
            if skipped_from(name).is_some_and(|from| i >= from) {
                continue;
            }
            match (a.get(name), b.get(name)) {
                (Some(x), Some(y)) if x == y => {}
                // C_READINESS_PIPE_CLOSED_BY_STALE_POLL
                (Some(x), Some(y))
                    if x.state == "STARTING"
                        && y.state == "UP"
                        && x.has_pid
                        && y.has_pid
                        && x.wstatus == y.wstatus
                        && (c.lost_ready[i].contains(name.as_str())
                            || (x.wstatus != 0 && ready_lost_with_pipe(scenario, name))) => {}
                // C_LOGGER_INSTANCE_OF_A_REMOVED_WRITER_KEPT
                (Some(x), None)
                    if x.state == "DOWN"
                        && !x.has_pid
                        && name
                            .split_once('@')
                            .is_some_and(|(_, writer)| writer_removed(scenario, writer)) => {}
                // WSTATUS_OF_SETUP_FATAL
                (Some(x), Some(y))
                    if x.state == y.state
                        && x.has_pid == y.has_pid
                        && x.wstatus == -1
                        && definitions(scenario, name)
                            .iter()
                            .any(|d| matches!(d.setup, Some(Script::Fatal { .. }))) => {}
                // C_STALE_WSTATUS_OF_A_REUSED_SLOT
                (Some(x), Some(y))
                    if x.state == y.state
                        && x.has_pid == y.has_pid
                        && y.wstatus == 0
                        && !ran_and_ended(ours, name, i) => {}
                (x, y) => diffs.push(format!(
                    "{when}: list shows {name} as {} (C) / {} (ours)",
                    x.map_or("absent".into(), |e| format!(
                        "{} pid={} wstatus={}",
                        e.state, e.has_pid, e.wstatus
                    )),
                    y.map_or("absent".into(), |e| format!(
                        "{} pid={} wstatus={}",
                        e.state, e.has_pid, e.wstatus
                    )),
                )),
            }
        }
    }

    let c_events = &c.events;
    let services: BTreeSet<&String> = c.events.iter().map(|e| &e.name).collect();
    for name in services.into_iter().filter(|n| skipped_from(n).is_none()) {
        // REQUESTED_RESTART_NOT_DELAYED: the C nitro announces DELAY only
        // as the echo of a request, and sits in DELAY where we do not.
        let mut cs: Vec<State> = states_of(c_events, name)
            .into_iter()
            .filter(|s| *s != State::Delay)
            .collect();
        // C_DOWN_BEFORE_FATAL_OF_A_GONE_DIRECTORY
        if directory_removed(scenario, name) {
            for k in (0..cs.len().saturating_sub(1)).rev() {
                if cs[k] != State::Down || cs[k + 1] != State::Fatal {
                    continue;
                }
                // Before its first event a service was DOWN: no nitro
                // announces one added down.
                if k.checked_sub(1)
                    .is_some_and(|before| cs[before] == State::Fatal)
                {
                    cs.drain(k..k + 2);
                } else {
                    cs.remove(k);
                }
            }
        }
        // C_READY_WHILE_FINISH_RUNS
        if asked_ready_with_finish(scenario, name) {
            for k in (0..cs.len()).rev() {
                let before_down =
                    cs[k + 1..].iter().find(|&&s| s != State::Up) == Some(&State::Down);
                if cs[k] == State::Up && before_down {
                    cs.remove(k);
                }
            }
        }
        let os = states_of(&ours.events, name);
        let lost = c.lost_ready.iter().any(|l| l.contains(name.as_str()))
            || ready_lost_with_pipe(scenario, name);
        if !subsequence(lost, &cs, &os) {
            diffs.push(format!(
                "events of {name}: the C nitro's are not a subsequence of ours\n      C:    {}\n      ours: {}",
                names(&cs),
                names(&os)
            ));
        }
    }

    let all: BTreeSet<&String> = c.runs.keys().chain(ours.runs.keys()).collect();
    for name in all.into_iter().filter(|n| skipped_from(n).is_none()) {
        let mut a = c.runs.get(name).cloned().unwrap_or_default();
        // WSTATUS_OF_SETUP_FATAL, for the finish of a one-shot
        if is_oneshot(scenario, name)
            && definitions(scenario, name)
                .iter()
                .any(|d| matches!(d.setup, Some(Script::Fatal { .. })))
        {
            for run in a.iter_mut().filter(|r| r.starts_with("finish 111 0")) {
                *run = run.replacen("finish 111 0", "finish 0 0", 1);
            }
        }
        let b = normalized_runs(
            scenario,
            name,
            &ours.runs.get(name).cloned().unwrap_or_default(),
        );
        if a != b {
            diffs.push(format!(
                "scripts run for {name}:\n      C:    {}\n      ours: {}",
                a.join(" | "),
                b.join(" | ")
            ));
        }
    }

    for (i, lost) in ours.lost_ready.iter().enumerate() {
        if !lost.is_empty() {
            diffs.push(format!(
                "{}: our nitro closed the readiness pipe of {lost:?} before they wrote",
                if i == 0 {
                    "after boot".to_string()
                } else {
                    format!("after step {i}")
                }
            ));
            break;
        }
    }
    let mut logs = normalized_logs(scenario, ours);
    let mut c_logs = c.logs.clone();
    if global_log_may_restart(scenario) {
        c_logs.remove("LOG");
        logs.remove("LOG");
    }
    if c_logs != logs {
        diffs.push(format!(
            "loggers received:\n      C:    {:?}\n      ours: {:?}",
            c_logs, logs
        ));
    }
    // C_HANGS_WHEN_A_ONESHOT_LOGGER_STOPS_LAST
    let c_hung = c.exit.is_none() && logs_into_a_oneshot(scenario);
    if c.exit != ours.exit && !c_hung {
        diffs.push(format!(
            "nitro ended with {:?} (C) / {:?} (ours)",
            c.exit, ours.exit
        ));
    }
    if c.leftovers != ours.leftovers {
        diffs.push(format!(
            "processes left: {:?} (C) / {:?} (ours)",
            c.leftovers, ours.leftovers
        ));
    }
    diffs
}

/// Both traces side by side, step by step.
pub fn side_by_side(scenario: &Scenario, c: &Trace, ours: &Trace) -> String {
    let mut out = String::new();
    let width = 58;
    let _ = writeln!(out, "{:<width$} | our nitro", "C nitro");
    for step in 0..=scenario.steps.len() + 1 {
        let title = match step {
            0 => "boot".to_string(),
            s if s > scenario.steps.len() => "shutdown".to_string(),
            s => format!("step {s}: {}", scenario.steps[s - 1]),
        };
        let _ = writeln!(out, "-- {title}");
        if step >= 1 && step <= scenario.steps.len() {
            let (a, b) = (c.statuses[step - 1], ours.statuses[step - 1]);
            if a.is_some() || b.is_some() {
                let _ = writeln!(out, "{:<width$} | exit {b:?}", format!("exit {a:?}"));
            }
        }
        let ev = |t: &Trace| -> Vec<String> {
            t.events
                .iter()
                .filter(|e| e.step == step)
                .map(|e| format!("{} {}", e.state.name(), e.name))
                .collect()
        };
        let list = |t: &Trace| -> Vec<String> {
            match t.snapshots.get(step) {
                Some(Some(snap)) => snap
                    .iter()
                    .map(|(n, e)| {
                        format!(
                            "  = {} {n}{} (wstatus {})",
                            e.state,
                            if e.has_pid { " (pid)" } else { "" },
                            e.wstatus
                        )
                    })
                    .collect(),
                _ => vec![],
            }
        };
        let (mut a, mut b) = (ev(c), ev(ours));
        a.extend(list(c));
        b.extend(list(ours));
        for i in 0..a.len().max(b.len()) {
            let _ = writeln!(
                out,
                "{:<width$} | {}",
                a.get(i).map_or("", |s| s.as_str()),
                b.get(i).map_or("", |s| s.as_str())
            );
        }
    }
    let _ = writeln!(out, "-- end");
    let _ = writeln!(
        out,
        "{:<width$} | exit {:?}",
        format!("exit {:?}", c.exit),
        ours.exit
    );
    let _ = writeln!(
        out,
        "{:<width$} | left {:?}",
        format!("left {:?}", c.leftovers),
        ours.leftovers
    );
    let _ = writeln!(out, "-- stderr of the C nitro:\n{}", c.stderr.trim_end());
    let _ = writeln!(out, "-- stderr of ours:\n{}", ours.stderr.trim_end());
    out
}
