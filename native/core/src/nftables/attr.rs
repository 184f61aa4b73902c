//! Typed attributes of nf_tables objects (tables, chains, rules, sets, set elements, generations),
//! each emitting and parsing itself, with an `Other` fallback that keeps what we do not model. Which
//! enum an attribute belongs to is decided by the message type (`message::NftMessage`): the kernel
//! numbers each object's attributes from 1.

use netlink_packet_core::{DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NLA_F_NESTED};

use super::constants::*;
use super::expr::{parse_exprs, Data, DataNla, Expr, ValueNla, Verdict, VerdictNla};
use super::nla::*;

/// Writes a nested attribute's contents into its buffer.
type EmitNested<'a> = Box<dyn Fn(&mut [u8]) + 'a>;
/// A nested attribute's length, computed only when asked for: `kind` builds the value too, and a
/// rule's expressions are long to measure.
type NestedLen<'a> = Box<dyn Fn() -> usize + 'a>;

/// The value of an attribute as it goes on the wire.
enum V<'a> {
    U32(u32),
    U64(u64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Nested(EmitNested<'a>, NestedLen<'a>),
}

impl V<'_> {
    fn len(&self) -> usize {
        match self {
            V::U32(_) => 4,
            V::U64(_) => 8,
            V::Str(s) => cstr_len(s),
            V::Bytes(b) => b.len(),
            V::Nested(_, n) => n(),
        }
    }
    fn put(&self, buf: &mut [u8]) {
        match self {
            V::U32(v) => buf[..4].copy_from_slice(&v.to_be_bytes()),
            V::U64(v) => buf[..8].copy_from_slice(&v.to_be_bytes()),
            V::Str(s) => emit_cstr(s, buf),
            V::Bytes(b) => buf[..b.len()].copy_from_slice(b),
            V::Nested(f, _) => f(buf),
        }
    }
}

fn nested<'a, T: Emitable>(items: &'a [T]) -> V<'a> {
    V::Nested(Box::new(move |b| emit_all(items, b)), Box::new(move || emitted_len(items)))
}

/// A base chain's hook: where in the stack it runs, and in which order among the hook's chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub hooknum: u32,
    pub priority: i32,
}

