//! Deleting conntrack entries through ctnetlink (NFNL_SUBSYS_CTNETLINK), so that a connection a
//! removed rule or a departed group member had admitted is cut instead of living on in the
//! connection table (Neutron bug 1580377), without forking the `conntrack` tool per entry.
//!
//! The kernel can only delete by exact tuple, so we dump the family's table, pick the entries whose
//! original direction runs between the given address pairs (either way round), and delete each by the
//! tuple (and zone) it was dumped with, all deletes in one batched send. An entry with one of the
//! namespace's own addresses at an end (`local`) is the host's own connection and is never cut.

mod link_watch;
mod links;
mod local;
mod rtnl;

pub use link_watch::LinkWatch;
pub use links::{links, Link};
pub use local::local_addresses;

use std::net::IpAddr;
use std::path::Path;

use netlink_packet_core::{DecodeError, Nla, NlaBuffer, NlasIterator, NLA_F_NESTED};

use crate::error::{SysCode, SysError};
use crate::netlink::{request, NfGenMsg, NfnlPayload, NfnlSocket, NFNL_SUBSYS_CTNETLINK};

const IPCTNL_MSG_CT_GET: u8 = 1;
const IPCTNL_MSG_CT_DELETE: u8 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// An attribute kept as raw bytes: entries are deleted with exactly the tuple the kernel dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttr {
    pub kind: u16,
    pub value: Vec<u8>,
}

impl Nla for RawAttr {
    fn value_len(&self) -> usize {
        self.value.len()
    }
    fn kind(&self) -> u16 {
        self.kind
    }
    fn emit_value(&self, buf: &mut [u8]) {
        buf[..self.value.len()].copy_from_slice(&self.value)
    }
}

fn parse_raw(buf: &[u8]) -> Result<Vec<RawAttr>, DecodeError> {
    NlasIterator::new(buf)
        .map(|n| {
            let n: NlaBuffer<&[u8]> = n?;
            let nested = if n.nested_flag() { NLA_F_NESTED } else { 0 };
            Ok(RawAttr { kind: n.kind() | nested, value: n.value().to_vec() })
        })
        .collect()
}

/// A ctnetlink payload: command and attributes as raw bytes (the nfgenmsg header is the
/// `NfnlMessage`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtMessage {
    pub cmd: u8,
    pub attrs: Vec<RawAttr>,
}

impl NfnlPayload for CtMessage {
    const SUBSYS: u8 = NFNL_SUBSYS_CTNETLINK;
    type Attr = RawAttr;
    fn command(&self) -> u8 {
        self.cmd
    }
    fn attrs(&self) -> &[RawAttr] {
        &self.attrs
    }
    fn parse_payload(cmd: u8, buf: &[u8]) -> Result<Self, DecodeError> {
        Ok(CtMessage { cmd, attrs: parse_raw(buf)? })
    }
}

/// An address range: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|&n| n <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix as u32) };
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix as u32) };
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

/// Entries between `a` and `b`, in either direction, are to go: in conntrack zone `zone` only, or
/// in every zone when it is None.
#[derive(Debug, Clone, Copy)]
pub struct Between {
    pub a: Cidr,
    pub b: Cidr,
    pub zone: Option<u16>,
}

fn tuple_addrs(tuple: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let attrs = parse_raw(tuple).ok()?;
    let ip = attrs.iter().find(|a| a.kind & !NLA_F_NESTED == CTA_TUPLE_IP)?;
    let mut src = None;
    let mut dst = None;
    for a in parse_raw(&ip.value).ok()? {
        let v = &a.value;
        match a.kind {
            CTA_IP_V4_SRC if v.len() == 4 => src = Some(IpAddr::from([v[0], v[1], v[2], v[3]])),
            CTA_IP_V4_DST if v.len() == 4 => dst = Some(IpAddr::from([v[0], v[1], v[2], v[3]])),
            CTA_IP_V6_SRC if v.len() == 16 => src = Some(IpAddr::from(<[u8; 16]>::try_from(&v[..]).ok()?)),
            CTA_IP_V6_DST if v.len() == 16 => dst = Some(IpAddr::from(<[u8; 16]>::try_from(&v[..]).ok()?)),
            _ => {}
        }
    }
    Some((src?, dst?))
}

/// Whether any end of an entry's tuples (original and reply: a NATed connection's reply ends at the
/// host's address) is one of the namespace's own addresses.
pub fn touches(own: &[IpAddr], ends: &[(IpAddr, IpAddr)]) -> bool {
    ends.iter().any(|(a, b)| own.contains(a) || own.contains(b))
}

/// Whether a connection from `src` to `dst`, tracked in `zone`, runs between one of the pairs.
pub fn matches(pairs: &[Between], src: IpAddr, dst: IpAddr, zone: u16) -> bool {
    pairs
        .iter()
        .any(|p| p.zone.is_none_or(|z| z == zone) && ((p.a.contains(src) && p.b.contains(dst)) || (p.b.contains(src) && p.a.contains(dst))))
}

