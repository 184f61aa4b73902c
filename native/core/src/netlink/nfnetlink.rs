//! The nfnetlink message: a `struct nfgenmsg` header (include/uapi/linux/netfilter/nfnetlink.h)
//! followed by a subsystem's attributes, with the subsystem and command in the netlink message type.
//!
//! One message type for every NETLINK_NETFILTER subsystem we speak: the header is a buffer view that
//! emits and parses, and the body is one enum dispatching on the subsystem id, with an `Other`
//! fallback that keeps the bytes of a subsystem we do not model (and the batch delimiters, which have
//! no subsystem). A new subsystem adds a variant to `NfnlBody` and an arm to
//! `NfnlMessage::deserialize`, nothing else: nf_tables was added so.

use netlink_packet_core::{DecodeError, Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable, Nla, Parseable};

use crate::conntrack::CtMessage;
use crate::ipset::message::IpsetMessage;
use crate::nflog::UlogMessage;
use crate::nftables::message::NftMessage;

pub const NFGENMSG_LEN: usize = 4;
pub const NFNETLINK_V0: u8 = 0;

/// Subsystem ids (the high byte of the message type).
pub const NFNL_SUBSYS_CTNETLINK: u8 = 1;
pub const NFNL_SUBSYS_IPSET: u8 = 6;
pub const NFNL_SUBSYS_NFTABLES: u8 = 10;

/// Batch delimiters: raw message types (NLMSG_MIN_TYPE and the next), not subsystem-shifted.
pub const NFNL_MSG_BATCH_BEGIN: u8 = 0x10;
pub const NFNL_MSG_BATCH_END: u8 = 0x11;
/// Attribute of the batch-begin message: the ruleset generation the batch expects.
pub const NFNL_BATCH_GENID: u16 = 1;

/// Message type of an nfnetlink message: subsystem in the high byte, command in the low byte.
pub const fn nfnl_msg_type(subsys: u8, cmd: u8) -> u16 {
    ((subsys as u16) << 8) | cmd as u16
}

const FAMILY: usize = 0;
const VERSION: usize = 1;
const RES_ID: std::ops::Range<usize> = 2..4;

/// A view of an nfnetlink payload: the nfgenmsg header at the start, the subsystem's attributes after.
pub struct NfGenMsgBuffer<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NfGenMsgBuffer<T> {
    pub fn new(buffer: T) -> Self {
        NfGenMsgBuffer { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let len = buffer.as_ref().len();
        if len < NFGENMSG_LEN {
            return Err(DecodeError::from(format!("nfgenmsg needs {NFGENMSG_LEN} bytes, got {len}")));
        }
        Ok(NfGenMsgBuffer { buffer })
    }
    pub fn family(&self) -> u8 {
        self.buffer.as_ref()[FAMILY]
    }
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[VERSION]
    }
    /// Big endian on the wire, unlike the rest of netlink.
    pub fn res_id(&self) -> u16 {
        let b = &self.buffer.as_ref()[RES_ID];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// The subsystem's part: everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[NFGENMSG_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NfGenMsgBuffer<T> {
    pub fn set_family(&mut self, v: u8) {
        self.buffer.as_mut()[FAMILY] = v;
    }
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[VERSION] = v;
    }
    pub fn set_res_id(&mut self, v: u16) {
        self.buffer.as_mut()[RES_ID].copy_from_slice(&v.to_be_bytes());
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[NFGENMSG_LEN..]
    }
}

/// `struct nfgenmsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NfGenMsg {
    /// AF_* / NFPROTO_* family the request is about (0 = unspecified).
    pub family: u8,
    pub version: u8,
    /// Resource id (subsystem specific; 0 for ipset and ctnetlink requests).
    pub res_id: u16,
}

impl NfGenMsg {
    pub fn new(family: u8) -> Self {
        NfGenMsg { family, version: NFNETLINK_V0, res_id: 0 }
    }
}

