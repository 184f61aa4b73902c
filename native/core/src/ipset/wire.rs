//! The ipset commands on the wire: one netlink socket, the negotiated protocol, and each command as
//! the kernel takes it. No mirror and no policy (that is `client`): every method is one logical
//! command and reports what the kernel answered.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use netlink_packet_core::{NetlinkMessage, NLM_F_EXCL};

use netlink_packet_core::Nla;

use super::attr::{elem_wire_len, Elem, HeaderAttr, IpsetAttr};
use super::constants::*;
use super::error::{ErrorCode, IpsetError};
use super::kernel::{Adt, AdtReport, IpsetKernel, KernelSet, SetHeader, SetKind};
use super::member::{Family, Member, SetSpec, SetType, DEFAULT_MAXELEM};
use super::message::IpsetMessage;
use crate::netlink::{request, NfGenMsg, NfnlMessage, NfnlSocket, NlError};

/// A nested attribute's length is 16 bits; keep each ADT attribute safely below it.
const MAX_ADT_BYTES: usize = 65_535 - 1024;
/// Revisions created by default: the newest ones a still-common `ipset` tool can list. hash:ip rev 5
/// and hash:net rev 7 added bucketsize/initval, which ipset tools older than that cannot print ("Kernel and userspace
/// incompatible"), breaking `ipset list` for other tools on the host.
const MAX_REVISION_HASH_IP: u8 = 4;
const MAX_REVISION_HASH_NET: u8 = 6;
/// Element attributes that carry no membership meaning: counters and skbinfo values. Anything else
/// we do not model (a port, a second address, an interface…) makes an element unreadable as a member.
const HARMLESS_ELEM_ATTRS: [u16; 6] =
    [IPSET_ATTR_BYTES, IPSET_ATTR_PACKETS, IPSET_ATTR_SKBMARK, IPSET_ATTR_SKBPRIO, IPSET_ATTR_SKBQUEUE, IPSET_ATTR_PAD];

type Request = NetlinkMessage<NfnlMessage>;

fn msg(cmd: u8, flags: u16, attrs: Vec<IpsetAttr>) -> Request {
    msg_in(0, cmd, flags, attrs)
}

fn msg_in(family: u8, cmd: u8, flags: u16, attrs: Vec<IpsetAttr>) -> Request {
    request(NfGenMsg::new(family), IpsetMessage::new(cmd, attrs), flags)
}

fn ipset_replies(out: Vec<NfnlMessage>) -> Vec<IpsetMessage> {
    out.into_iter()
        .filter_map(|m| match m.body {
            crate::netlink::NfnlBody::Ipset(i) => Some(i),
            _ => None,
        })
        .collect()
}

/// A hash size for `n` members: the kernel's buckets hold several entries, so n/2 rounded up to a
/// power of two, within the kernel's limits.
pub fn hashsize_for(n: usize) -> u32 {
    ((n / 2).max(1024).next_power_of_two()).min(1 << 30) as u32
}

pub struct IpsetWire {
    sock: NfnlSocket,
    protocol: u8,
    revisions: HashMap<(SetType, Family), u8>,
}

impl IpsetWire {
    /// Opens a socket in the namespace at `netns` (the caller's own when `None`) and negotiates the
    /// protocol. Nothing else: no set of anyone's is touched.
    pub fn open(netns: Option<&Path>) -> Result<Self, IpsetError> {
        let sock = NfnlSocket::open(netns)?;
        let mut w = IpsetWire { sock, protocol: IPSET_PROTOCOL, revisions: HashMap::new() };
        w.protocol = w.negotiate_protocol()?;
        Ok(w)
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Bytes this client has sent to the kernel.
    pub fn bytes_sent(&self) -> u64 {
        self.sock.bytes_sent()
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
            msg(
                IPSET_CMD_TYPE,
                0,
                vec![
                    IpsetAttr::Protocol(self.protocol),
                    IpsetAttr::TypeName(set_type.as_str().into()),
                    IpsetAttr::Family(family.nfproto()),
                ],
            ),
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
    fn one(&mut self, req: Request, cmd: u8) -> Result<Vec<IpsetMessage>, IpsetError> {
        let mut out = self.sock.transact(vec![req])?;
        let o = out.pop().expect("one outcome per request");
        o.result.map_err(|e| IpsetError::from_errno(e.errno, cmd))?;
        Ok(ipset_replies(o.replies))
    }

    fn named(&self, cmd: u8, flags: u16, name: &str) -> Request {
        msg(cmd, flags, vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(name.into())])
    }

    fn two_names(&self, cmd: u8, a: &str, b: &str) -> Request {
        msg(cmd, 0, vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(a.into()), IpsetAttr::TypeName(b.into())])
    }