/// An entry's zone: its CTA_ZONE (big endian), absent for the default zone 0.
fn zone_of(zone: Option<&RawAttr>) -> u16 {
    zone.and_then(|z| z.value.get(..2)).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

/// Deletes the entries between the pairs in the namespace at `netns`; returns how many went.
pub fn delete_between(netns: Option<&Path>, pairs: &[Between]) -> Result<usize, SysError> {
    if pairs.is_empty() {
        return Ok(0);
    }
    let failed = |e: std::io::Error| SysError::from_io(SysCode::ConntrackFailed, &e);
    let refused = |errno: i32| SysError {
        code: SysCode::ConntrackFailed,
        errno: Some(errno),
        message: format!("ctnetlink: {}", std::io::Error::from_raw_os_error(errno)),
    };
    let mut sock = NfnlSocket::open(netns).map_err(failed)?;
    // Read before the dump: an address added meanwhile can only be a later connection's.
    let own = local_addresses(netns).map_err(failed)?;
    let mut deleted = 0;
    for family in [AF_INET, AF_INET6] {
        let wanted: Vec<Between> = pairs.iter().copied().filter(|p| p.a.addr.is_ipv4() == (family == AF_INET)).collect();
        if wanted.is_empty() {
            continue;
        }
        let dump = CtMessage { cmd: IPCTNL_MSG_CT_GET, attrs: vec![] };
        let entries = sock.dump(request(NfGenMsg::new(family), dump, 0)).map_err(failed)?.map_err(|e| refused(e.errno))?;
        let mut deletes = Vec::new();
        for e in entries.iter().filter_map(|m| m.ctnetlink()) {
            let Some(orig) = e.attrs.iter().find(|a| a.kind & !NLA_F_NESTED == CTA_TUPLE_ORIG) else { continue };
            let Some((src, dst)) = tuple_addrs(&orig.value) else { continue };
            let zone = e.attrs.iter().find(|a| a.kind & !NLA_F_NESTED == CTA_ZONE);
            if !matches(&wanted, src, dst, zone_of(zone)) {
                continue;
            }
            let reply = e.attrs.iter().find(|a| a.kind & !NLA_F_NESTED == CTA_TUPLE_REPLY).and_then(|r| tuple_addrs(&r.value));
            if touches(&own, &[(src, dst)]) || reply.is_some_and(|r| touches(&own, &[r])) {
                continue;
            }
            let mut attrs = vec![orig.clone()];
            if let Some(zone) = zone {
                attrs.push(zone.clone());
            }
            deletes.push(request(NfGenMsg::new(family), CtMessage { cmd: IPCTNL_MSG_CT_DELETE, attrs }, 0));
        }
        for o in sock.transact(deletes).map_err(failed)? {
            // ENOENT: the entry ended by itself between dump and delete; that is what we wanted.
            match o.result {
                Ok(()) => deleted += 1,
                Err(e) if e.errno == libc::ENOENT => {}
                Err(e) => return Err(refused(e.errno)),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_request_encodes_as_the_kernel_expects() {
        // IPCTNL_MSG_CT_DELETE (2) of NFNL_SUBSYS_CTNETLINK (1), AF_INET, one CTA_ZONE (18) attribute
        // holding a big-endian u16 zone 7 (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
        use crate::netlink::NfnlMessage;
        use netlink_packet_core::NetlinkSerializable;
        let zone = RawAttr { kind: CTA_ZONE, value: vec![0, 7] };
        let m = NfnlMessage::new(NfGenMsg::new(AF_INET), CtMessage { cmd: IPCTNL_MSG_CT_DELETE, attrs: vec![zone] }.into());
        assert_eq!(m.message_type(), 0x0102);
        let mut b = vec![0u8; m.buffer_len()];
        m.serialize(&mut b);
        assert_eq!(b, [2, 0, 0, 0, 6, 0, 18, 0, 0, 7, 0, 0]);
    }

    #[test]
    fn tuple_addresses_from_kernel_bytes() {
        // CTA_TUPLE_ORIG value: CTA_TUPLE_IP{V4_SRC 10.0.0.1, V4_DST 10.0.0.2}, CTA_TUPLE_PROTO{NUM 6}
        let tuple = [
            20, 0, 0x01, 0x80, 8, 0, 1, 0, 10, 0, 0, 1, 8, 0, 2, 0, 10, 0, 0, 2, // CTA_TUPLE_IP
            12, 0, 0x02, 0x80, 5, 0, 1, 0, 6, 0, 0, 0, // CTA_TUPLE_PROTO { CTA_PROTO_NUM 6 }
        ];
        let (s, d) = tuple_addrs(&tuple).unwrap();
        assert_eq!(s.to_string(), "10.0.0.1");
        assert_eq!(d.to_string(), "10.0.0.2");
    }

    #[test]
    fn pairs_match_either_direction_and_cidrs() {
        let p = [Between { a: Cidr::parse("10.0.0.1").unwrap(), b: Cidr::parse("192.168.0.0/16").unwrap(), zone: None }];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(matches(&p, ip("10.0.0.1"), ip("192.168.3.4"), 0));
        assert!(matches(&p, ip("192.168.3.4"), ip("10.0.0.1"), 7), "no zone given: every zone");
        assert!(!matches(&p, ip("10.0.0.2"), ip("192.168.3.4"), 0));
        assert!(!matches(&p, ip("10.0.0.1"), ip("172.16.0.1"), 0));
        assert!(Cidr::parse("10.0.0.1/33").is_none());
        let zoned = [Between { zone: Some(7), ..p[0] }];
        assert!(matches(&zoned, ip("10.0.0.1"), ip("192.168.3.4"), 7));
        assert!(!matches(&zoned, ip("10.0.0.1"), ip("192.168.3.4"), 0), "another zone's entry is another network's");
        assert_eq!(zone_of(Some(&RawAttr { kind: CTA_ZONE, value: vec![1, 2] })), 0x0102);
        assert_eq!(zone_of(None), 0);
    }
}