impl Hook {
    fn parse(nested: &[u8]) -> Result<Self, DecodeError> {
        let mut h = Hook { hooknum: u32::MAX, priority: 0 };
        for nla in netlink_packet_core::NlasIterator::new(nested) {
            let nla = nla?;
            match nla.kind() {
                NFTA_HOOK_HOOKNUM => h.hooknum = be32(nla.value())?,
                NFTA_HOOK_PRIORITY => h.priority = be32(nla.value())? as i32,
                _ => {}
            }
        }
        Ok(h)
    }
    fn attrs(&self) -> [U32; 2] {
        [U32(NFTA_HOOK_HOOKNUM, self.hooknum), U32(NFTA_HOOK_PRIORITY, self.priority as u32)]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAttr {
    Name(String),
    Flags(u32),
    Use(u32),
    Handle(u64),
    Other(DefaultNla),
}

impl TableAttr {
    fn wire(&self) -> (u16, V<'_>) {
        match self {
            TableAttr::Name(s) => (NFTA_TABLE_NAME, V::Str(s)),
            TableAttr::Flags(v) => (NFTA_TABLE_FLAGS, V::U32(*v)),
            TableAttr::Use(v) => (NFTA_TABLE_USE, V::U32(*v)),
            TableAttr::Handle(v) => (NFTA_TABLE_HANDLE, V::U64(*v)),
            TableAttr::Other(_) => unreachable!("Other is emitted as is"),
        }
    }
    pub fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            NFTA_TABLE_NAME => TableAttr::Name(cstr(v)?),
            NFTA_TABLE_FLAGS => TableAttr::Flags(be32(v)?),
            NFTA_TABLE_USE => TableAttr::Use(be32(v)?),
            NFTA_TABLE_HANDLE => TableAttr::Handle(be64(v)?),
            _ => TableAttr::Other(other(nla)?),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainAttr {
    Table(String),
    Name(String),
    Handle(u64),
    Hook(Hook),
    Policy(u32),
    Use(u32),
    Type(String),
    Flags(u32),
    Other(DefaultNla),
}

impl ChainAttr {
    fn wire(&self) -> (u16, V<'_>) {
        match self {
            ChainAttr::Table(s) => (NFTA_CHAIN_TABLE, V::Str(s)),
            ChainAttr::Name(s) => (NFTA_CHAIN_NAME, V::Str(s)),
            ChainAttr::Handle(v) => (NFTA_CHAIN_HANDLE, V::U64(*v)),
            ChainAttr::Hook(h) => {
                let a = h.attrs();
                (NFTA_CHAIN_HOOK | NLA_F_NESTED, V::Nested(Box::new(move |b| emit_all(&a, b)), Box::new(|| 16)))
            }
            ChainAttr::Policy(v) => (NFTA_CHAIN_POLICY, V::U32(*v)),
            ChainAttr::Use(v) => (NFTA_CHAIN_USE, V::U32(*v)),
            ChainAttr::Type(s) => (NFTA_CHAIN_TYPE, V::Str(s)),
            ChainAttr::Flags(v) => (NFTA_CHAIN_FLAGS, V::U32(*v)),
            ChainAttr::Other(_) => unreachable!("Other is emitted as is"),
        }
    }
    pub fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            NFTA_CHAIN_TABLE => ChainAttr::Table(cstr(v)?),
            NFTA_CHAIN_NAME => ChainAttr::Name(cstr(v)?),
            NFTA_CHAIN_HANDLE => ChainAttr::Handle(be64(v)?),
            NFTA_CHAIN_HOOK => ChainAttr::Hook(Hook::parse(v)?),
            NFTA_CHAIN_POLICY => ChainAttr::Policy(be32(v)?),
            NFTA_CHAIN_USE => ChainAttr::Use(be32(v)?),
            NFTA_CHAIN_TYPE => ChainAttr::Type(cstr(v)?),
            NFTA_CHAIN_FLAGS => ChainAttr::Flags(be32(v)?),
            _ => ChainAttr::Other(other(nla)?),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAttr {
    Table(String),
    Chain(String),
    Handle(u64),
    Expressions(Vec<Expr>),
    /// Handle of the rule this one goes after (with NLM_F_APPEND) or before.
    Position(u64),
    Userdata(Vec<u8>),
    Other(DefaultNla),
}

impl RuleAttr {
    fn wire(&self) -> (u16, V<'_>) {
        match self {
            RuleAttr::Table(s) => (NFTA_RULE_TABLE, V::Str(s)),
            RuleAttr::Chain(s) => (NFTA_RULE_CHAIN, V::Str(s)),
            RuleAttr::Handle(v) => (NFTA_RULE_HANDLE, V::U64(*v)),
            RuleAttr::Expressions(e) => (NFTA_RULE_EXPRESSIONS | NLA_F_NESTED, nested(e)),
            RuleAttr::Position(v) => (NFTA_RULE_POSITION, V::U64(*v)),
            RuleAttr::Userdata(b) => (NFTA_RULE_USERDATA, V::Bytes(b)),
            RuleAttr::Other(_) => unreachable!("Other is emitted as is"),
        }
    }
    pub fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            NFTA_RULE_TABLE => RuleAttr::Table(cstr(v)?),
            NFTA_RULE_CHAIN => RuleAttr::Chain(cstr(v)?),
            NFTA_RULE_HANDLE => RuleAttr::Handle(be64(v)?),
            NFTA_RULE_EXPRESSIONS => RuleAttr::Expressions(parse_exprs(v)?),
            NFTA_RULE_POSITION => RuleAttr::Position(be64(v)?),
            NFTA_RULE_USERDATA => RuleAttr::Userdata(v.to_vec()),
            _ => RuleAttr::Other(other(nla)?),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetAttr {
    Table(String),
    Name(String),
    Flags(u32),
    KeyType(u32),
    KeyLen(u32),
    DataType(u32),
    DataLen(u32),
    /// Identifies a set created in the same batch (before it has a handle).
    Id(u32),
    Handle(u64),
    /// Number of elements (newer kernels dump it).
    Count(u32),
    /// For userspace only: nft reads how to print keys from it.
    Userdata(Vec<u8>),
    Other(DefaultNla),
}

impl SetAttr {
    fn wire(&self) -> (u16, V<'_>) {
        match self {
            SetAttr::Table(s) => (NFTA_SET_TABLE, V::Str(s)),
            SetAttr::Name(s) => (NFTA_SET_NAME, V::Str(s)),
            SetAttr::Flags(v) => (NFTA_SET_FLAGS, V::U32(*v)),
            SetAttr::KeyType(v) => (NFTA_SET_KEY_TYPE, V::U32(*v)),
            SetAttr::KeyLen(v) => (NFTA_SET_KEY_LEN, V::U32(*v)),
            SetAttr::DataType(v) => (NFTA_SET_DATA_TYPE, V::U32(*v)),
            SetAttr::DataLen(v) => (NFTA_SET_DATA_LEN, V::U32(*v)),
            SetAttr::Id(v) => (NFTA_SET_ID, V::U32(*v)),
            SetAttr::Handle(v) => (NFTA_SET_HANDLE, V::U64(*v)),
            SetAttr::Count(v) => (NFTA_SET_COUNT, V::U32(*v)),
            SetAttr::Userdata(b) => (NFTA_SET_USERDATA, V::Bytes(b)),
            SetAttr::Other(_) => unreachable!("Other is emitted as is"),
        }
    }
    pub fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            NFTA_SET_TABLE => SetAttr::Table(cstr(v)?),
            NFTA_SET_NAME => SetAttr::Name(cstr(v)?),
            NFTA_SET_FLAGS => SetAttr::Flags(be32(v)?),
            NFTA_SET_KEY_TYPE => SetAttr::KeyType(be32(v)?),
            NFTA_SET_KEY_LEN => SetAttr::KeyLen(be32(v)?),
            NFTA_SET_DATA_TYPE => SetAttr::DataType(be32(v)?),
            NFTA_SET_DATA_LEN => SetAttr::DataLen(be32(v)?),
            NFTA_SET_ID => SetAttr::Id(be32(v)?),
            NFTA_SET_HANDLE => SetAttr::Handle(be64(v)?),
            NFTA_SET_COUNT => SetAttr::Count(be32(v)?),
            NFTA_SET_USERDATA => SetAttr::Userdata(v.to_vec()),
            _ => SetAttr::Other(other(nla)?),
        })
    }
}

/// One set element: its key (and, for a map, its data). An interval set holds each interval as two
/// elements, its start and its end (flagged NFT_SET_ELEM_INTERVAL_END).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elem {
    pub key: Vec<u8>,
    pub data: Option<Data>,
    pub flags: u32,
    /// Everything else (timeouts, expiration, user data…), kept as it came.
    pub other: Vec<DefaultNla>,
}

impl Elem {
    pub fn parse(nested: &[u8]) -> Result<Self, DecodeError> {
        let mut e = Elem::default();
        for nla in netlink_packet_core::NlasIterator::new(nested) {
            let nla = nla?;
            match nla.kind() {
                NFTA_SET_ELEM_KEY => match Data::parse(nla.value())? {
                    Data::Value(v) => e.key = v,
                    Data::Verdict(_) => return Err(DecodeError::from("element key is a verdict")),
                },
                NFTA_SET_ELEM_DATA => e.data = Some(Data::parse(nla.value())?),
                NFTA_SET_ELEM_FLAGS => e.flags = be32(nla.value())?,
                _ => e.other.push(other(&nla)?),
            }
        }
        Ok(e)
    }
}

impl Nla for Elem {
    fn value_len(&self) -> usize {
        let mut n = ValueNla(NFTA_SET_ELEM_KEY, &self.key).buffer_len();
        if let Some(d) = &self.data {
            n += DataNla(NFTA_SET_ELEM_DATA, d).buffer_len();
        }
        if self.flags != 0 {
            n += 8;
        }
        n + emitted_len(&self.other)
    }
    fn kind(&self) -> u16 {
        NFTA_LIST_ELEM | NLA_F_NESTED
    }
    fn emit_value(&self, buf: &mut [u8]) {
        let mut off = 0;
        let mut put = |a: &dyn Emit, buf: &mut [u8]| {
            let n = a.emitted_len();
            a.put(&mut buf[off..off + n]);
            off += n;
        };
        put(&ValueNla(NFTA_SET_ELEM_KEY, &self.key), buf);
        if let Some(d) = &self.data {
            put(&DataNla(NFTA_SET_ELEM_DATA, d), buf);
        }
        if self.flags != 0 {
            put(&U32(NFTA_SET_ELEM_FLAGS, self.flags), buf);
        }
        for o in &self.other {
            put(o, buf);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemListAttr {
    Table(String),
    Set(String),
    Elements(Vec<Elem>),
    Other(DefaultNla),
}

impl ElemListAttr {
    fn wire(&self) -> (u16, V<'_>) {
        match self {
            ElemListAttr::Table(s) => (NFTA_SET_ELEM_LIST_TABLE, V::Str(s)),
            ElemListAttr::Set(s) => (NFTA_SET_ELEM_LIST_SET, V::Str(s)),
            ElemListAttr::Elements(e) => (NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, nested(e)),
            ElemListAttr::Other(_) => unreachable!("Other is emitted as is"),
        }
    }
    pub fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            NFTA_SET_ELEM_LIST_TABLE => ElemListAttr::Table(cstr(v)?),
            NFTA_SET_ELEM_LIST_SET => ElemListAttr::Set(cstr(v)?),
            NFTA_SET_ELEM_LIST_ELEMENTS => ElemListAttr::Elements(parse_all(v, |n| Elem::parse(n.value()))?),
            _ => ElemListAttr::Other(other(nla)?),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenAttr {
    Id(u32),
    ProcPid(u32),
    ProcName(String),
    Other(DefaultNla),
}

impl GenAttr {
    fn wire(&self) -> (u16, V<'_>) {
        match self {
            GenAttr::Id(v) => (NFTA_GEN_ID, V::U32(*v)),
            GenAttr::ProcPid(v) => (NFTA_GEN_PROC_PID, V::U32(*v)),
            GenAttr::ProcName(s) => (NFTA_GEN_PROC_NAME, V::Str(s)),
            GenAttr::Other(_) => unreachable!("Other is emitted as is"),
        }
    }
    pub fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            NFTA_GEN_ID => GenAttr::Id(be32(v)?),
            NFTA_GEN_PROC_PID => GenAttr::ProcPid(be32(v)?),
            NFTA_GEN_PROC_NAME => GenAttr::ProcName(cstr(v)?),
            _ => GenAttr::Other(other(nla)?),
        })
    }
}

/// An attribute of a trace event (NFT_MSG_TRACE): where a traced packet is and what was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceAttr {
    Table(String),
    Chain(String),
    RuleHandle(u64),
    /// NFT_TRACETYPE_*: a rule matched, the chain ended (return), or a base chain's policy decided.
    Type(u32),
    Verdict(Verdict),
    /// The same for every event of one packet.
    Id(u32),
    NetworkHeader(Vec<u8>),
    TransportHeader(Vec<u8>),
    Iif(u32),
    Oif(u32),
    Mark(u32),
    Nfproto(u32),
    Policy(u32),
    Other(DefaultNla),
}

impl TraceAttr {
    fn wire(&self) -> (u16, V<'_>) {
        match self {
            TraceAttr::Table(s) => (NFTA_TRACE_TABLE, V::Str(s)),
            TraceAttr::Chain(s) => (NFTA_TRACE_CHAIN, V::Str(s)),
            TraceAttr::RuleHandle(v) => (NFTA_TRACE_RULE_HANDLE, V::U64(*v)),
            TraceAttr::Type(v) => (NFTA_TRACE_TYPE, V::U32(*v)),
            TraceAttr::Verdict(v) => {
                let n = VerdictNla(NFTA_TRACE_VERDICT, v);
                let len = n.value_len();
                (NFTA_TRACE_VERDICT | NLA_F_NESTED, V::Nested(Box::new(move |b| n.emit_value(b)), Box::new(move || len)))
            }
            TraceAttr::Id(v) => (NFTA_TRACE_ID, V::U32(*v)),
            TraceAttr::NetworkHeader(b) => (NFTA_TRACE_NETWORK_HEADER, V::Bytes(b)),
            TraceAttr::TransportHeader(b) => (NFTA_TRACE_TRANSPORT_HEADER, V::Bytes(b)),
            TraceAttr::Iif(v) => (NFTA_TRACE_IIF, V::U32(*v)),
            TraceAttr::Oif(v) => (NFTA_TRACE_OIF, V::U32(*v)),
            TraceAttr::Mark(v) => (NFTA_TRACE_MARK, V::U32(*v)),
            TraceAttr::Nfproto(v) => (NFTA_TRACE_NFPROTO, V::U32(*v)),
            TraceAttr::Policy(v) => (NFTA_TRACE_POLICY, V::U32(*v)),
            TraceAttr::Other(_) => unreachable!("Other is emitted as is"),
        }
    }
    pub fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() & !NLA_F_NESTED {
            NFTA_TRACE_TABLE => TraceAttr::Table(cstr(v)?),
            NFTA_TRACE_CHAIN => TraceAttr::Chain(cstr(v)?),
            NFTA_TRACE_RULE_HANDLE => TraceAttr::RuleHandle(be64(v)?),
            NFTA_TRACE_TYPE => TraceAttr::Type(be32(v)?),
            NFTA_TRACE_VERDICT => TraceAttr::Verdict(Verdict::parse(v)?),
            NFTA_TRACE_ID => TraceAttr::Id(be32(v)?),
            NFTA_TRACE_NETWORK_HEADER => TraceAttr::NetworkHeader(v.to_vec()),
            NFTA_TRACE_TRANSPORT_HEADER => TraceAttr::TransportHeader(v.to_vec()),
            NFTA_TRACE_IIF => TraceAttr::Iif(be32(v)?),
            NFTA_TRACE_OIF => TraceAttr::Oif(be32(v)?),
            NFTA_TRACE_MARK => TraceAttr::Mark(be32(v)?),
            NFTA_TRACE_NFPROTO => TraceAttr::Nfproto(be32(v)?),
            NFTA_TRACE_POLICY => TraceAttr::Policy(be32(v)?),
            _ => TraceAttr::Other(other(nla)?),
        })
    }
}

