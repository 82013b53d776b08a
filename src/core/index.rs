//! The lookups nitro makes on every event, each in constant or
//! logarithmic time whatever the number of services: a service by name
//! or by pid, the next deadline.
//! Storage for all of them is reserved at startup for the most services
//! there can be, so they never allocate.

use super::Millis;

/// Marks an empty place.
const NONE: u32 = u32::MAX;

/// FNV-1a of a name.
pub fn hash_name(name: &[u8]) -> u32 {
    name.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// A pid spread over all bits.
pub fn hash_pid(pid: i32) -> u32 {
    let h = (pid as u32).wrapping_mul(0x9e37_79b1);
    h ^ (h >> 16)
}

/// Slot numbers found by the hash of a key that lives in the slot: the
/// caller hashes and confirms a match. Open addressing with linear
/// probing, at most half full, deletion by shifting back (no tombstones,
/// so lookups stay short however much churn there is).
pub struct Table {
    /// (hash, slot); slot `NONE` is an empty place.
    entries: Vec<(u32, u32)>,
    mask: usize,
}

impl Table {
    /// Room for `capacity` slots.
    pub fn new(capacity: usize) -> Table {
        let size = (capacity.max(4) * 2).next_power_of_two();
        Table {
            entries: vec![(0, NONE); size],
            mask: size - 1,
        }
    }

    fn home(&self, hash: u32) -> usize {
        hash as usize & self.mask
    }

    /// The first slot under `hash` that `matches`.
    pub fn find(&self, hash: u32, mut matches: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut at = self.home(hash);
        loop {
            let (h, slot) = self.entries[at];
            if slot == NONE {
                return None;
            }
            if h == hash && matches(slot as usize) {
                return Some(slot as usize);
            }
            at = (at + 1) & self.mask;
        }
    }

    pub fn insert(&mut self, hash: u32, slot: usize) {
        let mut at = self.home(hash);
        while self.entries[at].1 != NONE {
            at = (at + 1) & self.mask;
        }
        self.entries[at] = (hash, slot as u32);
    }

    /// Removes `slot`, filed under `hash`; nothing if it is not there.
    pub fn remove(&mut self, hash: u32, slot: usize) {
        let mut hole = self.home(hash);
        loop {
            match self.entries[hole] {
                (_, NONE) => return,
                (h, s) if h == hash && s == slot as u32 => break,
                _ => hole = (hole + 1) & self.mask,
            }
        }
        // Move back each following entry that may live in the hole: one
        // whose home is not between the hole and itself.
        let mut at = (hole + 1) & self.mask;
        while self.entries[at].1 != NONE {
            let home = self.home(self.entries[at].0);
            let from_home = at.wrapping_sub(home) & self.mask;
            let from_hole = at.wrapping_sub(hole) & self.mask;
            if from_home >= from_hole {
                self.entries[hole] = self.entries[at];
                hole = at;
            }
            at = (at + 1) & self.mask;
        }
        self.entries[hole] = (0, NONE);
    }
}

/// The deadline of each slot that has one, earliest first: a binary heap
/// that knows where each slot is in it, so a deadline can be moved or
/// dropped.
pub struct Deadlines {
    heap: Vec<(Millis, u32)>,
    /// Index in `heap` of each slot, `NONE` when it has no deadline.
    place: Vec<u32>,
}

impl Deadlines {
    pub fn new(capacity: usize) -> Deadlines {
        Deadlines {
            heap: Vec::with_capacity(capacity),
            place: vec![NONE; capacity],
        }
    }

    /// The earliest deadline and its slot.
    pub fn first(&self) -> Option<(Millis, usize)> {
        self.heap.first().map(|&(at, slot)| (at, slot as usize))
    }

    pub fn set(&mut self, slot: usize, at: Millis) {
        match self.place[slot] {
            NONE => {
                self.heap.push((at, slot as u32));
                self.place[slot] = (self.heap.len() - 1) as u32;
                self.up(self.heap.len() - 1);
            }
            k => {
                self.heap[k as usize].0 = at;
                self.up(k as usize);
                self.down(self.place[slot] as usize);
            }
        }
    }

    pub fn clear(&mut self, slot: usize) {
        let k = self.place[slot];
        if k == NONE {
            return;
        }
        let k = k as usize;
        self.place[slot] = NONE;
        let last = self.heap.pop().expect("a slot with a place is in the heap");
        if k < self.heap.len() {
            self.heap[k] = last;
            self.place[last.1 as usize] = k as u32;
            self.up(k);
            self.down(self.place[last.1 as usize] as usize);
        }
    }

    #[cfg(test)]
    pub fn get(&self, slot: usize) -> Option<Millis> {
        let k = self.place[slot];
        (k != NONE).then(|| self.heap[k as usize].0)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.place[self.heap[a].1 as usize] = a as u32;
        self.place[self.heap[b].1 as usize] = b as u32;
    }

    fn up(&mut self, mut k: usize) {
        while k > 0 {
            let parent = (k - 1) / 2;
            if self.heap[parent].0 <= self.heap[k].0 {
                break;
            }
            self.swap(parent, k);
            k = parent;
        }
    }

    fn down(&mut self, mut k: usize) {
        loop {
            let mut least = k;
            for child in [2 * k + 1, 2 * k + 2] {
                if child < self.heap.len() && self.heap[child].0 < self.heap[least].0 {
                    least = child;
                }
            }
            if least == k {
                break;
            }
            self.swap(least, k);
            k = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Against a HashMap, with few distinct hashes so that probe
        /// chains collide, wrap around and get holes shifted into.
        #[test]
        fn table_finds_what_was_inserted(ops in proptest::collection::vec((0usize..24, any::<bool>(), 0u32..6), 1..400)) {
            let mut table = Table::new(24);
            let mut model: HashMap<usize, u32> = HashMap::new();
            for (slot, insert, hash) in ops {
                let hash = hash.wrapping_mul(0x3fff_ffff) | (slot as u32 & 1);
                match (insert, model.get(&slot).copied()) {
                    (true, None) => { table.insert(hash, slot); model.insert(slot, hash); }
                    (false, Some(h)) => { table.remove(h, slot); model.remove(&slot); }
                    _ => {}
                }
                for s in 0..24 {
                    let found = model.get(&s).and_then(|&h| table.find(h, |x| x == s));
                    prop_assert_eq!(found.is_some(), model.contains_key(&s));
                }
            }
        }

        #[test]
        fn deadlines_come_out_in_order(ops in proptest::collection::vec((0usize..16, proptest::option::of(0u64..50)), 1..300)) {
            let mut d = Deadlines::new(16);
            let mut model: HashMap<usize, u64> = HashMap::new();
            for (slot, at) in ops {
                match at {
                    Some(at) => { d.set(slot, at); model.insert(slot, at); }
                    None => { d.clear(slot); model.remove(&slot); }
                }
                prop_assert_eq!(d.first().map(|(at, _)| at), model.values().min().copied());
                if let Some((at, slot)) = d.first() {
                    prop_assert_eq!(model.get(&slot), Some(&at));
                }
            }
        }
    }
}
