//! Addresses and networks as interval-set elements, and the union of a set's members.
//!
//! An nf_tables interval set holds disjoint intervals, each as a start element and an end element
//! (the first address past it, flagged NFT_SET_ELEM_INTERVAL_END); the kernel refuses overlapping
//! intervals. A group's members may overlap (an allowed-pair network and a fixed IP inside it), so
//! the set holds the *maximal* members — those no other member contains — and `CidrUnion` keeps,
//! per change, which intervals enter and leave. Two networks are either disjoint or nested, so the
//! maximal members are disjoint. Members are counted: a set fed by several ports (the addresses of
//! stateless ports) keeps a network while one port still has it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network: its first address (host bits clear) and prefix length, in a 32- or 128-bit space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net {
    pub addr: u128,
    pub len: u8,
}

/// Address family of a set: 32 or 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    V4,
    V6,
}

impl Bits {
    pub fn width(self) -> u8 {
        match self {
            Bits::V4 => 32,
            Bits::V6 => 128,
        }
    }
    pub fn key_len(self) -> usize {
        (self.width() / 8) as usize
    }
}

fn mask(addr: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let full: u128 = if width == 128 { u128::MAX } else { (1u128 << width) - 1 };
    let host = if len >= width { 0 } else { (1u128 << (width - len)) - 1 };
    addr & full & !host
}

impl Net {
    /// Parses `a.b.c.d[/n]` or an IPv6 address with an optional prefix, in the given family; host
    /// bits are cleared. A /0 is refused: it is not a member (and would not fit an interval).
    pub fn parse(text: &str, bits: Bits) -> Result<Net, String> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("not an address: {text:?}"))?;
        let (raw, width) = match (addr, bits) {
            (IpAddr::V4(v), Bits::V4) => (u32::from(v) as u128, 32),
            (IpAddr::V6(v), Bits::V6) => (u128::from(v), 128),
            _ => return Err(format!("{text:?} is not of the set's family")),
        };
        let len = match p {
            Some(p) => p.parse::<u8>().ok().filter(|&n| n <= width).ok_or_else(|| format!("bad prefix in {text:?}"))?,
            None => width,
        };
        if len == 0 {
            return Err(format!("{text:?} covers every address: not a member"));
        }
        Ok(Net { addr: mask(raw, len, width), len })
    }

    fn contains(&self, other: &Net, width: u8) -> bool {
        self.len <= other.len && mask(other.addr, self.len, width) == self.addr
    }

    /// The key of the interval's start, network byte order.
    pub fn start_key(&self, bits: Bits) -> Vec<u8> {
        key_bytes(self.addr, bits)
    }

    /// The key of the first address past the interval, or None when it ends at the top of the space
    /// (the start alone then reaches to the end).
    pub fn end_key(&self, bits: Bits) -> Option<Vec<u8>> {
        let w = bits.width();
        let size = 1u128.checked_shl((w - self.len) as u32)?;
        let end = self.addr.checked_add(size)?;
        if w < 128 && end >= (1u128 << w) {
            return None;
        }
        Some(key_bytes(end, bits))
    }

    pub fn display(&self, bits: Bits) -> String {
        match bits {
            Bits::V4 => format!("{}/{}", Ipv4Addr::from(self.addr as u32), self.len),
            Bits::V6 => format!("{}/{}", Ipv6Addr::from(self.addr), self.len),
        }
    }
}

pub fn key_bytes(addr: u128, bits: Bits) -> Vec<u8> {
    match bits {
        Bits::V4 => (addr as u32).to_be_bytes().to_vec(),
        Bits::V6 => addr.to_be_bytes().to_vec(),
    }
}

/// Intervals to take out of and put into the kernel's set, in that order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Change {
    pub del: Vec<Net>,
    pub add: Vec<Net>,
}

/// The members of one set (counted) and, derived from them, the maximal ones the kernel holds.
#[derive(Debug, Clone)]
pub struct CidrUnion {
    pub bits: Bits,
    members: HashMap<Net, u32>,
    /// How many members have each prefix length: containment is only looked for at lengths in use.
    lens: BTreeMap<u8, usize>,
}

