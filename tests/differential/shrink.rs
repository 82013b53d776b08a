//! A small reducer: given a failing scenario, tries simpler ones (fewer
//! steps, fewer services, plainer behaviours, settled steps) and keeps each
//! that still fails, until none does or the time budget is spent.

use std::time::{Duration, Instant};

use super::scenario::{Ready, Run, Scenario, Step, TimedStep};

/// Simpler variants of `s`, most promising first.
fn candidates(s: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    // Drop chunks of steps, halves first.
    let n = s.steps.len();
    let mut chunk = n.div_ceil(2).max(1);
    while chunk >= 1 {
        let mut start = 0;
        while start < n {
            let mut c = s.clone();
            c.steps.drain(start..(start + chunk).min(n));
            out.push(c);
            start += chunk;
        }
        if chunk == 1 {
            break;
        }
        chunk /= 2;
    }
    // Drop a service.
    for i in 0..s.services.len() {
        let mut c = s.clone();
        c.services.remove(i);
        out.push(c);
    }
    // Plainer services.
    for i in 0..s.services.len() {
        let svc = &s.services[i];
        let mut variants = Vec::new();
        let mut v = svc.clone();
        if v.log.take().is_some() {
            variants.push(v);
        }
        let mut v = svc.clone();
        if v.finish.take().is_some() {
            variants.push(v);
        }
        let mut v = svc.clone();
        if v.setup.is_some() && v.run.is_some() {
            v.setup = None;
            variants.push(v);
        }
        let mut v = svc.clone();
        if !v.instances.is_empty() {
            v.instances.pop();
            variants.push(v);
        }
        let mut v = svc.clone();
        if v.down {
            v.down = false;
            variants.push(v);
        }
        let mut v = svc.clone();
        if v.down_signal.take().is_some() {
            variants.push(v);
        }
        let mut v = svc.clone();
        if v.run.is_some() && v.run != Some(Run::Stay) && v.run != Some(Run::Logger) {
            v.run = Some(Run::Stay);
            variants.push(v);
        }
        let mut v = svc.clone();
        if !matches!(v.ready, Ready::FdNow(_)) {
            v.ready = Ready::FdNow(3);
            variants.push(v);
        }
        for v in variants {
            let mut c = s.clone();
            c.services[i] = v;
            out.push(c);
        }
    }
    // Settle after every step; no pauses.
    for i in 0..n {
        if !s.steps[i].settle && !matches!(s.steps[i].step, Step::Pause(_)) {
            let mut c = s.clone();
            c.steps[i] = TimedStep {
                step: s.steps[i].step.clone(),
                settle: true,
            };
            out.push(c);
        }
    }
    out
}

/// Reduces `s` while `fails` holds, within `budget`.
pub fn shrink(mut s: Scenario, budget: Duration, fails: impl Fn(&Scenario) -> bool) -> Scenario {
    let end = Instant::now() + budget;
    'outer: loop {
        for c in candidates(&s) {
            if Instant::now() > end {
                break 'outer;
            }
            if fails(&c) {
                s = c;
                continue 'outer;
            }
        }
        break;
    }
    s
}
