//! The service table: a fixed number of slots, found by name or by the
//! pid of their running program, and the deadline of each, all kept in
//! step here. Storage is reserved at startup for the most services there
//! can be; nothing allocates afterwards.
//!
//! Slots never move, so a slot number names a service for logger links,
//! readiness tokens and LIST paging.

use core::ops::{Index, IndexMut};

use super::index::{Deadlines, Table, hash_name, hash_pid};
use super::{Millis, Pid, Script, Service, Timer};

pub struct ServiceTable {
    /// `None` is a free slot.
    slots: Vec<Option<Service>>,
    /// Slots in use.
    used: usize,
    /// No free slot below this one.
    first_free: usize,
    names: Table,
    pids: Table,
    deadlines: Deadlines,
}

impl ServiceTable {
    pub fn new(capacity: usize) -> ServiceTable {
        let mut slots = Vec::with_capacity(capacity);
        slots.resize_with(capacity, || None);
        ServiceTable {
            slots,
            used: 0,
            first_free: 0,
            names: Table::new(capacity),
            pids: Table::new(capacity),
            deadlines: Deadlines::new(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Services in the table.
    pub fn len(&self) -> usize {
        self.used
    }

    /// The service in slot `i`, if any.
    pub fn get(&self, i: usize) -> Option<&Service> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// The services in slot order, from slot `start` on.
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = (usize, &Service)> {
        let start = start.min(self.slots.len());
        self.slots[start..]
            .iter()
            .enumerate()
            .filter_map(move |(k, s)| s.as_ref().map(|s| (start + k, s)))
    }

    pub fn find(&self, name: &[u8]) -> Option<usize> {
        self.names.find(hash_name(name), |i| {
            self.get(i).is_some_and(|s| s.name.as_bytes() == name)
        })
    }

    /// The service whose running program has this pid.
    pub fn find_pid(&self, pid: Pid) -> Option<usize> {
        if pid <= 0 {
            return None;
        }
        self.pids
            .find(hash_pid(pid), |i| self.get(i).is_some_and(|s| s.pid == pid))
    }

    /// Puts `service` in the lowest free slot; `None` when the table is full.
    pub fn insert(&mut self, service: Service) -> Option<usize> {
        let free = (self.first_free..self.slots.len()).find(|&i| self.slots[i].is_none())?;
        self.names.insert(hash_name(service.name.as_bytes()), free);
        self.slots[free] = Some(service);
        self.used += 1;
        self.first_free = free + 1;
        Some(free)
    }

    /// Takes the service out of slot `i`, with its entries in every index.
    pub fn remove(&mut self, i: usize) -> Option<Service> {
        let service = self.slots.get_mut(i)?.take()?;
        self.names.remove(hash_name(service.name.as_bytes()), i);
        if service.pid > 0 {
            self.pids.remove(hash_pid(service.pid), i);
        }
        self.deadlines.clear(i);
        self.used -= 1;
        self.first_free = self.first_free.min(i);
        Some(service)
    }

    /// The program now running in slot `i` (`None` and pid 0 for none).
    pub fn set_running(&mut self, i: usize, running: Option<Script>, pid: Pid) {
        let old = self[i].pid;
        if old > 0 {
            self.pids.remove(hash_pid(old), i);
        }
        if pid > 0 {
            self.pids.insert(hash_pid(pid), i);
        }
        let service = &mut self[i];
        service.running = running;
        service.pid = pid;
    }

    /// Arms the timer of slot `i` for `at`, or disarms it (`Timer::None`).
    pub fn set_timer(&mut self, i: usize, timer: Timer, at: Millis) {
        self[i].timer = timer;
        if timer == Timer::None {
            self.deadlines.clear(i);
        } else {
            self.deadlines.set(i, at);
        }
    }

    /// The earliest deadline and its slot.
    pub fn next_deadline(&self) -> Option<(Millis, usize)> {
        self.deadlines.first()
    }

    /// Every index agrees with the slots.
    #[cfg(test)]
    pub fn check(&self) {
        let mut used = 0;
        for (i, s) in self.iter_from(0) {
            used += 1;
            assert_eq!(self.find(s.name.as_bytes()), Some(i), "{} by name", s.name);
            if s.pid > 0 {
                assert_eq!(self.find_pid(s.pid), Some(i), "{} by pid", s.name);
            }
            assert_eq!(
                self.deadlines.get(i).is_some(),
                s.timer != Timer::None,
                "{} deadline",
                s.name
            );
        }
        for i in (0..self.slots.len()).filter(|&i| self.slots[i].is_none()) {
            assert_eq!(self.deadlines.get(i), None);
            assert!(
                i >= self.first_free,
                "free slot {i} below {}",
                self.first_free
            );
        }
        assert_eq!(self.used, used);
    }
}

/// The one checked access to a slot the caller knows to be in use.
impl Index<usize> for ServiceTable {
    type Output = Service;

    fn index(&self, i: usize) -> &Service {
        self.slots[i].as_ref().expect("a service in this slot")
    }
}

impl IndexMut<usize> for ServiceTable {
    fn index_mut(&mut self, i: usize) -> &mut Service {
        self.slots[i].as_mut().expect("a service in this slot")
    }
}
