//! What this client made the kernel hold in its tables: every chain with its rules (as expressions,
//! exactly as the kernel dumps them back), every set with its elements (and, for address sets, the
//! members they were derived from). Changed only by transactions the kernel committed: while a
//! transaction is being built its changes are recorded with their undo, and undone if the kernel
//! refuses it. Drift is judged against it.

use std::collections::{BTreeMap, HashMap};

use super::cidr::{CidrUnion, Net};
use super::expr::{Data, Expr, Verdict};
use super::spec::{Family, HookSpec, KeyType};

pub type TableKey = (Family, String);
/// An element's key bytes and flags (an interval's end differs from a start by its flag alone).
pub type ElemKey = (Vec<u8>, u32);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainM {
    pub hook: Option<HookSpec>,
    pub rules: Vec<Vec<Expr>>,
}

#[derive(Debug, Clone)]
pub struct SetM {
    pub key: KeyType,
    pub map: bool,
    pub elems: HashMap<ElemKey, Option<Data>>,
    /// Address sets: the members the elements are derived from.
    pub union: Option<CidrUnion>,
}

impl SetM {
    pub fn new(key: KeyType, map: bool) -> Self {
        SetM { key, map, elems: HashMap::new(), union: key.bits().map(CidrUnion::new) }
    }
    /// Whether an element's data names a chain (a verdict map): such elements go in after chains.
    pub fn holds_verdicts(&self) -> bool {
        self.map
    }
}

#[derive(Debug, Clone, Default)]
pub struct TableM {
    pub chains: BTreeMap<String, ChainM>,
    pub sets: BTreeMap<String, SetM>,
}

#[derive(Debug, Default)]
pub struct Mirror {
    pub tables: BTreeMap<TableKey, TableM>,
}

/// How to take back one change to the mirror.
pub enum Undo {
    TableAdded(TableKey),
    TableRemoved(TableKey, TableM),
    ChainAdded(TableKey, String),
    ChainRemoved(TableKey, String, ChainM),
    RulesTaken(TableKey, String, Vec<Vec<Expr>>),
    RulePushed(TableKey, String),
    SetAdded(TableKey, String),
    SetRemoved(TableKey, String, SetM),
    SetFlushed(TableKey, String, HashMap<ElemKey, Option<Data>>, Option<CidrUnion>),
    /// The element's value before (None: it was absent).
    Elem(TableKey, String, ElemKey, Option<Option<Data>>),
    /// A member was added (true) or removed (false).
    Member(TableKey, String, Net, bool),
}

impl Mirror {
    pub fn table(&self, k: &TableKey) -> Option<&TableM> {
        self.tables.get(k)
    }
    pub fn table_mut(&mut self, k: &TableKey) -> Option<&mut TableM> {
        self.tables.get_mut(k)
    }

    pub fn undo(&mut self, log: Vec<Undo>) {
        for u in log.into_iter().rev() {
            match u {
                Undo::TableAdded(k) => {
                    self.tables.remove(&k);
                }
                Undo::TableRemoved(k, t) => {
                    self.tables.insert(k, t);
                }
                Undo::ChainAdded(k, c) => {
                    if let Some(t) = self.tables.get_mut(&k) {
                        t.chains.remove(&c);
                    }
                }
                Undo::ChainRemoved(k, c, m) => {
                    if let Some(t) = self.tables.get_mut(&k) {
                        t.chains.insert(c, m);
                    }
                }
                Undo::RulesTaken(k, c, rules) => {
                    if let Some(ch) = self.tables.get_mut(&k).and_then(|t| t.chains.get_mut(&c)) {
                        ch.rules = rules;
                    }
                }
                Undo::RulePushed(k, c) => {
                    if let Some(ch) = self.tables.get_mut(&k).and_then(|t| t.chains.get_mut(&c)) {
                        ch.rules.pop();
                    }
                }
                Undo::SetAdded(k, s) => {
                    if let Some(t) = self.tables.get_mut(&k) {
                        t.sets.remove(&s);
                    }
                }
                Undo::SetRemoved(k, s, m) => {
                    if let Some(t) = self.tables.get_mut(&k) {
                        t.sets.insert(s, m);
                    }
                }
                Undo::SetFlushed(k, s, elems, union) => {
                    if let Some(set) = self.tables.get_mut(&k).and_then(|t| t.sets.get_mut(&s)) {
                        set.elems = elems;
                        set.union = union;
                    }
                }
                Undo::Elem(k, s, key, before) => {
                    if let Some(set) = self.tables.get_mut(&k).and_then(|t| t.sets.get_mut(&s)) {
                        match before {
                            Some(v) => set.elems.insert(key, v),
                            None => set.elems.remove(&key),
                        };
                    }
                }
                Undo::Member(k, s, net, added) => {
                    if let Some(u) = self.tables.get_mut(&k).and_then(|t| t.sets.get_mut(&s)).and_then(|s| s.union.as_mut()) {
                        if added {
                            u.remove(net);
                        } else {
                            u.add(net);
                        }
                    }
                }
            }
        }
    }
}

impl Mirror {
    /// Rules of a mirrored chain, and elements of its verdict maps, jump only to chains the mirror
    /// holds.
    pub fn targets_exist(&self) -> bool {
        self.tables.values().all(|t| {
            t.chains.values().flat_map(|c| c.rules.iter().flatten()).filter_map(|e| e.jump_target()).all(|c| t.chains.contains_key(c))
                && t.sets.values().flat_map(|s| s.elems.values()).all(|d| match d {
                    Some(Data::Verdict(Verdict::Jump(c) | Verdict::Goto(c))) => t.chains.contains_key(c),
                    _ => true,
                })
        })
    }
}
