//! The ipset client: the mirror of the sets it manages, and the commands that keep it in step with
//! the kernel. The sync policy (all or nothing) is in `sync`.
//!
//! The mirror holds, for every managed set, the spec and members the last successful change made it
//! hold (what `reconcile` restores), which set that was (its identity, from its header) and whether
//! the kernel is known to hold exactly that. It is only changed from what the kernel acknowledged,
//! and trusted only as far as the set's header agrees with it (`Managed::matches`): other software
//! may change the set at any time. Every kernel command goes through `IpsetKernel` (the wire in
//! production, a model with failures injected in tests).

use std::collections::HashMap;
use std::path::Path;

use super::constants::IPSET_ERR_EXIST;
use super::diff::MarkedSet;
use super::error::{ErrorCode, IpsetError};
use super::kernel::{Adt, IpsetKernel, SetHeader, SetIdentity};
use super::lastlist::LastList;
use super::member::{Member, SetSpec};
use super::name::{is_temp_shaped, validate_set_name};
use super::packed::{decode_members, pack_texts};
use super::wire::IpsetWire;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedMember {
    pub member: String,
    pub error: IpsetError,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchResult {
    pub applied: usize,
    pub failed: Vec<FailedMember>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncResult {
    pub created: bool,
    pub added: usize,
    pub removed: usize,
    pub swapped: bool,
}

impl SyncResult {
    pub(super) fn changed(&self) -> bool {
        self.created || self.swapped || self.added > 0 || self.removed > 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileResult {
    /// Members the kernel lacked and we put back.
    pub added: usize,
    /// Members the kernel held that we did not expect, removed.
    pub removed: usize,
    /// Whether the kernel differed at all (members, spec, or the set itself missing).
    pub repaired: bool,
}

/// How `sync_set` applies a change to an existing set of the right spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStrategy {
    /// In place for small changes, swap for large ones (see `diff::prefer_swap`).
    Auto,
    InPlace,
    Swap,
}

pub(super) struct Managed {
    pub(super) spec: SetSpec,
    /// What the last successful change made the set hold.
    pub(super) members: MarkedSet,
    /// Whether the kernel is known to hold exactly `members`: false after a failure that could not
    /// be undone, or once the set's header was seen not to agree (`matches`).
    pub(super) trusted: bool,
    /// Which set `members` describes, from its header (`None`: not seen, so the next sync reads it).
    pub(super) identity: Option<SetIdentity>,
    /// The list of the last full sync, with the adds and deletes made since (see `lastlist`).
    pub(super) last: Option<LastList>,
}

impl Managed {
    pub(super) fn new(spec: SetSpec, members: MarkedSet, identity: Option<SetIdentity>) -> Self {
        Managed { spec, members, trusted: true, identity, last: None }
    }

    /// Whether `h` is the header of the set this entry describes, holding as many members: the same
    /// spec, identity and count. What keeps all three (a member swapped for another by hand, a set
    /// without an initval made again with as many members) is not seen here; a read finds it.
    pub(super) fn matches(&self, h: &SetHeader) -> bool {
        h.satisfies(&self.spec) && self.identity == Some(h.identity()) && h.entries == Some(self.members.len() as u32)
    }

    /// Members of a set with a timeout leave without anyone's command: such a set is never trusted.
    pub(super) fn expires(&self) -> bool {
        self.spec.timeout.is_some()
    }
}

pub struct IpsetClient<K: IpsetKernel = IpsetWire> {
    pub(super) kernel: K,
    pub(super) mirror: HashMap<String, Managed>,
}

pub(super) fn check_name(name: &str) -> Result<(), IpsetError> {
    validate_set_name(name).map_err(|m| IpsetError::new(ErrorCode::InvalidName, m).set(name))
}

/// A name a set is to be created under: valid, and not of the shape of a temp set, so that a temp
/// set (which a sync destroys when it finds it stale) can never be anyone's real set.
pub(super) fn check_new_name(name: &str) -> Result<(), IpsetError> {
    check_name(name)?;
    if is_temp_shaped(name) {
        return Err(IpsetError::new(ErrorCode::InvalidName, "names ending in .t are kept for temp sets").set(name));
    }
    Ok(())
}

pub(super) fn check_spec(name: &str, spec: &SetSpec) -> Result<(), IpsetError> {
    spec.validate().map_err(|e| IpsetError::new(ErrorCode::InvalidSpec, e).set(name))
}

/// A strict add of what is there or delete of what is not: the kernel is already as wanted.
pub(super) fn already_so(op: Adt, e: &IpsetError) -> bool {
    matches!((op, e.code), (Adt::Add, ErrorCode::ElementExists) | (Adt::Del, ErrorCode::ElementMissing))
}

impl IpsetClient<IpsetWire> {
    /// Opens a client in the namespace at `netns` (the caller's own when `None`). Opening changes
    /// nothing in the kernel.
    pub fn open(netns: Option<&Path>) -> Result<Self, IpsetError> {
        Ok(IpsetClient::with_kernel(IpsetWire::open(netns)?))
    }

    pub fn protocol(&self) -> u8 {
        self.kernel.protocol()
    }

    /// Bytes this client has sent to the kernel (what a batch costs on the wire, for tests).
    pub fn bytes_sent(&self) -> u64 {
        self.kernel.bytes_sent()
    }
}

impl<K: IpsetKernel> IpsetClient<K> {
    pub fn with_kernel(kernel: K) -> Self {
        IpsetClient { kernel, mirror: HashMap::new() }
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// Member count the mirror holds, if the set is managed.
    pub fn mirrored_len(&self, name: &str) -> Option<usize> {
        self.mirror.get(name).map(|m| m.members.len())
    }

    pub(super) fn distrust(&mut self, name: &str) {
        if let Some(m) = self.mirror.get_mut(name) {
            m.trusted = false;
        }
    }

    /// Trusts the mirror of `name` only if the set's header, asked just now, agrees with it
    /// (`Managed::matches`): still there, the same set (identity), of the same spec, with as many
    /// members. If anything moved (destroyed, made again, swapped, flushed, edited by hand), the sync
    /// reads the set instead.
    pub(super) fn take_header(&mut self, name: &str, header: Result<SetHeader, IpsetError>) -> Result<(), IpsetError> {
        let agrees = match header {
            Ok(h) => self.mirror.get(name).is_some_and(|m| m.matches(&h)),
            Err(e) if e.code == ErrorCode::SetNotFound => false,
            Err(e) => return Err(e.set(name)),
        };
        if !agrees {
            self.distrust(name);
        }
        Ok(())
    }

    /// The identity of a set just made to hold `len` members of `spec`, from its header; `None`
    /// (the next sync reads the set) if the header cannot be read or shows anything else.
    pub(super) fn identify(&mut self, name: &str, spec: &SetSpec, len: usize) -> Option<SetIdentity> {
        let h = self.kernel.header(name).ok()?;
        (h.satisfies(spec) && h.entries == Some(len as u32)).then(|| h.identity())
    }

    pub fn create(&mut self, name: &str, spec: &SetSpec, exist: bool) -> Result<(), IpsetError> {
        check_new_name(name)?;
        check_spec(name, spec)?;
        match self.kernel.create(name, spec, exist) {
            Ok(()) if exist => {
                // The kernel takes `-exist` over a set of the other family (it compares only the
                // options), so the caller could believe it holds an inet set that is inet6.
                let h = self.kernel.header(name).map_err(|e| e.set(name))?;
                if let Some(e) = Self::type_mismatch(name, &h, spec) {
                    return Err(e);
                }
                // It may have been there already, holding members we never saw.
                if self.mirror.get(name).is_some_and(|m| !m.spec.satisfies(spec)) {
                    self.mirror.remove(name);
                }
                Ok(())
            }
            Ok(()) => {
                let identity = self.identify(name, spec, 0);
                self.mirror.insert(name.into(), Managed::new(spec.clone(), MarkedSet::default(), identity));
                Ok(())
            }
            // The kernel answers EEXIST (older ones IPSET_ERR_EXIST) when the options differ.
            Err(e) if exist && matches!(e.errno, Some(libc::EEXIST) | Some(IPSET_ERR_EXIST)) => {
                let h = self.kernel.header(name).map_err(|e| e.set(name))?;
                Err(Self::type_mismatch(name, &h, spec).unwrap_or_else(|| {
                    IpsetError::new(ErrorCode::SetExists, "a set of that name exists with other options (maxelem, timeout, extensions)")
                        .set(name)
                }))
            }
            Err(e) => Err(e.set(name)),
        }
    }

    fn type_mismatch(name: &str, h: &SetHeader, spec: &SetSpec) -> Option<IpsetError> {
        if h.type_name == spec.set_type.as_str() && h.family == Some(spec.family) {
            return None;
        }
        let family = h.family.map(|f| f.as_str()).unwrap_or("?");
        Some(
            IpsetError::new(
                ErrorCode::TypeMismatch,
                format!("the set exists as {} {family}, not {} {}", h.type_name, spec.set_type.as_str(), spec.family.as_str()),
            )
            .set(name),
        )
    }

    /// Destroys a set; a missing set is an error (SET_NOT_FOUND), as the `ipset` tool reports it.
    pub fn destroy(&mut self, name: &str) -> Result<(), IpsetError> {
        check_name(name)?;
        self.kernel.destroy(name).map_err(|e| e.set(name))?;
        self.mirror.remove(name);
        Ok(())
    }

    pub fn flush(&mut self, name: &str) -> Result<(), IpsetError> {
        check_name(name)?;
        self.kernel.flush(name).map_err(|e| e.set(name))?;
        if let Some(m) = self.mirror.get_mut(name) {
            m.members.clear();
            m.last = None;
        }
        Ok(())
    }

    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), IpsetError> {
        check_name(from)?;
        check_new_name(to)?;
        self.kernel.rename(from, to).map_err(|e| e.set(from))?;
        if let Some(m) = self.mirror.remove(from) {
            self.mirror.insert(to.into(), m);
        }
        Ok(())
    }

    pub fn swap(&mut self, a: &str, b: &str) -> Result<(), IpsetError> {
        check_name(a)?;
        check_name(b)?;
        self.kernel.swap(a, b).map_err(|e| e.set(a))?;
        let ma = self.mirror.remove(a);
        let mb = self.mirror.remove(b);
        if let Some(m) = ma {
            self.mirror.insert(b.into(), m);
        }
        if let Some(m) = mb {
            self.mirror.insert(a.into(), m);
        }
        Ok(())
    }

    pub fn list_names(&mut self) -> Result<Vec<String>, IpsetError> {
        self.kernel.list_names()
    }

    pub fn header(&mut self, name: &str) -> Result<SetHeader, IpsetError> {
        check_name(name)?;
        self.kernel.header(name).map_err(|e| e.set(name))
    }

    /// Reads a set from the kernel (header and every member) and makes it what the mirror holds. A
    /// set whose contents are not a list of members (another type, a netmask, a `nomatch` entry) is
    /// refused with TYPE_MISMATCH rather than read wrong.
    pub fn read_set(&mut self, name: &str) -> Result<(SetHeader, Vec<Member>), IpsetError> {
        check_name(name)?;
        let k = self.kernel.read(name).map_err(|e| e.set(name))?;
        if let Some(why) = k.unrepresentable {
            return Err(IpsetError::new(ErrorCode::TypeMismatch, format!("cannot read the set as members: {why}")).set(name));
        }
        match k.header.spec() {
            Some(spec) if k.header.satisfies(&spec) => {
                let members: MarkedSet = k.members.iter().copied().collect();
                self.mirror.insert(name.into(), Managed::new(spec, members, Some(k.header.identity())));
            }
            _ => {
                self.mirror.remove(name);
            }
        }
        Ok((k.header, k.members))
    }

    /// The spec a set's elements are written and tested as, asked of the kernel each time: a set
    /// made again behind our back as another type must never be sent elements of the old one (a
    /// network sent to a hash:ip set is taken as a range, and every address in it is added). For a
    /// set this client manages, an O(1) request (type, family, revision) is enough while they are
    /// what the mirror knows; otherwise the full header is read, and a managed set no longer of the
    /// mirror's spec is refused with TYPE_MISMATCH before anything is sent (a sync replaces it). A
    /// set it does not manage is taken as its header shows it.
    fn spec_for_elements(&mut self, name: &str) -> Result<SetSpec, IpsetError> {
        if let Some(m) = self.mirror.get(name) {
            let kind = self.kernel.kind(name);
            if let Ok(k) = &kind {
                if k.is(&m.spec) && m.identity.is_some_and(|id| id.revision == k.revision) {
                    return Ok(m.spec.clone());
                }
            }
            if let Err(e) = kind {
                if e.code == ErrorCode::SetNotFound {
                    self.distrust(name);
                }
                return Err(e.set(name));
            }
        }
        let h = match self.kernel.header(name) {
            Ok(h) => h,
            Err(e) => {
                if e.code == ErrorCode::SetNotFound {
                    self.distrust(name);
                }
                return Err(e.set(name));
            }
        };
        if let Some(m) = self.mirror.get_mut(name) {
            if !h.satisfies(&m.spec) {
                m.trusted = false;
                let what = match h.family {
                    Some(f) if h.type_name == m.spec.set_type.as_str() && f == m.spec.family => "with other options".to_string(),
                    f => format!("as {} {}", h.type_name, f.map_or("?", |f| f.as_str())),
                };
                return Err(IpsetError::new(
                    ErrorCode::TypeMismatch,
                    format!(
                        "the set was made again {what}, not the {} {} set this client made; a sync of it replaces it",
                        m.spec.set_type.as_str(),
                        m.spec.family.as_str()
                    ),
                )
                .set(name));
            }
            m.trusted &= m.matches(&h) && !m.expires();
            return Ok(m.spec.clone());
        }
        match (h.spec(), h.unrepresentable()) {
            (Some(s), _) => Ok(s),
            (None, why) => {
                Err(IpsetError::new(ErrorCode::TypeMismatch, why.unwrap_or_else(|| "not a set this library manages".into())).set(name))
            }
        }
    }

    pub fn add<S: AsRef<str>>(&mut self, name: &str, texts: &[S], exist: bool) -> Result<BatchResult, IpsetError> {
        self.adt_packed(Adt::Add, name, &pack_texts(texts), exist)
    }

    pub fn del<S: AsRef<str>>(&mut self, name: &str, texts: &[S], exist: bool) -> Result<BatchResult, IpsetError> {
        self.adt_packed(Adt::Del, name, &pack_texts(texts), exist)
    }

    /// Adds or deletes every member of a packed list (`exist`: no error for what is already so).
    /// Every member is checked before the kernel is asked anything; then each is tried once and the
    /// result says which were applied and which failed, and why.
    pub fn adt_packed(&mut self, op: Adt, name: &str, packed: &[u8], exist: bool) -> Result<BatchResult, IpsetError> {
        check_name(name)?;
        decode_members(name, None, packed)?;
        let spec = self.spec_for_elements(name)?;
        let members = decode_members(name, Some(&spec), packed)?;
        let report = self.kernel.adt(op, name, spec.set_type, &members, exist).map_err(|e| e.set(name));
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                self.distrust(name);
                return Err(e);
            }
        };
        let mut result = BatchResult { applied: members.len() - report.failed.len(), failed: Vec::new() };
        let gone = report.failed.iter().any(|(_, e)| e.code == ErrorCode::SetNotFound);
        if let Some(m) = self.mirror.get_mut(name) {
            // What the kernel acknowledged, and what it said was already so, is what it holds now.
            let settled = report.failed.iter().filter(|(_, e)| already_so(op, e)).map(|(i, _)| members[*i]);
            let changed: Vec<Member> = report.applied(&members).copied().chain(settled).collect();
            let mut keep_last = true;
            for x in &changed {
                let gained = op == Adt::Add;
                if m.members.contains(x) != gained {
                    if let Some(last) = m.last.as_mut() {
                        keep_last &= last.note(*x, gained);
                    }
                }
            }
            if !keep_last {
                m.last = None;
            }
            match op {
                Adt::Add => m.members.apply(&changed, &[]),
                Adt::Del => m.members.apply(&[], &changed),
            }
            if gone {
                m.trusted = false;
            }
        }
        for (i, e) in report.failed {
            let text = members[i].to_string();
            result.failed.push(FailedMember { member: text.clone(), error: e.set(name).member(text) });
        }
        Ok(result)
    }

    pub fn test(&mut self, name: &str, text: &str) -> Result<bool, IpsetError> {
        check_name(name)?;
        let member = Member::parse(text).map_err(|e| IpsetError::new(ErrorCode::InvalidMember, e).set(name).member(text))?;
        let spec = self.spec_for_elements(name)?;
        member.check_fits(&spec).map_err(|e| IpsetError::new(ErrorCode::InvalidMember, e).set(name).member(text))?;
        self.kernel.test(name, spec.set_type, &member).map_err(|e| e.set(name).member(text))
    }
}
