//! Reading our tables back from the kernel: the ruleset's generation, tables, chains (with their
//! hooks), rules (as expressions), sets (their shape and element count) and elements — for drift
//! repair (`reconcile`), status and cleanup.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::attr::*;
use super::client::{kernel_err, nl_err, NftClient};
use super::constants::*;
use super::expr::{Data, Expr};
use super::kernel::NftKernel;
use super::message::NftMessage;
use super::mirror::{ElemKey, SetM};
use super::request::{set_flags, NftRequest};
use super::spec::{Family, HookSpec};
use crate::error::{SysCode, SysError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ChainDesc {
    pub name: String,
    pub base: bool,
    pub rules: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct SetDesc {
    pub name: String,
    pub map: bool,
    pub elements: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct TableDesc {
    #[cfg_attr(test, ts(as = "Family"))]
    pub family: &'static str,
    pub name: String,
    pub chains: Vec<ChainDesc>,
    pub sets: Vec<SetDesc>,
    /// Objects the kernel counts in the table beyond the chains and sets listed: flowtables and
    /// named objects (counters, quotas, limits, ct helpers…), which only another program makes.
    pub others: u32,
    /// The ruleset's generation read before anything else: what the description holds is what
    /// the table held at it, if the generation has not moved since (`NftClient::transact_at`).
    pub generation: u32,
}

/// One rule as the kernel lists it: where it is, and what its counter counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct RuleStat {
    pub chain: String,
    /// The kernel's handle of the rule (what trace events name it by).
    #[cfg_attr(test, ts(type = "number"))]
    pub handle: u64,
    /// Its place in the chain, from 0.
    pub position: u32,
    /// Whether the whole chain reads back as this client wrote it: then `position` is the index of
    /// the rule as written. False for a chain that drifted (until it is repaired) and for tables this
    /// client did not write (iptables-nft's).
    pub as_written: bool,
    /// Whether it has a counter.
    pub counted: bool,
    /// The counts of its counter (0 without one).
    #[cfg_attr(test, ts(type = "number"))]
    pub packets: u64,
    #[cfg_attr(test, ts(type = "number"))]
    pub bytes: u64,
}

impl<K: NftKernel> NftClient<K> {
    /// Every rule of a table (of any family: `nfproto`), or of one chain of it, with its handle and
    /// counts, in each chain's order.
    pub fn rule_stats(&mut self, nfproto: u8, table: &str, chain: Option<&str>) -> Result<Vec<RuleStat>, SysError> {
        let mut attrs = vec![NftAttr::Rule(RuleAttr::Table(table.into()))];
        if let Some(c) = chain {
            attrs.push(NftAttr::Rule(RuleAttr::Chain(c.into())));
        }
        let mut by_chain: BTreeMap<String, Vec<(u64, Vec<Expr>)>> = BTreeMap::new();
        for (_, m) in self.dump(nfproto, NFT_MSG_GETRULE, attrs)? {
            if m.table() != Some(table) {
                continue;
            }
            let Some(c) = m.object_name() else { continue };
            let handle = m.attrs.iter().find_map(|a| match a {
                NftAttr::Rule(RuleAttr::Handle(h)) => Some(*h),
                _ => None,
            });
            let exprs = m.expressions().map(|e| e.to_vec()).unwrap_or_default();
            by_chain.entry(c.to_string()).or_default().push((handle.unwrap_or(0), exprs));
        }
        let written = Family::from_nfproto(nfproto).and_then(|f| self.mirror.table(&(f, table.to_string())));
        let mut out = Vec::new();
        for (c, rules) in by_chain {
            let mine = written.and_then(|t| t.chains.get(&c));
            let as_written = mine.is_some_and(|m| m.rules.len() == rules.len() && m.rules.iter().zip(&rules).all(|(w, (_, k))| w == k));
            for (i, (handle, exprs)) in rules.into_iter().enumerate() {
                let counts = exprs.iter().find_map(|e| match e {
                    Expr::Counter(c) => Some(*c),
                    _ => None,
                });
                let (counted, counts) = (counts.is_some(), counts.unwrap_or_default());
                out.push(RuleStat {
                    chain: c.clone(),
                    handle,
                    position: i as u32,
                    as_written,
                    counted,
                    packets: counts.packets,
                    bytes: counts.bytes,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn dump(&mut self, family: u8, cmd: u8, attrs: Vec<NftAttr>) -> Result<Vec<(u8, NftMessage)>, SysError> {
        let res =
            self.kernel.dump(NftRequest::new(family, cmd, 0, attrs)).map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables dump", e))?;
        res.map_err(|e| kernel_err("nf_tables dump", e.errno))
    }

    /// The ruleset's generation: it moves with every committed change, anyone's.
    pub fn gen_id(&mut self) -> Result<u32, SysError> {
        let req = NftRequest::new(NFPROTO_UNSPEC, NFT_MSG_GETGEN, 0, vec![]);
        let replies = self.kernel.get(req).map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables generation", e))?;
        replies
            .map_err(|e| kernel_err("nf_tables generation", e.errno))?
            .iter()
            .find_map(|m| m.gen_id())
            .ok_or_else(|| SysError::new(SysCode::NftablesFailed, "the kernel did not state the ruleset generation"))
    }

    /// Tables of the inet and bridge families (those this crate uses).
    pub fn list_tables(&mut self) -> Result<Vec<(Family, String)>, SysError> {
        let mut out = Vec::new();
        for (fam, m) in self.dump(NFPROTO_UNSPEC, NFT_MSG_GETTABLE, vec![])? {
            if let (Some(f), Some(name)) = (Family::from_nfproto(fam), m.table()) {
                out.push((f, name.to_string()));
            }
        }
        Ok(out)
    }

    /// How many objects the kernel counts in a table (its chains, sets, flowtables and named
    /// objects: NFTA_TABLE_USE), or None when the table is not there.
    pub(super) fn table_use(&mut self, family: Family, table: &str) -> Result<Option<u32>, SysError> {
        let Some(m) = self.get(family, NFT_MSG_GETTABLE, vec![NftAttr::Table(TableAttr::Name(table.into()))])? else { return Ok(None) };
        m.table_use()
            .map(Some)
            .ok_or_else(|| SysError::new(SysCode::NftablesFailed, format!("the kernel did not say what table {table} holds")))
    }

    pub(super) fn read_chains(&mut self, family: Family, table: &str) -> Result<BTreeMap<String, Option<HookSpecRead>>, SysError> {
        let mut out = BTreeMap::new();
        for (_, m) in self.dump(family.nfproto(), NFT_MSG_GETCHAIN, vec![NftAttr::Chain(ChainAttr::Table(table.into()))])? {
            if m.table() != Some(table) {
                continue;
            }
            let name = m.chain_attrs().find_map(|a| match a {
                ChainAttr::Name(n) => Some(n.clone()),
                _ => None,
            });
            if let Some(n) = name {
                out.insert(n, chain_hook(&m));
            }
        }
        Ok(out)
    }

    /// Rules of the table's chains (or of one chain), in order.
    pub(super) fn read_rules(
        &mut self,
        family: Family,
        table: &str,
        chain: Option<&str>,
    ) -> Result<HashMap<String, Vec<Vec<Expr>>>, SysError> {
        let mut out: HashMap<String, Vec<Vec<Expr>>> = HashMap::new();
        let mut attrs = vec![NftAttr::Rule(RuleAttr::Table(table.into()))];
        if let Some(c) = chain {
            attrs.push(NftAttr::Rule(RuleAttr::Chain(c.into())));
        }
        for (_, m) in self.dump(family.nfproto(), NFT_MSG_GETRULE, attrs)? {
            if m.table() != Some(table) {
                continue;
            }
            if let Some(c) = m.object_name() {
                out.entry(c.to_string()).or_default().push(m.expressions().map(|e| e.to_vec()).unwrap_or_default());
            }
        }
        Ok(out)
    }

    pub(super) fn read_sets(&mut self, family: Family, table: &str) -> Result<BTreeMap<String, SetRead>, SysError> {
        let mut out = BTreeMap::new();
        for (_, m) in self.dump(family.nfproto(), NFT_MSG_GETSET, vec![NftAttr::Set(SetAttr::Table(table.into()))])? {
            if m.table() != Some(table) {
                continue;
            }
            if let (Some(n), r) = set_read(&m) {
                out.insert(n, r);
            }
        }
        Ok(out)
    }

    pub(super) fn read_elems(&mut self, family: Family, table: &str, set: &str) -> Result<HashMap<ElemKey, Option<Data>>, SysError> {
        let mut out = HashMap::new();
        let attrs = vec![NftAttr::Elems(ElemListAttr::Table(table.into())), NftAttr::Elems(ElemListAttr::Set(set.into()))];
        for (_, m) in self.dump(family.nfproto(), NFT_MSG_GETSETELEM, attrs)? {
            for e in m.elements() {
                out.insert((e.key.clone(), e.flags), e.data.clone());
            }
        }
        Ok(out)
    }

    /// What one of our tables holds, as the kernel says (for status and cleanup).
    pub fn describe(&mut self, family: Family, table: &str) -> Result<Option<TableDesc>, SysError> {
        let generation = self.gen_id()?;
        let Some(held) = self.table_use(family, table)? else { return Ok(None) };
        let chains = self.read_chains(family, table)?;
        let rules = self.read_rules(family, table, None)?;
        let sets = self.read_sets(family, table)?;
        let others = held.saturating_sub((chains.len() + sets.len()) as u32);
        let mut d =
            TableDesc { family: family.as_str(), name: table.to_string(), chains: Vec::new(), sets: Vec::new(), others, generation };
        for (name, hook) in chains {
            let n = rules.get(&name).map(|r| r.len()).unwrap_or(0) as u32;
            d.chains.push(ChainDesc { name, base: hook.is_some(), rules: n });
        }
        for (name, s) in sets {
            let elements = match s.count {
                Some(c) => c,
                None => self.read_elems(family, table, &name)?.len() as u32,
            };
            d.sets.push(SetDesc { name, map: s.flags & NFT_SET_MAP != 0, elements });
        }
        Ok(Some(d))
    }

    /// One chain's hook (None for a regular chain), or None when the chain is not there.
    pub(super) fn get_chain(&mut self, family: Family, table: &str, chain: &str) -> Result<Option<Option<HookSpecRead>>, SysError> {
        let attrs = vec![NftAttr::Chain(ChainAttr::Table(table.into())), NftAttr::Chain(ChainAttr::Name(chain.into()))];
        let Some(m) = self.get(family, NFT_MSG_GETCHAIN, attrs)? else { return Ok(None) };
        Ok(Some(chain_hook(&m)))
    }

    pub(super) fn get_set(&mut self, family: Family, table: &str, set: &str) -> Result<Option<SetRead>, SysError> {
        let attrs = vec![NftAttr::Set(SetAttr::Table(table.into())), NftAttr::Set(SetAttr::Name(set.into()))];
        Ok(self.get(family, NFT_MSG_GETSET, attrs)?.map(|m| set_read(&m).1))
    }

    /// One object by name; None when the kernel has no such object.
    pub(super) fn get(&mut self, family: Family, cmd: u8, attrs: Vec<NftAttr>) -> Result<Option<NftMessage>, SysError> {
        let req = NftRequest::new(family.nfproto(), cmd, 0, attrs);
        match self.kernel.get(req).map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables get", e))? {
            Err(e) if e.errno == libc::ENOENT => Ok(None),
            Err(e) => Err(kernel_err("nf_tables get", e.errno)),
            Ok(replies) => Ok(replies.into_iter().next()),
        }
    }
}

/// A chain message's hook as read back (None for a regular chain).
pub(super) fn chain_hook(m: &NftMessage) -> Option<HookSpecRead> {
    let mut hook = None;
    let mut ty = None;
    let mut policy = None;
    for a in m.chain_attrs() {
        match a {
            ChainAttr::Hook(h) => hook = Some(h.clone()),
            ChainAttr::Type(t) => ty = Some(t.clone()),
            ChainAttr::Policy(p) => policy = Some(*p),
            _ => {}
        }
    }
    hook.map(|h| HookSpecRead { hooknum: h.hooknum, priority: h.priority, ty, policy })
}

/// A set message's name and shape.
pub(super) fn set_read(m: &NftMessage) -> (Option<String>, SetRead) {
    let mut r = SetRead::default();
    let mut name = None;
    for a in m.set_attrs() {
        match a {
            SetAttr::Name(n) => name = Some(n.clone()),
            SetAttr::Flags(f) => r.flags = *f,
            SetAttr::KeyType(t) => r.key_type = *t,
            SetAttr::KeyLen(l) => r.key_len = *l,
            SetAttr::DataType(t) => r.data_type = Some(*t),
            SetAttr::Count(c) => r.count = Some(*c),
            _ => {}
        }
    }
    (name, r)
}

/// A base chain's hook as read back.
#[derive(Debug, Clone)]
pub(super) struct HookSpecRead {
    pub hooknum: u32,
    pub priority: i32,
    pub ty: Option<String>,
    pub policy: Option<u32>,
}

impl HookSpecRead {
    pub(super) fn fits(&self, h: &HookSpec) -> bool {
        self.hooknum == h.hook.num()
            && self.priority == h.priority
            && self.ty.as_deref() == Some("filter")
            && self.policy == Some(NF_ACCEPT as u32)
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct SetRead {
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub data_type: Option<u32>,
    pub count: Option<u32>,
}

impl SetRead {
    pub(super) fn fits(&self, s: &SetM) -> bool {
        self.flags == set_flags(s.key, s.map)
            && self.key_len == s.key.key_len()
            && self.key_type == s.key.nft_type()
            && self.data_type == s.map.then_some(NFT_DATA_VERDICT)
    }
}

/// What the kernel's element count (NFTA_SET_COUNT) is expected to say of a set: its elements, but
/// for an interval set its intervals with an end (measured on 6.18: a start alone, which only an
/// interval reaching the top of the space has, is not counted).
pub(super) fn counted(s: &SetM) -> usize {
    if s.key.interval() {
        s.elems.keys().filter(|(_, f)| f & NFT_SET_ELEM_INTERVAL_END != 0).count()
    } else {
        s.elems.len()
    }
}
