//! Where the control socket lives (SPEC section 7), the same rule for
//! `nitro` and `nitroctl`.

use std::ffi::OsString;
use std::path::PathBuf;

/// Symlink whose target names the system socket.
pub const SOCK_LINK: &str = "/etc/nitro.sock";
/// The system socket when nothing else says otherwise.
pub const DEFAULT_SOCK: &str = "/run/nitro/nitro.sock";

/// Resolves the socket path from the environment: `NITRO_SOCK`; for root
/// the target of `/etc/nitro.sock`, else `/run/nitro/nitro.sock`; for other
/// users `$XDG_RUNTIME_DIR/nitro/nitro.sock`.
pub fn socket_path() -> Result<PathBuf, &'static str> {
    let env = |key| std::env::var_os(key).filter(|v: &OsString| !v.is_empty());
    if let Some(path) = env("NITRO_SOCK") {
        return Ok(PathBuf::from(path));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    if unsafe { libc::getuid() } == 0 {
        return Ok(std::fs::read_link(SOCK_LINK).unwrap_or_else(|_| PathBuf::from(DEFAULT_SOCK)));
    }
    match env("XDG_RUNTIME_DIR") {
        Some(dir) => Ok(PathBuf::from(dir).join("nitro/nitro.sock")),
        None => Err("no socket path: set NITRO_SOCK or XDG_RUNTIME_DIR"),
    }
}
