//! install.sh, the man pages and the shell completions, tried as a new
//! user would.

mod support;

use std::path::Path;
use std::process::Command;

use nitro::proto::State;
use support::*;

/// Runs install.sh with `args` into a fresh DESTDIR, PREFIX=/usr.
fn install(args: &[&str]) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dest = tempfile::tempdir().unwrap();
    let bins = Path::new(nitro_bin()).parent().unwrap();
    let out = Command::new(root.join("install.sh"))
        .args(args)
        .arg("PREFIX=/usr")
        .arg(format!("DESTDIR={}", dest.path().display()))
        .env("RELEASE_DIR", bins)
        .output()
        .unwrap();
    assert_succeeded("install.sh", &out);
    dest
}

#[test]
fn install_into_a_prefix() {
    let dest = install(&[]);
    let d = dest.path();
    for file in [
        "usr/sbin/nitro",
        "usr/bin/nitroctl",
        "usr/share/man/man8/nitro.8",
        "usr/share/man/man1/nitroctl.1",
        "usr/share/bash-completion/completions/nitroctl",
        "usr/share/zsh/site-functions/_nitroctl",
        "usr/share/fish/vendor_completions.d/nitroctl.fish",
    ] {
        assert!(d.join(file).exists(), "{file}");
    }
    // No halt, poweroff, reboot or init unless asked for: they would
    // shadow those of the system's own init.
    for name in ["halt", "poweroff", "reboot", "init"] {
        assert!(!d.join("usr/sbin").join(name).exists(), "{name}");
        let page = d.join("usr/share/man/man8").join(format!("{name}.8"));
        assert!(!page.exists(), "{name}.8");
    }
}

#[test]
fn install_with_init_links() {
    let dest = install(&["--init-links"]);
    let d = dest.path();
    assert!(d.join("usr/sbin/nitro").exists());
    for name in ["halt", "poweroff", "reboot", "init"] {
        let link = std::fs::read_link(d.join("usr/sbin").join(name)).unwrap();
        assert_eq!(link, Path::new("/usr/bin/nitroctl"));
        assert!(
            d.join("usr/share/man/man8")
                .join(format!("{name}.8"))
                .exists()
        );
    }
}

#[test]
fn man_pages_render_without_warnings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !have("mandoc") {
        assert!(std::env::var_os("CI").is_none(), "CI installs mandoc");
        eprintln!("skipped: no mandoc");
        return;
    }
    for page in ["man/nitro.8", "man/nitroctl.1", "man/halt.8"] {
        let out = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .arg(root.join(page))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn halt_names_and_init_talk_to_nitro() {
    let mut n = Nitro::start(|sv| script(&sv.join("a/run"), "exec sleep 1000"));
    n.wait_for("a", State::Starting);
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init");
    std::os::unix::fs::symlink(nitroctl_bin(), &init).unwrap();
    script(&n.sv.join("b/run"), "exec sleep 1000");
    let status = Command::new(&init)
        .arg("q")
        .env("NITRO_SOCK", &n.sock)
        .status()
        .unwrap();
    assert!(status.success());
    n.wait_for("b", State::Starting);
    let poweroff = dir.path().join("poweroff");
    std::os::unix::fs::symlink(nitroctl_bin(), &poweroff).unwrap();
    let status = Command::new(&poweroff)
        .env("NITRO_SOCK", &n.sock)
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = n.child.take().unwrap();
    until("nitro exits", || child.try_wait().unwrap().is_some());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn bash_completes_commands_and_services() {
    if !have("bash") {
        return;
    }
    let n = Nitro::start(|sv| {
        script(&sv.join("alpha/run"), "exec sleep 1000");
        script(&sv.join("beta/run"), "exec sleep 1000");
        script(&sv.join("tmpl@/run"), "exec sleep 1000");
        std::os::unix::fs::symlink("tmpl@", sv.join("tmpl@a b")).unwrap();
    });
    until("all known", || n.ctl(&["list"]).1.lines().count() == 3);
    let completion = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/nitroctl.bash");
    let bindir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(nitroctl_bin(), bindir.path().join("nitroctl")).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let script = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; _nitroctl; echo \"${{COMPREPLY[*]}}\"",
            completion.display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1
        );
        let out = Command::new("bash")
            .args(["-c", &script])
            .env("NITRO_SOCK", &n.sock)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bindir.path().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("nitroctl resta"), "restart");
    assert_eq!(complete("nitroctl start "), "alpha beta tmpl@a\\ b");
    assert_eq!(complete("nitroctl status t"), "tmpl@a\\ b");
    assert_eq!(complete("nitroctl stop tmpl@a"), "tmpl@a\\ b");
    assert_eq!(complete("nitroctl -t 5 stop b"), "beta");
    assert_eq!(complete("nitroctl --j"), "--json");
}