impl Emitable for NfGenMsg {
    fn buffer_len(&self) -> usize {
        NFGENMSG_LEN
    }
    fn emit(&self, buffer: &mut [u8]) {
        let mut b = NfGenMsgBuffer::new(buffer);
        b.set_family(self.family);
        b.set_version(self.version);
        b.set_res_id(self.res_id);
    }
}

impl<T: AsRef<[u8]>> Parseable<NfGenMsgBuffer<T>> for NfGenMsg {
    fn parse(buf: &NfGenMsgBuffer<T>) -> Result<Self, DecodeError> {
        Ok(NfGenMsg { family: buf.family(), version: buf.version(), res_id: buf.res_id() })
    }
}

/// What a subsystem puts after the header: its command (the low byte of the message type) and
/// its attributes.
pub trait NfnlPayload: Sized {
    const SUBSYS: u8;
    type Attr: Nla;
    fn command(&self) -> u8;
    fn attrs(&self) -> &[Self::Attr];
    fn parse_payload(cmd: u8, buf: &[u8]) -> Result<Self, DecodeError>;

    fn payload_len(&self) -> usize {
        self.attrs().buffer_len()
    }
    fn emit_payload(&self, buf: &mut [u8]) {
        self.attrs().emit(buf)
    }
}

/// The body of an nfnetlink message, by subsystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NfnlBody {
    Ipset(IpsetMessage),
    Ctnetlink(CtMessage),
    Nftables(NftMessage),
    Ulog(UlogMessage),
    /// A subsystem we do not model: its command and raw attribute bytes.
    Other {
        subsys: u8,
        cmd: u8,
        payload: Vec<u8>,
    },
}

/// One nfnetlink message (what goes inside a `NetlinkMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfnlMessage {
    pub header: NfGenMsg,
    pub body: NfnlBody,
}

impl NfnlMessage {
    pub fn new(header: NfGenMsg, body: NfnlBody) -> Self {
        NfnlMessage { header, body }
    }
    pub fn subsys(&self) -> u8 {
        match &self.body {
            NfnlBody::Ipset(_) => IpsetMessage::SUBSYS,
            NfnlBody::Ctnetlink(_) => CtMessage::SUBSYS,
            NfnlBody::Nftables(_) => NftMessage::SUBSYS,
            NfnlBody::Ulog(_) => UlogMessage::SUBSYS,
            NfnlBody::Other { subsys, .. } => *subsys,
        }
    }
    pub fn command(&self) -> u8 {
        match &self.body {
            NfnlBody::Ipset(m) => m.command(),
            NfnlBody::Ctnetlink(m) => m.command(),
            NfnlBody::Nftables(m) => m.command(),
            NfnlBody::Ulog(m) => m.command(),
            NfnlBody::Other { cmd, .. } => *cmd,
        }
    }
    pub fn ipset(&self) -> Option<&IpsetMessage> {
        match &self.body {
            NfnlBody::Ipset(m) => Some(m),
            _ => None,
        }
    }
    pub fn ctnetlink(&self) -> Option<&CtMessage> {
        match &self.body {
            NfnlBody::Ctnetlink(m) => Some(m),
            _ => None,
        }
    }
    pub fn nftables(&self) -> Option<&NftMessage> {
        match &self.body {
            NfnlBody::Nftables(m) => Some(m),
            _ => None,
        }
    }
}

impl From<IpsetMessage> for NfnlBody {
    fn from(m: IpsetMessage) -> Self {
        NfnlBody::Ipset(m)
    }
}
impl From<CtMessage> for NfnlBody {
    fn from(m: CtMessage) -> Self {
        NfnlBody::Ctnetlink(m)
    }
}
impl From<NftMessage> for NfnlBody {
    fn from(m: NftMessage) -> Self {
        NfnlBody::Nftables(m)
    }
}
impl From<UlogMessage> for NfnlBody {
    fn from(m: UlogMessage) -> Self {
        NfnlBody::Ulog(m)
    }
}

