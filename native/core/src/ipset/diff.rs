//! Pure membership diff and the in-place-versus-swap decision. No I/O, so it is unit-tested and
//! benchmarked on its own.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::member::Member;

/// SipHash (std's default) was a third of the cost of a 100k-member sync. Members are fixed-size
/// addresses, so a multiply-rotate hash with a full avalanche at the end (murmur3's fmix64) is enough;
/// without that finish, hashbrown's bucket index (the low bits) saw only the low bits of each
/// address and 100k members collided badly.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub type MemberSet = HashSet<Member, BuildHasherDefault<FastHasher>>;
type Fast = BuildHasherDefault<FastHasher>;

/// A member as a hash key: IPv4 members fit one word (address and prefix), which halves a full
/// sync's lookups against keying by `Member` (measured: 0.5 ms against 1.1 ms for 100k).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct V6Key(u128, u8);

fn v4_key(a: Ipv4Addr, prefix: u8) -> u64 {
    ((u32::from(a) as u64) << 8) | prefix as u64
}
fn v4_member(k: u64) -> Member {
    Member { addr: IpAddr::V4(Ipv4Addr::from((k >> 8) as u32)), prefix: k as u8 }
}
fn v6_member(k: &V6Key) -> Member {
    Member { addr: IpAddr::V6(Ipv6Addr::from(k.0)), prefix: k.1 }
}

/// The members of a set, each with the mark of the last diff that saw it in a desired list.
///
/// This is what makes a full sync O(change) beyond one pass over its input: the desired list is
/// looked up member by member (no set is built from it), seen members are marked, and only when
/// fewer members were seen than the set holds is it swept for the unmarked ones. Applying the
/// result then costs O(change) too (`apply`), so the set kept here is always the last list synced.
#[derive(Debug, Clone, Default)]
pub struct MarkedSet {
    v4: HashMap<u64, u32, Fast>,
    v6: HashMap<V6Key, u32, Fast>,
    epoch: u32,
}

impl MarkedSet {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The member's mark, if it is in the set.
    fn mark(&mut self, m: &Member) -> Option<&mut u32> {
        match m.addr {
            IpAddr::V4(a) => self.v4.get_mut(&v4_key(a, m.prefix)),
            IpAddr::V6(a) => self.v6.get_mut(&V6Key(u128::from(a), m.prefix)),
        }
    }
    pub fn contains(&self, m: &Member) -> bool {
        match m.addr {
            IpAddr::V4(a) => self.v4.contains_key(&v4_key(a, m.prefix)),
            IpAddr::V6(a) => self.v6.contains_key(&V6Key(u128::from(a), m.prefix)),
        }
    }
    pub fn insert(&mut self, m: Member) {
        match m.addr {
            IpAddr::V4(a) => self.v4.insert(v4_key(a, m.prefix), self.epoch),
            IpAddr::V6(a) => self.v6.insert(V6Key(u128::from(a), m.prefix), self.epoch),
        };
    }
    pub fn remove(&mut self, m: &Member) {
        match m.addr {
            IpAddr::V4(a) => self.v4.remove(&v4_key(a, m.prefix)),
            IpAddr::V6(a) => self.v6.remove(&V6Key(u128::from(a), m.prefix)),
        };
    }
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }
    pub fn iter(&self) -> impl Iterator<Item = Member> + '_ {
        self.v4.keys().map(|k| v4_member(*k)).chain(self.v6.keys().map(v6_member))
    }
    /// Members in a stable order (for output and tests).
    pub fn sorted(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self.iter().collect();
        v.sort_unstable();
        v
    }

    /// What to add and delete so that the set equals `desired` (which may hold duplicates), in one
    /// pass over `desired`.
    pub fn diff_to(&mut self, desired: &[Member]) -> MemberDiff {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Four billion diffs later: old marks could be mistaken for fresh ones.
            self.v4.values_mut().for_each(|e| *e = 0);
            self.v6.values_mut().for_each(|e| *e = 0);
            self.epoch = 1;
        }
        let epoch = self.epoch;
        let mut kept = 0usize;
        let mut add = Vec::new();
        let mut new_seen = MemberSet::default();
        for m in desired {
            match self.mark(m) {
                Some(e) if *e != epoch => {
                    *e = epoch;
                    kept += 1;
                }
                Some(_) => {}
                None => {
                    if new_seen.insert(*m) {
                        add.push(*m);
                    }
                }
            }
        }
        let mut del: Vec<Member> = if kept == self.len() {
            Vec::new()
        } else {
            // Only the unmarked become members again; the sweep itself reads marks only.
            let v4 = self.v4.iter().filter(|(_, e)| **e != epoch).map(|(k, _)| v4_member(*k));
            let v6 = self.v6.iter().filter(|(_, e)| **e != epoch).map(|(k, _)| v6_member(k));
            v4.chain(v6).collect()
        };
        add.sort_unstable();
        del.sort_unstable();
        MemberDiff { distinct: kept + add.len(), add, del }
    }

    /// Applies a change the kernel acknowledged.
    pub fn apply(&mut self, add: &[Member], del: &[Member]) {
        for m in del {
            self.remove(m);
        }
        for m in add {
            self.insert(*m);
        }
    }
}