    fn dump_set(&mut self, name: &str, header_only: bool) -> Result<Vec<IpsetMessage>, IpsetError> {
        let mut attrs = vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(name.into())];
        if header_only {
            attrs.push(IpsetAttr::Flags(IPSET_FLAG_LIST_HEADER));
        }
        let out = self.sock.dump(msg(IPSET_CMD_LIST, 0, attrs))?.map_err(|e| IpsetError::from_errno(e.errno, IPSET_CMD_LIST))?;
        Ok(ipset_replies(out))
    }

    fn parse_header(name: &str, msgs: &[IpsetMessage]) -> Result<SetHeader, IpsetError> {
        let first = msgs
            .iter()
            .find(|m| m.type_name().is_some())
            .ok_or_else(|| IpsetError::new(ErrorCode::Protocol, "list reply without a set header"))?;
        let family = first.u8_attr(|a| if let IpsetAttr::Family(f) = a { Some(*f) } else { None }).and_then(Family::from_nfproto);
        let mut h = SetHeader {
            name: first.set_name().unwrap_or(name).to_string(),
            type_name: first.type_name().unwrap_or_default().to_string(),
            family,
            revision: first.u8_attr(|a| if let IpsetAttr::Revision(r) = a { Some(*r) } else { None }).unwrap_or(0),
            hashsize: 0,
            maxelem: DEFAULT_MAXELEM,
            memory: 0,
            references: 0,
            entries: None,
            timeout: None,
            cadt_flags: 0,
            masked: false,
            initval: None,
        };
        let full = match family {
            Some(Family::Inet6) => 128,
            _ => 32,
        };
        for a in first.header_data() {
            match a {
                HeaderAttr::HashSize(v) => h.hashsize = *v,
                HeaderAttr::MaxElem(v) => h.maxelem = *v,
                HeaderAttr::MemSize(v) => h.memory = *v,
                HeaderAttr::References(v) => h.references = *v,
                HeaderAttr::Elements(v) => h.entries = Some(*v),
                HeaderAttr::Timeout(v) => h.timeout = Some(*v),
                HeaderAttr::CadtFlags(f) => h.cadt_flags = *f,
                HeaderAttr::InitVal(v) => h.initval = Some(*v),
                HeaderAttr::Netmask(m) => h.masked |= *m < full,
                HeaderAttr::Bitmask(m) => {
                    h.masked |= match m {
                        std::net::IpAddr::V4(a) => u32::from(*a) != u32::MAX,
                        std::net::IpAddr::V6(a) => u128::from(*a) != u128::MAX,
                    }
                }
                _ => {}
            }
        }
        Ok(h)
    }

    /// Splits `members[range]` into ADT messages that each fit the 16-bit nested attribute.
    fn adt_messages(&self, op: Adt, name: &str, set_type: SetType, members: &[Member], exist: bool) -> Vec<(Request, Range<usize>)> {
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
            let m = msg(
                op.cmd(),
                if exist { 0 } else { NLM_F_EXCL },
                vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(name.into()), IpsetAttr::LineNo(0), IpsetAttr::Adt(elems)],
            );
            out.push((m, start..end));
            start = end;
        }
        out
    }

    /// One element in a message of its own: its ack or error is about it alone.
    fn single_message(&self, op: Adt, name: &str, set_type: SetType, member: &Member, exist: bool) -> Request {
        msg(
            op.cmd(),
            if exist { 0 } else { NLM_F_EXCL },
            vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(name.into()), IpsetAttr::ElemData(member.to_elem(set_type, None))],
        )
    }

    /// Where in its message a batch stopped: the kernel echoes our request with LINENO set to the
    /// failing element's line. `None` when the message failed as a whole.
    pub(crate) fn failed_line(err: &NlError, cmd: u8) -> Option<usize> {
        use crate::netlink::NfnlPayload;
        let payload = err.echoed.get(16 + crate::netlink::NFGENMSG_LEN..)?;
        let m = IpsetMessage::parse_payload(cmd, payload).ok()?;
        match m.lineno() {
            Some(n) if n > 0 => Some(n as usize - 1),
            _ => None,
        }
    }

    /// Reads the elements of a dump into members, or says why they cannot be read as members.
    fn read_elements(msgs: &[IpsetMessage]) -> (Vec<Member>, Option<String>) {
        let mut members = Vec::new();
        let mut why = None;
        for e in msgs.iter().flat_map(|m| m.elements()) {
            if e.cadt_flags.is_some_and(|f| f & IPSET_FLAG_NOMATCH != 0) {
                why.get_or_insert_with(|| "the set holds a nomatch entry (an exception, not a member)".to_string());
                continue;
            }
            if let Some(o) = e.other.iter().find(|o| !HARMLESS_ELEM_ATTRS.contains(&(o.kind() & 0x3fff))) {
                why.get_or_insert_with(|| format!("an element carries attribute {} that a member cannot express", o.kind() & 0x3fff));
                continue;
            }
            match Member::from_elem(e) {
                Some(m) => members.push(m),
                None => {
                    why.get_or_insert_with(|| "an element has no address".to_string());
                }
            }
        }
        (members, why)
    }
}

