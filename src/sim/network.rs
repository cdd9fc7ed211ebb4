//! The virtual network: who can reach whom, and with what loss, duplication and delay.
//! Reordering falls out of independent random delays.

use crate::protocol::ClientId;
use rand::Rng;
use std::collections::BTreeSet;

/// A place messages go: a node slot (twins are two slots with one node id) or a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Slot(usize),
    Client(ClientId),
}

#[derive(Clone, Debug)]
pub struct Network {
    /// Partition group of each slot; `None` when healed. Clients reach every group.
    groups: Option<Vec<usize>>,
    /// Directed links cut by a scenario: (from slot, to slot, message kind or all).
    blocked: BTreeSet<(usize, usize, Option<&'static str>)>,
    pub drop: f64,
    pub duplicate: f64,
    /// Delivery delay range in ms, inclusive.
    pub delay: (u64, u64),
}

impl Network {
    pub fn new() -> Network {
        Network {
            groups: None,
            blocked: BTreeSet::new(),
            drop: 0.0,
            duplicate: 0.0,
            delay: (1, 5),
        }
    }

    pub fn partition(&mut self, slots: usize, sides: &[Vec<usize>]) {
        // Slots not named form a group of their own.
        let mut groups = vec![usize::MAX; slots];
        for (g, side) in sides.iter().enumerate() {
            for &s in side {
                if s < slots {
                    groups[s] = g;
                }
            }
        }
        self.groups = Some(groups);
    }

    /// Heals partitions and blocked links, and stops loss and duplication.
    pub fn heal(&mut self) {
        self.groups = None;
        self.blocked.clear();
        self.drop = 0.0;
        self.duplicate = 0.0;
        self.delay = (1, 5);
    }

    /// Cuts a directed link, for every message or for one kind only (a selective omission).
    pub fn block(&mut self, from: usize, to: usize, kind: Option<&'static str>) {
        self.blocked.insert((from, to, kind));
    }

    pub fn unblock(&mut self, from: usize, to: usize, kind: Option<&'static str>) {
        self.blocked.remove(&(from, to, kind));
    }

    pub fn is_partitioned(&self) -> bool {
        self.groups.is_some() || !self.blocked.is_empty()
    }

    fn connected(&self, from: Endpoint, to: Endpoint, kind: &'static str) -> bool {
        match (from, to) {
            (Endpoint::Slot(a), Endpoint::Slot(b)) => {
                let same = self.groups.as_ref().is_none_or(|g| g[a] == g[b]);
                same && !self.blocked.contains(&(a, b, None))
                    && !self.blocked.contains(&(a, b, Some(kind)))
            }
            _ => true,
        }
    }

    /// Delivery delays for one message: empty if lost, two if duplicated.
    pub fn plan(
        &self,
        rng: &mut impl Rng,
        from: Endpoint,
        to: Endpoint,
        kind: &'static str,
    ) -> Vec<u64> {
        if !self.connected(from, to, kind) || rng.gen_bool(self.drop) {
            return vec![];
        }
        let mut delays = vec![rng.gen_range(self.delay.0..=self.delay.1)];
        if rng.gen_bool(self.duplicate) {
            delays.push(rng.gen_range(self.delay.0..=self.delay.1.max(self.delay.0) * 2));
        }
        delays
    }
}

impl Default for Network {
    fn default() -> Self {
        Network::new()
    }
}