/// Any attribute of an nf_tables message, by the object the message is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftAttr {
    Table(TableAttr),
    Chain(ChainAttr),
    Rule(RuleAttr),
    Set(SetAttr),
    Elems(ElemListAttr),
    Gen(GenAttr),
    Trace(TraceAttr),
    /// An attribute of a message type we do not model.
    Other(DefaultNla),
}

impl NftAttr {
    /// The kind and value, or the raw attribute for the `Other`s.
    fn wire(&self) -> Result<(u16, V<'_>), &DefaultNla> {
        match self {
            NftAttr::Table(TableAttr::Other(o))
            | NftAttr::Chain(ChainAttr::Other(o))
            | NftAttr::Rule(RuleAttr::Other(o))
            | NftAttr::Set(SetAttr::Other(o))
            | NftAttr::Elems(ElemListAttr::Other(o))
            | NftAttr::Gen(GenAttr::Other(o))
            | NftAttr::Trace(TraceAttr::Other(o))
            | NftAttr::Other(o) => Err(o),
            NftAttr::Table(a) => Ok(a.wire()),
            NftAttr::Chain(a) => Ok(a.wire()),
            NftAttr::Rule(a) => Ok(a.wire()),
            NftAttr::Set(a) => Ok(a.wire()),
            NftAttr::Elems(a) => Ok(a.wire()),
            NftAttr::Gen(a) => Ok(a.wire()),
            NftAttr::Trace(a) => Ok(a.wire()),
        }
    }
}

impl Nla for NftAttr {
    fn value_len(&self) -> usize {
        match self.wire() {
            Ok((_, v)) => v.len(),
            Err(o) => o.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self.wire() {
            Ok((k, _)) => k,
            Err(o) => o.kind(),
        }
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self.wire() {
            Ok((_, v)) => v.put(buf),
            Err(o) => o.emit_value(buf),
        }
    }
}
