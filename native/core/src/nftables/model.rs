//! A model of the kernel's nf_tables for the client's tests, with failures injected where chosen. It
//! follows the kernel where the client depends on it (net/netfilter/nf_tables_api.c, nfnetlink.c): a
//! batch is checked message by message against the state the earlier ones made, every refusal is
//! answered and the whole batch then aborted; a batch without its end is checked and aborted; a
//! commit moves the ruleset's generation; a chain or set still referenced cannot be deleted; a jump
//! or lookup must name an existing chain or set; an element already there with other data clashes.
//! The ava suites check the same paths against the real kernel.

use std::collections::{BTreeMap, VecDeque};
use std::io;

use super::attr::*;
use super::constants::*;
use super::expr::{Data, Expr, Verdict};
use super::kernel::NftKernel;
use super::message::NftMessage;
use super::mirror::ElemKey;
use super::request::NftRequest;
use crate::netlink::{BatchOutcome, NlError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChain {
    pub hook: Option<Hook>,
    pub ty: Option<String>,
    pub policy: Option<u32>,
    pub rules: Vec<Vec<Expr>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSet {
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub data_type: Option<u32>,
    pub elems: BTreeMap<ElemKey, Option<Data>>,
}

impl ModelSet {
    /// What the kernel reports as the set's element count (an interval set counts its ends).
    fn count(&self) -> u32 {
        if self.flags & NFT_SET_INTERVAL != 0 {
            self.elems.keys().filter(|(_, f)| f & NFT_SET_ELEM_INTERVAL_END != 0).count() as u32
        } else {
            self.elems.len() as u32
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTable {
    pub chains: BTreeMap<String, ModelChain>,
    pub sets: BTreeMap<String, ModelSet>,
    /// Flowtables and named objects (another program's: the client makes none). The kernel counts
    /// them in the table's use, and deletes them with the table.
    pub others: u32,
}

impl ModelTable {
    fn chain_referenced(&self, name: &str) -> bool {
        let by_rule = self.chains.values().flat_map(|c| c.rules.iter().flatten()).any(|e| e.jump_target() == Some(name));
        let by_elem = self.sets.values().flat_map(|s| s.elems.values()).any(|d| match d {
            Some(Data::Verdict(Verdict::Jump(c) | Verdict::Goto(c))) => c == name,
            _ => false,
        });
        by_rule || by_elem
    }

    fn set_referenced(&self, name: &str) -> bool {
        self.chains.values().flat_map(|c| c.rules.iter().flatten()).any(|e| matches!(e, Expr::Lookup { set, .. } if set == name))
    }
}

/// A failure to inject into the next batch (or read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The request at this index of the next batch is refused with this errno.
    Refuse { index: usize, errno: i32 },
    /// The next batch passes its checks but its commit fails with this errno.
    CommitFails(i32),
    /// The next batch is committed, then the socket fails before its answer is read.
    CommittedThenIoError,
    /// The next batch is committed and its answer lost (no error, no acknowledgement).
    CommittedAnswerLost,
    /// The next batch is not even sent: the socket fails.
    SendFails,
    /// The next dump (or get) fails on the socket.
    ReadFails,
}

pub type TableId = (u8, String);

#[derive(Debug, Default)]
pub struct ModelKernel {
    pub tables: BTreeMap<TableId, ModelTable>,
    pub gen: u32,
    /// Batches that reached the kernel (committed or not).
    pub batches: usize,
    pub faults: VecDeque<Fault>,
}

fn refuse(errno: i32) -> NlError {
    NlError { errno, echoed: Vec::new() }
}

fn io_fault(what: &str) -> io::Error {
    io::Error::other(format!("injected: {what}"))
}

impl ModelKernel {
    pub fn inject(&mut self, f: Fault) {
        self.faults.push_back(f);
    }

    /// A change made by someone else (another program, a hand-typed nft command): the generation
    /// moves.
    pub fn foreign(&mut self, change: impl FnOnce(&mut BTreeMap<TableId, ModelTable>)) {
        change(&mut self.tables);
        self.gen = self.gen.wrapping_add(1);
    }

    pub fn table(&self, family: u8, name: &str) -> Option<&ModelTable> {
        self.tables.get(&(family, name.to_string()))
    }

    fn take_fault(&mut self, pick: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let i = self.faults.iter().position(pick)?;
        self.faults.remove(i)
    }
}

/// Applies one request to `tables`, as the kernel checks and applies it within a batch.
fn apply(tables: &mut BTreeMap<TableId, ModelTable>, r: &NftRequest) -> Result<(), i32> {
    let m = &r.msg;
    let table_name = m.table().ok_or(libc::EINVAL)?.to_string();
    let id = (r.family, table_name);
    if m.cmd == NFT_MSG_NEWTABLE {
        tables.entry(id).or_default();
        return Ok(());
    }
    if m.cmd == NFT_MSG_DELTABLE {
        return tables.remove(&id).map(|_| ()).ok_or(libc::ENOENT);
    }
    let t = tables.get_mut(&id).ok_or(libc::ENOENT)?;
    match m.cmd {
        NFT_MSG_NEWCHAIN => {
            let name = m.object_name().ok_or(libc::EINVAL)?.to_string();
            let mut c = ModelChain { hook: None, ty: None, policy: None, rules: Vec::new() };
            for a in m.chain_attrs() {
                match a {
                    ChainAttr::Hook(h) => c.hook = Some(h.clone()),
                    ChainAttr::Type(ty) => c.ty = Some(ty.clone()),
                    ChainAttr::Policy(p) => c.policy = Some(*p),
                    _ => {}
                }
            }
            match t.chains.get(&name) {
                // A chain cannot be turned from base to regular or back, nor moved to another hook.
                Some(had) if had.hook != c.hook => Err(libc::EOPNOTSUPP),
                Some(_) => Ok(()),
                None => {
                    t.chains.insert(name, c);
                    Ok(())
                }
            }
        }
        NFT_MSG_DELCHAIN => {
            let name = m.object_name().ok_or(libc::EINVAL)?;
            let c = t.chains.get(name).ok_or(libc::ENOENT)?;
            if !c.rules.is_empty() || t.chain_referenced(name) {
                return Err(libc::EBUSY);
            }
            t.chains.remove(name);
            Ok(())
        }
        NFT_MSG_DELRULE => match m.object_name() {
            Some(name) => {
                t.chains.get_mut(name).ok_or(libc::ENOENT)?.rules.clear();
                Ok(())
            }
            None => {
                t.chains.values_mut().for_each(|c| c.rules.clear());
                Ok(())
            }
        },
        NFT_MSG_NEWRULE => {
            let name = m.object_name().ok_or(libc::EINVAL)?;
            let exprs = m.expressions().ok_or(libc::EINVAL)?.to_vec();
            for e in &exprs {
                if let Some(target) = e.jump_target() {
                    if !t.chains.contains_key(target) {
                        return Err(libc::ENOENT);
                    }
                }
                if let Expr::Lookup { set, .. } = e {
                    if !t.sets.contains_key(set) {
                        return Err(libc::ENOENT);
                    }
                }
            }
            t.chains.get_mut(name).ok_or(libc::ENOENT)?.rules.push(exprs);
            Ok(())
        }
        NFT_MSG_NEWSET => {
            let name = m.object_name().ok_or(libc::EINVAL)?.to_string();
            let mut s = ModelSet { flags: 0, key_type: 0, key_len: 0, data_type: None, elems: BTreeMap::new() };
            for a in m.set_attrs() {
                match a {
                    SetAttr::Flags(f) => s.flags = *f,
                    SetAttr::KeyType(k) => s.key_type = *k,
                    SetAttr::KeyLen(l) => s.key_len = *l,
                    SetAttr::DataType(d) => s.data_type = Some(*d),
                    _ => {}
                }
            }
            match t.sets.get(&name) {
                Some(had) if (had.flags, had.key_type, had.key_len, had.data_type) != (s.flags, s.key_type, s.key_len, s.data_type) => {
                    Err(libc::EEXIST)
                }
                Some(_) => Ok(()),
                None => {
                    t.sets.insert(name, s);
                    Ok(())
                }
            }
        }
        NFT_MSG_DELSET => {
            let name = m.object_name().ok_or(libc::EINVAL)?;
            if !t.sets.contains_key(name) {
                return Err(libc::ENOENT);
            }
            if t.set_referenced(name) {
                return Err(libc::EBUSY);
            }
            t.sets.remove(name);
            Ok(())
        }
        NFT_MSG_NEWSETELEM => {
            let name = m.object_name().ok_or(libc::EINVAL)?.to_string();
            let chains: Vec<String> = t.chains.keys().cloned().collect();
            let s = t.sets.get_mut(&name).ok_or(libc::ENOENT)?;
            for e in m.elements() {
                if let Some(Data::Verdict(v)) = &e.data {
                    if v.target().is_some_and(|c| !chains.iter().any(|x| x == c)) {
                        return Err(libc::ENOENT);
                    }
                }
                match s.elems.get(&(e.key.clone(), e.flags)) {
                    Some(d) if *d != e.data => return Err(libc::EEXIST),
                    _ => {
                        s.elems.insert((e.key.clone(), e.flags), e.data.clone());
                    }
                }
            }
            Ok(())
        }
        NFT_MSG_DELSETELEM => {
            let name = m.object_name().ok_or(libc::EINVAL)?;
            let s = t.sets.get_mut(name).ok_or(libc::ENOENT)?;
            let listed = m.attrs.iter().any(|a| matches!(a, NftAttr::Elems(ElemListAttr::Elements(_))));
            if !listed {
                s.elems.clear();
                return Ok(());
            }
            for e in m.elements() {
                s.elems.remove(&(e.key.clone(), e.flags)).ok_or(libc::ENOENT)?;
            }
            Ok(())
        }
        _ => Err(libc::EOPNOTSUPP),
    }
}

fn chain_msg(table: &str, name: &str, c: &ModelChain) -> NftMessage {
    let mut a = vec![NftAttr::Chain(ChainAttr::Table(table.into())), NftAttr::Chain(ChainAttr::Name(name.into()))];
    if let Some(h) = &c.hook {
        a.push(NftAttr::Chain(ChainAttr::Hook(h.clone())));
    }
    if let Some(p) = c.policy {
        a.push(NftAttr::Chain(ChainAttr::Policy(p)));
    }
    if let Some(ty) = &c.ty {
        a.push(NftAttr::Chain(ChainAttr::Type(ty.clone())));
    }
    NftMessage::new(NFT_MSG_NEWCHAIN, a)
}

fn set_msg(table: &str, name: &str, s: &ModelSet) -> NftMessage {
    let mut a = vec![
        NftAttr::Set(SetAttr::Table(table.into())),
        NftAttr::Set(SetAttr::Name(name.into())),
        NftAttr::Set(SetAttr::Flags(s.flags)),
        NftAttr::Set(SetAttr::KeyType(s.key_type)),
        NftAttr::Set(SetAttr::KeyLen(s.key_len)),
    ];
    if let Some(d) = s.data_type {
        a.push(NftAttr::Set(SetAttr::DataType(d)));
    }
    a.push(NftAttr::Set(SetAttr::Count(s.count())));
    NftMessage::new(NFT_MSG_NEWSET, a)
}

/// The value of the table attribute a GET names, and of its chain or set.
fn wanted(m: &NftMessage) -> (Option<&str>, Option<&str>) {
    (m.table(), m.object_name())
}

impl ModelKernel {
    fn read(&self, family: u8, m: &NftMessage) -> Result<Vec<(u8, NftMessage)>, i32> {
        let (want_table, want_obj) = wanted(m);
        let tables =
            self.tables.iter().filter(|((f, n), _)| (family == NFPROTO_UNSPEC || *f == family) && want_table.is_none_or(|t| t == n));
        let mut out = Vec::new();
        match m.cmd {
            NFT_MSG_GETTABLE => {
                for ((f, n), t) in tables {
                    let held = (t.chains.len() + t.sets.len()) as u32 + t.others;
                    out.push((
                        *f,
                        NftMessage::new(
                            NFT_MSG_NEWTABLE,
                            vec![NftAttr::Table(TableAttr::Name(n.clone())), NftAttr::Table(TableAttr::Use(held))],
                        ),
                    ));
                }
            }
            NFT_MSG_GETCHAIN => {
                for ((f, n), t) in tables {
                    for (name, c) in t.chains.iter().filter(|(name, _)| want_obj.is_none_or(|o| o == *name)) {
                        out.push((*f, chain_msg(n, name, c)));
                    }
                }
            }
            NFT_MSG_GETRULE => {
                for ((f, n), t) in tables {
                    for (name, c) in t.chains.iter().filter(|(name, _)| want_obj.is_none_or(|o| o == *name)) {
                        for r in &c.rules {
                            out.push((
                                *f,
                                NftMessage::new(
                                    NFT_MSG_NEWRULE,
                                    vec![
                                        NftAttr::Rule(RuleAttr::Table(n.clone())),
                                        NftAttr::Rule(RuleAttr::Chain(name.clone())),
                                        NftAttr::Rule(RuleAttr::Expressions(r.clone())),
                                    ],
                                ),
                            ));
                        }
                    }
                }
            }
            NFT_MSG_GETSET => {
                for ((f, n), t) in tables {
                    for (name, s) in t.sets.iter().filter(|(name, _)| want_obj.is_none_or(|o| o == *name)) {
                        out.push((*f, set_msg(n, name, s)));
                    }
                }
            }
            NFT_MSG_GETSETELEM => {
                let id = (family, want_table.ok_or(libc::EINVAL)?.to_string());
                let s = self.tables.get(&id).and_then(|t| t.sets.get(want_obj.unwrap_or(""))).ok_or(libc::ENOENT)?;
                let elems =
                    s.elems.iter().map(|((k, fl), d)| Elem { key: k.clone(), data: d.clone(), flags: *fl, other: Vec::new() }).collect();
                out.push((
                    family,
                    NftMessage::new(
                        NFT_MSG_NEWSETELEM,
                        vec![
                            NftAttr::Elems(ElemListAttr::Table(id.1.clone())),
                            NftAttr::Elems(ElemListAttr::Set(want_obj.unwrap_or("").into())),
                            NftAttr::Elems(ElemListAttr::Elements(elems)),
                        ],
                    ),
                ));
            }
            NFT_MSG_GETGEN => out.push((NFPROTO_UNSPEC, NftMessage::new(NFT_MSG_NEWGEN, vec![NftAttr::Gen(GenAttr::Id(self.gen))]))),
            _ => return Err(libc::EOPNOTSUPP),
        }
        Ok(out)
    }
}

impl NftKernel for ModelKernel {
    fn batch(&mut self, reqs: Vec<NftRequest>, commit: bool, generation: Option<u32>) -> io::Result<BatchOutcome> {
        let fault = self.take_fault(|f| !matches!(f, Fault::ReadFails));
        if fault == Some(Fault::SendFails) {
            return Err(io_fault("send"));
        }
        self.batches += 1;
        if reqs.is_empty() {
            // Only the batch's begin and end: nothing asks for an acknowledgement, so none comes.
            return Ok(BatchOutcome::default());
        }
        if generation.is_some_and(|g| g != self.gen) {
            // nfnetlink refuses the batch at its begin message, before looking at any other.
            return Ok(BatchOutcome { batch_error: Some(refuse(libc::ERESTART)), ..BatchOutcome::default() });
        }
        let mut scratch = self.tables.clone();
        let mut out = BatchOutcome { last_acked: true, ..BatchOutcome::default() };
        for (i, r) in reqs.iter().enumerate() {
            let refused = match &fault {
                Some(Fault::Refuse { index, errno }) if *index == i => Err(*errno),
                _ => apply(&mut scratch, r),
            };
            if let Err(errno) = refused {
                out.refused.push((i, refuse(errno)));
            }
        }
        if !commit || !out.refused.is_empty() {
            return Ok(out);
        }
        if let Some(Fault::CommitFails(errno)) = fault {
            out.batch_error = Some(refuse(errno));
            return Ok(out);
        }
        self.tables = scratch;
        self.gen = self.gen.wrapping_add(1);
        match fault {
            Some(Fault::CommittedThenIoError) => Err(io_fault("receive")),
            Some(Fault::CommittedAnswerLost) => Ok(BatchOutcome::default()),
            _ => Ok(out),
        }
    }

    fn dump(&mut self, req: NftRequest) -> io::Result<Result<Vec<(u8, NftMessage)>, NlError>> {
        if self.take_fault(|f| *f == Fault::ReadFails).is_some() {
            return Err(io_fault("dump"));
        }
        Ok(self.read(req.family, &req.msg).map_err(refuse))
    }

    fn get(&mut self, req: NftRequest) -> io::Result<Result<Vec<NftMessage>, NlError>> {
        if self.take_fault(|f| *f == Fault::ReadFails).is_some() {
            return Err(io_fault("get"));
        }
        Ok(match self.read(req.family, &req.msg) {
            Ok(v) if v.is_empty() => Err(refuse(libc::ENOENT)),
            Ok(v) => Ok(v.into_iter().map(|(_, m)| m).collect()),
            Err(e) => Err(refuse(e)),
        })
    }
}
