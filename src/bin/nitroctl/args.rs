//! The command line: options anywhere among the arguments (as GNU getopt
//! allows), and service arguments that may be paths.

use std::path::Path;
use std::time::Duration;

pub const USAGE: &str = "usage: nitroctl [-t SECONDS] [-vT] [--json] [COMMAND [SERVICE...]]";

/// Printed by `-h` / `--help`.
pub const HELP: &str = "\
usage: nitroctl [-t SECONDS] [-vT] [--json] [COMMAND [SERVICE...]]

  list, l (default)     list services (list SVC... for some)
  status [SVC...]       state, uptime, restarts, last exit, readiness, logger
  info                  nitro's counters
  metrics               Prometheus text format
  scan, s, rescan       rescan the service directory
  up, u / down, d       request, don't wait
  start / stop / restart          request and wait for UP / DOWN / UP again
  fast-start / fast-restart, r    ... only until the service is starting
  fast-stop             ... only until it is stopping
  ready                 mark STARTING services UP
  wait-up / wait-down / wait-starting   only wait
  pidof / check         print pids / exit 1 unless all have one
  pause cont hup alarm interrupt quit term kill 1 2 (or first letter)
                        send a signal to the service
  events [SVC...]       print every state change (of these services) until
                        interrupted
  Shutdown / Reboot     stop the system

  -t SECONDS            give up after this long (fractions allowed): exit 3
  -v                    print each state change seen while waiting
  -T                    start each state change line with the UTC time
  --json                JSON output for list and info
";

#[derive(Debug, Default, PartialEq)]
pub struct Options {
    pub timeout: Option<Duration>,
    pub verbose: bool,
    /// `-T`: state change lines start with the time they arrived.
    pub timestamps: bool,
    pub json: bool,
    pub help: bool,
    /// The command and its services, options removed.
    pub args: Vec<String>,
}

/// Options may stand anywhere among the arguments: `-t 5`, `-t5`, `-v`,
/// `-T`, `-vt 5` (bundled), `--json`, `-h`/`--help`; `--` ends the options and
/// `-` alone is an argument. An error is the message for a usage error.
pub fn parse_options(argv: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut argv = argv.into_iter();
    let mut only_args = false;
    while let Some(arg) = argv.next() {
        if only_args || arg == "-" || !arg.starts_with('-') {
            options.args.push(arg);
            continue;
        }
        match arg.as_str() {
            "--" => only_args = true,
            "--json" => options.json = true,
            "--help" => options.help = true,
            long if long.starts_with("--") => return Err(format!("unknown option {long}")),
            short => {
                // A bundle of one-letter options; `t` takes the rest of the
                // bundle, or else the next argument.
                for (at, letter) in short[1..].char_indices() {
                    match letter {
                        'v' => options.verbose = true,
                        'T' => options.timestamps = true,
                        'h' => options.help = true,
                        't' => {
                            let rest = &short[1 + at + 1..];
                            let value = if rest.is_empty() {
                                argv.next()
                            } else {
                                Some(rest.to_string())
                            };
                            options.timeout = Some(seconds(value.as_deref())?);
                            break;
                        }
                        _ => return Err(format!("unknown option -{letter}")),
                    }
                }
            }
        }
    }
    Ok(options)
}

/// A non-negative, finite number of seconds, fractions allowed.
fn seconds(value: Option<&str>) -> Result<Duration, String> {
    value
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| "-t needs a number of seconds".to_string())
}