impl IpsetKernel for IpsetWire {
    fn create(&mut self, name: &str, spec: &SetSpec, exist: bool) -> Result<(), IpsetError> {
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
        let req = msg_in(
            spec.family.nfproto(),
            IPSET_CMD_CREATE,
            if exist { 0 } else { NLM_F_EXCL },
            vec![
                IpsetAttr::Protocol(self.protocol),
                IpsetAttr::SetName(name.into()),
                IpsetAttr::TypeName(spec.set_type.as_str().into()),
                IpsetAttr::Revision(rev),
                IpsetAttr::Family(spec.family.nfproto()),
                IpsetAttr::HeaderData(data),
            ],
        );
        self.one(req, IPSET_CMD_CREATE).map(|_| ())
    }

    /// Recent kernels treat destroy of a missing set as success unless NLM_F_EXCL asks otherwise.
    fn destroy(&mut self, name: &str) -> Result<(), IpsetError> {
        let req = self.named(IPSET_CMD_DESTROY, NLM_F_EXCL, name);
        self.one(req, IPSET_CMD_DESTROY).map(|_| ())
    }

    fn flush(&mut self, name: &str) -> Result<(), IpsetError> {
        let req = self.named(IPSET_CMD_FLUSH, 0, name);
        self.one(req, IPSET_CMD_FLUSH).map(|_| ())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IpsetError> {
        let req = self.two_names(IPSET_CMD_RENAME, from, to);
        self.one(req, IPSET_CMD_RENAME).map(|_| ())
    }

    fn swap(&mut self, a: &str, b: &str) -> Result<(), IpsetError> {
        let req = self.two_names(IPSET_CMD_SWAP, a, b);
        self.one(req, IPSET_CMD_SWAP).map(|_| ())
    }

    fn list_names(&mut self) -> Result<Vec<String>, IpsetError> {
        let req = msg(IPSET_CMD_LIST, 0, vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::Flags(IPSET_FLAG_LIST_SETNAME)]);
        let msgs = ipset_replies(self.sock.dump(req)?.map_err(|e| IpsetError::from_errno(e.errno, IPSET_CMD_LIST))?);
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

    fn kind(&mut self, name: &str) -> Result<SetKind, IpsetError> {
        let req = self.named(IPSET_CMD_HEADER, 0, name);
        let out = self.one(req, IPSET_CMD_HEADER)?;
        let m = out
            .iter()
            .find(|m| m.type_name().is_some())
            .ok_or_else(|| IpsetError::new(ErrorCode::Protocol, "header reply without a set type"))?;
        Ok(SetKind {
            type_name: m.type_name().unwrap_or_default().to_string(),
            family: m.u8_attr(|a| if let IpsetAttr::Family(f) = a { Some(*f) } else { None }).and_then(Family::from_nfproto),
            revision: m.u8_attr(|a| if let IpsetAttr::Revision(r) = a { Some(*r) } else { None }).unwrap_or(0),
        })
    }

    fn header(&mut self, name: &str) -> Result<SetHeader, IpsetError> {
        let msgs = self.dump_set(name, true)?;
        Self::parse_header(name, &msgs)
    }

    fn header_while<T>(&mut self, name: &str, work: impl FnOnce() -> T) -> (Result<SetHeader, IpsetError>, T) {
        let overlapped = std::thread::scope(|scope| {
            match std::thread::Builder::new().name("sg-ipset-header".into()).spawn_scoped(scope, || self.header(name)) {
                Ok(asking) => {
                    let done = work();
                    let header = asking.join().unwrap_or_else(|_| Err(IpsetError::new(ErrorCode::Kernel, "the header request panicked")));
                    Ok((header, done))
                }
                Err(_) => Err(work),
            }
        });
        match overlapped {
            Ok(both) => both,
            // No thread to be had: one after the other.
            Err(work) => (self.header(name), work()),
        }
    }

    fn read(&mut self, name: &str) -> Result<KernelSet, IpsetError> {
        let msgs = self.dump_set(name, false)?;
        let mut header = Self::parse_header(name, &msgs)?;
        let (members, element_issue) = Self::read_elements(&msgs);
        header.entries = Some(members.len() as u32);
        let unrepresentable = header.unrepresentable().or(element_issue);
        Ok(KernelSet { header, members, unrepresentable })
    }

    /// Sends the batch in as few messages as fit. The kernel stops a message at its first failing
    /// element (keeping those before it) and says which one failed; the rest of that message is then
    /// sent as one message per element, all in one more batch, so that every failure costs one
    /// small message instead of a resend of the rest (O(failures), not O(failures × batch)).
    /// A set-level error (set missing, type mismatch) fails the rest of its message at once. A full
    /// set is not one: it still takes what it holds already (an add with `exist`), so the rest of
    /// that message is tried element by element like any other.
    fn adt(&mut self, op: Adt, name: &str, set_type: SetType, members: &[Member], exist: bool) -> Result<AdtReport, IpsetError> {
        let cmd = op.cmd();
        let mut failed: Vec<(usize, IpsetError)> = Vec::new();
        let plan = self.adt_messages(op, name, set_type, members, exist);
        let ranges: Vec<Range<usize>> = plan.iter().map(|(_, r)| r.clone()).collect();
        let outcomes = self.sock.transact(plan.into_iter().map(|(m, _)| m).collect())?;
        let mut singles: Vec<usize> = Vec::new();
        for (range, o) in ranges.into_iter().zip(outcomes) {
            let Err(e) = o.result else { continue };
            let err = IpsetError::from_errno(e.errno, cmd);
            match Self::failed_line(&e, cmd) {
                Some(line) if line < range.len() => {
                    let at = range.start + line;
                    if err.code.is_set_level() {
                        failed.extend((at..range.end).map(|i| (i, err.clone())));
                    } else {
                        failed.push((at, err));
                        singles.extend(at + 1..range.end);
                    }
                }
                _ => failed.extend(range.map(|i| (i, err.clone()))),
            }
        }
        if !singles.is_empty() {
            let reqs = singles.iter().map(|&i| self.single_message(op, name, set_type, &members[i], exist)).collect();
            for (i, o) in singles.into_iter().zip(self.sock.transact(reqs)?) {
                if let Err(e) = o.result {
                    failed.push((i, IpsetError::from_errno(e.errno, cmd)));
                }
            }
        }
        failed.sort_by_key(|(i, _)| *i);
        Ok(AdtReport { failed })
    }

    fn test(&mut self, name: &str, set_type: SetType, member: &Member) -> Result<bool, IpsetError> {
        let req = msg(
            IPSET_CMD_TEST,
            0,
            vec![IpsetAttr::Protocol(self.protocol), IpsetAttr::SetName(name.into()), IpsetAttr::ElemData(member.to_elem(set_type, None))],
        );
        match self.one(req, IPSET_CMD_TEST) {
            Ok(_) => Ok(true),
            Err(e) if e.errno == Some(IPSET_ERR_EXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Only asks the kernel which ipset protocol it speaks: no other side effect (what
/// `sg-agent --version` needs).
pub fn probe_protocol(netns: Option<&Path>) -> Result<u8, IpsetError> {
    IpsetWire::open(netns).map(|w| w.protocol)
}
