//! Drift repair: our tables as the kernel has them, compared with the mirror, and what differs put
//! back in one batch. Objects in our tables that this client did not make are reported, not touched.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::attr::Elem;
use super::client::{nl_err, Made, NftClient};
use super::constants::*;
use super::error::{failure, OpFailure};
use super::expr::Data;
use super::kernel::NftKernel;
use super::mirror::{ElemKey, Mirror, TableKey, TableM};
use super::readback::counted;
use super::request::*;
use super::spec::Family;
use crate::error::{SysCode, SysError};

/// What a reconcile looks at.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only these chains (and the sets in `sets`), when given: what notifications named.
    pub chains: Option<HashSet<(Family, String, String)>>,
    /// Skip everything when the ruleset generation is the one this client last saw.
    pub quick: bool,
    /// Compare the elements of every set (otherwise: of sets in `sets`, and of sets whose element
    /// count the kernel reports differently).
    pub all_elements: bool,
    pub sets: HashSet<(Family, String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct UnknownObject {
    #[cfg_attr(test, ts(as = "Family"))]
    pub family: &'static str,
    pub table: String,
    #[cfg_attr(test, ts(type = "\"chain\" | \"set\""))]
    pub kind: &'static str,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Whether anything was compared (false: the generation had not moved).
    pub checked: bool,
    pub tables_rebuilt: u32,
    pub chains_repaired: u32,
    pub sets_repaired: u32,
    pub elements_added: u32,
    pub elements_removed: u32,
    /// Chains and sets in our tables that this client did not make.
    pub unknown: Vec<UnknownObject>,
    /// The repair itself was refused (the kernel's words).
    pub failures: Vec<OpFailure>,
    /// The repair's answer was lost: whether it committed is not known.
    #[serde(skip)]
    pub lost: bool,
}

impl ReconcileReport {
    pub fn repaired(&self) -> u32 {
        self.tables_rebuilt + self.chains_repaired + self.sets_repaired
    }
}

impl<K: NftKernel> NftClient<K> {
    /// Compares our tables with the mirror and repairs what differs in one batch. Objects in our
    /// tables that we did not make are reported, not touched. With `scope.chains`, only the chains
    /// and sets it names are read and compared (a repair on notifications costs what it repairs).
    ///
    /// After a batch whose outcome was lost (`uncertain`), everything is compared whatever `scope`
    /// says, and what that batch would have made beyond the mirror is removed, until a reconcile has
    /// put the kernel back to the mirror.
    pub fn reconcile(&mut self, scope: &Scope) -> Result<ReconcileReport, SysError> {
        let everything = Scope { all_elements: true, ..Scope::default() };
        let uncertain = self.uncertain.clone();
        let report = self.compare_and_repair(if uncertain.is_some() { &everything } else { scope }, uncertain.as_deref().unwrap_or(&[]))?;
        if uncertain.is_some() && report.failures.is_empty() && !report.lost {
            self.uncertain = None;
        }
        Ok(report)
    }

    fn compare_and_repair(&mut self, scope: &Scope, made: &[Made]) -> Result<ReconcileReport, SysError> {
        let mut report = ReconcileReport::default();
        if self.mirror.tables.is_empty() {
            return Ok(report);
        }
        let gen = self.gen_id()?;
        if scope.quick && self.last_gen == Some(gen) {
            return Ok(report);
        }
        report.checked = true;
        let present: HashSet<(Family, String)> = self.list_tables()?.into_iter().collect();
        let keys: Vec<TableKey> = self.mirror.tables.keys().cloned().collect();
        let mut reqs: Vec<NftRequest> = Vec::new();
        // What a batch of unknown outcome made that the mirror does not hold: removed last, once
        // nothing of ours refers to it any more. Not a table: the batch may have "made" one that was
        // there already (a previous run's, still filtering, or one kept for another program's objects
        // in it), and whether the batch committed or not, the table it left is one the retry of the
        // transaction replaces or fills. Deleting it could only open the host or take what is not ours.
        let mut unmade: Vec<NftRequest> = Vec::new();
        let mut next_id = self.next_id;
        let mut deletes_table = false;
        for tk in keys {
            let (family, ref table) = tk;
            if !present.contains(&tk) {
                reqs.extend(rebuild(&self.mirror, &tk, false, &mut next_id));
                report.tables_rebuilt += 1;
                continue;
            }
            let only: Option<(Vec<String>, Vec<String>)> = scope.chains.as_ref().map(|c| {
                let pick = |v: &HashSet<(Family, String, String)>| {
                    v.iter().filter(|(f, t, _)| *f == family && t == table).map(|(_, _, n)| n.clone()).collect::<Vec<_>>()
                };
                (pick(c), pick(&scope.sets))
            });
            let (chains, mut rules, sets) = match &only {
                None => (self.read_chains(family, table)?, self.read_rules(family, table, None)?, self.read_sets(family, table)?),
                Some((cs, ss)) => {
                    let mut chains = BTreeMap::new();
                    let mut rules = HashMap::new();
                    for n in cs {
                        if let Some(h) = self.get_chain(family, table, n)? {
                            chains.insert(n.clone(), h);
                            rules.insert(n.clone(), self.read_rules(family, table, Some(n))?.remove(n).unwrap_or_default());
                        }
                    }
                    let mut sets = BTreeMap::new();
                    for n in ss {
                        if let Some(s) = self.get_set(family, table, n)? {
                            sets.insert(n.clone(), s);
                        }
                    }
                    (chains, rules, sets)
                }
            };
            let chain_in_scope = |n: &str| only.as_ref().is_none_or(|(c, _)| c.iter().any(|x| x == n));
            let set_in_scope = |n: &str| only.as_ref().is_none_or(|(_, s)| s.iter().any(|x| x == n));
            // Elements to read: of every set in a full check, else of sets named or miscounted.
            let to_read: Vec<String> = self
                .mirror
                .table(&tk)
                .expect("listed from the mirror")
                .sets
                .iter()
                .filter(|(name, s)| {
                    set_in_scope(name)
                        && sets.contains_key(*name)
                        && (scope.all_elements
                            || scope.sets.contains(&(family, table.clone(), (*name).clone()))
                            || sets.get(*name).and_then(|k| k.count).is_some_and(|c| c as usize != counted(s)))
                })
                .map(|(n, _)| n.clone())
                .collect();
            let mut kernel_elems: HashMap<String, HashMap<ElemKey, Option<Data>>> = HashMap::new();
            for n in to_read {
                let e = self.read_elems(family, table, &n)?;
                kernel_elems.insert(n, e);
            }
            let mirror = self.mirror.table(&tk).expect("listed from the mirror");
            // A set of another shape, or a base chain turned regular (or the reverse): rebuild the table.
            let reshaped = mirror.sets.iter().any(|(n, s)| sets.get(n).is_some_and(|k| !k.fits(s)))
                || mirror.chains.iter().any(|(n, c)| chains.get(n).is_some_and(|k| k.is_some() != c.hook.is_some()));
            if reshaped {
                // A rebuild deletes the table whole: never while another program's objects are in it.
                // Then the drift stays, reported, rather than anything not ours going with it.
                let (all_chains, all_sets) = match &only {
                    None => (chains.keys().cloned().collect::<Vec<_>>(), sets.keys().cloned().collect::<Vec<_>>()),
                    Some(_) => {
                        (self.read_chains(family, table)?.into_keys().collect(), self.read_sets(family, table)?.into_keys().collect())
                    }
                };
                // Flowtables and named objects are not listed with chains and sets, but the kernel
                // counts them in the table; we make none, so any is another program's.
                let listed = (all_chains.len() + all_sets.len()) as u32;
                let others = self.table_use(family, table)?.unwrap_or(0).saturating_sub(listed);
                let mirror = self.mirror.table(&tk).expect("listed from the mirror");
                let mut foreign: Vec<UnknownObject> = Vec::new();
                for n in
                    all_chains.into_iter().filter(|n| !mirror.chains.contains_key(n) && !made.contains(&Made::Chain(tk.clone(), n.clone())))
                {
                    foreign.push(UnknownObject { family: family.as_str(), table: table.clone(), kind: "chain", name: n });
                }
                for n in all_sets.into_iter().filter(|n| !mirror.sets.contains_key(n) && !made.contains(&Made::Set(tk.clone(), n.clone())))
                {
                    foreign.push(UnknownObject { family: family.as_str(), table: table.clone(), kind: "set", name: n });
                }
                if !foreign.is_empty() || others > 0 {
                    report.failures.push(OpFailure {
                        op: None,
                        code: "FOREIGN",
                        errno: 0,
                        message: format!(
                            "table {table} was changed in shape and holds {} object(s) not ours: not rebuilt, so as not to remove them",
                            foreign.len() as u32 + others
                        ),
                    });
                    report.unknown.extend(foreign);
                    continue;
                }
                // Deleted whole only if nothing was added since it was read (the batch names the
                // generation read first).
                deletes_table = true;
                reqs.extend(rebuild(&self.mirror, &tk, true, &mut next_id));
                report.tables_rebuilt += 1;
                continue;
            }
            if only.is_none() {
                for (n, _) in chains.iter().filter(|(n, _)| !mirror.chains.contains_key(*n)) {
                    if made.contains(&Made::Chain(tk.clone(), n.clone())) {
                        unmade.push(flush_chain_msg(family, table, n));
                        unmade.push(del_chain_msg(family, table, n));
                        report.chains_repaired += 1;
                        continue;
                    }
                    report.unknown.push(UnknownObject { family: family.as_str(), table: table.clone(), kind: "chain", name: n.clone() });
                }
                for (n, _) in sets.iter().filter(|(n, _)| !mirror.sets.contains_key(*n)) {
                    if made.contains(&Made::Set(tk.clone(), n.clone())) {
                        unmade.push(del_set_msg(family, table, n));
                        report.sets_repaired += 1;
                        continue;
                    }
                    report.unknown.push(UnknownObject { family: family.as_str(), table: table.clone(), kind: "set", name: n.clone() });
                }
            }
            // Sets: create the missing ones, and bring elements in line where they are compared.
            let mut late_elems: Vec<NftRequest> = Vec::new();
            let mut del_elems: Vec<NftRequest> = Vec::new();
            let mut add_elems: Vec<NftRequest> = Vec::new();
            for (name, s) in mirror.sets.iter().filter(|(n, _)| set_in_scope(n)) {
                let missing = !sets.contains_key(name);
                if missing {
                    reqs.push(set_msg(family, table, name, s.key, s.map, next_id));
                    next_id += 1;
                    report.sets_repaired += 1;
                }
                let empty = HashMap::new();
                let kernel = match (missing, kernel_elems.get(name)) {
                    (true, _) => &empty,
                    (false, Some(k)) => k,
                    (false, None) => continue,
                };
                let extra: Vec<Elem> = kernel.iter().filter(|(k, d)| s.elems.get(*k) != Some(d)).map(|(k, d)| to_elem(k, d)).collect();
                let lacking: Vec<Elem> = s.elems.iter().filter(|(k, d)| kernel.get(*k) != Some(d)).map(|(k, d)| to_elem(k, d)).collect();
                if extra.is_empty() && lacking.is_empty() {
                    continue;
                }
                if !missing {
                    report.sets_repaired += 1;
                }
                report.elements_removed += extra.len() as u32;
                report.elements_added += lacking.len() as u32;
                del_elems.extend(elem_msgs(family, NFT_MSG_DELSETELEM, table, name, extra));
                let adds = elem_msgs(family, NFT_MSG_NEWSETELEM, table, name, lacking);
                if s.holds_verdicts() {
                    late_elems.extend(adds);
                } else {
                    add_elems.extend(adds);
                }
            }
            reqs.extend(del_elems);
            reqs.extend(add_elems);
            // Chains: create the missing ones; rewrite those whose rules differ; a base chain whose
            // hook differs is made again (nothing jumps to a base chain).
            let mut rewrite: Vec<NftRequest> = Vec::new();
            for (name, c) in mirror.chains.iter().filter(|(n, _)| chain_in_scope(n)) {
                let had = rules.remove(name).unwrap_or_default();
                match chains.get(name) {
                    None => {
                        reqs.push(new_chain_msg(family, table, name, c.hook.as_ref()));
                        for r in &c.rules {
                            rewrite.push(rule_msg(family, table, name, r.clone()));
                        }
                        report.chains_repaired += 1;
                    }
                    Some(k) => {
                        let hook_off = match (k, &c.hook) {
                            (Some(k), Some(h)) => !k.fits(h),
                            _ => false,
                        };
                        if hook_off {
                            rewrite.push(flush_chain_msg(family, table, name));
                            rewrite.push(del_chain_msg(family, table, name));
                            rewrite.push(new_chain_msg(family, table, name, c.hook.as_ref()));
                        } else if had == c.rules {
                            continue;
                        } else {
                            rewrite.push(flush_chain_msg(family, table, name));
                        }
                        for r in &c.rules {
                            rewrite.push(rule_msg(family, table, name, r.clone()));
                        }
                        report.chains_repaired += 1;
                    }
                }
            }
            reqs.extend(rewrite);
            reqs.extend(late_elems);
        }
        self.next_id = next_id;
        // Chains before sets: a chain's rules may name a set.
        unmade.sort_by_key(|r| r.msg.cmd != NFT_MSG_DELRULE && r.msg.cmd != NFT_MSG_DELCHAIN);
        reqs.extend(unmade);
        if !reqs.is_empty() {
            let out = match self.kernel.batch(reqs, true, deletes_table.then_some(gen)) {
                Ok(o) => o,
                Err(e) => {
                    // Sent or not, committed or not: the next reconcile compares everything.
                    self.uncertain.get_or_insert_with(Vec::new);
                    return Err(nl_err(SysCode::NftablesFailed, "nf_tables repair", e));
                }
            };
            if !out.committed() {
                if let Some(e) = &out.batch_error {
                    report.failures.push(failure(None, e.errno, &e.echoed, "repair"));
                }
                for (_, e) in &out.refused {
                    report.failures.push(failure(None, e.errno, &e.echoed, "repair"));
                }
                if report.failures.is_empty() {
                    // Neither refused nor acknowledged: the answer was lost (see `NftClient::run`).
                    self.uncertain.get_or_insert_with(Vec::new);
                    report.lost = true;
                    report.failures.push(OpFailure {
                        op: None,
                        code: "KERNEL",
                        errno: 0,
                        message: "repair: the kernel's answer to the batch was lost".into(),
                    });
                }
            } else {
                self.commits += 1;
            }
        }
        self.last_gen = Some(self.gen_id()?);
        Ok(report)
    }
}

/// The messages that make table `tk` again from the mirror (deleting it first when `replace`).
fn rebuild(mirror: &Mirror, tk: &TableKey, replace: bool, next_id: &mut u32) -> Vec<NftRequest> {
    let (family, table) = (tk.0, tk.1.clone());
    let empty = TableM::default();
    let t = mirror.table(tk).unwrap_or(&empty);
    let mut out = Vec::new();
    if replace {
        out.push(table_msg(family, NFT_MSG_DELTABLE, &table));
    }
    out.push(table_msg(family, NFT_MSG_NEWTABLE, &table));
    for (name, s) in &t.sets {
        out.push(set_msg(family, &table, name, s.key, s.map, *next_id));
        *next_id += 1;
    }
    let mut late = Vec::new();
    for (name, s) in &t.sets {
        let elems: Vec<Elem> = s.elems.iter().map(|(k, d)| to_elem(k, d)).collect();
        let m = elem_msgs(family, NFT_MSG_NEWSETELEM, &table, name, elems);
        if s.holds_verdicts() {
            late.extend(m);
        } else {
            out.extend(m);
        }
    }
    for (name, c) in &t.chains {
        out.push(new_chain_msg(family, &table, name, c.hook.as_ref()));
    }
    for (name, c) in &t.chains {
        for r in &c.rules {
            out.push(rule_msg(family, &table, name, r.clone()));
        }
    }
    out.extend(late);
    out
}
