//! What each operation of a transaction sends, and what it changes in the mirror: the changes are
//! made as the messages are built, each with its undo, so that a transaction the kernel refuses is
//! taken back from the mirror exactly (`Mirror::undo`). An operation that changes nothing in the
//! kernel (members a set already holds) builds no message.

use std::collections::{HashMap, HashSet};

use super::attr::Elem;
use super::cidr::Net;
use super::client::NftClient;
use super::constants::*;
use super::expr::Data;
use super::kernel::NftKernel;
use super::mirror::{ChainM, SetM, TableKey, TableM, Undo};
use super::request::*;
use super::spec::{elem_key, rule_exprs, Op};

impl<K: NftKernel> NftClient<K> {
    /// Messages for `ops` (each with the index of its operation), recording each change to the
    /// mirror in `log`.
    pub(super) fn build(&mut self, ops: &[Op], log: &mut Vec<Undo>) -> Result<Vec<(NftRequest, usize)>, (usize, String)> {
        let mut out: Vec<(NftRequest, usize)> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let (family, table) = op.table();
            let tk: TableKey = (family, table.to_string());
            match op {
                Op::Table { .. } => {
                    out.push((table_msg(family, NFT_MSG_NEWTABLE, table), i));
                    if !self.mirror.tables.contains_key(&tk) {
                        self.mirror.tables.insert(tk.clone(), TableM::default());
                        log.push(Undo::TableAdded(tk));
                    }
                }
                Op::DelTable { .. } => {
                    out.push((table_msg(family, NFT_MSG_DELTABLE, table), i));
                    if let Some(t) = self.mirror.tables.remove(&tk) {
                        log.push(Undo::TableRemoved(tk, t));
                    }
                }
                Op::Chain { chain, hook, .. } => {
                    out.push((new_chain_msg(family, table, chain, hook.as_ref()), i));
                    let t = self.mirror.table_mut(&tk).ok_or((i, format!("table {table} is not ours")))?;
                    if !t.chains.contains_key(chain) {
                        t.chains.insert(chain.clone(), ChainM { hook: *hook, rules: Vec::new() });
                        log.push(Undo::ChainAdded(tk, chain.clone()));
                    }
                }
                Op::DelChain { chain, .. } => {
                    out.push((del_chain_msg(family, table, chain), i));
                    if let Some(c) = self.mirror.table_mut(&tk).and_then(|t| t.chains.remove(chain)) {
                        log.push(Undo::ChainRemoved(tk, chain.clone(), c));
                    }
                }
                Op::FlushChain { chain, .. } => {
                    out.push((flush_chain_msg(family, table, chain), i));
                    if let Some(c) = self.mirror.table_mut(&tk).and_then(|t| t.chains.get_mut(chain)) {
                        log.push(Undo::RulesTaken(tk, chain.clone(), std::mem::take(&mut c.rules)));
                    }
                }
                Op::Rule { chain, stmts, .. } => {
                    let exprs = rule_exprs(stmts).map_err(|e| (i, e))?;
                    let c = self
                        .mirror
                        .table_mut(&tk)
                        .and_then(|t| t.chains.get_mut(chain))
                        .ok_or((i, format!("chain {chain} is not ours")))?;
                    c.rules.push(exprs.clone());
                    log.push(Undo::RulePushed(tk, chain.clone()));
                    out.push((rule_msg(family, table, chain, exprs), i));
                }
                Op::Set { set, key, map, .. } => {
                    let id = self.take_id();
                    out.push((set_msg(family, table, set, *key, *map, id), i));
                    let t = self.mirror.table_mut(&tk).ok_or((i, format!("table {table} is not ours")))?;
                    if !t.sets.contains_key(set) {
                        t.sets.insert(set.clone(), SetM::new(*key, *map));
                        log.push(Undo::SetAdded(tk, set.clone()));
                    }
                }
                Op::DelSet { set, .. } => {
                    out.push((del_set_msg(family, table, set), i));
                    if let Some(s) = self.mirror.table_mut(&tk).and_then(|t| t.sets.remove(set)) {
                        log.push(Undo::SetRemoved(tk, set.clone(), s));
                    }
                }
                Op::FlushSet { set, .. } => {
                    out.push((flush_set_msg(family, table, set), i));
                    if let Some(s) = self.mirror.table_mut(&tk).and_then(|t| t.sets.get_mut(set)) {
                        let union = s.key.bits().map(super::cidr::CidrUnion::new);
                        let old_union = std::mem::replace(&mut s.union, union);
                        log.push(Undo::SetFlushed(tk, set.clone(), std::mem::take(&mut s.elems), old_union));
                    }
                }
                Op::Members { set, add, del, replace, .. } => {
                    let s = self.mirror.table_mut(&tk).and_then(|t| t.sets.get_mut(set)).ok_or((i, format!("set {set} is not ours")))?;
                    let bits = s.key.bits().ok_or((i, format!("set {set} does not hold addresses")))?;
                    // Per interval: whether the kernel held it before this operation, and now.
                    let mut before: HashMap<Net, bool> = HashMap::new();
                    let mut now: HashMap<Net, bool> = HashMap::new();
                    let union = s.union.as_mut().expect("address sets have a union");
                    let mut apply = |c: super::cidr::Change| {
                        for n in c.del {
                            before.entry(n).or_insert(true);
                            now.insert(n, false);
                        }
                        for n in c.add {
                            before.entry(n).or_insert(false);
                            now.insert(n, true);
                        }
                    };
                    let parse = |t: &String| Net::parse(t, bits).map_err(|e| (i, e));
                    let (dels, adds): (Vec<(Net, u32)>, Vec<Net>) = if *replace {
                        // The whole list: members it lacks go (every count of them), the rest stay.
                        let want: HashSet<Net> = add.iter().map(parse).collect::<Result<_, _>>()?;
                        let gone = union.members().filter(|(n, _)| !want.contains(n)).map(|(n, c)| (*n, c)).collect();
                        let have: HashSet<Net> = union.members().map(|(n, _)| *n).collect();
                        (gone, want.into_iter().filter(|n| !have.contains(n)).collect())
                    } else {
                        (
                            del.iter().map(|t| parse(t).map(|n| (n, 1))).collect::<Result<_, _>>()?,
                            add.iter().map(parse).collect::<Result<_, _>>()?,
                        )
                    };
                    for (n, times) in dels {
                        for _ in 0..times {
                            apply(union.remove(n));
                            log.push(Undo::Member(tk.clone(), set.clone(), n, false));
                        }
                    }
                    for n in adds {
                        apply(union.add(n));
                        log.push(Undo::Member(tk.clone(), set.clone(), n, true));
                    }
                    let mut gone = Vec::new();
                    let mut came = Vec::new();
                    for (n, was) in before {
                        match (was, now[&n]) {
                            (true, false) => gone.push(n),
                            (false, true) => came.push(n),
                            _ => {}
                        }
                    }
                    gone.sort();
                    came.sort();
                    let mut dels = Vec::new();
                    for n in &gone {
                        for (k, d) in interval_elems(n, bits) {
                            dels.push(to_elem(&k, &d));
                            let prev = s.elems.remove(&k);
                            log.push(Undo::Elem(tk.clone(), set.clone(), k, prev));
                        }
                    }
                    let mut adds = Vec::new();
                    for n in &came {
                        for (k, d) in interval_elems(n, bits) {
                            adds.push(to_elem(&k, &d));
                            let prev = s.elems.insert(k.clone(), d);
                            log.push(Undo::Elem(tk.clone(), set.clone(), k, prev));
                        }
                    }
                    for r in elem_msgs(family, NFT_MSG_DELSETELEM, table, set, dels) {
                        out.push((r, i));
                    }
                    for r in elem_msgs(family, NFT_MSG_NEWSETELEM, table, set, adds) {
                        out.push((r, i));
                    }
                }
                Op::Elems { set, add, del, .. } => {
                    let s = self.mirror.table_mut(&tk).and_then(|t| t.sets.get_mut(set)).ok_or((i, format!("set {set} is not ours")))?;
                    if s.key.interval() {
                        return Err((i, format!("set {set} holds addresses: use members")));
                    }
                    let mut dels = Vec::new();
                    for k in del {
                        let key = (elem_key(k, s.key).map_err(|e| (i, e))?, 0);
                        let prev = s.elems.remove(&key);
                        dels.push(Elem { key: key.0.clone(), ..Default::default() });
                        log.push(Undo::Elem(tk.clone(), set.clone(), key, prev));
                    }
                    let mut adds = Vec::new();
                    for e in add {
                        let key = (elem_key(&e.key, s.key).map_err(|e| (i, e))?, 0);
                        let data = match (&e.verdict, s.map) {
                            (Some(v), true) => Some(Data::Verdict(v.verdict())),
                            (None, false) => None,
                            _ => return Err((i, format!("element of {set}: a verdict goes with a map, and only with one"))),
                        };
                        adds.push(Elem { key: key.0.clone(), data: data.clone(), ..Default::default() });
                        let prev = s.elems.insert(key.clone(), data);
                        log.push(Undo::Elem(tk.clone(), set.clone(), key, prev));
                    }
                    for r in elem_msgs(family, NFT_MSG_DELSETELEM, table, set, dels) {
                        out.push((r, i));
                    }
                    for r in elem_msgs(family, NFT_MSG_NEWSETELEM, table, set, adds) {
                        out.push((r, i));
                    }
                }
            }
        }
        Ok(out)
    }
}
