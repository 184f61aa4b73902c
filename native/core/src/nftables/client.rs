//! The nf_tables client: one netlink socket, the mirror of what it committed, and the three things
//! it does — apply a transaction (one batch, all or nothing), read its tables back and repair what
//! differs from the mirror, and answer what the kernel supports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use netlink_packet_core::{NetlinkMessage, NLM_F_APPEND, NLM_F_CREATE};
use serde::Serialize;

use super::attr::*;
use super::cidr::{Bits, Net};
use super::constants::*;
use super::error::{failure, OpFailure};
use super::expr::{Data, Expr, Verdict};
use super::message::NftMessage;
use super::mirror::{ChainM, ElemKey, Mirror, SetM, TableKey, TableM, Undo};
use super::spec::{elem_key, rule_exprs, Family, HookSpec, KeyType, Op};
use crate::error::{SysCode, SysError};
use crate::netlink::{request, NfGenMsg, NfnlBody, NfnlMessage, NfnlSocket, NFNL_SUBSYS_NFTABLES};

type Request = NetlinkMessage<NfnlMessage>;

/// Element lists are split so each stays well inside a nested attribute's 16-bit length.
const MAX_ELEMS_BYTES: usize = 48 << 10;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactResult {
    pub committed: bool,
    pub failures: Vec<OpFailure>,
}

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
#[serde(rename_all = "camelCase")]
pub struct UnknownObject {
    pub family: &'static str,
    pub table: String,
    pub kind: &'static str,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
}