impl CidrUnion {
    pub fn new(bits: Bits) -> Self {
        CidrUnion { bits, members: HashMap::new(), lens: BTreeMap::new() }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether a member other than `except` contains `n`.
    fn covered(&self, n: &Net, except: Option<&Net>) -> bool {
        let w = self.bits.width();
        self.lens.range(..n.len).any(|(&l, _)| {
            let anc = Net { addr: mask(n.addr, l, w), len: l };
            Some(&anc) != except && self.members.contains_key(&anc)
        })
    }

    /// Members strictly inside `n` (a scan, done only when longer prefixes than n's exist).
    fn inside(&self, n: &Net) -> Vec<Net> {
        let w = self.bits.width();
        if self.lens.range(n.len + 1..).next().is_none() {
            return Vec::new();
        }
        self.members.keys().filter(|m| m.len > n.len && n.contains(m, w)).copied().collect()
    }

    pub fn add(&mut self, n: Net) -> Change {
        if let Some(c) = self.members.get_mut(&n) {
            *c += 1;
            return Change::default();
        }
        self.members.insert(n, 1);
        *self.lens.entry(n.len).or_insert(0) += 1;
        if self.covered(&n, None) {
            return Change::default();
        }
        // Members inside n that were maximal until now leave the kernel's set.
        let del = self.inside(&n).into_iter().filter(|m| !self.covered(m, Some(&n))).collect();
        Change { del, add: vec![n] }
    }

    pub fn remove(&mut self, n: Net) -> Change {
        match self.members.get_mut(&n) {
            None => return Change::default(),
            Some(c) if *c > 1 => {
                *c -= 1;
                return Change::default();
            }
            Some(_) => {}
        }
        self.members.remove(&n);
        if let Some(c) = self.lens.get_mut(&n.len) {
            *c -= 1;
            if *c == 0 {
                self.lens.remove(&n.len);
            }
        }
        if self.covered(&n, None) {
            return Change::default();
        }
        let add = self.inside(&n).into_iter().filter(|m| !self.covered(m, None)).collect();
        Change { del: vec![n], add }
    }

    /// Every member (each once, whatever its count).
    pub fn members(&self) -> impl Iterator<Item = (&Net, u32)> {
        self.members.iter().map(|(n, c)| (n, *c))
    }

    /// The intervals the kernel's set holds.
    pub fn maximal(&self) -> Vec<Net> {
        let mut v: Vec<Net> = self.members.keys().filter(|m| !self.covered(m, None)).copied().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Net {
        Net::parse(s, if s.contains(':') { Bits::V6 } else { Bits::V4 }).unwrap()
    }

    #[test]
    fn parsing_clears_host_bits_and_refuses_what_is_not_a_member() {
        assert_eq!(n("10.1.2.3/24"), Net { addr: 0x0a01_0200, len: 24 });
        assert_eq!(n("10.1.2.3"), Net { addr: 0x0a01_0203, len: 32 });
        assert_eq!(n("fd00::1/64").len, 64);
        assert!(Net::parse("0.0.0.0/0", Bits::V4).is_err());
        assert!(Net::parse("10.0.0.1", Bits::V6).is_err());
        assert!(Net::parse("10.0.0.1/33", Bits::V4).is_err());
    }

    #[test]
    fn interval_keys_end_one_past_the_network() {
        assert_eq!(n("10.0.0.0/24").start_key(Bits::V4), vec![10, 0, 0, 0]);
        assert_eq!(n("10.0.0.0/24").end_key(Bits::V4), Some(vec![10, 0, 1, 0]));
        assert_eq!(n("10.0.0.7").end_key(Bits::V4), Some(vec![10, 0, 0, 8]));
        assert_eq!(n("255.255.255.255").end_key(Bits::V4), None, "ends at the top: no end element");
        assert_eq!(n("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120").end_key(Bits::V6), None);
        assert_eq!(n("fd00::/127").end_key(Bits::V6).unwrap()[15], 2);
    }

    #[test]
    fn only_maximal_members_reach_the_kernel() {
        let mut u = CidrUnion::new(Bits::V4);
        assert_eq!(u.add(n("10.0.0.5")), Change { del: vec![], add: vec![n("10.0.0.5")] });
        assert_eq!(u.add(n("10.0.0.9")).add, vec![n("10.0.0.9")]);
        // A network covering both replaces them.
        let c = u.add(n("10.0.0.0/24"));
        assert_eq!(c.add, vec![n("10.0.0.0/24")]);
        let mut del = c.del.clone();
        del.sort();
        assert_eq!(del, vec![n("10.0.0.5"), n("10.0.0.9")]);
        // A host inside it changes nothing in the kernel.
        assert_eq!(u.add(n("10.0.0.7")), Change::default());
        assert_eq!(u.remove(n("10.0.0.7")), Change::default());
        // The network leaves: the hosts inside come back.
        let c = u.remove(n("10.0.0.0/24"));
        assert_eq!(c.del, vec![n("10.0.0.0/24")]);
        let mut add = c.add.clone();
        add.sort();
        assert_eq!(add, vec![n("10.0.0.5"), n("10.0.0.9")]);
        assert_eq!(u.maximal(), vec![n("10.0.0.5"), n("10.0.0.9")]);
    }

    #[test]
    fn nested_networks_hand_over_to_the_next_outer_one() {
        let mut u = CidrUnion::new(Bits::V4);
        u.add(n("10.0.0.0/8"));
        assert_eq!(u.add(n("10.1.0.0/16")), Change::default());
        assert_eq!(u.add(n("10.1.2.3")), Change::default());
        // /8 goes: the /16 is maximal now, the host stays inside it.
        assert_eq!(u.remove(n("10.0.0.0/8")), Change { del: vec![n("10.0.0.0/8")], add: vec![n("10.1.0.0/16")] });
        assert_eq!(u.maximal(), vec![n("10.1.0.0/16")]);
    }

    #[test]
    fn counted_members_stay_while_someone_holds_them() {
        let mut u = CidrUnion::new(Bits::V6);
        assert_eq!(u.add(n("fd00::1")).add.len(), 1);
        assert_eq!(u.add(n("fd00::1")), Change::default());
        assert_eq!(u.remove(n("fd00::1")), Change::default());
        assert_eq!(u.remove(n("fd00::1")).del, vec![n("fd00::1")]);
        assert!(u.is_empty());
        assert_eq!(u.remove(n("fd00::1")), Change::default(), "removing what is not there changes nothing");
    }
}