impl FromIterator<Member> for MarkedSet {
    fn from_iter<I: IntoIterator<Item = Member>>(iter: I) -> Self {
        let mut s = MarkedSet::default();
        for m in iter {
            s.insert(m);
        }
        s
    }
}

impl PartialEq for MarkedSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|m| other.contains(&m))
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MemberDiff {
    pub add: Vec<Member>,
    pub del: Vec<Member>,
    /// How many different members the desired side holds.
    pub distinct: usize,
}

impl MemberDiff {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.del.is_empty()
    }
    pub fn changes(&self) -> usize {
        self.add.len() + self.del.len()
    }
}

/// What to add to and delete from `current` so that it equals `desired`, each sorted so that the
/// kernel sees a stable order (and tests can compare).
pub fn diff_members(current: &MemberSet, desired: &MemberSet) -> MemberDiff {
    let mut add: Vec<Member> = desired.difference(current).copied().collect();
    let mut del: Vec<Member> = current.difference(desired).copied().collect();
    add.sort_unstable();
    del.sort_unstable();
    MemberDiff { add, del, distinct: desired.len() }
}

/// Changes at least this large, relative to the set's new size, are built in a temp set and swapped
/// in. In-place work costs one kernel operation per changed member; a swap costs one insert per
/// member of the new set plus freeing the old one. Measured with `npm run bench:native`
/// (native.threshold.*, bench/RESULTS.md): on a 100k-member set in place was faster up to a change of
/// 75% of the set (55 ms vs 63 ms) and slower at 100% (71 ms vs 63 ms); below a few hundred members
/// the swap's fixed cost (create, swap, destroy) dominates.
pub const SWAP_CHANGE_RATIO: f64 = 0.9;
pub const SWAP_MIN_MEMBERS: usize = 256;

pub fn prefer_swap(current_len: usize, desired_len: usize, changes: usize) -> bool {
    let base = desired_len.max(current_len);
    base >= SWAP_MIN_MEMBERS && changes as f64 >= SWAP_CHANGE_RATIO * desired_len.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> MemberSet {
        items.iter().map(|s| Member::parse(s).unwrap()).collect()
    }

    #[test]
    fn diff_adds_and_deletes() {
        let d = diff_members(&set(&["10.0.0.1", "10.0.0.2", "10.1.0.0/16"]), &set(&["10.0.0.2", "10.0.0.3", "10.1.0.0/16"]));
        assert_eq!(d.add, vec![Member::parse("10.0.0.3").unwrap()]);
        assert_eq!(d.del, vec![Member::parse("10.0.0.1").unwrap()]);
    }

    #[test]
    fn a_host_and_its_slash32_are_the_same_member() {
        let d = diff_members(&set(&["10.0.0.1"]), &set(&["10.0.0.1/32"]));
        assert!(d.is_empty());
    }

    #[test]
    fn marked_diff_agrees_with_the_set_diff_and_handles_duplicates() {
        let current: Vec<Member> = ["10.0.0.1", "10.0.0.2", "10.1.0.0/16"].iter().map(|s| Member::parse(s).unwrap()).collect();
        let mut marked: MarkedSet = current.iter().copied().collect();
        let desired: Vec<Member> =
            ["10.0.0.2", "10.0.0.3", "10.0.0.3", "10.1.0.0/16", "10.0.0.2"].iter().map(|s| Member::parse(s).unwrap()).collect();
        let d = marked.diff_to(&desired);
        let expect = diff_members(&current.iter().copied().collect(), &desired.iter().copied().collect());
        assert_eq!((&d.add, &d.del), (&expect.add, &expect.del));
        assert_eq!(d.distinct, 3);
        // The marks of one diff do not leak into the next.
        let again = marked.diff_to(&current);
        assert!(again.is_empty(), "{again:?}");
        marked.apply(&d.add, &d.del);
        assert_eq!(marked, desired.iter().copied().collect());
        assert!(marked.diff_to(&desired).is_empty());
        assert_eq!(marked.diff_to(&[]).del.len(), 3);
    }

    #[test]
    fn swap_only_for_large_relative_changes() {
        assert!(!prefer_swap(100_000, 100_000, 2_000));
        assert!(prefer_swap(100_000, 100_000, 200_000));
        assert!(prefer_swap(0, 100_000, 100_000));
        assert!(!prefer_swap(10, 20, 30), "tiny sets are changed in place");
    }
}
