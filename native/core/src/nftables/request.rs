//! The requests this client sends, built from what they are about: a table, a chain, a rule, a set,
//! its elements. Pure functions of their arguments; the client decides which to send, and when.

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE};

use super::attr::*;
use super::cidr::{Bits, Net};
use super::constants::*;
use super::expr::{Data, Expr};
use super::message::NftMessage;
use super::mirror::ElemKey;
use super::spec::{Family, HookSpec, KeyType};

/// Element lists are split so each stays well inside a nested attribute's 16-bit length.
pub const MAX_ELEMS_BYTES: usize = 48 << 10;

/// One nf_tables request: the family it is about, its message and its netlink flags beyond
/// REQUEST/ACK (`NLM_F_CREATE`, `NLM_F_APPEND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRequest {
    pub family: u8,
    pub msg: NftMessage,
    pub flags: u16,
}

impl NftRequest {
    pub fn new(family: u8, cmd: u8, flags: u16, attrs: Vec<NftAttr>) -> Self {
        NftRequest { family, msg: NftMessage::new(cmd, attrs), flags }
    }
}

pub fn msg(family: Family, cmd: u8, flags: u16, attrs: Vec<NftAttr>) -> NftRequest {
    NftRequest::new(family.nfproto(), cmd, flags, attrs)
}

pub fn set_flags(key: KeyType, map: bool) -> u32 {
    (if key.interval() { NFT_SET_INTERVAL } else { 0 }) | (if map { NFT_SET_MAP } else { 0 })
}

pub fn table_msg(family: Family, cmd: u8, table: &str) -> NftRequest {
    let flags = if cmd == NFT_MSG_NEWTABLE { NLM_F_CREATE } else { 0 };
    msg(family, cmd, flags, vec![NftAttr::Table(TableAttr::Name(table.into()))])
}

pub fn chain_attrs(table: &str, chain: &str, hook: Option<&HookSpec>) -> Vec<NftAttr> {
    let mut a = vec![NftAttr::Chain(ChainAttr::Table(table.into())), NftAttr::Chain(ChainAttr::Name(chain.into()))];
    if let Some(h) = hook {
        a.push(NftAttr::Chain(ChainAttr::Hook(Hook { hooknum: h.hook.num(), priority: h.priority })));
        a.push(NftAttr::Chain(ChainAttr::Type("filter".into())));
        a.push(NftAttr::Chain(ChainAttr::Policy(NF_ACCEPT as u32)));
    }
    a
}

pub fn new_chain_msg(family: Family, table: &str, chain: &str, hook: Option<&HookSpec>) -> NftRequest {
    msg(family, NFT_MSG_NEWCHAIN, NLM_F_CREATE, chain_attrs(table, chain, hook))
}

pub fn del_chain_msg(family: Family, table: &str, chain: &str) -> NftRequest {
    msg(family, NFT_MSG_DELCHAIN, 0, chain_attrs(table, chain, None))
}

pub fn rule_msg(family: Family, table: &str, chain: &str, exprs: Vec<Expr>) -> NftRequest {
    msg(
        family,
        NFT_MSG_NEWRULE,
        NLM_F_CREATE | NLM_F_APPEND,
        vec![
            NftAttr::Rule(RuleAttr::Table(table.into())),
            NftAttr::Rule(RuleAttr::Chain(chain.into())),
            NftAttr::Rule(RuleAttr::Expressions(exprs)),
        ],
    )
}

pub fn set_msg(family: Family, table: &str, set: &str, key: KeyType, map: bool, id: u32) -> NftRequest {
    let mut a = vec![
        NftAttr::Set(SetAttr::Table(table.into())),
        NftAttr::Set(SetAttr::Name(set.into())),
        NftAttr::Set(SetAttr::Flags(set_flags(key, map))),
        NftAttr::Set(SetAttr::KeyType(key.nft_type())),
        NftAttr::Set(SetAttr::KeyLen(key.key_len())),
        NftAttr::Set(SetAttr::Id(id)),
    ];
    if map {
        a.push(NftAttr::Set(SetAttr::DataType(NFT_DATA_VERDICT)));
    }
    a.push(NftAttr::Set(SetAttr::Userdata(set_userdata(key))));
    msg(family, NFT_MSG_NEWSET, NLM_F_CREATE, a)
}