/// A service argument: a name, or an existing path meaning its last
/// component (`.` inside a service directory, `/etc/nitro/sshd/`). An
/// argument with `/` that does not exist is an error, and it exits 111
/// rather than 2 (usage): the command line is well formed, what it names
/// just is not there, as with a name nitro does not know (ESRCH, 111).
pub fn service_name(arg: &str) -> Result<String, String> {
    if !arg.contains('/') && arg != "." && arg != ".." {
        // A plain name: if it also exists as a path here, its last
        // component is the name itself.
        return Ok(arg.to_string());
    }
    let path = Path::new(arg);
    if !path.exists() {
        return Err(format!("{arg}: no such file or directory"));
    }
    // The last component as written, so `/etc/nitro/sshd` names `sshd` even
    // if that is a symlink; only `.`/`..` need the real path.
    let name = match path.file_name() {
        Some(name) => Some(name.to_os_string()),
        None => std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string())),
    };
    name.map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{arg}: cannot name a service"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        parse_options(args.iter().map(|s| s.to_string()))
    }

    fn args(o: &Options) -> Vec<&str> {
        o.args.iter().map(String::as_str).collect()
    }

    #[test]
    fn options_stand_anywhere() {
        let o = parse(&["start", "-t", "5", "x", "-v", "y"]).unwrap();
        assert_eq!(o.timeout, Some(Duration::from_secs(5)));
        assert!(o.verbose && !o.json);
        assert_eq!(args(&o), ["start", "x", "y"]);
        let o = parse(&["list", "--json"]).unwrap();
        assert!(o.json && !o.timestamps);
        assert_eq!(args(&o), ["list"]);
        let o = parse(&["events", "-Tv", "a"]).unwrap();
        assert!(o.timestamps && o.verbose);
        assert_eq!(args(&o), ["events", "a"]);
        assert_eq!(parse(&[]).unwrap(), Options::default());
    }

    #[test]
    fn timeout_forms() {
        let ms = |o: Options| o.timeout.unwrap().as_millis();
        assert_eq!(ms(parse(&["-t0.25", "wait-up", "a"]).unwrap()), 250);
        assert_eq!(ms(parse(&["-t", ".5"]).unwrap()), 500);
        assert_eq!(ms(parse(&["-t", "0"]).unwrap()), 0);
        let o = parse(&["-vt", "1.5", "stop", "a"]).unwrap();
        assert!(o.verbose);
        assert_eq!(ms(o), 1500);
        let o = parse(&["-vt2", "stop"]).unwrap();
        assert_eq!(args(&o), ["stop"]);
        for bad in [
            &["-t"][..],
            &["-t", "x"],
            &["-t", "-1"],
            &["-t", "nan"],
            &["-t", "inf"],
            &["-t", "1e300"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_options_and_the_end_of_options() {
        assert_eq!(parse(&["-x"]).unwrap_err(), "unknown option -x");
        assert_eq!(parse(&["-vq"]).unwrap_err(), "unknown option -q");
        assert_eq!(
            parse(&["--verbose"]).unwrap_err(),
            "unknown option --verbose"
        );
        let o = parse(&["start", "--", "-v", "-"]).unwrap();
        assert!(!o.verbose);
        assert_eq!(args(&o), ["start", "-v", "-"]);
        assert_eq!(args(&parse(&["up", "-"]).unwrap()), ["up", "-"]);
        assert!(parse(&["-h"]).unwrap().help && parse(&["--help"]).unwrap().help);
    }

    #[test]
    fn path_arguments_name_their_last_component() {
        let tmp = tempfile::tempdir().unwrap();
        let sv = tmp.path().join("sshd");
        std::fs::create_dir(&sv).unwrap();
        std::os::unix::fs::symlink(&sv, tmp.path().join("alias")).unwrap();
        let p = |p: &Path| service_name(p.to_str().unwrap());
        assert_eq!(p(&sv).unwrap(), "sshd");
        assert_eq!(p(&sv.join("")).unwrap(), "sshd", "trailing slash");
        assert_eq!(p(&sv.join(".")).unwrap(), "sshd");
        assert_eq!(p(&tmp.path().join("alias")).unwrap(), "alias", "as written");
        assert_eq!(
            p(&sv.join("..")).unwrap(),
            tmp.path()
                .canonicalize()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        );
        assert!(p(&tmp.path().join("nope")).is_err());
        assert!(service_name("nope/x").is_err());
        assert!(service_name("/").is_err());
        assert_eq!(service_name("plain@x y").unwrap(), "plain@x y");
    }
}