impl ReconcileReport {
    pub fn repaired(&self) -> u32 {
        self.tables_rebuilt + self.chains_repaired + self.sets_repaired
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainDesc {
    pub name: String,
    pub base: bool,
    pub rules: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetDesc {
    pub name: String,
    pub map: bool,
    pub elements: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableDesc {
    pub family: &'static str,
    pub name: String,
    pub chains: Vec<ChainDesc>,
    pub sets: Vec<SetDesc>,
}

fn msg(family: Family, cmd: u8, flags: u16, attrs: Vec<NftAttr>) -> Request {
    request(NfGenMsg::new(family.nfproto()), NftMessage::new(cmd, attrs), flags)
}

fn nl_err(code: SysCode, what: &str, e: std::io::Error) -> SysError {
    let mut s = SysError::from_io(code, &e);
    s.message = format!("{what}: {}", s.message);
    s
}

fn kernel_err(what: &str, errno: i32) -> SysError {
    SysError { code: SysCode::NftablesFailed, errno: Some(errno), message: format!("{what}: {}", failure(None, errno, &[], what).message) }
}

fn set_flags(key: KeyType, map: bool) -> u32 {
    (if key.interval() { NFT_SET_INTERVAL } else { 0 }) | (if map { NFT_SET_MAP } else { 0 })
}

fn chain_attrs(table: &str, chain: &str, hook: Option<&HookSpec>) -> Vec<NftAttr> {
    let mut a = vec![NftAttr::Chain(ChainAttr::Table(table.into())), NftAttr::Chain(ChainAttr::Name(chain.into()))];
    if let Some(h) = hook {
        a.push(NftAttr::Chain(ChainAttr::Hook(Hook { hooknum: h.hook.num(), priority: h.priority })));
        a.push(NftAttr::Chain(ChainAttr::Type("filter".into())));
        a.push(NftAttr::Chain(ChainAttr::Policy(NF_ACCEPT as u32)));
    }
    a
}

fn rule_msg(family: Family, table: &str, chain: &str, exprs: Vec<Expr>) -> Request {
    msg(family, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, vec![
        NftAttr::Rule(RuleAttr::Table(table.into())),
        NftAttr::Rule(RuleAttr::Chain(chain.into())),
        NftAttr::Rule(RuleAttr::Expressions(exprs)),
    ])
}

fn set_msg(family: Family, table: &str, set: &str, key: KeyType, map: bool, id: u32) -> Request {
    let mut a = vec![
        NftAttr::Set(SetAttr::Table(table.into())),
        NftAttr::Set(SetAttr::Name(set.into())),
        NftAttr::Set(SetAttr::Flags(set_flags(key, map))),
        NftAttr::Set(SetAttr::KeyType(key.nft_type())),
        NftAttr::Set(SetAttr::KeyLen(key.len())),
        NftAttr::Set(SetAttr::Id(id)),
    ];
    if map {
        a.push(NftAttr::Set(SetAttr::DataType(NFT_DATA_VERDICT)));
    }
    a.push(NftAttr::Set(SetAttr::Userdata(set_userdata(key))));
    msg(family, NFT_MSG_NEWSET, NLM_F_CREATE, a)
}

/// What nft reads to print a set's keys: their byte order (libnftnl's set udata, a TLV of type
/// KEYBYTEORDER; nft's byte orders: 1 host, 2 big endian). The kernel keeps it without looking.
fn set_userdata(key: KeyType) -> Vec<u8> {
    const NFTNL_UDATA_SET_KEYBYTEORDER: u8 = 0;
    let order: u32 = if key.interval() || key == KeyType::Icmp6Type { 2 } else { 1 };
    let mut v = vec![NFTNL_UDATA_SET_KEYBYTEORDER, 4];
    v.extend_from_slice(&order.to_ne_bytes());
    v
}

/// Element messages for `elems`, each list within a nested attribute's size. Elements go in key
/// order, an interval's end before the next one's start at the same key: the kernel checks interval
/// sets for overlaps as elements arrive, and adjacent intervals given out of order look overlapping
/// to it (measured: EEXIST).
fn elem_msgs(family: Family, cmd: u8, table: &str, set: &str, mut elems: Vec<Elem>) -> Vec<Request> {
    elems.sort_by(|a, b| a.key.cmp(&b.key).then(b.flags.cmp(&a.flags)));
    let mut out = Vec::new();
    let mut cur: Vec<Elem> = Vec::new();
    let mut bytes = 0;
    let flags = if cmd == NFT_MSG_NEWSETELEM { NLM_F_CREATE } else { 0 };
    let flush = |cur: Vec<Elem>, out: &mut Vec<Request>| {
        out.push(msg(family, cmd, flags, vec![
            NftAttr::Elems(ElemListAttr::Table(table.into())),
            NftAttr::Elems(ElemListAttr::Set(set.into())),
            NftAttr::Elems(ElemListAttr::Elements(cur)),
        ]));
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

fn flush_set_msg(family: Family, table: &str, set: &str) -> Request {
    msg(family, NFT_MSG_DELSETELEM, 0, vec![NftAttr::Elems(ElemListAttr::Table(table.into())), NftAttr::Elems(ElemListAttr::Set(set.into()))])
}

fn flush_chain_msg(family: Family, table: &str, chain: &str) -> Request {
    msg(family, NFT_MSG_DELRULE, 0, vec![NftAttr::Rule(RuleAttr::Table(table.into())), NftAttr::Rule(RuleAttr::Chain(chain.into()))])
}

/// The start (and end) elements of an interval.
fn interval_elems(n: &Net, bits: Bits) -> Vec<(ElemKey, Option<Data>)> {
    let mut v = vec![((n.start_key(bits), 0), None)];
    if let Some(end) = n.end_key(bits) {
        v.push(((end, NFT_SET_ELEM_INTERVAL_END), None));
    }
    v
}

fn to_elem((key, flags): &ElemKey, data: &Option<Data>) -> Elem {
    Elem { key: key.clone(), data: data.clone(), flags: *flags, other: Vec::new() }
}

pub struct NftClient {
    sock: NfnlSocket,
    pub mirror: Mirror,
    portid: u32,
    last_gen: Option<u32>,
    next_id: u32,
    /// Transactions committed (for tests and stats).
    pub commits: u64,
}

impl NftClient {
    pub fn open(netns: Option<&Path>) -> Result<Self, SysError> {
        let sock = NfnlSocket::open(netns).map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables socket", e))?;
        sock.cap_acks().map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables socket", e))?;
        let portid = sock.portid().map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables socket", e))?;
        Ok(NftClient { sock, mirror: Mirror::default(), portid, last_gen: None, next_id: 1, commits: 0 })
    }

    /// The socket's port id: the kernel's notifications of this client's own changes carry it.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    pub fn owns_table(&self, family: Family, table: &str) -> bool {
        self.mirror.tables.contains_key(&(family, table.to_string()))
    }

    pub fn transact_json(&mut self, json: &str) -> Result<TransactResult, SysError> {
        let ops: Vec<Op> = serde_json::from_str(json).map_err(|e| SysError::new(SysCode::InvalidArgument, format!("nf_tables operations: {e}")))?;
        self.transact(&ops)
    }

    /// Applies `ops` as one batch. The mirror follows only if the kernel committed it; otherwise
    /// `failures` says which operations the kernel refused (nothing changed).
    pub fn transact(&mut self, ops: &[Op]) -> Result<TransactResult, SysError> {
        self.run(ops, true)
    }

    /// Like `transact`, but the batch is sent without its end: the kernel checks every operation and
    /// then aborts, changing nothing (`nft --check`). The mirror is left as it was.
    pub fn check(&mut self, ops: &[Op]) -> Result<TransactResult, SysError> {
        self.run(ops, false)
    }

    fn run(&mut self, ops: &[Op], commit: bool) -> Result<TransactResult, SysError> {
        if ops.is_empty() {
            return Ok(TransactResult { committed: commit, failures: Vec::new() });
        }
        let mut log = Vec::new();
        let built = match self.build(ops, &mut log) {
            Ok(b) => b,
            Err((op, message)) => {
                self.mirror.undo(log);
                return Err(SysError::new(SysCode::InvalidArgument, format!("nf_tables operation {op}: {message}")));
            }
        };
        let (reqs, owners): (Vec<Request>, Vec<usize>) = built.into_iter().unzip();
        let out = match self.sock.batch(NFNL_SUBSYS_NFTABLES, reqs, commit) {
            Ok(o) => o,
            Err(e) => {
                self.mirror.undo(log);
                return Err(nl_err(SysCode::NftablesFailed, "nf_tables batch", e));
            }
        };
        let mut failures = Vec::new();
        if let Some(e) = &out.batch_error {
            failures.push(failure(None, e.errno, &e.echoed, "transaction"));
        }
        for (i, e) in &out.refused {
            let op = owners[*i];
            if failures.iter().any(|f: &OpFailure| f.op == Some(op)) {
                continue;
            }
            failures.push(failure(Some(op), e.errno, &e.echoed, &describe_op(&ops[op])));
        }
        let committed = commit && out.committed();
        if committed {
            self.commits += 1;
        } else {
            self.mirror.undo(log);
            if failures.is_empty() && !out.last_acked {
                failures.push(OpFailure { op: None, code: "KERNEL", errno: 0, message: "the kernel did not go through the whole batch; nothing was committed".into() });
            }
        }
        Ok(TransactResult { committed, failures })
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Messages for `ops` (each with the index of its operation), recording each change to the
    /// mirror in `log`.
    fn build(&mut self, ops: &[Op], log: &mut Vec<Undo>) -> Result<Vec<(Request, usize)>, (usize, String)> {
        let mut out: Vec<(Request, usize)> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let (family, table) = op.table();
            let tk: TableKey = (family, table.to_string());
            match op {
                Op::Table { .. } => {
                    out.push((msg(family, NFT_MSG_NEWTABLE, NLM_F_CREATE, vec![NftAttr::Table(TableAttr::Name(table.into()))]), i));
                    if !self.mirror.tables.contains_key(&tk) {
                        self.mirror.tables.insert(tk.clone(), TableM::default());
                        log.push(Undo::TableAdded(tk));
                    }
                }
                Op::DelTable { .. } => {
                    out.push((msg(family, NFT_MSG_DELTABLE, 0, vec![NftAttr::Table(TableAttr::Name(table.into()))]), i));
                    if let Some(t) = self.mirror.tables.remove(&tk) {
                        log.push(Undo::TableRemoved(tk, t));
                    }
                }
                Op::Chain { chain, hook, .. } => {
                    out.push((msg(family, NFT_MSG_NEWCHAIN, NLM_F_CREATE, chain_attrs(table, chain, hook.as_ref())), i));
                    let t = self.mirror.table_mut(&tk).ok_or((i, format!("table {table} is not ours")))?;
                    if !t.chains.contains_key(chain) {
                        t.chains.insert(chain.clone(), ChainM { hook: *hook, rules: Vec::new() });
                        log.push(Undo::ChainAdded(tk, chain.clone()));
                    }
                }
                Op::DelChain { chain, .. } => {
                    out.push((msg(family, NFT_MSG_DELCHAIN, 0, chain_attrs(table, chain, None)), i));
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
                    let c = self.mirror.table_mut(&tk).and_then(|t| t.chains.get_mut(chain)).ok_or((i, format!("chain {chain} is not ours")))?;
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
                    out.push((msg(family, NFT_MSG_DELSET, 0, vec![NftAttr::Set(SetAttr::Table(table.into())), NftAttr::Set(SetAttr::Name(set.into()))]), i));
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
                        (del.iter().map(|t| parse(t).map(|n| (n, 1))).collect::<Result<_, _>>()?, add.iter().map(parse).collect::<Result<_, _>>()?)
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

    // ---- reading back ----

    fn dump(&mut self, family: u8, cmd: u8, attrs: Vec<NftAttr>) -> Result<Vec<(u8, NftMessage)>, SysError> {
        let req = request(NfGenMsg::new(family), NftMessage::new(cmd, attrs), 0);
        let res = self.sock.dump(req).map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables dump", e))?;
        let msgs = res.map_err(|e| kernel_err("nf_tables dump", e.errno))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m.body {
                NfnlBody::Nftables(n) => Some((m.header.family, n)),
                _ => None,
            })
            .collect())
    }

    /// The ruleset's generation: it moves with every committed change, anyone's.
    pub fn gen_id(&mut self) -> Result<u32, SysError> {
        let req = request(NfGenMsg::new(NFPROTO_UNSPEC), NftMessage::new(NFT_MSG_GETGEN, vec![]), 0);
        let mut out = self.sock.transact(vec![req]).map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables generation", e))?;
        let o = out.pop().expect("one outcome per request");
        o.result.map_err(|e| kernel_err("nf_tables generation", e.errno))?;
        o.replies
            .iter()
            .find_map(|m| m.nftables().and_then(|n| n.gen_id()))
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

    fn read_chains(&mut self, family: Family, table: &str) -> Result<BTreeMap<String, Option<HookSpecRead>>, SysError> {
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
    fn read_rules(&mut self, family: Family, table: &str, chain: Option<&str>) -> Result<HashMap<String, Vec<Vec<Expr>>>, SysError> {
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

    fn read_sets(&mut self, family: Family, table: &str) -> Result<BTreeMap<String, SetRead>, SysError> {
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

    fn read_elems(&mut self, family: Family, table: &str, set: &str) -> Result<HashMap<ElemKey, Option<Data>>, SysError> {
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
        if !self.list_tables()?.iter().any(|(f, n)| *f == family && n == table) {
            return Ok(None);
        }
        let chains = self.read_chains(family, table)?;
        let rules = self.read_rules(family, table, None)?;
        let sets = self.read_sets(family, table)?;
        let mut d = TableDesc { family: family.as_str(), name: table.to_string(), chains: Vec::new(), sets: Vec::new() };
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
    fn get_chain(&mut self, family: Family, table: &str, chain: &str) -> Result<Option<Option<HookSpecRead>>, SysError> {
        let attrs = vec![NftAttr::Chain(ChainAttr::Table(table.into())), NftAttr::Chain(ChainAttr::Name(chain.into()))];
        let Some(m) = self.get(family, NFT_MSG_GETCHAIN, attrs)? else { return Ok(None) };
        Ok(Some(chain_hook(&m)))
    }

    fn get_set(&mut self, family: Family, table: &str, set: &str) -> Result<Option<SetRead>, SysError> {
        let attrs = vec![NftAttr::Set(SetAttr::Table(table.into())), NftAttr::Set(SetAttr::Name(set.into()))];
        Ok(self.get(family, NFT_MSG_GETSET, attrs)?.map(|m| set_read(&m).1))
    }

    /// One object by name; None when the kernel has no such object.
    fn get(&mut self, family: Family, cmd: u8, attrs: Vec<NftAttr>) -> Result<Option<NftMessage>, SysError> {
        let req = request(NfGenMsg::new(family.nfproto()), NftMessage::new(cmd, attrs), 0);
        let mut out = self.sock.transact(vec![req]).map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables get", e))?;
        let o = out.pop().expect("one outcome per request");
        match o.result {
            Err(e) if e.errno == libc::ENOENT => Ok(None),
            Err(e) => Err(kernel_err("nf_tables get", e.errno)),
            Ok(()) => Ok(o.replies.into_iter().find_map(|m| match m.body {
                NfnlBody::Nftables(n) => Some(n),
                _ => None,
            })),
        }
    }

    /// Compares our tables with the mirror and repairs what differs in one batch. Objects in our
    /// tables that we did not make are reported, not touched. With `scope.chains`, only the chains
    /// and sets it names are read and compared (a repair on notifications costs what it repairs).
    pub fn reconcile(&mut self, scope: &Scope) -> Result<ReconcileReport, SysError> {
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
        let mut reqs: Vec<Request> = Vec::new();
        let mut next_id = self.next_id;
        for tk in keys {
            let (family, ref table) = tk;
            if !present.contains(&tk) {
                reqs.extend(rebuild(&self.mirror, &tk, false, &mut next_id));
                report.tables_rebuilt += 1;
                continue;
            }
            let only: Option<(Vec<String>, Vec<String>)> = scope.chains.as_ref().map(|c| {
                let pick = |v: &HashSet<(Family, String, String)>| v.iter().filter(|(f, t, _)| *f == family && t == table).map(|(_, _, n)| n.clone()).collect::<Vec<_>>();
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
                reqs.extend(rebuild(&self.mirror, &tk, true, &mut next_id));
                report.tables_rebuilt += 1;
                continue;
            }
            if only.is_none() {
                for (n, _) in chains.iter().filter(|(n, _)| !mirror.chains.contains_key(*n)) {
                    report.unknown.push(UnknownObject { family: family.as_str(), table: table.clone(), kind: "chain", name: n.clone() });
                }
                for (n, _) in sets.iter().filter(|(n, _)| !mirror.sets.contains_key(*n)) {
                    report.unknown.push(UnknownObject { family: family.as_str(), table: table.clone(), kind: "set", name: n.clone() });
                }
            }
            // Sets: create the missing ones, and bring elements in line where they are compared.
            let mut late_elems: Vec<Request> = Vec::new();
            let mut del_elems: Vec<Request> = Vec::new();
            let mut add_elems: Vec<Request> = Vec::new();
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
            let mut rewrite: Vec<Request> = Vec::new();
            for (name, c) in mirror.chains.iter().filter(|(n, _)| chain_in_scope(n)) {
                let had = rules.remove(name).unwrap_or_default();
                match chains.get(name) {
                    None => {
                        reqs.push(msg(family, NFT_MSG_NEWCHAIN, NLM_F_CREATE, chain_attrs(table, name, c.hook.as_ref())));
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
                            rewrite.push(msg(family, NFT_MSG_DELCHAIN, 0, chain_attrs(table, name, None)));
                            rewrite.push(msg(family, NFT_MSG_NEWCHAIN, NLM_F_CREATE, chain_attrs(table, name, c.hook.as_ref())));
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
        if !reqs.is_empty() {
            let out = self.sock.batch(NFNL_SUBSYS_NFTABLES, reqs, true).map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables repair", e))?;
            if !out.committed() {
                if let Some(e) = &out.batch_error {
                    report.failures.push(failure(None, e.errno, &e.echoed, "repair"));
                }
                for (_, e) in &out.refused {
                    report.failures.push(failure(None, e.errno, &e.echoed, "repair"));
                }
                if report.failures.is_empty() {
                    report.failures.push(OpFailure { op: None, code: "KERNEL", errno: 0, message: "repair: the kernel did not go through the whole batch".into() });
                }
            } else {
                self.commits += 1;
            }
        }
        self.last_gen = Some(self.gen_id()?);
        Ok(report)
    }

    /// Forgets a table (after it was removed by other means): it is no longer compared or repaired.
    pub fn forget(&mut self, family: Family, table: &str) {
        self.mirror.tables.remove(&(family, table.to_string()));
    }

    /// Rules of a mirrored chain jump only to chains the mirror holds (a self-check for tests).
    pub fn mirror_targets_exist(&self) -> bool {
        self.mirror.tables.values().all(|t| {
            t.chains.values().flat_map(|c| c.rules.iter().flatten()).filter_map(|e| e.jump_target()).all(|c| t.chains.contains_key(c))
                && t.sets.values().flat_map(|s| s.elems.values()).all(|d| match d {
                    Some(Data::Verdict(Verdict::Jump(c) | Verdict::Goto(c))) => t.chains.contains_key(c),
                    _ => true,
                })
        })
    }
}

/// The messages that make table `tk` again from the mirror (deleting it first when `replace`).
fn rebuild(mirror: &Mirror, tk: &TableKey, replace: bool, next_id: &mut u32) -> Vec<Request> {
    let (family, table) = (tk.0, tk.1.clone());
    let empty = TableM::default();
    let t = mirror.table(tk).unwrap_or(&empty);
    let mut out = Vec::new();
    if replace {
        out.push(msg(family, NFT_MSG_DELTABLE, 0, vec![NftAttr::Table(TableAttr::Name(table.clone()))]));
    }
    out.push(msg(family, NFT_MSG_NEWTABLE, NLM_F_CREATE, vec![NftAttr::Table(TableAttr::Name(table.clone()))]));
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
        out.push(msg(family, NFT_MSG_NEWCHAIN, NLM_F_CREATE, chain_attrs(&table, name, c.hook.as_ref())));
    }
    for (name, c) in &t.chains {
        for r in &c.rules {
            out.push(rule_msg(family, &table, name, r.clone()));
        }
    }
    out.extend(late);
    out
}

/// A chain message's hook as read back (None for a regular chain).
fn chain_hook(m: &NftMessage) -> Option<HookSpecRead> {
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
fn set_read(m: &NftMessage) -> (Option<String>, SetRead) {
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
struct HookSpecRead {
    hooknum: u32,
    priority: i32,
    ty: Option<String>,
    policy: Option<u32>,
}

impl HookSpecRead {
    fn fits(&self, h: &HookSpec) -> bool {
        self.hooknum == h.hook.num() && self.priority == h.priority && self.ty.as_deref() == Some("filter") && self.policy == Some(NF_ACCEPT as u32)
    }
}

#[derive(Debug, Clone, Default)]
struct SetRead {
    flags: u32,
    key_type: u32,
    key_len: u32,
    data_type: Option<u32>,
    count: Option<u32>,
}

impl SetRead {
    fn fits(&self, s: &SetM) -> bool {
        self.flags == set_flags(s.key, s.map) && self.key_len == s.key.len() && self.key_type == s.key.nft_type() && self.data_type == s.map.then_some(NFT_DATA_VERDICT)
    }
}

/// What the kernel's element count (NFTA_SET_COUNT) is expected to say of a set: its elements, but
/// for an interval set its intervals with an end (measured on 6.18: a start alone, which only an
/// interval reaching the top of the space has, is not counted).
fn counted(s: &SetM) -> usize {
    if s.key.interval() {
        s.elems.keys().filter(|(_, f)| f & NFT_SET_ELEM_INTERVAL_END != 0).count()
    } else {
        s.elems.len()
    }
}

fn describe_op(op: &Op) -> String {
    match op {
        Op::Table { family, table } => format!("add table {} {table}", family.as_str()),
        Op::DelTable { family, table } => format!("delete table {} {table}", family.as_str()),
        Op::Chain { chain, .. } => format!("add chain {chain}"),
        Op::DelChain { chain, .. } => format!("delete chain {chain}"),
        Op::FlushChain { chain, .. } => format!("flush chain {chain}"),
        Op::Rule { chain, .. } => format!("add rule to {chain}"),
        Op::Set { set, .. } => format!("add set {set}"),
        Op::DelSet { set, .. } => format!("delete set {set}"),
        Op::FlushSet { set, .. } => format!("flush set {set}"),
        Op::Members { set, .. } => format!("members of {set}"),
        Op::Elems { set, .. } => format!("elements of {set}"),
    }
}

/// What the kernel of a namespace supports, found by batches the kernel checks and then aborts
/// (nothing is created).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Support {
    /// nf_tables with the inet family, base chains at prerouting and forward, verdict maps, marks,
    /// conntrack state and notrack: what the inet table needs.
    pub inet: bool,
    /// Bridge-family base chains that set the mark: what bridged ports need.
    pub bridge: bool,
    /// Conntrack in the bridge family (nf_conntrack_bridge): filtering bridged traffic statefully
    /// without br_netfilter.
    pub conntrack_bridge: bool,
    /// Bridge meta keys (NFT_BRIDGE_META: ibrname and friends).
    pub bridge_meta: bool,
    /// Why something is missing, as the kernel said it.
    pub notes: Vec<String>,
}

pub fn probe(netns: Option<&Path>) -> Result<Support, SysError> {
    let mut c = NftClient::open(netns)?;
    let table = format!("sg-probe-{}", std::process::id());
    let mut s = Support::default();
    let base = |family: Family, chain: &str, hook: super::spec::HookName, priority: i32| Op::Chain {
        family,
        table: table.clone(),
        chain: chain.into(),
        hook: Some(HookSpec { hook, priority }),
    };
    let json = |v: serde_json::Value| -> Vec<super::spec::Stmt> { serde_json::from_value(v).expect("probe statements") };
    use super::spec::HookName::*;
    let inet = vec![
        Op::Table { family: Family::Inet, table: table.clone() },
        Op::Set { family: Family::Inet, table: table.clone(), set: "m".into(), key: KeyType::Mark, map: true },
        Op::Set { family: Family::Inet, table: table.clone(), set: "a".into(), key: KeyType::Ipv4, map: false },
        Op::Chain { family: Family::Inet, table: table.clone(), chain: "c".into(), hook: None },
        base(Family::Inet, "raw", Prerouting, -300),
        base(Family::Inet, "pre", Prerouting, 0),
        base(Family::Inet, "fwd", Forward, 0),
        Op::Rule { family: Family::Inet, table: table.clone(), chain: "raw".into(), stmts: json(serde_json::json!([{ "m": "markIn", "mask": 0xffff0000u32, "set": "m" }, { "m": "notrack" }])) },
        Op::Rule { family: Family::Inet, table: table.clone(), chain: "pre".into(), stmts: json(serde_json::json!([{ "m": "vmap", "key": { "mark": 0xffff0000u32 }, "map": "m" }])) },
        Op::Rule { family: Family::Inet, table: table.clone(), chain: "c".into(), stmts: json(serde_json::json!([
            { "m": "ctState", "states": ["established", "related"] }, { "m": "nfproto", "v": 4 }, { "m": "addrIn", "family": 4, "dir": "saddr", "set": "a" },
            { "m": "etherSaddr", "mac": "02:00:00:00:00:01" }, { "m": "verdict", "v": "return" }])) },
    ];
    let r = c.check(&inet)?;
    s.inet = r.failures.is_empty();
    s.notes.extend(r.failures.iter().map(|f| format!("inet: {}", f.message)));
    let bridge = vec![
        Op::Table { family: Family::Bridge, table: table.clone() },
        Op::Set { family: Family::Bridge, table: table.clone(), set: "d".into(), key: KeyType::Ifname, map: true },
        base(Family::Bridge, "pre", Prerouting, -200),
        base(Family::Bridge, "fwd", Forward, -200),
        Op::Rule { family: Family::Bridge, table: table.clone(), chain: "pre".into(), stmts: json(serde_json::json!([{ "m": "markSet", "mask": 0xffff0000u32, "id": 0x10000 }, { "m": "vmap", "key": "iifname", "map": "d" }])) },
        Op::Rule { family: Family::Bridge, table: table.clone(), chain: "fwd".into(), stmts: json(serde_json::json!([{ "m": "ethertype", "v": 0x0806 }, { "m": "arpSender", "mac": "02:00:00:00:00:01", "cidr": "10.0.0.0/24" }, { "m": "verdict", "v": "return" }])) },
    ];
    let r = c.check(&bridge)?;
    s.bridge = r.failures.is_empty();
    s.notes.extend(r.failures.iter().map(|f| format!("bridge: {}", f.message)));
    // Conntrack in a bridge-family chain needs nf_conntrack_bridge: the kernel refuses the ct
    // expression there without it.
    let mut ct = bridge[..3].to_vec();
    ct.push(Op::Rule { family: Family::Bridge, table: table.clone(), chain: "pre".into(), stmts: json(serde_json::json!([{ "m": "ctState", "states": ["established"] }, { "m": "verdict", "v": "accept" }])) });
    let r = c.check(&ct)?;
    s.conntrack_bridge = r.failures.is_empty();
    s.notes.extend(r.failures.iter().map(|f| format!("nf_conntrack_bridge: {}", f.message)));
    // A bridge meta key (ibrname) needs NFT_BRIDGE_META; probed with a raw expression.
    let mut reqs: Vec<(Request, usize)> = Vec::new();
    let mut log = Vec::new();
    if let Ok(b) = c.build(&bridge[..3], &mut log) {
        reqs = b;
    }
    c.mirror.undo(log);
    reqs.push((rule_msg(Family::Bridge, &table, "pre", vec![Expr::Meta { key: NFT_META_BRI_IIFNAME, dreg: NFT_REG_1 }]), 3));
    let out = c.sock.batch(NFNL_SUBSYS_NFTABLES, reqs.into_iter().map(|(r, _)| r).collect(), false).map_err(|e| nl_err(SysCode::NftablesFailed, "probe", e))?;
    s.bridge_meta = out.batch_error.is_none() && out.refused.is_empty() && out.last_acked;
    if !s.bridge_meta {
        s.notes.push("bridge meta: the kernel refuses meta ibrname (CONFIG_NFT_BRIDGE_META)".into());
    }
    Ok(s)
}
