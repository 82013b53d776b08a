//! The login accounting file /var/log/wtmp: appending the records of a
//! boot or a shutdown, for `halt -w` and `reboot -B`.

/// Size of a wtmp record on x86_64 Linux (glibc's `struct utmpx`, which
/// `last` reads): type at 0, line at 8, user at 44, the time (32-bit
/// seconds and microseconds) at 340.
const UTMP_SIZE: usize = 384;
const UT_LINE: usize = 8;
const UT_USER: usize = 44;
const UT_TV: usize = 340;

/// Appends a shutdown (`boot` false) or boot record to /var/log/wtmp, as
/// glibc's `updwtmpx` does: only to an existing file, under a write lock,
/// a whole record or nothing. Written by hand so that the layout is the
/// one on disk whatever C library nitroctl is built with.
pub fn append(boot: bool) {
    let mut record = [0u8; UTMP_SIZE];
    let kind = if boot { libc::BOOT_TIME } else { libc::RUN_LVL };
    record[..2].copy_from_slice(&kind.to_ne_bytes());
    record[UT_LINE] = b'~';
    let user: &[u8] = if boot { b"reboot" } else { b"shutdown" };
    record[UT_USER..UT_USER + user.len()].copy_from_slice(user);
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    record[UT_TV..UT_TV + 4].copy_from_slice(&(since_epoch.as_secs() as u32).to_ne_bytes());
    record[UT_TV + 4..UT_TV + 8].copy_from_slice(&since_epoch.subsec_micros().to_ne_bytes());
    // SAFETY: plain system calls on a descriptor we own, with valid
    // buffers; a zeroed flock is valid.
    unsafe {
        let fd = libc::open(c"/var/log/wtmp".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return;
        }
        let mut lock: libc::flock = std::mem::zeroed();
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(fd, libc::F_SETLKW, &lock);
        let end = libc::lseek(fd, 0, libc::SEEK_END);
        let written = libc::write(fd, record.as_ptr().cast(), record.len());
        if written >= 0 && (written as usize) < record.len() && end >= 0 {
            libc::ftruncate(fd, end);
        }
        lock.l_type = libc::F_UNLCK as libc::c_short;
        libc::fcntl(fd, libc::F_SETLK, &lock);
        libc::close(fd);
    }
}
