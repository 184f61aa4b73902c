//! Pure membership diff and the in-place-versus-swap decision. No I/O, so it is unit-tested and
//! benchmarked on its own.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

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

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MemberDiff {
    pub add: Vec<Member>,
    pub del: Vec<Member>,
}

/// What to add to and delete from `current` so that it equals `desired`, each sorted so that the
/// kernel sees a stable order (and tests can compare).
pub fn diff_members(current: &MemberSet, desired: &MemberSet) -> MemberDiff {
    let mut add: Vec<Member> = desired.difference(current).copied().collect();
    let mut del: Vec<Member> = current.difference(desired).copied().collect();
    add.sort_unstable();
    del.sort_unstable();
    MemberDiff { add, del }
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
        assert_eq!(d, MemberDiff::default());
    }

    #[test]
    fn swap_only_for_large_relative_changes() {
        assert!(!prefer_swap(100_000, 100_000, 2_000));
        assert!(prefer_swap(100_000, 100_000, 200_000));
        assert!(prefer_swap(0, 100_000, 100_000));
        assert!(!prefer_swap(10, 20, 30), "tiny sets are changed in place");
    }
}
