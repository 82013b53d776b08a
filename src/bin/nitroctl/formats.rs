//! The listings: services in natural order of names, and the list line,
//! JSON and Prometheus metrics that show them and INFO.

use nitro::client::Status;
use nitro::proto::State;

use crate::words;

/// A service's state as nitro names it, `?` for one it did not send.
pub fn state_name(status: &Status) -> &'static str {
    status.state.map_or("?", State::name)
}

/// `STATE name (pid N) (wstatus N) Ns`, as the C nitroctl prints it.
pub fn line(status: &Status) -> String {
    let mut line = format!("{} {}", state_name(status), status.name);
    if status.pid != 0 {
        line.push_str(&format!(" (pid {})", status.pid));
    }
    line.push_str(&format!(" (wstatus {}) {}s", status.wstatus, status.uptime));
    line
}

/// One service as a JSON object.
pub fn json(status: &Status) -> String {
    let opt = |v: Option<i32>| v.map_or("null".to_string(), |v| v.to_string());
    let reason = status.reason.map_or("null".to_string(), |r| {
        format!(
            "{{\"program\":\"{}\",\"failure\":\"{}\",\"value\":{},\"text\":{}}}",
            words::program_name(r.program),
            words::failure_name(r.failure),
            r.value,
            json_string(&words::reason_words(r))
        )
    });
    let num = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
    let c = status.cgroup;
    format!(
        "{{\"name\":{},\"state\":\"{}\",\"pid\":{},\"wstatus\":{},\"exit_code\":{},\"signal\":{},\"uptime\":{},\"restarts\":{},\"reason\":{},\"cpu_usec\":{},\"memory_current\":{},\"memory_peak\":{},\"pids_current\":{},\"oom_kills\":{}}}",
        json_string(&status.name),
        state_name(status),
        if status.pid == 0 {
            "null".to_string()
        } else {
            status.pid.to_string()
        },
        status.wstatus,
        opt(status.exit_code()),
        opt(status.signal()),
        status.uptime,
        status.restarts.unwrap_or(0),
        reason,
        num(c.cpu_usec),
        num(c.memory_current),
        num(c.memory_peak),
        num(c.pids_current),
        num(c.oom_kills),
    )
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
fn json_string(s: &str) -> String {
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
    // One sample per service that has a value.
    let per = |f: &dyn Fn(&Status) -> Option<String>| -> Vec<(String, String)> {
        services
            .iter()
            .filter_map(|s| Some((format!("{{service=\"{}\"}}", label(&s.name)), f(s)?)))
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
        per(&|s| Some(u8::from(matches!(s.state, Some(State::Up | State::Oneshot))).to_string())),
    );
    family(
        "nitro_service_uptime_seconds",
        "gauge",
        "Seconds since the service last started or stopped.",
        per(&|s| Some(s.uptime.to_string())),
    );
    family(
        "nitro_service_pid",
        "gauge",
        "Process id of run, 0 when none.",
        per(&|s| Some(s.pid.to_string())),
    );
    family(
        "nitro_service_last_exit_status",
        "gauge",
        "Exit code of the last run, 128+signal if it was killed, -1 if it could not be executed.",
        per(&|s| {
            Some(match (s.exit_code(), s.signal()) {
                (Some(code), _) => code.to_string(),
                (None, Some(signal)) => (128 + signal).to_string(),
                _ => "-1".to_string(),
            })
        }),
    );
    let failures: Vec<(String, String)> = services
        .iter()
        .filter_map(|s| {
            let r = s.reason?;
            let labels = format!(
                "{{service=\"{}\",program=\"{}\",failure=\"{}\",text=\"{}\"}}",
                label(&s.name),
                words::program_name(r.program),
                words::failure_name(r.failure),
                label(&words::reason_words(r))
            );
            Some((labels, r.value.to_string()))
        })
        .collect();
    let cpu_seconds = |usec: u64| format!("{}.{:06}", usec / 1_000_000, usec % 1_000_000);
    let text = |v: Option<u64>| v.map(|v| v.to_string());
    // Only what nitro sent: the C nitro has no RESTARTS (tag 181), and
    // cgroup usage comes only for services in cgroups.
    for (name, kind, help, samples) in [
        (
            "nitro_service_restarts_total",
            "counter",
            "Automatic restarts since the service was added.",
            per(&|s| s.restarts.map(|n| n.to_string())),
        ),
        (
            "nitro_service_start_failure",
            "gauge",
            "Why the last start failed (REASON): errno, or the raw wait status for failure=\"status\".",
            failures,
        ),
        (
            "nitro_service_cpu_seconds_total",
            "counter",
            "CPU time used in the service's cgroup since its last start.",
            per(&|s| s.cgroup.cpu_usec.map(cpu_seconds)),
        ),
        (
            "nitro_service_memory_bytes",
            "gauge",
            "Memory in use in the service's cgroup.",
            per(&|s| text(s.cgroup.memory_current)),
        ),
        (
            "nitro_service_memory_peak_bytes",
            "gauge",
            "The most memory the service's cgroup used since its last start.",
            per(&|s| text(s.cgroup.memory_peak)),
        ),
        (
            "nitro_service_processes",
            "gauge",
            "Processes in the service's cgroup.",
            per(&|s| text(s.cgroup.pids_current)),
        ),
        (
            "nitro_service_oom_kills_total",
            "counter",
            "Processes of the service the OOM killer killed since nitro added it.",
            per(&|s| text(s.cgroup.oom_kills)),
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

#[cfg(test)]
mod tests {
    use nitro::core::CgroupStats;
    use nitro::proto::{Failure, Program, Reason};

    use super::*;

    /// A service as the C nitro sends it: without RESTARTS.
    fn c_service(name: &str, pid: u32) -> Status {
        Status {
            name: name.into(),
            state: Some(State::Up),
            pid,
            uptime: 3,
            ..Status::default()
        }
    }

    #[test]
    fn list_lines_are_the_c_ones() {
        assert_eq!(
            line(&c_service("beta@x", 2982)),
            "UP beta@x (pid 2982) (wstatus 0) 3s"
        );
        let down = Status {
            wstatus: 9,
            ..c_service("a", 0)
        };
        assert_eq!(line(&down), "UP a (wstatus 9) 3s");
    }

    #[test]
    fn metrics_show_only_what_nitro_sent() {
        let m = metrics(&[c_service("beta@x", 2982), c_service("alpha", 2983)], &[]);
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
            json(&s),
            "{\"name\":\"we\\\"ird\\n\",\"state\":\"DOWN\",\"pid\":null,\"wstatus\":9,\"exit_code\":null,\"signal\":9,\"uptime\":5,\"restarts\":2,\"reason\":null,"
                .to_owned()
                + "\"cpu_usec\":null,\"memory_current\":null,\"memory_peak\":null,\"pids_current\":null,\"oom_kills\":null}"
        );
        let m = metrics(&[s], &[("total_reaps".into(), Some(4))]);
        assert!(m.contains("nitro_service_state{service=\"we\\\"ird\\n\",state=\"DOWN\"} 1\n"));
        assert!(m.contains("nitro_service_last_exit_status{service=\"we\\\"ird\\n\"} 137\n"));
        assert!(m.contains("# TYPE nitro_reaps_total counter\nnitro_reaps_total 4\n"));
        assert!(!m.contains("nitro_allocations_since_start"));
        let info = [
            ("nitro_pid".into(), Some(2981)),
            ("# unknown tag 0xc8".into(), None),
        ];
        assert_eq!(info_json(&info), "{\"nitro_pid\":2981}");
    }

    #[test]
    fn reasons_in_json_and_metrics() {
        let setup = Reason {
            program: Program::Setup,
            failure: Failure::Status,
            value: 111 << 8,
        };
        let j = json(&Status {
            reason: Some(setup),
            ..Status::default()
        });
        assert!(
            j.contains(
                "\"reason\":{\"program\":\"setup\",\"failure\":\"status\",\"value\":28416,\"text\":\"setup exited 111\"},"
            ),
            "{j}"
        );
        let exec = Reason {
            program: Program::Run,
            failure: Failure::Exec,
            value: libc::EACCES,
        };
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
}