#[test]
fn halt_w_and_b_write_wtmp_records() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !have("utmpdump") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with util-linux"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let halt = dir.path().join("halt");
    std::os::unix::fs::symlink(nitroctl_bin(), &halt).unwrap();
    // A private /var/log, so the host's wtmp is left alone.
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /var/log && touch /var/log/wtmp && {h} -w && {h} -B && utmpdump /var/log/wtmp",
            h = halt.display()
        ))
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&out.stdout);
    assert_succeeded("halt -w, halt -B, utmpdump", &out);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 2, "{dump}");
    assert!(
        lines[0].starts_with("[1] ") && lines[0].contains("[shutdown"),
        "{dump}"
    );
    assert!(
        lines[1].starts_with("[2] ") && lines[1].contains("[reboot"),
        "{dump}"
    );
}

#[test]
fn zsh_and_fish_completions_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (shell, file) in [
        ("zsh", "completions/_nitroctl"),
        ("fish", "completions/nitroctl.fish"),
    ] {
        if !have(shell) {
            assert!(std::env::var_os("CI").is_none(), "CI installs {shell}");
            continue;
        }
        let out = Command::new(shell)
            .arg("-n")
            .arg(root.join(file))
            .output()
            .unwrap();
        assert_succeeded(file, &out);
    }
}

/// Whether the ELF file asks for a program interpreter (a dynamic loader):
/// a PT_INTERP entry among its program headers.
fn wants_interpreter(elf: &[u8]) -> bool {
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|k| {
        let at = phoff + k * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

#[test]
fn binaries_are_static() {
    for bin in [nitro_bin(), nitroctl_bin()] {
        let elf = std::fs::read(bin).unwrap();
        assert!(!wants_interpreter(&elf), "{bin} needs a dynamic loader");
    }
    // The test's own check on a dynamically linked program.
    let sh = std::fs::read("/bin/sh").unwrap();
    assert!(wants_interpreter(&sh), "/bin/sh is dynamic here");
}

/// The manual stands on its own: every relative link in README.md and
/// docs/ names a file of this repository, and no page points at a path
/// above it (a clone has nothing there).
#[test]
fn no_link_leaves_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    let mut pages = vec![root.join("README.md")];
    for dir in ["docs", "man"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            pages.push(entry.unwrap().path());
        }
    }
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(!text.contains("../shared"), "{}", page.display());
        // The web: only to credit the C nitro.
        for (at, _) in text.match_indices("://") {
            let start = text[..at]
                .rfind(|c: char| !c.is_ascii_alphanumeric())
                .map_or(0, |i| i + 1);
            assert!(
                text[start..].starts_with("https://git.vuxu.org/nitro/"),
                "{}: {}",
                page.display(),
                text[start..].lines().next().unwrap()
            );
        }
        for (_, rest) in text
            .match_indices("](")
            .map(|(at, _)| ((), &text[at + 2..]))
        {
            let target = &rest[..rest.find(')').unwrap()];
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let path = page
                .parent()
                .unwrap()
                .join(target.split('#').next().unwrap());
            let resolved = path.canonicalize();
            assert!(
                resolved.as_ref().is_ok_and(|p| p.starts_with(&root)),
                "{}: {target}",
                page.display()
            );
        }
    }
}
