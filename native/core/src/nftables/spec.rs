//! What a caller asks of nf_tables, in words of the firewall (the JSON the TypeScript backend sends):
//! operations on tables, chains, rules, sets and elements, and each rule as a list of statements
//! (`ip saddr in set`, `th dport 80-90`, `ct state established,related`, `return`…). This module
//! turns a statement into the kernel's expressions the way nft's own userspace does (payload loads,
//! masks, comparisons, lookups, verdicts), so a rule reads back in `nft list ruleset` as written.
//! Pure: no I/O. Which rules a port gets is the business of the TypeScript side.

use serde::Deserialize;

use super::cidr::{Bits, Net};
use super::constants::*;
use super::expr::{Counts, Data, Expr, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Inet,
    Bridge,
}

impl Family {
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => NFPROTO_INET,
            Family::Bridge => NFPROTO_BRIDGE,
        }
    }
    pub fn from_nfproto(v: u8) -> Option<Family> {
        match v {
            NFPROTO_INET => Some(Family::Inet),
            NFPROTO_BRIDGE => Some(Family::Bridge),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum HookName {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl HookName {
    pub fn num(self) -> u32 {
        match self {
            HookName::Prerouting => NF_INET_PRE_ROUTING,
            HookName::Input => NF_INET_LOCAL_IN,
            HookName::Forward => NF_INET_FORWARD,
            HookName::Output => NF_INET_LOCAL_OUT,
            HookName::Postrouting => NF_INET_POST_ROUTING,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HookSpec {
    pub hook: HookName,
    pub priority: i32,
}

/// What a set's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// IPv4 networks (an interval set).
    Ipv4,
    /// IPv6 networks (an interval set).
    Ipv6,
    Mark,
    Ifname,
    /// An ICMPv6 type (one byte).
    Icmp6Type,
    /// A conntrack state bit (host byte order, as `ct state` loads it).
    CtState,
    /// A MAC address (six bytes).
    Ether,
}

impl KeyType {
    /// How many bytes a key of this type is.
    pub fn key_len(self) -> u32 {
        match self {
            KeyType::Ipv4 | KeyType::Mark => 4,
            KeyType::Ipv6 | KeyType::Ifname => 16,
            KeyType::Icmp6Type => 1,
            KeyType::CtState => 4,
            KeyType::Ether => 6,
        }
    }
    pub fn nft_type(self) -> u32 {
        match self {
            KeyType::Ipv4 => TYPE_IPADDR,
            KeyType::Ipv6 => TYPE_IP6ADDR,
            KeyType::Mark => TYPE_MARK,
            KeyType::Ifname => TYPE_IFNAME,
            KeyType::Icmp6Type => TYPE_ICMP6_TYPE,
            KeyType::CtState => TYPE_CT_STATE,
            KeyType::Ether => TYPE_ETHERADDR,
        }
    }
    pub fn interval(self) -> bool {
        matches!(self, KeyType::Ipv4 | KeyType::Ipv6)
    }
    /// Keys in network byte order (as the packet holds them), not host order (a mark, a state bit).
    pub fn big_endian(self) -> bool {
        matches!(self, KeyType::Ipv4 | KeyType::Ipv6 | KeyType::Icmp6Type | KeyType::Ether)
    }
    pub fn bits(self) -> Option<Bits> {
        match self {
            KeyType::Ipv4 => Some(Bits::V4),
            KeyType::Ipv6 => Some(Bits::V6),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum VerdictSpec {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

impl VerdictSpec {
    pub fn verdict(&self) -> Verdict {
        match self {
            VerdictSpec::Accept => Verdict::Accept,
            VerdictSpec::Drop => Verdict::Drop,
            VerdictSpec::Return => Verdict::Return,
            VerdictSpec::Jump(c) => Verdict::Jump(c.clone()),
            VerdictSpec::Goto(c) => Verdict::Goto(c.clone()),
        }
    }
}

/// A key of a mark, interface-name or MAC set (a MAC as text: `02:00:00:00:00:01`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(untagged)]
pub enum KeySpec {
    Mark(u32),
    Ifname(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ElemSpec {
    pub key: KeySpec,
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub verdict: Option<VerdictSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    Saddr,
    Daddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum PortDir {
    Sport,
    Dport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
    Untracked,
}

impl CtState {
    fn bit(self) -> u32 {
        match self {
            CtState::Invalid => NF_CT_STATE_INVALID_BIT,
            CtState::Established => NF_CT_STATE_ESTABLISHED_BIT,
            CtState::Related => NF_CT_STATE_RELATED_BIT,
            CtState::New => NF_CT_STATE_NEW_BIT,
            CtState::Untracked => NF_CT_STATE_UNTRACKED_BIT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum IfKey {
    Iifname,
    Oifname,
}

impl IfKey {
    fn meta(self) -> u32 {
        match self {
            IfKey::Iifname => NFT_META_IIFNAME,
            IfKey::Oifname => NFT_META_OIFNAME,
        }
    }
}

/// What a verdict map is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum MapKey {
    /// The packet mark under a mask.
    Mark(u32),
    Iifname,
    Oifname,
}

/// One statement of a rule: a match, an action or the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "m", rename_all = "camelCase", deny_unknown_fields)]
pub enum Stmt {
    /// `meta nfproto ipv4|ipv6` (v: 4 or 6).
    Nfproto {
        #[cfg_attr(test, ts(type = "4 | 6"))]
        v: u8,
    },
    /// `meta l4proto N`.
    L4proto {
        v: u8,
    },
    /// `meta protocol 0xNNNN` (ethertype; bridge family).
    Ethertype {
        v: u16,
    },
    /// `ether type 0xNNNN`: the type in the frame's Ethernet header as it came on the wire, which
    /// for a frame with a VLAN tag is the tag's (0x8100, 0x88a8): the kernel keeps the outer tag apart
    /// from the frame, and `meta protocol` gives the type behind it (bridge family).
    FrameType {
        v: u16,
    },
    /// `ip|ip6 saddr|daddr CIDR`.
    Addr {
        #[cfg_attr(test, ts(type = "4 | 6"))]
        family: u8,
        dir: Dir,
        cidr: String,
    },
    /// `ip|ip6 saddr|daddr @set`.
    AddrIn {
        #[cfg_attr(test, ts(type = "4 | 6"))]
        family: u8,
        dir: Dir,
        set: String,
    },
    /// `th sport|dport N` or `N-M`.
    Port {
        dir: PortDir,
        min: u16,
        max: u16,
    },
    /// `icmp|icmpv6 type @set`.
    IcmpIn {
        set: String,
    },
    /// The target address of a neighbour solicitation or advertisement (the 16 bytes at offset 8 of
    /// the ICMPv6 header; nft prints `@th,64,128`) in CIDR. Only meaningful after a match on one of
    /// those two types.
    NdTarget {
        cidr: String,
    },
    /// `ip6 length [!=] N`: the IPv6 payload length (extension headers and all).
    Ip6Length {
        v: u16,
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<bool>", optional))]
        negate: bool,
    },
    /// The 8 bytes at offset `at` of an ICMPv6 message are not a link-layer address option of type
    /// `option` (length 1: eight bytes) naming one of `macs` (nft prints `@th,AT*8,64 != 0x… != 0x…`).
    /// A message too short to hold them matches nothing. Only meaningful after a match on a neighbour
    /// discovery type whose options start at `at`.
    NdLinkLayerNot {
        at: u8,
        option: u8,
        macs: Vec<String>,
    },
    /// `icmp|icmpv6 type T [code C]`.
    Icmp {
        #[serde(rename = "type")]
        icmp_type: u8,
        #[serde(default)]
        #[cfg_attr(test, ts(optional))]
        code: Option<u8>,
    },
    /// `ct state S,…`.
    CtState {
        states: Vec<CtState>,
    },
    /// `ct state vmap @map`: a packet's state is one bit, so a map of bits decides in one rule.
    CtStateVmap {
        map: String,
    },
    /// `ether saddr MAC`, or with `negate` `!= MAC` (with nft's dependency on an Ethernet input
    /// device).
    EtherSaddr {
        mac: String,
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<bool>", optional))]
        negate: bool,
    },
    /// `ether daddr @set` (with nft's dependency on an Ethernet input device).
    EtherDaddrIn {
        set: String,
    },
    /// An Ethernet/IPv4 ARP packet whose sender is MAC (and, if given, an address in CIDR).
    ArpSender {
        mac: String,
        #[serde(default)]
        #[cfg_attr(test, ts(optional))]
        cidr: Option<String>,
    },
    /// `meta mark set meta mark & ~mask | id`: our bits of the mark, the others kept.
    MarkSet {
        mask: u32,
        id: u32,
    },
    /// `meta mark & mask @set`.
    MarkIn {
        mask: u32,
        set: String,
    },
    /// `iifname|oifname @set`, or with `negate` `!= @set`.
    IfnameIn {
        key: IfKey,
        set: String,
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<bool>", optional))]
        negate: bool,
    },
    /// `iifname|oifname "PREFIX*"`: the name's first bytes (the kernel compares only as many bytes as
    /// the expression holds, so a prefix without its NUL matches every name that starts with it).
    IfnamePrefix {
        key: IfKey,
        prefix: String,
    },
    /// `iifname|oifname "NAME"`: exactly that device.
    Ifname {
        key: IfKey,
        name: String,
    },
    /// `iifkind "KIND"`: the input device is of that kind (its rtnetlink link kind: `bridge`, `veth`…).
    Iifkind {
        kind: String,
    },
    /// `meta nftrace set 1`: every rule the packet meets from here on is announced (NFNLGRP_NFTRACE).
    NftraceSet,
    /// `log group G prefix "P"`: the packet to nfnetlink_log group G (read by `nflog`).
    Log {
        group: u16,
        prefix: String,
    },
    /// `limit rate R/second burst B packets`: matches while the rule's own bucket has tokens.
    Limit {
        rate: u32,
        burst: u32,
    },
    /// `KEY vmap @map`.
    Vmap {
        key: MapKey,
        map: String,
    },
    /// `fib daddr type != local`: the packet is not to an address of this host (a route lookup).
    DaddrNotLocal,
    /// `fib daddr oifname @set`: the device the route to the packet's destination leaves by, looked
    /// up in a set of names (a route lookup, before the packet is routed: prerouting, input, forward).
    FibDaddrOifnameIn {
        set: String,
    },
    Notrack,
    /// `ct zone set iif` (as nft prints it): the packet is tracked in the zone numbered like the
    /// device it came in by (the kernel takes the register's first 16 bits: on a little-endian host,
    /// the low 16 bits of the index). Before conntrack, for frames a bridge passes to the IP hooks
    /// that device is the bridge, so each bridge is a table of its own and nothing has to be kept or
    /// recovered: the kernel holds the number.
    CtZoneSetIif,
    /// `counter`: the packets and bytes that reach it (read back with `ruleStats`).
    Counter,
    Verdict {
        v: VerdictSpec,
    },
}

/// One operation of a transaction, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
pub enum Op {
    /// Creates the table if it is missing.
    Table {
        family: Family,
        table: String,
    },
    DelTable {
        family: Family,
        table: String,
    },
    /// Creates the chain if it is missing (a base chain when `hook` is given).
    Chain {
        family: Family,
        table: String,
        chain: String,
        #[serde(default)]
        #[cfg_attr(test, ts(optional))]
        hook: Option<HookSpec>,
    },
    DelChain {
        family: Family,
        table: String,
        chain: String,
    },
    /// Removes every rule of the chain.
    FlushChain {
        family: Family,
        table: String,
        chain: String,
    },
    /// Appends a rule.
    Rule {
        family: Family,
        table: String,
        chain: String,
        stmts: Vec<Stmt>,
    },
    /// Creates the set (or verdict map) if it is missing.
    Set {
        family: Family,
        table: String,
        set: String,
        key: KeyType,
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<bool>", optional))]
        map: bool,
    },
    DelSet {
        family: Family,
        table: String,
        set: String,
    },
    /// Removes every element of the set.
    FlushSet {
        family: Family,
        table: String,
        set: String,
    },
    /// Members of an address set: networks or addresses (counted; see `cidr`). With `replace`, `add`
    /// is the whole list (each member once) and only the difference reaches the kernel.
    Members {
        family: Family,
        table: String,
        set: String,
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<Vec<String>>", optional))]
        add: Vec<String>,
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<Vec<String>>", optional))]
        del: Vec<String>,
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<bool>", optional))]
        replace: bool,
    },
    /// Elements of a mark or interface-name set or map.
    Elems {
        family: Family,
        table: String,
        set: String,
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<Vec<ElemSpec>>", optional))]
        add: Vec<ElemSpec>,
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<Vec<KeySpec>>", optional))]
        del: Vec<KeySpec>,
    },
}

impl Op {
    pub fn table(&self) -> (Family, &str) {
        match self {
            Op::Table { family, table }
            | Op::DelTable { family, table }
            | Op::Chain { family, table, .. }
            | Op::DelChain { family, table, .. }
            | Op::FlushChain { family, table, .. }
            | Op::Rule { family, table, .. }
            | Op::Set { family, table, .. }
            | Op::DelSet { family, table, .. }
            | Op::FlushSet { family, table, .. }
            | Op::Members { family, table, .. }
            | Op::Elems { family, table, .. } => (*family, table),
        }
    }
}

const R: u32 = NFT_REG_1;

fn load_meta(key: u32) -> Expr {
    Expr::Meta { key, dreg: R }
}
fn eq(data: Vec<u8>) -> Expr {
    Expr::Cmp { sreg: R, op: NFT_CMP_EQ, data }
}
fn neq(data: Vec<u8>) -> Expr {
    Expr::Cmp { sreg: R, op: NFT_CMP_NEQ, data }
}
fn payload(base: u32, offset: u32, len: u32) -> Expr {
    Expr::Payload { dreg: R, base, offset, len }
}

pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("not a MAC address: {text:?}"));
    }
    let mut out = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(format!("not a MAC address: {text:?}"));
        }
        out[i] = u8::from_str_radix(p, 16).map_err(|_| format!("not a MAC address: {text:?}"))?;
    }
    Ok(out)
}

/// nft's dependency for a link-layer match in the inet family: an Ethernet input device.
fn ethernet_input() -> Vec<Expr> {
    const NFT_META_IIFTYPE: u32 = 8;
    const ARPHRD_ETHER: u16 = 1;
    vec![load_meta(NFT_META_IIFTYPE), eq(ARPHRD_ETHER.to_ne_bytes().to_vec())]
}

/// An interface name as a 16-byte key (NUL padded); at most 15 bytes, no NUL.
pub fn ifname_key(name: &str) -> Result<Vec<u8>, String> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.bytes().any(|b| b == 0) {
        return Err(format!("not an interface name: {name:?}"));
    }
    let mut k = name.as_bytes().to_vec();
    k.resize(IFNAMSIZ, 0);
    Ok(k)
}

/// The key of a mark, interface-name or MAC element.
pub fn elem_key(key: &KeySpec, ty: KeyType) -> Result<Vec<u8>, String> {
    match (key, ty) {
        (KeySpec::Mark(m), KeyType::Mark) => Ok(m.to_ne_bytes().to_vec()),
        (KeySpec::Ifname(n), KeyType::Ifname) => ifname_key(n),
        (KeySpec::Ifname(mac), KeyType::Ether) => Ok(parse_mac(mac)?.to_vec()),
        (KeySpec::Mark(t), KeyType::Icmp6Type) if *t <= 255 => Ok(vec![*t as u8]),
        (KeySpec::Mark(m), KeyType::CtState) => Ok(m.to_ne_bytes().to_vec()),
        (k, t) => Err(format!("key {k:?} does not fit a set of {t:?}")),
    }
}

fn bits_of(family: u8) -> Result<Bits, String> {
    match family {
        4 => Ok(Bits::V4),
        6 => Ok(Bits::V6),
        f => Err(format!("address family must be 4 or 6, not {f}")),
    }
}

/// Where an address sits in its header (offset, length).
fn addr_field(bits: Bits, dir: Dir) -> (u32, u32) {
    match (bits, dir) {
        (Bits::V4, Dir::Saddr) => (12, 4),
        (Bits::V4, Dir::Daddr) => (16, 4),
        (Bits::V6, Dir::Saddr) => (8, 16),
        (Bits::V6, Dir::Daddr) => (24, 16),
    }
}

/// Loads `len` bytes and compares them, masked to `net`'s prefix, with `net`.
fn masked_eq(load: Expr, net: &Net, bits: Bits) -> Vec<Expr> {
    let key = net.start_key(bits);
    let mut out = vec![load];
    if net.len < bits.width() {
        let mut mask = vec![0u8; key.len()];
        for (i, m) in mask.iter_mut().enumerate() {
            let lo = i as u32 * 8;
            let bits_here = (net.len as u32).saturating_sub(lo).min(8);
            *m = if bits_here == 0 { 0 } else { 0xffu8 << (8 - bits_here) };
        }
        out.push(Expr::Bitwise { sreg: R, dreg: R, len: key.len() as u32, mask, xor: vec![0; key.len()] });
    }
    out.push(eq(key));
    out
}

impl Stmt {
    /// The kernel's expressions for this statement.
    pub fn exprs(&self) -> Result<Vec<Expr>, String> {
        Ok(match self {
            Stmt::Nfproto { v } => {
                let p = match v {
                    4 => NFPROTO_IPV4,
                    6 => NFPROTO_IPV6,
                    _ => return Err(format!("nfproto must be 4 or 6, not {v}")),
                };
                vec![load_meta(NFT_META_NFPROTO), eq(vec![p])]
            }
            Stmt::L4proto { v } => vec![load_meta(NFT_META_L4PROTO), eq(vec![*v])],
            Stmt::Ethertype { v } => vec![load_meta(NFT_META_PROTOCOL), eq(v.to_be_bytes().to_vec())],
            // The kernel reads a held-apart tag back into place for a link-layer load that spans it.
            Stmt::FrameType { v } => vec![payload(NFT_PAYLOAD_LL_HEADER, 12, 2), eq(v.to_be_bytes().to_vec())],
            Stmt::Addr { family, dir, cidr } => {
                let bits = bits_of(*family)?;
                let net = Net::parse(cidr, bits)?;
                let (off, len) = addr_field(bits, *dir);
                masked_eq(payload(NFT_PAYLOAD_NETWORK_HEADER, off, len), &net, bits)
            }
            Stmt::AddrIn { family, dir, set } => {
                let (off, len) = addr_field(bits_of(*family)?, *dir);
                vec![payload(NFT_PAYLOAD_NETWORK_HEADER, off, len), Expr::Lookup { set: set.clone(), sreg: R, dreg: None, flags: 0 }]
            }
            Stmt::Port { dir, min, max } => {
                let off = match dir {
                    PortDir::Sport => 0,
                    PortDir::Dport => 2,
                };
                if min > max {
                    return Err(format!("port range {min}-{max} is empty"));
                }
                let load = payload(NFT_PAYLOAD_TRANSPORT_HEADER, off, 2);
                if min == max {
                    vec![load, eq(min.to_be_bytes().to_vec())]
                } else {
                    vec![load, Expr::Range { sreg: R, op: NFT_RANGE_EQ, from: min.to_be_bytes().to_vec(), to: max.to_be_bytes().to_vec() }]
                }
            }
            Stmt::Icmp { icmp_type, code } => {
                let mut v = vec![payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1), eq(vec![*icmp_type])];
                if let Some(c) = code {
                    v.extend([payload(NFT_PAYLOAD_TRANSPORT_HEADER, 1, 1), eq(vec![*c])]);
                }
                v
            }
            Stmt::NdTarget { cidr } => {
                let net = Net::parse(cidr, Bits::V6)?;
                masked_eq(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 8, 16), &net, Bits::V6)
            }
            Stmt::Ip6Length { v, negate } => {
                let data = v.to_be_bytes().to_vec();
                vec![payload(NFT_PAYLOAD_NETWORK_HEADER, 4, 2), if *negate { neq(data) } else { eq(data) }]
            }
            Stmt::NdLinkLayerNot { at, option, macs } => {
                if macs.is_empty() {
                    return Err("a link-layer address check needs at least one MAC".into());
                }
                // Each compare leaves the register as it was, so one load serves them all.
                let mut v = vec![payload(NFT_PAYLOAD_TRANSPORT_HEADER, u32::from(*at), 8)];
                for mac in macs {
                    let mut opt = vec![*option, 1];
                    opt.extend(parse_mac(mac)?);
                    v.push(neq(opt));
                }
                v
            }
            Stmt::IcmpIn { set } => {
                vec![payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1), Expr::Lookup { set: set.clone(), sreg: R, dreg: None, flags: 0 }]
            }
            Stmt::CtState { states } => {
                if states.is_empty() {
                    return Err("ct state needs at least one state".into());
                }
                let bits = states.iter().fold(0u32, |b, s| b | s.bit());
                vec![
                    Expr::Ct { key: NFT_CT_STATE, dreg: R },
                    Expr::Bitwise { sreg: R, dreg: R, len: 4, mask: bits.to_ne_bytes().to_vec(), xor: vec![0; 4] },
                    Expr::Cmp { sreg: R, op: NFT_CMP_NEQ, data: vec![0; 4] },
                ]
            }
            Stmt::CtStateVmap { map } => vec![
                Expr::Ct { key: NFT_CT_STATE, dreg: R },
                Expr::Lookup { set: map.clone(), sreg: R, dreg: Some(NFT_REG_VERDICT), flags: 0 },
            ],
            Stmt::EtherSaddr { mac, negate } => {
                let mac = parse_mac(mac)?;
                let mut v = ethernet_input();
                v.extend([payload(NFT_PAYLOAD_LL_HEADER, 6, 6), if *negate { neq(mac.to_vec()) } else { eq(mac.to_vec()) }]);
                v
            }
            Stmt::EtherDaddrIn { set } => {
                let mut v = ethernet_input();
                v.extend([payload(NFT_PAYLOAD_LL_HEADER, 0, 6), Expr::Lookup { set: set.clone(), sreg: R, dreg: None, flags: 0 }]);
                v
            }
            Stmt::ArpSender { mac, cidr } => {
                let mac = parse_mac(mac)?;
                // htype Ethernet, ptype IPv4, hlen 6, plen 4: the only ARP whose sender fields are
                // where we look for them.
                let mut v = vec![
                    payload(NFT_PAYLOAD_NETWORK_HEADER, 0, 4),
                    eq(vec![0, 1, 8, 0]),
                    payload(NFT_PAYLOAD_NETWORK_HEADER, 4, 2),
                    eq(vec![6, 4]),
                    payload(NFT_PAYLOAD_NETWORK_HEADER, 8, 6),
                    eq(mac.to_vec()),
                ];
                if let Some(c) = cidr {
                    let net = Net::parse(c, Bits::V4)?;
                    v.extend(masked_eq(payload(NFT_PAYLOAD_NETWORK_HEADER, 14, 4), &net, Bits::V4));
                }
                v
            }
            Stmt::MarkSet { mask, id } => {
                if id & !mask != 0 {
                    return Err(format!("mark {id:#x} has bits outside {mask:#x}"));
                }
                vec![
                    load_meta(NFT_META_MARK),
                    Expr::Bitwise { sreg: R, dreg: R, len: 4, mask: (!mask).to_ne_bytes().to_vec(), xor: id.to_ne_bytes().to_vec() },
                    Expr::MetaSet { key: NFT_META_MARK, sreg: R },
                ]
            }
            Stmt::MarkIn { mask, set } => vec![
                load_meta(NFT_META_MARK),
                Expr::Bitwise { sreg: R, dreg: R, len: 4, mask: mask.to_ne_bytes().to_vec(), xor: vec![0; 4] },
                Expr::Lookup { set: set.clone(), sreg: R, dreg: None, flags: 0 },
            ],
            Stmt::IfnameIn { key, set, negate } => vec![
                load_meta(key.meta()),
                Expr::Lookup { set: set.clone(), sreg: R, dreg: None, flags: if *negate { NFT_LOOKUP_F_INV } else { 0 } },
            ],
            Stmt::IfnamePrefix { key, prefix } => {
                if prefix.is_empty() || prefix.len() >= IFNAMSIZ || prefix.bytes().any(|b| b == 0) {
                    return Err(format!("not an interface-name prefix: {prefix:?}"));
                }
                vec![load_meta(key.meta()), eq(prefix.as_bytes().to_vec())]
            }
            Stmt::Ifname { key, name } => vec![load_meta(key.meta()), eq(ifname_key(name)?)],
            // A kind is compared as a name is: the kernel loads it NUL-padded to IFNAMSIZ.
            Stmt::Iifkind { kind } => vec![load_meta(NFT_META_IIFKIND), eq(ifname_key(kind)?)],
            Stmt::Log { group, prefix } => {
                if prefix.len() >= NF_LOG_PREFIXLEN || prefix.bytes().any(|b| b == 0) {
                    return Err(format!("a log prefix is at most {} bytes, without NUL", NF_LOG_PREFIXLEN - 1));
                }
                vec![Expr::Log { group: *group, prefix: Some(prefix.clone()) }]
            }
            Stmt::Limit { rate, burst } => {
                if *rate == 0 || *burst == 0 {
                    return Err("a limit needs a rate and a burst of at least 1".into());
                }
                vec![Expr::Limit { rate: *rate as u64, unit: 1, burst: *burst, kind: NFT_LIMIT_PKTS, flags: 0 }]
            }
            Stmt::NftraceSet => {
                vec![Expr::Immediate { dreg: R, data: Data::Value(vec![1]) }, Expr::MetaSet { key: NFT_META_NFTRACE, sreg: R }]
            }
            Stmt::Vmap { key, map } => {
                let mut v = match key {
                    MapKey::Mark(mask) => vec![
                        load_meta(NFT_META_MARK),
                        Expr::Bitwise { sreg: R, dreg: R, len: 4, mask: mask.to_ne_bytes().to_vec(), xor: vec![0; 4] },
                    ],
                    MapKey::Iifname => vec![load_meta(NFT_META_IIFNAME)],
                    MapKey::Oifname => vec![load_meta(NFT_META_OIFNAME)],
                };
                v.push(Expr::Lookup { set: map.clone(), sreg: R, dreg: Some(NFT_REG_VERDICT), flags: 0 });
                v
            }
            Stmt::DaddrNotLocal => {
                vec![Expr::Fib { dreg: R, result: NFT_FIB_RESULT_ADDRTYPE, flags: NFTA_FIB_F_DADDR }, neq(RTN_LOCAL.to_ne_bytes().to_vec())]
            }
            Stmt::FibDaddrOifnameIn { set } => vec![
                Expr::Fib { dreg: R, result: NFT_FIB_RESULT_OIFNAME, flags: NFTA_FIB_F_DADDR },
                Expr::Lookup { set: set.clone(), sreg: R, dreg: None, flags: 0 },
            ],
            Stmt::Notrack => vec![Expr::Notrack],
            Stmt::CtZoneSetIif => vec![load_meta(NFT_META_IIF), Expr::CtSet { key: NFT_CT_ZONE, sreg: R }],
            Stmt::Counter => vec![Expr::Counter(Counts::default())],
            Stmt::Verdict { v } => vec![Expr::Immediate { dreg: NFT_REG_VERDICT, data: Data::Verdict(v.verdict()) }],
        })
    }
}

/// A rule's expressions: its statements' in order.
pub fn rule_exprs(stmts: &[Stmt]) -> Result<Vec<Expr>, String> {
    let mut out = Vec::with_capacity(stmts.len() * 3);
    for s in stmts {
        out.extend(s.exprs()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(json: &str) -> Vec<Op> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn operations_read_from_json() {
        let v = ops(r#"[
            {"op":"table","family":"inet","table":"t"},
            {"op":"chain","family":"bridge","table":"t","chain":"c","hook":{"hook":"prerouting","priority":-200}},
            {"op":"rule","family":"inet","table":"t","chain":"c","stmts":[{"m":"nfproto","v":4},{"m":"verdict","v":{"jump":"x"}}]},
            {"op":"set","family":"inet","table":"t","set":"m","key":"ifname","map":true},
            {"op":"elems","family":"inet","table":"t","set":"m","add":[{"key":"tap1","verdict":"drop"},{"key":65536}],"del":["tap2"]},
            {"op":"members","family":"inet","table":"t","set":"s","add":["10.0.0.1"]}
        ]"#);
        assert_eq!(v.len(), 6);
        assert_eq!(
            v[1],
            Op::Chain {
                family: Family::Bridge,
                table: "t".into(),
                chain: "c".into(),
                hook: Some(HookSpec { hook: HookName::Prerouting, priority: -200 })
            }
        );
        match &v[4] {
            Op::Elems { add, del, .. } => {
                assert_eq!(add[0], ElemSpec { key: KeySpec::Ifname("tap1".into()), verdict: Some(VerdictSpec::Drop) });
                assert_eq!(add[1].key, KeySpec::Mark(65536));
                assert_eq!(del, &vec![KeySpec::Ifname("tap2".into())]);
            }
            o => panic!("{o:?}"),
        }
        assert!(
            serde_json::from_str::<Vec<Op>>(r#"[{"op":"table","family":"ip","table":"t"}]"#).is_err(),
            "families we do not use are refused"
        );
        assert!(serde_json::from_str::<Vec<Stmt>>(r#"[{"m":"nfproto","v":4,"x":1}]"#).is_err(), "unknown fields are refused");
    }

    #[test]
    fn an_address_match_masks_to_its_prefix_as_nft_does() {
        // nft: ip saddr 10.1.2.0/23 -> payload load 4b @ network header + 12, bitwise & 0xfffffe00, cmp eq.
        let e = Stmt::Addr { family: 4, dir: Dir::Saddr, cidr: "10.1.3.7/23".into() }.exprs().unwrap();
        assert_eq!(
            e,
            vec![
                Expr::Payload { dreg: 1, base: 1, offset: 12, len: 4 },
                Expr::Bitwise { sreg: 1, dreg: 1, len: 4, mask: vec![255, 255, 254, 0], xor: vec![0; 4] },
                Expr::Cmp { sreg: 1, op: NFT_CMP_EQ, data: vec![10, 1, 2, 0] },
            ]
        );
        let host = Stmt::Addr { family: 6, dir: Dir::Daddr, cidr: "fd00::1".into() }.exprs().unwrap();
        assert_eq!(host.len(), 2, "a host needs no mask");
        assert_eq!(host[0], Expr::Payload { dreg: 1, base: 1, offset: 24, len: 16 });
    }

    #[test]
    fn a_neighbour_discovery_target_is_matched_in_the_icmpv6_header() {
        // nft: @th,64,128 & <the /64 mask> == fd00:: -> payload load 16b @ transport header + 8, bitwise, cmp eq.
        let e = Stmt::NdTarget { cidr: "fd00::1:2/64".into() }.exprs().unwrap();
        let mut mask = vec![0xff; 8];
        mask.extend([0; 8]);
        let mut net = vec![0xfd, 0, 0, 0, 0, 0, 0, 0];
        net.extend([0; 8]);
        assert_eq!(
            e,
            vec![
                Expr::Payload { dreg: 1, base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 8, len: 16 },
                Expr::Bitwise { sreg: 1, dreg: 1, len: 16, mask, xor: vec![0; 16] },
                Expr::Cmp { sreg: 1, op: NFT_CMP_EQ, data: net },
            ]
        );
        assert_eq!(Stmt::NdTarget { cidr: "fe80::1".into() }.exprs().unwrap().len(), 2, "an address needs no mask");
        assert!(Stmt::NdTarget { cidr: "10.0.0.1".into() }.exprs().is_err(), "a target is an IPv6 address");
        let parsed: Stmt = serde_json::from_str(r#"{"m":"ndTarget","cidr":"fd00::1"}"#).unwrap();
        assert_eq!(parsed, Stmt::NdTarget { cidr: "fd00::1".into() });
    }

    #[test]
    fn a_neighbour_discovery_link_layer_option_is_checked_against_every_mac() {
        // nft: ip6 length != 24 -> payload load 2b @ network header + 4, cmp neq 0x0018.
        assert_eq!(
            Stmt::Ip6Length { v: 24, negate: true }.exprs().unwrap(),
            vec![Expr::Payload { dreg: 1, base: 1, offset: 4, len: 2 }, Expr::Cmp { sreg: 1, op: NFT_CMP_NEQ, data: vec![0, 24] }]
        );
        assert_eq!(Stmt::Ip6Length { v: 32, negate: false }.exprs().unwrap()[1], Expr::Cmp { sreg: 1, op: NFT_CMP_EQ, data: vec![0, 32] });
        // nft: @th,192,64 != 0x0201fa163e000001 != 0x0201fa163e000002: one load, one compare a MAC.
        let macs = vec!["fa:16:3e:00:00:01".to_string(), "FA:16:3E:00:00:02".to_string()];
        let e = Stmt::NdLinkLayerNot { at: 24, option: 2, macs }.exprs().unwrap();
        assert_eq!(
            e,
            vec![
                Expr::Payload { dreg: 1, base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 24, len: 8 },
                Expr::Cmp { sreg: 1, op: NFT_CMP_NEQ, data: vec![2, 1, 0xfa, 0x16, 0x3e, 0, 0, 1] },
                Expr::Cmp { sreg: 1, op: NFT_CMP_NEQ, data: vec![2, 1, 0xfa, 0x16, 0x3e, 0, 0, 2] },
            ]
        );
        assert!(Stmt::NdLinkLayerNot { at: 8, option: 1, macs: vec![] }.exprs().is_err(), "no MAC: nothing to compare with");
        assert!(Stmt::NdLinkLayerNot { at: 8, option: 1, macs: vec!["nope".into()] }.exprs().is_err());
        let parsed: Stmt = serde_json::from_str(r#"{"m":"ndLinkLayerNot","at":8,"option":1,"macs":["02:00:00:00:00:01"]}"#).unwrap();
        assert_eq!(parsed, Stmt::NdLinkLayerNot { at: 8, option: 1, macs: vec!["02:00:00:00:00:01".into()] });
        let parsed: Stmt = serde_json::from_str(r#"{"m":"ip6Length","v":24}"#).unwrap();
        assert_eq!(parsed, Stmt::Ip6Length { v: 24, negate: false });
    }

    #[test]
    fn ports_ct_state_and_marks() {
        assert_eq!(
            Stmt::Port { dir: PortDir::Dport, min: 8000, max: 8010 }.exprs().unwrap()[1],
            Expr::Range { sreg: 1, op: 0, from: vec![0x1f, 0x40], to: vec![0x1f, 0x4a] }
        );
        assert_eq!(
            Stmt::Port { dir: PortDir::Sport, min: 68, max: 68 }.exprs().unwrap(),
            vec![Expr::Payload { dreg: 1, base: 2, offset: 0, len: 2 }, Expr::Cmp { sreg: 1, op: 0, data: vec![0, 68] }]
        );
        assert!(Stmt::Port { dir: PortDir::Dport, min: 9, max: 8 }.exprs().is_err());
        let ct = Stmt::CtState { states: vec![CtState::Established, CtState::Related] }.exprs().unwrap();
        assert_eq!(ct[1], Expr::Bitwise { sreg: 1, dreg: 1, len: 4, mask: 6u32.to_ne_bytes().to_vec(), xor: vec![0; 4] });
        let m = Stmt::MarkSet { mask: 0xffff_0000, id: 0x0001_0000 }.exprs().unwrap();
        assert_eq!(
            m[1],
            Expr::Bitwise {
                sreg: 1,
                dreg: 1,
                len: 4,
                mask: 0x0000_ffffu32.to_ne_bytes().to_vec(),
                xor: 0x0001_0000u32.to_ne_bytes().to_vec()
            }
        );
        assert!(Stmt::MarkSet { mask: 0xffff_0000, id: 1 }.exprs().is_err(), "an id outside our bits would clobber others'");
    }

    #[test]
    fn interface_names_by_prefix_and_by_set_negated() {
        // As nft encodes `iifname "tap*"`: the name loaded, compared on the prefix's bytes alone.
        let p = Stmt::IfnamePrefix { key: IfKey::Iifname, prefix: "tap".into() }.exprs().unwrap();
        assert_eq!(p, vec![load_meta(NFT_META_IIFNAME), Expr::Cmp { sreg: R, op: NFT_CMP_EQ, data: b"tap".to_vec() }]);
        assert!(
            Stmt::IfnamePrefix { key: IfKey::Oifname, prefix: String::new() }.exprs().is_err(),
            "an empty prefix would match every device"
        );
        assert!(Stmt::IfnamePrefix { key: IfKey::Oifname, prefix: "a-prefix-too-long".into() }.exprs().is_err());
        let n = Stmt::IfnameIn { key: IfKey::Oifname, set: "known".into(), negate: true }.exprs().unwrap();
        assert_eq!(n[1], Expr::Lookup { set: "known".into(), sreg: R, dreg: None, flags: NFT_LOOKUP_F_INV });
        let parsed: Stmt = serde_json::from_str(r#"{"m":"ifnameIn","key":"iifname","set":"s"}"#).unwrap();
        assert_eq!(parsed, Stmt::IfnameIn { key: IfKey::Iifname, set: "s".into(), negate: false });
    }

    #[test]
    fn keys_are_checked_against_the_set() {
        assert_eq!(elem_key(&KeySpec::Ifname("tap1".into()), KeyType::Ifname).unwrap().len(), 16);
        assert!(elem_key(&KeySpec::Ifname("a-name-too-long-1".into()), KeyType::Ifname).is_err());
        assert!(elem_key(&KeySpec::Mark(1), KeyType::Ifname).is_err());
        assert_eq!(elem_key(&KeySpec::Mark(0x10000), KeyType::Mark).unwrap(), 0x10000u32.to_ne_bytes().to_vec());
        assert_eq!(elem_key(&KeySpec::Ifname("02:00:00:00:00:0a".into()), KeyType::Ether).unwrap(), vec![2, 0, 0, 0, 0, 10]);
        assert!(elem_key(&KeySpec::Ifname("tap1".into()), KeyType::Ether).is_err());
        assert!(parse_mac("02:00:00:00:00:0g").is_err());
    }
}
