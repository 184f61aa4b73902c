//! The list a set was last synced to, kept as it came (packed bytes) and cut into content-defined
//! chunks, so that the next full sync finds what changed without decoding or looking up what did not.
//!
//! A chunk ends after a record whose hash has its top six bits clear (one record in 64 on average),
//! so where chunks end depends only on the records around them: removing or adding members changes
//! the chunks that hold the change and no other, wherever it sits in the list. A new list is cut the
//! same way; chunks whose bytes equal a chunk of the last list are the same members and are skipped;
//! only the others are decoded. The cheap pass is one scan of the bytes with a multiply per record.
//!
//! The comparison is exact (bytes, not hashes). A list may hold a member more than once: those
//! members' counts are kept (`dups`), so that a member is gone only when its last copy is.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::ops::Range;

use super::diff::{FastHasher, MemberSet};
use super::member::Member;
use super::packed::{REC_TEXT, REC_V4_HOST, REC_V4_NET};

/// A chunk also ends after this many records, so that no list degrades into one huge chunk.
const MAX_CHUNK_RECORDS: usize = 1024;
/// Adds and deletes made between full syncs are remembered up to this many, or a quarter of the
/// list when that is more; beyond that the next full sync simply does the full diff.
const MAX_OVERLAY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub hash: u64,
    pub start: u32,
    pub end: u32,
    pub records: u32,
}

