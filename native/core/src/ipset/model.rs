//! A model of the kernel's ipset commands for the policy tests, with a failure injected at any chosen
//! change. It follows the kernel where the policy depends on it (net/netfilter/ipset/ip_set_core.c):
//! `-exist` create compares options but not the family, swap needs the same type and family and
//! leaves references with the names, a referenced set cannot be destroyed or renamed, a full set
//! refuses adds of what it does not hold, a set created gets a fresh initval (listed in its header, as
//! recent kernels list it) that a swap moves with it. The ava suite checks the same paths against the
//! real kernel.

use std::collections::{BTreeMap, BTreeSet};

use super::constants::*;
use super::error::{ErrorCode, IpsetError};
use super::kernel::{Adt, AdtReport, IpsetKernel, KernelSet, SetHeader, SetKind};
use super::member::{Member, SetSpec, SetType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSet {
    pub spec: SetSpec,
    pub members: BTreeSet<Member>,
    /// Firewall rules referring to it.
    pub refs: u32,
    /// Holds something that is not a member (a nomatch entry).
    pub foreign_entry: bool,
    /// The hash seed drawn at creation (`None`: a revision that does not list one).
    pub initval: Option<u32>,
}

#[derive(Debug, Default)]
pub struct Model {
    pub sets: BTreeMap<String, ModelSet>,
    /// Which changes fail, counted from 1 since `fail_at` was set: each element added or deleted and
    /// each create, destroy, swap or rename is one change.
    pub fail_at: BTreeSet<usize>,
    /// How many changes were attempted since (to find every failure point of a scenario).
    pub changes: usize,
    /// The last initval drawn.
    pub initvals: u32,
}

fn injected() -> IpsetError {
    IpsetError::from_errno(libc::ENOMEM, 0)
}

impl Model {
    pub fn with_set(mut self, name: &str, spec: SetSpec, members: &[&str]) -> Self {
        let members = members.iter().map(|t| Member::parse(t).unwrap()).collect();
        let set = ModelSet { members, ..self.new_set(spec) };
        self.sets.insert(name.into(), set);
        self
    }

    /// An empty set as a create makes it, with a fresh initval.
    pub fn new_set(&mut self, spec: SetSpec) -> ModelSet {
        self.initvals += 1;
        ModelSet { spec, members: BTreeSet::new(), refs: 0, foreign_entry: false, initval: Some(self.initvals.wrapping_mul(0x9e37_79b9)) }
    }

    pub fn members(&self, name: &str) -> Option<Vec<String>> {
        self.sets.get(name).map(|s| s.members.iter().map(|m| m.to_string()).collect())
    }

    /// Makes the changes numbered `at` (from 1, counted from now) fail.
    pub fn fail(&mut self, at: &[usize]) {
        self.fail_at = at.iter().copied().collect();
        self.changes = 0;
    }

    /// Counts a change, and says whether it is one to fail.
    fn change(&mut self) -> bool {
        self.changes += 1;
        self.fail_at.remove(&self.changes)
    }

    fn get(&self, name: &str) -> Result<&ModelSet, IpsetError> {
        self.sets.get(name).ok_or_else(|| IpsetError::from_errno(libc::ENOENT, 0))
    }
}

fn same_options(a: &SetSpec, b: &SetSpec) -> bool {
    // What the kernel's same_set compares: not the family, not the hash size.
    a.set_type == b.set_type && a.effective_maxelem() == b.effective_maxelem() && a.timeout == b.timeout && a.comment == b.comment
}

impl IpsetKernel for Model {
    fn create(&mut self, name: &str, spec: &SetSpec, exist: bool) -> Result<(), IpsetError> {
        if let Some(s) = self.sets.get(name) {
            return if exist && same_options(&s.spec, spec) { Ok(()) } else { Err(IpsetError::from_errno(libc::EEXIST, IPSET_CMD_CREATE)) };
        }
        if self.change() {
            return Err(injected());
        }
        let set = self.new_set(spec.clone());
        self.sets.insert(name.into(), set);
        Ok(())
    }

    fn destroy(&mut self, name: &str) -> Result<(), IpsetError> {
        if self.get(name)?.refs > 0 {
            return Err(IpsetError::from_errno(IPSET_ERR_BUSY, IPSET_CMD_DESTROY));
        }
        if self.change() {
            return Err(injected());
        }
        self.sets.remove(name);
        Ok(())
    }

    fn flush(&mut self, name: &str) -> Result<(), IpsetError> {
        self.get(name)?;
        self.sets.get_mut(name).unwrap().members.clear();
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IpsetError> {
        if self.get(from)?.refs > 0 {
            return Err(IpsetError::from_errno(IPSET_ERR_REFERENCED, IPSET_CMD_RENAME));
        }
        if self.sets.contains_key(to) {
            return Err(IpsetError::from_errno(IPSET_ERR_EXIST_SETNAME2, IPSET_CMD_RENAME));
        }
        if self.change() {
            return Err(injected());
        }
        let s = self.sets.remove(from).unwrap();
        self.sets.insert(to.into(), s);
        Ok(())
    }

    fn swap(&mut self, a: &str, b: &str) -> Result<(), IpsetError> {
        let sa = self.get(a)?.clone();
        let sb = self.sets.get(b).cloned().ok_or_else(|| IpsetError::from_errno(IPSET_ERR_EXIST_SETNAME2, IPSET_CMD_SWAP))?;
        if sa.spec.set_type != sb.spec.set_type || sa.spec.family != sb.spec.family {
            return Err(IpsetError::from_errno(IPSET_ERR_TYPE_MISMATCH, IPSET_CMD_SWAP));
        }
        if self.change() {
            return Err(injected());
        }
        // References follow the names.
        self.sets.insert(a.into(), ModelSet { refs: sa.refs, ..sb });
        self.sets.insert(b.into(), ModelSet { refs: sb.refs, ..sa });
        Ok(())
    }

    fn list_names(&mut self) -> Result<Vec<String>, IpsetError> {
        Ok(self.sets.keys().cloned().collect())
    }

    fn kind(&mut self, name: &str) -> Result<SetKind, IpsetError> {
        let s = self.get(name)?;
        Ok(SetKind { type_name: s.spec.set_type.as_str().into(), family: Some(s.spec.family), revision: 0 })
    }

    fn header(&mut self, name: &str) -> Result<SetHeader, IpsetError> {
        let s = self.get(name)?;
        Ok(SetHeader {
            name: name.into(),
            type_name: s.spec.set_type.as_str().into(),
            family: Some(s.spec.family),
            revision: 0,
            hashsize: s.spec.hashsize.unwrap_or(1024),
            maxelem: s.spec.effective_maxelem(),
            memory: 0,
            references: s.refs,
            entries: Some(s.members.len() as u32),
            timeout: s.spec.timeout,
            cadt_flags: if s.spec.comment { IPSET_FLAG_WITH_COMMENT } else { 0 },
            masked: false,
            initval: s.initval,
        })
    }

    fn read(&mut self, name: &str) -> Result<KernelSet, IpsetError> {
        let header = self.header(name)?;
        let s = self.get(name)?;
        let unrepresentable = s.foreign_entry.then(|| "a nomatch entry".to_string());
        Ok(KernelSet { header, members: s.members.iter().copied().collect(), unrepresentable })
    }

    fn adt(&mut self, op: Adt, name: &str, _set_type: SetType, members: &[Member], exist: bool) -> Result<AdtReport, IpsetError> {
        let mut failed = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let Some(s) = self.sets.get(name) else {
                failed.push((i, IpsetError::from_errno(libc::ENOENT, op.cmd())));
                continue;
            };
            let present = s.members.contains(m);
            let full = s.members.len() as u64 >= s.spec.effective_maxelem() as u64;
            let outcome = match op {
                Adt::Add if present => (!exist).then(|| IpsetError::from_errno(IPSET_ERR_EXIST, op.cmd())),
                Adt::Del if !present => (!exist).then(|| IpsetError::from_errno(IPSET_ERR_EXIST, op.cmd())),
                Adt::Add if full => Some(IpsetError::from_errno(IPSET_ERR_HASH_FULL, op.cmd())),
                _ if self.change() => Some(injected()),
                Adt::Add => {
                    self.sets.get_mut(name).unwrap().members.insert(*m);
                    None
                }
                Adt::Del => {
                    self.sets.get_mut(name).unwrap().members.remove(m);
                    None
                }
            };
            if let Some(e) = outcome {
                failed.push((i, e));
            }
        }
        Ok(AdtReport { failed })
    }

    fn test(&mut self, name: &str, _set_type: SetType, member: &Member) -> Result<bool, IpsetError> {
        Ok(self.get(name)?.members.contains(member))
    }
}

#[test]
fn the_model_refuses_as_the_kernel_does() {
    use super::member::Family;
    let net4 =
        SetSpec { set_type: SetType::HashNet, family: Family::Inet, hashsize: None, maxelem: Some(2), timeout: None, comment: false };
    let mut k = Model::default().with_set("a", net4.clone(), &["10.0.0.1"]);
    assert_eq!(k.swap("a", "missing").unwrap_err().code, ErrorCode::SetNotFound);
    assert!(k.create("a", &SetSpec { family: Family::Inet6, ..net4.clone() }, true).is_ok(), "-exist ignores the family");
    let two = [Member::parse("10.0.0.2").unwrap(), Member::parse("10.0.0.3").unwrap()];
    let r = k.adt(Adt::Add, "a", SetType::HashNet, &two, true).unwrap();
    assert_eq!(r.failed.iter().map(|(i, e)| (*i, e.code)).collect::<Vec<_>>(), [(1, ErrorCode::SetFull)]);
}
