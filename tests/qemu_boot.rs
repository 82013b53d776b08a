//! A real boot: the static nitro as /init of a tiny Linux under qemu
//! (software emulation), brought down by `nitroctl Shutdown` (after a
//! SIGTERM it must ignore), `nitroctl Reboot` and Ctrl-Alt-Delete (`kill
//! -INT 1`), booted single-user, and handed over to `SYS/reincarnate`.
//! The checks live in tests/qemu/boot.sh, which reads the serial console.
//!
//! Needs qemu-system-x86_64, a static busybox, cpio and apt-get (for the
//! kernel image); `.ci/run` installs them. Without them the test says so and
//! passes, unless NITRO_REQUIRE_QEMU is set (CI sets it).

mod support;

use std::path::Path;
use std::process::Command;

use support::have;

#[test]
fn boots_and_goes_down_in_order() {
    let tools = [
        "qemu-system-x86_64",
        "busybox",
        "cpio",
        "apt-get",
        "dpkg-deb",
    ];
    if let Some(missing) = tools.iter().find(|t| !have(t)) {
        assert!(
            std::env::var_os("NITRO_REQUIRE_QEMU").is_none(),
            "{missing} is required for the boot test"
        );
        eprintln!("skipping the qemu boot test: {missing} is not installed");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qemu/boot.sh");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu");
    for scenario in [
        "shutdown",
        "reboot",
        "cad",
        "single",
        "reincarnate",
        "halt",
        "cgroups",
    ] {
        let out = Command::new(&script)
            .args([env!("CARGO_BIN_EXE_nitro"), env!("CARGO_BIN_EXE_nitroctl")])
            .arg(&work)
            .arg(scenario)
            .output()
            .expect("run boot.sh");
        assert!(
            out.status.success(),
            "scenario {scenario} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