impl Chunk {
    pub fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

fn record_len(b: &[u8], at: usize) -> Option<usize> {
    let n = match *b.get(at)? {
        REC_V4_HOST => 5,
        REC_V4_NET => 6,
        REC_TEXT => 2 + *b.get(at + 1)? as usize,
        _ => return None,
    };
    (at + n <= b.len()).then_some(n)
}

fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

fn record_hash(rec: &[u8]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for part in rec.chunks(8) {
        let mut w = [0u8; 8];
        w[..part.len()].copy_from_slice(part);
        h = mix(h, u64::from_le_bytes(w));
    }
    h ^ (h >> 29)
}

/// The hash of an IPv4 address record, read as one word (the common record: this is most of a scan).
fn v4_host_hash(b: &[u8]) -> u64 {
    let word = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as u64 | (REC_V4_HOST as u64) << 32;
    let h = word.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// Cuts a packed list into chunks; `None` if it is not a well-formed list (the full path then
/// reports what is wrong).
pub fn cut(bytes: &[u8]) -> Option<Vec<Chunk>> {
    let mut chunks = Vec::with_capacity(bytes.len() / 256 + 1);
    let (mut at, mut start, mut records, mut hash) = (0usize, 0usize, 0u32, 0u64);
    while at < bytes.len() {
        // Every record of a kind is hashed the same way, so both lists cut alike.
        let (n, h) = match bytes.get(at..at + 5) {
            Some(r) if r[0] == REC_V4_HOST => (5, v4_host_hash(r)),
            _ => {
                let n = record_len(bytes, at)?;
                (n, record_hash(&bytes[at..at + n]))
            }
        };
        hash = mix(hash, h);
        records += 1;
        at += n;
        if h >> 58 == 0 || records as usize >= MAX_CHUNK_RECORDS || at == bytes.len() {
            chunks.push(Chunk { hash, start: start as u32, end: at as u32, records });
            (start, records, hash) = (at, 0, 0);
        }
    }
    Some(chunks)
}

/// Counts of members.
pub type Counts = HashMap<Member, u32, BuildHasherDefault<FastHasher>>;

/// Which chunks of a new list have no equal in the last one, and which chunks of the last one were
/// not found again.
pub struct ChunkMatch {
    pub new_unmatched: Vec<usize>,
    pub old_unmatched: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct LastList {
    bytes: Vec<u8>,
    chunks: Vec<Chunk>,
    /// First chunk of each hash; `next_same` chains the others.
    by_hash: HashMap<u64, u32, BuildHasherDefault<FastHasher>>,
    next_same: Vec<u32>,
    /// Members the list holds more than once, with how many times (usually none).
    pub dups: Counts,
    /// Members the set holds beyond the list (added since), and members of the list it no longer
    /// holds (deleted since).
    pub added: MemberSet,
    pub removed: MemberSet,
    records: usize,
}

impl LastList {
    pub fn new(bytes: &[u8], chunks: Vec<Chunk>, dups: Counts) -> LastList {
        let mut by_hash: HashMap<u64, u32, BuildHasherDefault<FastHasher>> = HashMap::default();
        let mut next_same = vec![u32::MAX; chunks.len()];
        for (i, c) in chunks.iter().enumerate().rev() {
            if let Some(prev) = by_hash.insert(c.hash, i as u32) {
                next_same[i] = prev;
            }
        }
        let records = chunks.iter().map(|c| c.records as usize).sum();
        LastList {
            bytes: bytes.to_vec(),
            chunks,
            by_hash,
            next_same,
            dups,
            added: MemberSet::default(),
            removed: MemberSet::default(),
            records,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn chunk(&self, i: usize) -> &Chunk {
        &self.chunks[i]
    }

    /// Pairs each chunk of the new list with an equal, not yet paired chunk of this one.
    pub fn match_chunks(&self, bytes: &[u8], chunks: &[Chunk]) -> ChunkMatch {
        let mut used = vec![false; self.chunks.len()];
        let mut new_unmatched = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let mut j = self.by_hash.get(&c.hash).copied().unwrap_or(u32::MAX);
            let mut found = false;
            while j != u32::MAX {
                let old = &self.chunks[j as usize];
                if !used[j as usize] && self.bytes[old.range()] == bytes[c.range()] {
                    used[j as usize] = true;
                    found = true;
                    break;
                }
                j = self.next_same[j as usize];
            }
            if !found {
                new_unmatched.push(i);
            }
        }
        let old_unmatched = used.iter().enumerate().filter(|(_, u)| !**u).map(|(i, _)| i).collect();
        ChunkMatch { new_unmatched, old_unmatched }
    }

    /// Notes a member the set gained (`true`) or lost through add or delete since the last sync (a
    /// real change of membership only); false when so many have piled up that the overlay is not
    /// worth keeping.
    pub fn note(&mut self, m: Member, gained: bool) -> bool {
        // A member gained that the list lost before is the list's again, and the reverse; any other
        // gain is beyond the list, any other loss is of the list.
        let (grow, shrink) = if gained { (&mut self.added, &mut self.removed) } else { (&mut self.removed, &mut self.added) };
        if !shrink.remove(&m) {
            grow.insert(m);
        }
        self.added.len() + self.removed.len() <= MAX_OVERLAY.max(self.records / 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(ips: impl Iterator<Item = u32>) -> Vec<u8> {
        ips.flat_map(|i| [REC_V4_HOST, 10, (i >> 16) as u8, (i >> 8) as u8, i as u8]).collect()
    }

    #[test]
    fn chunks_cover_the_list_and_a_change_touches_only_its_own() {
        let a = pack(0..100_000);
        let ca = cut(&a).unwrap();
        assert_eq!(ca.first().unwrap().start, 0);
        assert_eq!(ca.last().unwrap().end as usize, a.len());
        assert!(ca.windows(2).all(|w| w[0].end == w[1].start));
        assert!((800..3000).contains(&ca.len()), "about one chunk per 64 records: {}", ca.len());
        // Drop the first 1,000 and append 1,000 new ones: only chunks near both ends differ.
        let b = pack((1_000..100_000).chain(500_000..501_000));
        let cb = cut(&b).unwrap();
        let last = LastList::new(&a, ca.clone(), Counts::default());
        let m = last.match_chunks(&b, &cb);
        let touched_new: u32 = m.new_unmatched.iter().map(|&i| cb[i].records).sum();
        let touched_old: u32 = m.old_unmatched.iter().map(|&i| ca[i].records).sum();
        assert!(touched_new < 3_500 && touched_old < 2_500, "{touched_new} new and {touched_old} old records touched");
        // The same list matches whole.
        let same = last.match_chunks(&a, &ca);
        assert!(same.new_unmatched.is_empty() && same.old_unmatched.is_empty());
    }

    #[test]
    fn equal_chunks_are_paired_once_each() {
        // A list that repeats itself: each repeated chunk pairs with one old chunk only.
        let half = pack(0..5_000);
        let twice: Vec<u8> = half.iter().chain(half.iter()).copied().collect();
        let last = LastList::new(&half, cut(&half).unwrap(), Counts::default());
        let ct = cut(&twice).unwrap();
        let m = last.match_chunks(&twice, &ct);
        assert!(m.old_unmatched.is_empty());
        assert!(!m.new_unmatched.is_empty());
        assert!(cut(&[REC_V4_HOST, 1, 2]).is_none(), "truncated");
    }
}
