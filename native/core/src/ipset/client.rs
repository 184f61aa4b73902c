//! The ipset client: commands, batched element changes, and `sync_set` against an in-memory mirror.
//!
//! The mirror holds, for every set this client manages, the spec and members it last saw succeed in
//! the kernel. A sync diffs against it instead of re-listing the kernel (listing 100k members costs
//! more than a small diff); `reconcile` re-reads the kernel when the mirror may be wrong.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_EXCL};

use super::attr::{elem_wire_len, Elem, HeaderAttr, IpsetAttr};
use super::constants::*;
use super::diff::{diff_members, prefer_swap, MemberDiff, MemberSet};
use super::error::{ErrorCode, IpsetError};
use super::member::{validate_set_name, Family, Member, SetSpec, SetType, DEFAULT_MAXELEM};
use super::message::IpsetMessage;
use crate::netlink::{request_header, NfnlSocket, NlError, Outcome};

/// Temp sets used for atomic replace carry this prefix, so stale ones can be found and removed.
pub const TEMP_PREFIX: &str = "sgtmp-";
/// A nested attribute's length is 16 bits; keep each ADT attribute safely below it.
const MAX_ADT_BYTES: usize = 65_535 - 1024;
/// Revisions created by default: the newest ones a still-common `ipset` tool can list. hash:ip rev 5
/// and hash:net rev 7 added bucketsize/initval, which ipset tools older than that cannot print ("Kernel and userspace
/// incompatible"), breaking `ipset list` for other tools on the host.
const MAX_REVISION_HASH_IP: u8 = 4;
const MAX_REVISION_HASH_NET: u8 = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetHeader {
    pub name: String,
    pub type_name: String,
    pub family: Option<Family>,
    pub revision: u8,
    pub hashsize: u32,
    pub maxelem: u32,
    pub memory: u32,
    pub references: u32,
    pub entries: Option<u32>,
    pub timeout: Option<u32>,
    pub comment: bool,
}