impl NetlinkSerializable for NfnlMessage {
    fn message_type(&self) -> u16 {
        nfnl_msg_type(self.subsys(), self.command())
    }
    fn buffer_len(&self) -> usize {
        NFGENMSG_LEN
            + match &self.body {
                NfnlBody::Ipset(m) => m.payload_len(),
                NfnlBody::Ctnetlink(m) => m.payload_len(),
                NfnlBody::Nftables(m) => m.payload_len(),
                NfnlBody::Ulog(m) => m.payload_len(),
                NfnlBody::Other { payload, .. } => payload.len(),
            }
    }
    fn serialize(&self, buf: &mut [u8]) {
        self.header.emit(&mut buf[..NFGENMSG_LEN]);
        let rest = &mut buf[NFGENMSG_LEN..];
        match &self.body {
            NfnlBody::Ipset(m) => m.emit_payload(rest),
            NfnlBody::Ctnetlink(m) => m.emit_payload(rest),
            NfnlBody::Nftables(m) => m.emit_payload(rest),
            NfnlBody::Ulog(m) => m.emit_payload(rest),
            NfnlBody::Other { payload, .. } => rest[..payload.len()].copy_from_slice(payload),
        }
    }
}

impl NetlinkDeserializable for NfnlMessage {
    type Error = DecodeError;
    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        let buf = NfGenMsgBuffer::new_checked(payload)?;
        let nfgen = NfGenMsg::parse(&buf)?;
        let subsys = (header.message_type >> 8) as u8;
        let cmd = (header.message_type & 0xff) as u8;
        let body = match subsys {
            IpsetMessage::SUBSYS => NfnlBody::Ipset(IpsetMessage::parse_payload(cmd, buf.payload())?),
            CtMessage::SUBSYS => NfnlBody::Ctnetlink(CtMessage::parse_payload(cmd, buf.payload())?),
            NftMessage::SUBSYS => NfnlBody::Nftables(NftMessage::parse_payload(cmd, buf.payload())?),
            UlogMessage::SUBSYS => NfnlBody::Ulog(UlogMessage::parse_payload(cmd, buf.payload())?),
            _ => NfnlBody::Other { subsys, cmd, payload: buf.payload().to_vec() },
        };
        Ok(NfnlMessage { header: nfgen, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_view_emits_and_parses_with_a_big_endian_res_id() {
        // struct nfgenmsg { __u8 nfgen_family; __u8 version; __be16 res_id; }
        let mut b = [0u8; 6];
        NfGenMsg { family: 10, version: 0, res_id: 0x0102 }.emit(&mut b);
        assert_eq!(b[..4], [10, 0, 0x01, 0x02]);
        let view = NfGenMsgBuffer::new_checked(&b[..]).unwrap();
        assert_eq!(NfGenMsg::parse(&view).unwrap(), NfGenMsg { family: 10, version: 0, res_id: 0x0102 });
        assert_eq!(view.payload().len(), 2);
        assert!(NfGenMsgBuffer::new_checked(&b[..3]).is_err());
    }

    #[test]
    fn an_unknown_subsystem_survives_as_other() {
        // NFNL_SUBSYS_ACCT (7): not modelled, kept as bytes.
        let mut h = NetlinkHeader::default();
        h.message_type = nfnl_msg_type(7, 1);
        let payload = [2u8, 0, 0, 0, 8, 0, 1, 0, b'f', b'i', b'l', 0];
        let m = NfnlMessage::deserialize(&h, &payload).unwrap();
        assert_eq!(m.body, NfnlBody::Other { subsys: 7, cmd: 1, payload: payload[4..].to_vec() });
        assert_eq!(m.message_type(), 0x0701);
        let mut out = vec![0u8; m.buffer_len()];
        m.serialize(&mut out);
        assert_eq!(out, payload);
    }
}
