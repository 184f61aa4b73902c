//! An nf_tables payload (NFNL_SUBSYS_NFTABLES): the message type and its attributes. The nfgenmsg
//! header around it (the family: inet, bridge…) belongs to `netlink::NfnlMessage`.

use netlink_packet_core::DecodeError;

use super::attr::*;
use super::constants::*;
use super::nla::{other, parse_all};
use crate::netlink::{NfnlPayload, NFNL_SUBSYS_NFTABLES};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftMessage {
    pub cmd: u8,
    pub attrs: Vec<NftAttr>,
}

/// The object a message type is about; it decides how the attributes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Table,
    Chain,
    Rule,
    Set,
    Elems,
    Gen,
    Trace,
    Unknown,
}

impl Object {
    pub fn of(cmd: u8) -> Object {
        match cmd {
            NFT_MSG_NEWTABLE | NFT_MSG_GETTABLE | NFT_MSG_DELTABLE | NFT_MSG_DESTROYTABLE => Object::Table,
            NFT_MSG_NEWCHAIN | NFT_MSG_GETCHAIN | NFT_MSG_DELCHAIN | NFT_MSG_DESTROYCHAIN => Object::Chain,
            NFT_MSG_NEWRULE | NFT_MSG_GETRULE | NFT_MSG_DELRULE | NFT_MSG_DESTROYRULE => Object::Rule,
            NFT_MSG_NEWSET | NFT_MSG_GETSET | NFT_MSG_DELSET | NFT_MSG_DESTROYSET => Object::Set,
            NFT_MSG_NEWSETELEM | NFT_MSG_GETSETELEM | NFT_MSG_DELSETELEM | NFT_MSG_DESTROYSETELEM => Object::Elems,
            NFT_MSG_NEWGEN | NFT_MSG_GETGEN => Object::Gen,
            NFT_MSG_TRACE => Object::Trace,
            _ => Object::Unknown,
        }
    }
}

impl NftMessage {
    pub fn new(cmd: u8, attrs: Vec<NftAttr>) -> Self {
        NftMessage { cmd, attrs }
    }

    /// The table the message names (every object message names one).
    pub fn table(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match a {
            NftAttr::Table(TableAttr::Name(s))
            | NftAttr::Chain(ChainAttr::Table(s))
            | NftAttr::Rule(RuleAttr::Table(s))
            | NftAttr::Set(SetAttr::Table(s))
            | NftAttr::Elems(ElemListAttr::Table(s)) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The name of the chain (chain and rule messages) or set (set and element messages).
    pub fn object_name(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match a {
            NftAttr::Chain(ChainAttr::Name(s))
            | NftAttr::Rule(RuleAttr::Chain(s))
            | NftAttr::Set(SetAttr::Name(s))
            | NftAttr::Elems(ElemListAttr::Set(s)) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn expressions(&self) -> Option<&[crate::nftables::expr::Expr]> {
        self.attrs.iter().find_map(|a| match a {
            NftAttr::Rule(RuleAttr::Expressions(e)) => Some(e.as_slice()),
            _ => None,
        })
    }

    pub fn elements(&self) -> impl Iterator<Item = &Elem> {
        self.attrs
            .iter()
            .filter_map(|a| match a {
                NftAttr::Elems(ElemListAttr::Elements(e)) => Some(e.iter()),
                _ => None,
            })
            .flatten()
    }

    pub fn gen_id(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            NftAttr::Gen(GenAttr::Id(v)) => Some(*v),
            _ => None,
        })
    }

    /// A table message's count of the objects in the table (NFTA_TABLE_USE).
    pub fn table_use(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            NftAttr::Table(TableAttr::Use(v)) => Some(*v),
            _ => None,
        })
    }

    pub fn trace_attrs(&self) -> impl Iterator<Item = &TraceAttr> {
        self.attrs.iter().filter_map(|a| match a {
            NftAttr::Trace(t) => Some(t),
            _ => None,
        })
    }

    pub fn chain_attrs(&self) -> impl Iterator<Item = &ChainAttr> {
        self.attrs.iter().filter_map(|a| match a {
            NftAttr::Chain(c) => Some(c),
            _ => None,
        })
    }

    pub fn set_attrs(&self) -> impl Iterator<Item = &SetAttr> {
        self.attrs.iter().filter_map(|a| match a {
            NftAttr::Set(s) => Some(s),
            _ => None,
        })
    }
}

impl NfnlPayload for NftMessage {
    const SUBSYS: u8 = NFNL_SUBSYS_NFTABLES;
    type Attr = NftAttr;
    fn command(&self) -> u8 {
        self.cmd
    }
    fn attrs(&self) -> &[NftAttr] {
        &self.attrs
    }
    fn parse_payload(cmd: u8, buf: &[u8]) -> Result<Self, DecodeError> {
        let attrs = match Object::of(cmd) {
            Object::Table => parse_all(buf, |n| TableAttr::parse(n).map(NftAttr::Table))?,
            Object::Chain => parse_all(buf, |n| ChainAttr::parse(n).map(NftAttr::Chain))?,
            Object::Rule => parse_all(buf, |n| RuleAttr::parse(n).map(NftAttr::Rule))?,
            Object::Set => parse_all(buf, |n| SetAttr::parse(n).map(NftAttr::Set))?,
            Object::Elems => parse_all(buf, |n| ElemListAttr::parse(n).map(NftAttr::Elems))?,
            Object::Gen => parse_all(buf, |n| GenAttr::parse(n).map(NftAttr::Gen))?,
            Object::Trace => parse_all(buf, |n| TraceAttr::parse(n).map(NftAttr::Trace))?,
            Object::Unknown => parse_all(buf, |n| other(n).map(NftAttr::Other))?,
        };
        Ok(NftMessage { cmd, attrs })
    }
}
