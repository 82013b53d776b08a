//! The whole request handler on a fake system: any datagram sequence is
//! answered or dropped, replies stay well-formed, nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nitro::core::{Config, Fd, Os, Pid, ReadResult, Spawn, SpawnError, Supervisor};
use nitro::proto::State;
use nitro::spat::Reader;

/// Services `a` (run) and `t@` (a template); every spawn succeeds.
struct FakeOs {
    next_pid: Pid,
    next_fd: Fd,
}

impl Os for FakeOs {
    fn spawn(&mut self, _: &Spawn) -> Result<Pid, SpawnError> {
        self.next_pid += 1;
        Ok(self.next_pid)
    }
    fn kill(&mut self, _: Pid, _: i32) {}
    fn pipe(&mut self) -> Result<(Fd, Fd), i32> {
        self.next_fd += 2;
        Ok((self.next_fd, self.next_fd + 1))
    }
    fn close(&mut self, _: Fd) {}
    fn watch(&mut self, _: Fd, _: u64) {}
    fn read(&mut self, _: Fd, _: &mut [u8]) -> ReadResult {
        ReadResult::Nothing
    }
    fn notify(&mut self, _: &[u8], _: State) {}
    fn warn(&mut self, _: std::fmt::Arguments) {}
    fn fd_limit(&mut self) -> i32 {
        1024
    }
    fn exists(&mut self, dir: &[u8], file: &[u8]) -> bool {
        (dir == b"a" || dir == b"t@") && (file.is_empty() || file == b"run")
    }
    fn read_file(&mut self, _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, i32> {
        Err(2) // ENOENT
    }
    fn read_link(&mut self, _: &[u8], _: &[u8], _: &mut [u8]) -> Option<usize> {
        None
    }
    fn scan_start(&mut self) {}
    fn scan_next(&mut self, _: &mut [u8; 256]) -> Option<usize> {
        None
    }
    fn allocations(&self) -> Option<u32> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let mut os = FakeOs {
        next_pid: 100,
        next_fd: 10,
    };
    let mut sup = Supervisor::new(Config {
        max_services: 8,
        nitro_pid: 1,
        fd_limit: 1024,
    });
    sup.boot(&mut os, 0);
    let mut reply = [0u8; 4096];
    // The input is a sequence of datagrams, each prefixed by its length.
    let mut rest = data;
    let mut now = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let (datagram, tail) = tail.split_at((len as usize).min(tail.len()));
        rest = tail;
        now += 100;
        if let Some(n) = sup.handle_request(&mut os, datagram, &mut reply, now) {
            assert!(Reader::new(&reply[..n]).all(|item| item.is_ok()));
        }
        let pending = sup.take_pending();
        if pending.rescan {
            sup.rescan(&mut os, now);
        }
        sup.on_timers(&mut os, now);
    }
});
