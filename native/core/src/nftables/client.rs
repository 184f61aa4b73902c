//! The nf_tables client: the kernel (a netlink socket, or a model in tests), the mirror of what it
//! committed, and transactions — one batch each, all or nothing, the mirror following only what the
//! kernel committed. Read-back (`readback`), drift repair (`reconcile`) and what the kernel supports
//! (`probe`) are its other parts.

use std::path::Path;

use serde::Serialize;

use super::error::{failure, OpFailure};
use super::kernel::NftKernel;
use super::mirror::{Mirror, TableKey, Undo};
use super::reconcile::Scope;
use super::spec::{Family, Op};
use crate::error::{SysCode, SysError};
use crate::netlink::NfnlSocket;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct TransactResult {
    pub committed: bool,
    pub failures: Vec<OpFailure>,
}

pub struct NftClient<K: NftKernel = NfnlSocket> {
    pub(super) kernel: K,
    pub mirror: Mirror,
    portid: u32,
    pub(super) last_gen: Option<u32>,
    pub(super) next_id: u32,
    /// Set when the kernel may hold something other than the mirror: a batch was sent but its
    /// answer was lost, so whether it committed is unknown. Holds what such batches would have made
    /// (the mirror does not know of it). Everything is compared and put back to the mirror before
    /// the next transaction.
    pub(super) uncertain: Option<Vec<Made>>,
    /// Transactions committed (for tests and stats).
    pub commits: u64,
}

pub(super) fn nl_err(code: SysCode, what: &str, e: std::io::Error) -> SysError {
    let mut s = SysError::from_io(code, &e);
    s.message = format!("{what}: {}", s.message);
    s
}

pub(super) fn kernel_err(what: &str, errno: i32) -> SysError {
    SysError { code: SysCode::NftablesFailed, errno: Some(errno), message: format!("{what}: {}", failure(None, errno, &[], what).message) }
}

impl NftClient<NfnlSocket> {
    pub fn open(netns: Option<&Path>) -> Result<Self, SysError> {
        let sock = NfnlSocket::open(netns).map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables socket", e))?;
        sock.cap_acks().map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables socket", e))?;
        let portid = sock.portid().map_err(|e| nl_err(SysCode::NftablesFailed, "nf_tables socket", e))?;
        Ok(NftClient::with_kernel(sock, portid))
    }
}

impl<K: NftKernel> NftClient<K> {
    /// A client of `kernel`, whose socket has port id `portid`.
    pub fn with_kernel(kernel: K, portid: u32) -> Self {
        NftClient { kernel, mirror: Mirror::default(), portid, last_gen: None, next_id: 1, uncertain: None, commits: 0 }
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// The socket's port id: the kernel's notifications of this client's own changes carry it.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    pub fn owns_table(&self, family: Family, table: &str) -> bool {
        self.mirror.tables.contains_key(&(family, table.to_string()))
    }

    /// `transact` (or `transact_at`, with `generation`) of operations given as JSON.
    pub fn transact_json(&mut self, json: &str, generation: Option<u32>) -> Result<TransactResult, SysError> {
        let ops: Vec<Op> =
            serde_json::from_str(json).map_err(|e| SysError::new(SysCode::InvalidArgument, format!("nf_tables operations: {e}")))?;
        self.run(&ops, true, generation)
    }

    /// Applies `ops` as one batch. The mirror follows only if the kernel committed it; otherwise
    /// `failures` says which operations the kernel refused (nothing changed). Operations that change
    /// nothing in the kernel (members it already holds) send nothing: a transaction of only those
    /// is committed without a batch.
    pub fn transact(&mut self, ops: &[Op]) -> Result<TransactResult, SysError> {
        self.run(ops, true, None)
    }

    /// Like `transact`, but only if the ruleset is still at `generation` (as `describe` read it):
    /// otherwise the kernel refuses the whole batch (code `RETRY`) and nothing changes. For what was
    /// decided from a read — deleting a table found to hold nothing of another program's — so that
    /// nothing added after the read goes with it.
    pub fn transact_at(&mut self, ops: &[Op], generation: u32) -> Result<TransactResult, SysError> {
        self.run(ops, true, Some(generation))
    }