impl SetHeader {
    /// The spec this set was created with, if it is a type we manage.
    pub fn spec(&self) -> Option<SetSpec> {
        Some(SetSpec {
            set_type: SetType::parse(&self.type_name)?,
            family: self.family?,
            hashsize: Some(self.hashsize),
            maxelem: Some(self.maxelem),
            timeout: self.timeout,
            comment: self.comment,
        })
    }
}

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
    pub nanos: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileResult {
    /// Members the kernel lacked and we put back.
    pub added: usize,
    /// Members the kernel held that we did not expect, removed.
    pub removed: usize,
    /// Whether the mirror or the kernel differed at all.
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

struct Mirror {
    spec: SetSpec,
    members: MemberSet,
}

pub struct IpsetClient {
    sock: NfnlSocket,
    protocol: u8,
    revisions: HashMap<(SetType, Family), u8>,
    mirror: HashMap<String, Mirror>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Adt {
    Add,
    Del,
}

impl Adt {
    fn cmd(self) -> u8 {
        match self {
            Adt::Add => IPSET_CMD_ADD,
            Adt::Del => IPSET_CMD_DEL,
        }
    }
}

fn msg(cmd: u8, flags: u16, attrs: Vec<IpsetAttr>) -> NetlinkMessage<IpsetMessage> {
    let m = IpsetMessage::new(cmd, attrs);
    let mut nl = NetlinkMessage::new(request_header(0, flags), NetlinkPayload::InnerMessage(m));
    nl.finalize();
    nl
}

/// Derived, fixed-length temp name: distinct per target set and always within the name limit.
pub fn temp_name(name: &str) -> String {
    // FNV-1a: stable across runs and versions, unlike std's randomised hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{TEMP_PREFIX}{h:016x}")
}

/// A hash size for `n` members: the kernel's buckets hold several entries, so n/2 rounded up to a
/// power of two, within the kernel's limits.
pub fn hashsize_for(n: usize) -> u32 {
    ((n / 2).max(1024).next_power_of_two()).min(1 << 30) as u32
}

fn check_name(name: &str) -> Result<(), IpsetError> {
    validate_set_name(name).map_err(|m| IpsetError::new(ErrorCode::InvalidName, m).set(name))
}

/// Parses and checks a whole batch before any of it is sent.
pub fn parse_members<S: AsRef<str>, C: FromIterator<Member>>(name: &str, spec: Option<&SetSpec>, texts: &[S]) -> Result<C, IpsetError> {
    texts
        .iter()
        .map(|t| {
            let t = t.as_ref();
            let m = Member::parse(t).map_err(|e| IpsetError::new(ErrorCode::InvalidMember, e).set(name).member(t))?;
            if let Some(spec) = spec {
                m.check_fits(spec).map_err(|e| IpsetError::new(ErrorCode::InvalidMember, e).set(name).member(t))?;
            }
            Ok(m)
        })
        .collect()
}

impl IpsetClient {
    /// Opens a client in the namespace at `netns` (the caller's own when `None`), negotiates the
    /// protocol, and removes temp sets a crashed run of ours left behind.
    pub fn open(netns: Option<&Path>) -> Result<Self, IpsetError> {
        let sock = NfnlSocket::open(netns)?;
        let mut c = IpsetClient { sock, protocol: IPSET_PROTOCOL, revisions: HashMap::new(), mirror: HashMap::new() };
        c.protocol = c.negotiate_protocol()?;
        for name in c.list_names()? {
            if name.starts_with(TEMP_PREFIX) {
                let _ = c.destroy(&name);
            }
        }
        Ok(c)
    }

    /// Only asks the kernel which ipset protocol it speaks: no clean-up, no other side effect
    /// (what `sg-agent --version` needs).
    pub fn probe_protocol(netns: Option<&Path>) -> Result<u8, IpsetError> {
        let sock = NfnlSocket::open(netns)?;
        let mut c = IpsetClient { sock, protocol: IPSET_PROTOCOL, revisions: HashMap::new(), mirror: HashMap::new() };
        c.negotiate_protocol()
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    fn negotiate_protocol(&mut self) -> Result<u8, IpsetError> {
        let out = self.one(msg(IPSET_CMD_PROTOCOL, 0, vec![IpsetAttr::Protocol(IPSET_PROTOCOL)]), IPSET_CMD_PROTOCOL)?;
        let kernel = out
            .iter()
            .find_map(|m| m.u8_attr(|a| if let IpsetAttr::Protocol(p) = a { Some(*p) } else { None }))
            .ok_or_else(|| IpsetError::new(ErrorCode::Protocol, "kernel did not state its ipset protocol"))?;
        if kernel < IPSET_PROTOCOL_MIN {
            return Err(IpsetError::new(ErrorCode::Protocol, format!("kernel ipset protocol {kernel} is older than {IPSET_PROTOCOL_MIN}")));
        }
        Ok(kernel.min(IPSET_PROTOCOL))
    }

    /// The revision to create a type at: the kernel's newest, capped to what the `ipset` tool can list.
    pub fn revision_for(&mut self, set_type: SetType, family: Family) -> Result<u8, IpsetError> {
        if let Some(r) = self.revisions.get(&(set_type, family)) {
            return Ok(*r);
        }
        let out = self.one(
            msg(IPSET_CMD_TYPE, 0, vec![
                IpsetAttr::Protocol(self.protocol),
                IpsetAttr::TypeName(set_type.as_str().into()),
                IpsetAttr::Family(family.nfproto()),
            ]),
            IPSET_CMD_TYPE,
        )?;
        let max = out.iter().find_map(|m| m.u8_attr(|a| if let IpsetAttr::Revision(r) = a { Some(*r) } else { None }));
        let min = out.iter().find_map(|m| m.u8_attr(|a| if let IpsetAttr::ProtocolMin(r) = a { Some(*r) } else { None }));
        let max = max.ok_or_else(|| IpsetError::new(ErrorCode::Protocol, "kernel did not state the type's revision"))?;
        let cap = match set_type {
            SetType::HashIp => MAX_REVISION_HASH_IP,
            SetType::HashNet => MAX_REVISION_HASH_NET,
        };
        let rev = max.min(cap).max(min.unwrap_or(0));
        self.revisions.insert((set_type, family), rev);
        Ok(rev)
    }

    /// Sends one request and returns its replies, or its error.
    fn one(&mut self, req: NetlinkMessage<IpsetMessage>, cmd: u8) -> Result<Vec<IpsetMessage>, IpsetError> {
        let mut out = self.sock.transact(vec![req])?;
        let o = out.pop().expect("one outcome per request");
        o.result.map_err(|e| IpsetError::from_errno(e.errno, cmd))?;
        Ok(o.replies)
    }

    fn create_msg(&mut self, name: &str, spec: &SetSpec, exist: bool) -> Result<NetlinkMessage<IpsetMessage>, IpsetError> {
        let rev = self.revision_for(spec.set_type, spec.family)?;
        let mut data = Vec::new();
        if let Some(h) = spec.hashsize {
            data.push(HeaderAttr::HashSize(h));
        }
        data.push(HeaderAttr::MaxElem(spec.effective_maxelem()));
        if let Some(t) = spec.timeout {
            data.push(HeaderAttr::Timeout(t));
        }
        if spec.comment {
            data.push(HeaderAttr::CadtFlags(IPSET_FLAG_WITH_COMMENT));
        }
        let mut m = msg(IPSET_CMD_CREATE, if exist { 0 } else { NLM_F_EXCL }, vec![
            IpsetAttr::Protocol(self.protocol),
            IpsetAttr::SetName(name.into()),
            IpsetAttr::TypeName(spec.set_type.as_str().into()),
            IpsetAttr::Revision(rev),
            IpsetAttr::Family(spec.family.nfproto()),
            IpsetAttr::HeaderData(data),
        ]);
        if let NetlinkPayload::InnerMessage(inner) = &mut m.payload {
            inner.nfgen.family = spec.family.nfproto();
        }
        m.finalize();
        Ok(m)
    }

    fn named(&self, cmd: u8, name: &str) -> NetlinkMessage<IpsetMessage> {
        msg(cmd, 0, vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(name.into())])
    }

    /// Recent kernels treat destroy of a missing set as success unless NLM_F_EXCL asks otherwise.
    fn destroy_msg(&self, name: &str, exist: bool) -> NetlinkMessage<IpsetMessage> {
        msg(IPSET_CMD_DESTROY, if exist { 0 } else { NLM_F_EXCL }, vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(name.into())])
    }

    fn two_names(&self, cmd: u8, a: &str, b: &str) -> NetlinkMessage<IpsetMessage> {
        msg(cmd, 0, vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(a.into()), IpsetAttr::TypeName(b.into())])
    }

    pub fn create(&mut self, name: &str, spec: &SetSpec, exist: bool) -> Result<(), IpsetError> {
        check_name(name)?;
        spec.validate().map_err(|e| IpsetError::new(ErrorCode::InvalidSpec, e).set(name))?;
        let req = self.create_msg(name, spec, exist)?;
        self.one(req, IPSET_CMD_CREATE).map_err(|e| e.set(name))?;
        if !self.mirror.contains_key(name) || !exist {
            // With `exist` the set may have been there already, holding members we never saw.
            if exist {
                self.mirror.remove(name);
            } else {
                self.mirror.insert(name.into(), Mirror { spec: spec.clone(), members: MemberSet::default() });
            }
        }
        Ok(())
    }

    /// Destroys a set; a missing set is an error (SET_NOT_FOUND), as the `ipset` tool reports it.
    pub fn destroy(&mut self, name: &str) -> Result<(), IpsetError> {
        check_name(name)?;
        let req = self.destroy_msg(name, false);
        self.one(req, IPSET_CMD_DESTROY).map_err(|e| e.set(name))?;
        self.mirror.remove(name);
        Ok(())
    }

    pub fn flush(&mut self, name: &str) -> Result<(), IpsetError> {
        check_name(name)?;
        let req = self.named(IPSET_CMD_FLUSH, name);
        self.one(req, IPSET_CMD_FLUSH).map_err(|e| e.set(name))?;
        if let Some(m) = self.mirror.get_mut(name) {
            m.members.clear();
        }
        Ok(())
    }

    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), IpsetError> {
        check_name(from)?;
        check_name(to)?;
        let req = self.two_names(IPSET_CMD_RENAME, from, to);
        self.one(req, IPSET_CMD_RENAME).map_err(|e| e.set(from))?;
        if let Some(m) = self.mirror.remove(from) {
            self.mirror.insert(to.into(), m);
        }
        Ok(())
    }

    pub fn swap(&mut self, a: &str, b: &str) -> Result<(), IpsetError> {
        check_name(a)?;
        check_name(b)?;
        let req = self.two_names(IPSET_CMD_SWAP, a, b);
        self.one(req, IPSET_CMD_SWAP).map_err(|e| e.set(a))?;
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
        let req = msg(IPSET_CMD_LIST, 0, vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::Flags(IPSET_FLAG_LIST_SETNAME)]);
        let msgs = self.sock.dump(req)?.map_err(|e| IpsetError::from_errno(e.errno, IPSET_CMD_LIST))?;
        let mut names: Vec<String> = Vec::new();
        for m in &msgs {
            if let Some(n) = m.set_name() {
                if names.last().map(|l| l != n).unwrap_or(true) {
                    names.push(n.to_string());
                }
            }
        }
        Ok(names)
    }

    fn dump_set(&mut self, name: &str, header_only: bool) -> Result<Vec<IpsetMessage>, IpsetError> {
        check_name(name)?;
        let mut attrs = vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(name.into())];
        if header_only {
            attrs.push(IpsetAttr::Flags(IPSET_FLAG_LIST_HEADER));
        }
        self.sock
            .dump(msg(IPSET_CMD_LIST, 0, attrs))?
            .map_err(|e| IpsetError::from_errno(e.errno, IPSET_CMD_LIST).set(name))
    }

    fn parse_header(name: &str, msgs: &[IpsetMessage]) -> Result<SetHeader, IpsetError> {
        let first = msgs
            .iter()
            .find(|m| m.type_name().is_some())
            .ok_or_else(|| IpsetError::new(ErrorCode::Protocol, "list reply without a set header").set(name))?;
        let mut h = SetHeader {
            name: first.set_name().unwrap_or(name).to_string(),
            type_name: first.type_name().unwrap_or_default().to_string(),
            family: first.u8_attr(|a| if let IpsetAttr::Family(f) = a { Some(*f) } else { None }).and_then(Family::from_nfproto),
            revision: first.u8_attr(|a| if let IpsetAttr::Revision(r) = a { Some(*r) } else { None }).unwrap_or(0),
            hashsize: 0,
            maxelem: DEFAULT_MAXELEM,
            memory: 0,
            references: 0,
            entries: None,
            timeout: None,
            comment: false,
        };
        for a in first.header_data() {
            match a {
                HeaderAttr::HashSize(v) => h.hashsize = *v,
                HeaderAttr::MaxElem(v) => h.maxelem = *v,
                HeaderAttr::MemSize(v) => h.memory = *v,
                HeaderAttr::References(v) => h.references = *v,
                HeaderAttr::Elements(v) => h.entries = Some(*v),
                HeaderAttr::Timeout(v) => h.timeout = Some(*v),
                HeaderAttr::CadtFlags(f) => h.comment = f & IPSET_FLAG_WITH_COMMENT != 0,
                _ => {}
            }
        }
        Ok(h)
    }

    pub fn header(&mut self, name: &str) -> Result<SetHeader, IpsetError> {
        let msgs = self.dump_set(name, true)?;
        Self::parse_header(name, &msgs)
    }

    /// Reads a set from the kernel (header and every member) and refreshes the mirror with it.
    pub fn read_set(&mut self, name: &str) -> Result<(SetHeader, Vec<Member>), IpsetError> {
        let msgs = self.dump_set(name, false)?;
        let mut header = Self::parse_header(name, &msgs)?;
        let members: Vec<Member> = msgs.iter().flat_map(|m| m.elements()).filter_map(|e| Member::from_elem(e)).collect();
        header.entries = Some(members.len() as u32);
        if let Some(spec) = header.spec() {
            self.mirror.insert(name.into(), Mirror { spec, members: members.iter().copied().collect() });
        }
        Ok((header, members))
    }

    /// Splits members into ADT messages that each fit the 16-bit nested attribute.
    fn adt_messages(&self, adt: Adt, name: &str, set_type: SetType, members: &[Member], exist: bool)
        -> Vec<(NetlinkMessage<IpsetMessage>, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < members.len() {
            let mut elems: Vec<Elem> = Vec::new();
            let mut bytes = 0;
            let mut end = start;
            while end < members.len() {
                // Line numbers are 1-based within the message; 0 would mean "none" to the kernel.
                let e = members[end].to_elem(set_type, Some((end - start + 1) as u32));
                let n = elem_wire_len(&e);
                if bytes + n > MAX_ADT_BYTES {
                    break;
                }
                bytes += n;
                elems.push(e);
                end += 1;
            }
            let m = msg(adt.cmd(), if exist { 0 } else { NLM_F_EXCL }, vec![
                IpsetAttr::Protocol(self.protocol),
                IpsetAttr::SetName(name.into()),
                IpsetAttr::LineNo(0),
                IpsetAttr::Adt(elems),
            ]);
            out.push((m, start..end));
            start = end;
        }
        out
    }

    /// Where in its message a batch stopped: the kernel echoes our request with LINENO set to the
    /// failing element's line. `None` when the message failed as a whole.
    pub(crate) fn failed_line(err: &NlError, cmd: u8) -> Option<usize> {
        let payload = err.echoed.get(16..)?;
        let m = IpsetMessage::parse_payload(cmd, payload).ok()?;
        match m.lineno() {
            Some(n) if n > 0 => Some(n as usize - 1),
            _ => None,
        }
    }

    /// Adds or deletes members in batches. Every element is tried once: the kernel stops a message at
    /// its first failing element (keeping those before it), so the rest of that message is resent.
    /// Returns which elements were applied and which failed, and keeps the mirror in step.
    fn apply_adt(&mut self, adt: Adt, name: &str, set_type: SetType, members: &[Member], exist: bool)
        -> Result<BatchResult, IpsetError> {
        let cmd = adt.cmd();
        let mut result = BatchResult::default();
        let mut applied: Vec<Member> = Vec::with_capacity(members.len());
        let mut todo: Vec<Member> = members.to_vec();
        let mut set_error: Option<IpsetError> = None;
        while !todo.is_empty() {
            let plan = self.adt_messages(adt, name, set_type, &todo, exist);
            let ranges: Vec<_> = plan.iter().map(|(_, r)| r.clone()).collect();
            let outcomes: Vec<Outcome<IpsetMessage>> = self.sock.transact(plan.into_iter().map(|(m, _)| m).collect())?;
            let mut retry = Vec::new();
            for (range, o) in ranges.into_iter().zip(outcomes) {
                let chunk = &todo[range];
                match o.result {
                    Ok(()) => applied.extend_from_slice(chunk),
                    Err(e) => {
                        let err = IpsetError::from_errno(e.errno, cmd).set(name);
                        match Self::failed_line(&e, cmd) {
                            Some(line) if line < chunk.len() && !err.code.is_set_level() => {
                                applied.extend_from_slice(&chunk[..line]);
                                result.failed.push(FailedMember { member: chunk[line].to_string(), error: err.clone().member(chunk[line].to_string()) });
                                retry.extend_from_slice(&chunk[line + 1..]);
                            }
                            Some(line) if line < chunk.len() => {
                                applied.extend_from_slice(&chunk[..line]);
                                for m in &chunk[line..] {
                                    result.failed.push(FailedMember { member: m.to_string(), error: err.clone().member(m.to_string()) });
                                }
                                set_error.get_or_insert(err);
                            }
                            _ => {
                                for m in chunk {
                                    result.failed.push(FailedMember { member: m.to_string(), error: err.clone().member(m.to_string()) });
                                }
                                if err.code.is_set_level() {
                                    set_error.get_or_insert(err);
                                }
                            }
                        }
                    }
                }
            }
            if set_error.is_some() {
                for m in &retry {
                    let err = set_error.clone().unwrap().member(m.to_string());
                    result.failed.push(FailedMember { member: m.to_string(), error: err });
                }
                break;
            }
            todo = retry;
        }
        result.applied = applied.len();
        match self.mirror.get_mut(name) {
            Some(mirror) if set_error.as_ref().map(|e| e.code) != Some(ErrorCode::SetNotFound) => {
                for m in applied {
                    match adt {
                        Adt::Add => mirror.members.insert(m),
                        Adt::Del => mirror.members.remove(&m),
                    };
                }
            }
            _ => {
                self.mirror.remove(name);
            }
        }
        Ok(result)
    }

    /// The spec a set has: from the mirror, else from the kernel's header.
    fn known_spec(&mut self, name: &str) -> Result<SetSpec, IpsetError> {
        if let Some(m) = self.mirror.get(name) {
            return Ok(m.spec.clone());
        }
        let h = self.header(name)?;
        h.spec().ok_or_else(|| IpsetError::new(ErrorCode::TypeMismatch, format!("set type {} is not managed by sg-agent", h.type_name)).set(name))
    }

    pub fn add<S: AsRef<str>>(&mut self, name: &str, texts: &[S], exist: bool) -> Result<BatchResult, IpsetError> {
        self.adt_texts(Adt::Add, name, texts, exist)
    }

    pub fn del<S: AsRef<str>>(&mut self, name: &str, texts: &[S], exist: bool) -> Result<BatchResult, IpsetError> {
        self.adt_texts(Adt::Del, name, texts, exist)
    }

    fn adt_texts<S: AsRef<str>>(&mut self, adt: Adt, name: &str, texts: &[S], exist: bool) -> Result<BatchResult, IpsetError> {
        check_name(name)?;
        // Validate syntax before asking the kernel anything, then against the set's spec.
        parse_members::<S, Vec<Member>>(name, None, texts)?;
        let spec = self.known_spec(name)?;
        let members: Vec<Member> = parse_members(name, Some(&spec), texts)?;
        self.apply_adt(adt, name, spec.set_type, &members, exist)
    }

    pub fn test(&mut self, name: &str, text: &str) -> Result<bool, IpsetError> {
        check_name(name)?;
        let member = Member::parse(text).map_err(|e| IpsetError::new(ErrorCode::InvalidMember, e).set(name).member(text))?;
        let spec = self.known_spec(name)?;
        member.check_fits(&spec).map_err(|e| IpsetError::new(ErrorCode::InvalidMember, e).set(name).member(text))?;
        let req = msg(IPSET_CMD_TEST, 0, vec![
            IpsetAttr::Protocol(self.protocol),
            IpsetAttr::SetName(name.into()),
            IpsetAttr::ElemData(member.to_elem(spec.set_type, None)),
        ]);
        match self.one(req, IPSET_CMD_TEST) {
            Ok(_) => Ok(true),
            Err(e) if e.errno == Some(IPSET_ERR_EXIST) => Ok(false),
            Err(e) => Err(e.set(name).member(text)),
        }
    }

    /// Makes `name` hold exactly `texts`, creating it if missing. Small changes are applied in place
    /// (deletes, then adds); a different spec or a change large against the set is built in a temp set
    /// and swapped in atomically, so rules referring to the set never see it half-filled.
    pub fn sync_set<S: AsRef<str>>(&mut self, name: &str, spec: &SetSpec, texts: &[S]) -> Result<SyncResult, IpsetError> {
        self.sync_set_with(name, spec, texts, SyncStrategy::Auto)
    }

    /// `sync_set` with the in-place/swap choice forced, for measuring where the threshold lies.
    pub fn sync_set_with<S: AsRef<str>>(&mut self, name: &str, spec: &SetSpec, texts: &[S], strategy: SyncStrategy)
        -> Result<SyncResult, IpsetError> {
        let started = Instant::now();
        check_name(name)?;
        spec.validate().map_err(|e| IpsetError::new(ErrorCode::InvalidSpec, e).set(name))?;
        let desired: MemberSet = parse_members(name, Some(spec), texts)?;
        if desired.len() as u64 > spec.effective_maxelem() as u64 {
            return Err(IpsetError::new(ErrorCode::SetFull, format!("{} members exceed maxelem {}", desired.len(), spec.effective_maxelem())).set(name));
        }
        let mut result = SyncResult::default();

        if !self.mirror.contains_key(name) {
            match self.read_set(name) {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::SetNotFound => {
                    let mut sized = spec.clone();
                    if sized.hashsize.is_none() {
                        sized.hashsize = Some(hashsize_for(desired.len()));
                    }
                    self.create(name, &sized, false)?;
                    if let Some(m) = self.mirror.get_mut(name) {
                        m.spec = spec.clone();
                    }
                    let members: Vec<Member> = desired.into_iter().collect();
                    let r = self.apply_adt(Adt::Add, name, spec.set_type, &members, true)?;
                    result.created = true;
                    result.added = r.applied;
                    result.nanos = started.elapsed().as_nanos() as u64;
                    return Self::batch_ok(name, r).map(|_| result);
                }
                Err(e) => return Err(e),
            }
        }
        // read_set only mirrors sets whose type we manage.
        let Some(mirror) = self.mirror.get(name) else {
            return self.replace_by_swap(name, spec, &desired, result, started);
        };
        if !mirror.spec.satisfies(spec) {
            return self.replace_by_swap(name, spec, &desired, result, started);
        }
        let MemberDiff { add, del } = diff_members(&mirror.members, &desired);
        if add.is_empty() && del.is_empty() {
            result.nanos = started.elapsed().as_nanos() as u64;
            return Ok(result);
        }
        let swap = match strategy {
            SyncStrategy::Auto => prefer_swap(mirror.members.len(), desired.len(), add.len() + del.len()),
            SyncStrategy::InPlace => false,
            SyncStrategy::Swap => true,
        };
        if swap {
            return self.replace_by_swap(name, spec, &desired, result, started);
        }
        let r = self.apply_adt(Adt::Del, name, spec.set_type, &del, true)?;
        result.removed = r.applied;
        Self::batch_ok(name, r)?;
        let r = self.apply_adt(Adt::Add, name, spec.set_type, &add, true)?;
        result.added = r.applied;
        Self::batch_ok(name, r)?;
        result.nanos = started.elapsed().as_nanos() as u64;
        Ok(result)
    }

    fn batch_ok(name: &str, r: BatchResult) -> Result<(), IpsetError> {
        match r.failed.into_iter().next() {
            None => Ok(()),
            Some(f) => Err(f.error.set(name)),
        }
    }

    /// Fills a temp set and swaps it in: create, fill, swap and destroy go out in one transaction.
    fn replace_by_swap(&mut self, name: &str, spec: &SetSpec, desired: &MemberSet, mut result: SyncResult, started: Instant)
        -> Result<SyncResult, IpsetError> {
        let tmp = temp_name(name);
        let _ = self.destroy(&tmp);
        let members: Vec<Member> = desired.iter().copied().collect();
        // Sized for its contents up front: growing a hash set in the kernel rehashes every member.
        let mut sized = spec.clone();
        if sized.hashsize.is_none() {
            sized.hashsize = Some(hashsize_for(members.len()));
        }
        let mut reqs = vec![self.create_msg(&tmp, &sized, false)?];
        let fills = self.adt_messages(Adt::Add, &tmp, spec.set_type, &members, true);
        let nfills = fills.len();
        reqs.extend(fills.into_iter().map(|(m, _)| m));
        reqs.push(self.two_names(IPSET_CMD_SWAP, name, &tmp));
        reqs.push(self.destroy_msg(&tmp, false));
        let outcomes = self.sock.transact(reqs)?;
        let failure = outcomes.iter().enumerate().find_map(|(i, o)| o.result.as_ref().err().map(|e| (i, e.clone())));
        let old_len = self.mirror.get(name).map(|m| m.members.len());
        match failure {
            None => {
                result.swapped = true;
                result.added = match old_len {
                    Some(_) => members.len(),
                    None => members.len(),
                };
                result.removed = old_len.unwrap_or(0);
                self.mirror.insert(name.into(), Mirror { spec: spec.clone(), members: desired.clone() });
                result.nanos = started.elapsed().as_nanos() as u64;
                Ok(result)
            }
            Some((i, e)) => {
                // Never leave the temp set behind, whatever failed.
                let _ = self.destroy(&tmp);
                let cmd = if i == 0 { IPSET_CMD_CREATE } else if i <= nfills { IPSET_CMD_ADD } else if i == nfills + 1 { IPSET_CMD_SWAP } else { IPSET_CMD_DESTROY };
                let err = IpsetError::from_errno(e.errno, cmd).set(name);
                if cmd == IPSET_CMD_SWAP && err.code == ErrorCode::TypeMismatch {
                    // Type or family changed: a swap cannot do it, so replace the set by name, which
                    // the kernel allows only while nothing refers to it.
                    return self.replace_by_recreate(name, spec, &members, result, started);
                }
                Err(err)
            }
        }
    }

    fn replace_by_recreate(&mut self, name: &str, spec: &SetSpec, members: &[Member], mut result: SyncResult, started: Instant)
        -> Result<SyncResult, IpsetError> {
        let old = self.header(name)?;
        self.destroy(name).map_err(|e| {
            if e.code == ErrorCode::SetInUse {
                IpsetError::new(ErrorCode::TypeMismatch, format!(
                    "set is {} {:?} and in use; it cannot become {} {} until nothing refers to it",
                    old.type_name, old.family.map(|f| f.as_str()).unwrap_or("?"), spec.set_type.as_str(), spec.family.as_str())).set(name)
            } else {
                e
            }
        })?;
        self.create(name, spec, false)?;
        let r = self.apply_adt(Adt::Add, name, spec.set_type, members, true)?;
        result.created = true;
        result.removed = old.entries.unwrap_or(0) as usize;
        result.added = r.applied;
        Self::batch_ok(name, r)?;
        result.nanos = started.elapsed().as_nanos() as u64;
        Ok(result)
    }

    /// Re-reads the kernel and makes the set hold what the mirror says it should, repairing drift
    /// (a flushed set, a member removed by hand, a set destroyed).
    pub fn reconcile(&mut self, name: &str) -> Result<ReconcileResult, IpsetError> {
        check_name(name)?;
        let Some(expected) = self.mirror.remove(name) else {
            return Err(IpsetError::new(ErrorCode::SetNotFound, "the set is not managed by this client").set(name));
        };
        let kernel: MemberSet = match self.read_set(name) {
            Ok((_, members)) => members.into_iter().collect(),
            Err(e) if e.code == ErrorCode::SetNotFound => {
                self.create(name, &expected.spec, false)?;
                MemberSet::default()
            }
            Err(e) => {
                self.mirror.insert(name.into(), expected);
                return Err(e);
            }
        };
        let d = diff_members(&kernel, &expected.members);
        let mut out = ReconcileResult { repaired: !d.add.is_empty() || !d.del.is_empty(), ..Default::default() };
        let texts: Vec<String> = expected.members.iter().map(|m| m.to_string()).collect();
        let r = self.sync_set(name, &expected.spec, &texts)?;
        out.added = r.added;
        out.removed = r.removed;
        out.repaired |= r.created || r.swapped;
        Ok(out)
    }

    /// Member count the mirror holds, if the set is managed.
    pub fn mirrored_len(&self, name: &str) -> Option<usize> {
        self.mirror.get(name).map(|m| m.members.len())
    }
}