pub fn del_set_msg(family: Family, table: &str, set: &str) -> NftRequest {
    msg(family, NFT_MSG_DELSET, 0, vec![NftAttr::Set(SetAttr::Table(table.into())), NftAttr::Set(SetAttr::Name(set.into()))])
}

/// What nft reads to print a set's keys: their byte order (libnftnl's set udata, a TLV of type
/// KEYBYTEORDER; nft's byte orders: 1 host, 2 big endian). The kernel keeps it without looking.
fn set_userdata(key: KeyType) -> Vec<u8> {
    const NFTNL_UDATA_SET_KEYBYTEORDER: u8 = 0;
    let order: u32 = if key.big_endian() { 2 } else { 1 };
    let mut v = vec![NFTNL_UDATA_SET_KEYBYTEORDER, 4];
    v.extend_from_slice(&order.to_ne_bytes());
    v
}

/// Element messages for `elems`, each list within a nested attribute's size. Elements go in key
/// order, an interval's end before the next one's start at the same key: the kernel checks interval
/// sets for overlaps as elements arrive, and adjacent intervals given out of order look overlapping
/// to it (measured: EEXIST).
pub fn elem_msgs(family: Family, cmd: u8, table: &str, set: &str, mut elems: Vec<Elem>) -> Vec<NftRequest> {
    elems.sort_by(|a, b| a.key.cmp(&b.key).then(b.flags.cmp(&a.flags)));
    let mut out = Vec::new();
    let mut cur: Vec<Elem> = Vec::new();
    let mut bytes = 0;
    let flags = if cmd == NFT_MSG_NEWSETELEM { NLM_F_CREATE } else { 0 };
    let flush = |cur: Vec<Elem>, out: &mut Vec<NftRequest>| {
        out.push(msg(
            family,
            cmd,
            flags,
            vec![
                NftAttr::Elems(ElemListAttr::Table(table.into())),
                NftAttr::Elems(ElemListAttr::Set(set.into())),
                NftAttr::Elems(ElemListAttr::Elements(cur)),
            ],
        ));
    };
    for e in elems {
        let n = netlink_packet_core::Emitable::buffer_len(&e);
        if bytes + n > MAX_ELEMS_BYTES && !cur.is_empty() {
            flush(std::mem::take(&mut cur), &mut out);
            bytes = 0;
        }
        bytes += n;
        cur.push(e);
    }
    if !cur.is_empty() {
        flush(cur, &mut out);
    }
    out
}

pub fn flush_set_msg(family: Family, table: &str, set: &str) -> NftRequest {
    msg(
        family,
        NFT_MSG_DELSETELEM,
        0,
        vec![NftAttr::Elems(ElemListAttr::Table(table.into())), NftAttr::Elems(ElemListAttr::Set(set.into()))],
    )
}

pub fn flush_chain_msg(family: Family, table: &str, chain: &str) -> NftRequest {
    msg(family, NFT_MSG_DELRULE, 0, vec![NftAttr::Rule(RuleAttr::Table(table.into())), NftAttr::Rule(RuleAttr::Chain(chain.into()))])
}

/// The start (and end) elements of an interval.
pub fn interval_elems(n: &Net, bits: Bits) -> Vec<(ElemKey, Option<Data>)> {
    let mut v = vec![((n.start_key(bits), 0), None)];
    if let Some(end) = n.end_key(bits) {
        v.push(((end, NFT_SET_ELEM_INTERVAL_END), None));
    }
    v
}

pub fn to_elem((key, flags): &ElemKey, data: &Option<Data>) -> Elem {
    Elem { key: key.clone(), data: data.clone(), flags: *flags, other: Vec::new() }
}