    /// Like `transact`, but the batch is sent without its end: the kernel checks every operation and
    /// then aborts, changing nothing (`nft --check`). The mirror is left as it was.
    pub fn check(&mut self, ops: &[Op]) -> Result<TransactResult, SysError> {
        self.run(ops, false, None)
    }

    fn run(&mut self, ops: &[Op], commit: bool, generation: Option<u32>) -> Result<TransactResult, SysError> {
        if ops.is_empty() {
            return Ok(TransactResult { committed: commit, failures: Vec::new() });
        }
        if commit && self.uncertain.is_some() {
            // What the kernel holds is not known: put it back to the mirror first, so that this
            // transaction's changes are made to the state they were planned against.
            self.reconcile(&Scope::default())?;
        }
        let mut log = Vec::new();
        let built = match self.build(ops, &mut log) {
            Ok(b) => b,
            Err((op, message)) => {
                self.mirror.undo(log);
                return Err(SysError::new(SysCode::InvalidArgument, format!("nf_tables operation {op}: {message}")));
            }
        };
        if built.is_empty() {
            // Nothing to send: the kernel already holds what the operations ask for. An empty batch
            // would carry no message to acknowledge, and so could not be told from a refused one.
            if !commit {
                self.mirror.undo(log);
            }
            return Ok(TransactResult { committed: commit, failures: Vec::new() });
        }
        let (reqs, owners): (Vec<_>, Vec<usize>) = built.into_iter().unzip();
        let out = match self.kernel.batch(reqs, commit, generation) {
            Ok(o) => o,
            Err(e) => {
                let made = made_by(&log);
                self.mirror.undo(log);
                if commit {
                    self.outcome_unknown(made);
                }
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
            self.follow_own_commit();
            return Ok(TransactResult { committed, failures });
        }
        let made = made_by(&log);
        self.mirror.undo(log);
        if failures.is_empty() && !out.last_acked {
            // Neither refused nor acknowledged: the kernel answers every batch it reads with one or
            // the other, so its answer was lost, and whether it committed is not known.
            if commit {
                self.outcome_unknown(made);
            }
            failures.push(OpFailure {
                op: None,
                code: "KERNEL",
                errno: 0,
                message: "the kernel's answer to the batch was lost; its tables were read back and put back as they were before it".into(),
            });
        }
        Ok(TransactResult { committed, failures })
    }

    /// A committing batch whose outcome is not known: the mirror holds the state before it, the
    /// kernel either that or the state after. Everything is compared and put back to the mirror now
    /// (the caller retries the transaction, as for a refusal), or before the next transaction if
    /// that cannot be done now.
    fn outcome_unknown(&mut self, made: Vec<Made>) {
        self.uncertain.get_or_insert_with(Vec::new).extend(made);
        let _ = self.reconcile(&Scope::default());
    }

    /// After a commit of ours: the generation moves by one per committed batch, so if it stands at
    /// most one past the one at which the kernel last matched the mirror, nobody else committed in
    /// between and it matches still — a quick reconcile need not read anything. Otherwise (or if the
    /// generation cannot be read) the next quick reconcile compares.
    fn follow_own_commit(&mut self) {
        let Some(matched) = self.last_gen else { return };
        if let Ok(now) = self.gen_id() {
            if now == matched || now == matched.wrapping_add(1) {
                self.last_gen = Some(now);
            }
        }
    }

    pub(super) fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Forgets a table (after it was removed by other means): it is no longer compared or repaired.
    pub fn forget(&mut self, family: Family, table: &str) {
        self.mirror.tables.remove(&(family, table.to_string()));
    }

    /// Rules of a mirrored chain jump only to chains the mirror holds (a self-check for tests).
    pub fn mirror_targets_exist(&self) -> bool {
        self.mirror.targets_exist()
    }
}

/// An object a transaction made (that the mirror did not hold before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Made {
    Table(TableKey),
    Chain(TableKey, String),
    Set(TableKey, String),
}

fn made_by(log: &[Undo]) -> Vec<Made> {
    log.iter()
        .filter_map(|u| match u {
            Undo::TableAdded(t) => Some(Made::Table(t.clone())),
            Undo::ChainAdded(t, c) => Some(Made::Chain(t.clone(), c.clone())),
            Undo::SetAdded(t, s) => Some(Made::Set(t.clone(), s.clone())),
            _ => None,
        })
        .collect()
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
