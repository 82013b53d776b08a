//! The control socket: its directory and `notify/`, the check for a
//! previous owner, binding, and datagram traffic; and for clients, a
//! socket at an address the kernel picks.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::errno;

/// Why the socket cannot be served.
#[derive(Debug)]
pub enum SetupError {
    /// Another nitro serves it already (exit 111, no `SYS/fatal`).
    Taken,
    Other(String),
}

pub struct ControlSocket {
    pub fd: i32,
    pub path: PathBuf,
    pub notify_dir: CString,
}

/// Creates `dir` with mode 0700, or accepts an existing one that belongs to
/// us and that nobody else can write to.
fn secure_dir(dir: &Path) -> Result<(), SetupError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(SetupError::Other(format!(
                "cannot create {}: {}",
                dir.display(),
                super::IoText(&e)
            )));
        }
    }
    let meta = std::fs::metadata(dir).map_err(|e| {
        SetupError::Other(format!(
            "cannot stat {}: {}",
            dir.display(),
            super::IoText(&e)
        ))
    })?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(SetupError::Other(format!(
            "refusing {}: it must be a directory owned by uid {} and not writable by others",
            dir.display(),
            uid
        )));
    }
    Ok(())
}

fn sockaddr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), SetupError> {
    // SAFETY: a zeroed sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(SetupError::Other(format!(
            "socket path too long: {}",
            path.display()
        )));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok((
        addr,
        std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
    ))
}

fn socket(kind: i32) -> Result<i32, SetupError> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(SetupError::Other(format!(
            "socket: {}",
            super::Errno(errno())
        )));
    }
    Ok(fd)
}

impl ControlSocket {
    /// Prepares the directories, clears a stale socket and binds.
    pub fn bind(path: &Path) -> Result<ControlSocket, SetupError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        secure_dir(dir)?;
        let notify = dir.join("notify");
        secure_dir(&notify)?;
        let (addr, addr_len) = sockaddr(path)?;

        // A stream connect tells who is there: success means a stranger,
        // EPROTOTYPE a datagram socket (another nitro), ECONNREFUSED nobody.
        let probe = socket(libc::SOCK_STREAM)?;
        // SAFETY: addr is a valid sockaddr_un of addr_len bytes.
        let rc =
            unsafe { libc::connect(probe, (&addr as *const libc::sockaddr_un).cast(), addr_len) };
        let connect_errno = errno();
        super::close(probe);
        if rc == 0 {
            return Err(SetupError::Other(format!(
                "{} is in use by another program",
                path.display()
            )));
        }
        match connect_errno {
            libc::EPROTOTYPE => return Err(SetupError::Taken),
            libc::ECONNREFUSED => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }

        let fd = socket(libc::SOCK_DGRAM | libc::SOCK_NONBLOCK)?;
        // SAFETY: umask and bind with a valid address; the old mask is restored.
        let rc = unsafe {
            let old = libc::umask(0o077);
            let rc = libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), addr_len);
            libc::umask(old);
            rc
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            super::close(fd);
            return Err(SetupError::Other(format!(
                "cannot bind {}: {}",
                path.display(),
                super::IoText(&e)
            )));
        }
        let notify_dir = CString::new(notify.as_os_str().as_bytes())
            .map_err(|_| SetupError::Other("NUL in socket path".into()))?;
        Ok(ControlSocket {
            fd,
            path: path.to_owned(),
            notify_dir,
        })
    }

    /// Receives one datagram; `None` when there is none. The sender's
    /// address is kept in `from` (length 0 if it did not bind one).
    pub fn recv(&self, buf: &mut [u8], from: &mut Sender) -> Option<usize> {
        from.len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: buf and from.addr are valid for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                self.fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from.addr as *mut libc::sockaddr_un).cast(),
                &mut from.len,
            )
        };
        if n < 0 { None } else { Some(n as usize) }
    }

    /// Replies to a sender that bound an address; never blocks.
    pub fn reply(&self, to: &Sender, bytes: &[u8]) {
        if to.len as usize <= std::mem::size_of::<libc::sa_family_t>() {
            return;
        }
        // SAFETY: bytes and to.addr are valid for the lengths given.
        unsafe {
            libc::sendto(
                self.fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                (&to.addr as *const libc::sockaddr_un).cast(),
                to.len,
            )
        };
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The address a request came from.
pub struct Sender {
    addr: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl Default for Sender {
    fn default() -> Sender {
        Sender {
            // SAFETY: a zeroed sockaddr_un is valid.
            addr: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }
}

/// A datagram socket bound to a kernel-chosen abstract address, so nitro
/// can reply without a file left behind.
pub fn autobind() -> std::io::Result<std::os::unix::net::UnixDatagram> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    // SAFETY: addr is a valid sockaddr_un, of which only the address
    // family is passed: that asks Linux to autobind. The fd stays owned
    // by `socket`.
    let rc = unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(socket)
}
