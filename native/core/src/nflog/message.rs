//! An nfnetlink_log payload (NFNL_SUBSYS_ULOG): a logged packet's attributes, or a configuration
//! command, each attribute typed (emit + parse, `Other` fallback). Which enum an attribute number
//! means is decided by the message type, as the kernel numbers each from 1. The fixed-layout structs
//! inside attributes are read and written through buffer views. Integers are big endian, as
//! nfnetlink_log sends them. The nfgenmsg header around it (the packet's family; the group as its
//! res_id) belongs to `netlink::NfnlMessage`.

use netlink_packet_core::{DecodeError, DefaultNla, Nla, NlaBuffer, Parseable};

use super::constants::*;
use crate::netlink::NfnlPayload;

/// `struct nfulnl_msg_packet_hdr`: the packet's link-layer protocol and the hook it was logged at.
pub struct PacketHdrBuffer<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PacketHdrBuffer<T> {
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        if buffer.as_ref().len() < PACKET_HDR_LEN {
            return Err(DecodeError::from("nfulnl_msg_packet_hdr too short"));
        }
        Ok(PacketHdrBuffer { buffer })
    }
    pub fn hw_protocol(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn hook(&self) -> u8 {
        self.buffer.as_ref()[2]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PacketHdrBuffer<T> {
    pub fn new(buffer: T) -> Self {
        PacketHdrBuffer { buffer }
    }
    pub fn set_hw_protocol(&mut self, v: u16) {
        self.buffer.as_mut()[0..2].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_hook(&mut self, v: u8) {
        let b = self.buffer.as_mut();
        b[2] = v;
        b[3] = 0;
    }
}

/// `struct nfulnl_msg_packet_hw`: the sender's link-layer address.
pub struct HwAddrBuffer<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HwAddrBuffer<T> {
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        if b.len() < PACKET_HW_LEN || u16::from_be_bytes([b[0], b[1]]) as usize > 8 {
            return Err(DecodeError::from("nfulnl_msg_packet_hw malformed"));
        }
        Ok(HwAddrBuffer { buffer })
    }
    /// The address's bytes (hw_addrlen of the eight).
    pub fn addr(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[4..4 + u16::from_be_bytes([b[0], b[1]]) as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HwAddrBuffer<T> {
    pub fn new(buffer: T) -> Self {
        HwAddrBuffer { buffer }
    }
    pub fn set_addr(&mut self, addr: &[u8]) {
        let b = self.buffer.as_mut();
        b.fill(0);
        b[0..2].copy_from_slice(&(addr.len() as u16).to_be_bytes());
        b[4..4 + addr.len()].copy_from_slice(addr);
    }
}

/// `struct nfulnl_msg_packet_timestamp`: seconds and microseconds, 64-bit each.
pub struct TimestampBuffer<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TimestampBuffer<T> {
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        if buffer.as_ref().len() < TIMESTAMP_LEN {
            return Err(DecodeError::from("nfulnl_msg_packet_timestamp too short"));
        }
        Ok(TimestampBuffer { buffer })
    }
    pub fn sec(&self) -> u64 {
        u64::from_be_bytes(self.buffer.as_ref()[0..8].try_into().unwrap_or_default())
    }
    pub fn usec(&self) -> u64 {
        u64::from_be_bytes(self.buffer.as_ref()[8..16].try_into().unwrap_or_default())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TimestampBuffer<T> {
    pub fn new(buffer: T) -> Self {
        TimestampBuffer { buffer }
    }
    pub fn set(&mut self, sec: u64, usec: u64) {
        let b = self.buffer.as_mut();
        b[0..8].copy_from_slice(&sec.to_be_bytes());
        b[8..16].copy_from_slice(&usec.to_be_bytes());
    }
}

/// `struct nfulnl_msg_config_mode` (packed): how much of each packet to copy, and in which mode.
pub struct ConfigModeBuffer<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ConfigModeBuffer<T> {
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        if buffer.as_ref().len() < CONFIG_MODE_LEN {
            return Err(DecodeError::from("nfulnl_msg_config_mode too short"));
        }
        Ok(ConfigModeBuffer { buffer })
    }
    pub fn copy_range(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    pub fn copy_mode(&self) -> u8 {
        self.buffer.as_ref()[4]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ConfigModeBuffer<T> {
    pub fn new(buffer: T) -> Self {
        ConfigModeBuffer { buffer }
    }
    pub fn set(&mut self, copy_range: u32, copy_mode: u8) {
        let b = self.buffer.as_mut();
        b[0..4].copy_from_slice(&copy_range.to_be_bytes());
        b[4] = copy_mode;
        b[5] = 0;
    }
}

/// One attribute of a packet message (the first group) or of a configuration message (the second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UlogAttr {
    PacketHdr {
        hw_protocol: u16,
        hook: u8,
    },
    Mark(u32),
    Timestamp {
        sec: u64,
        usec: u64,
    },
    Indev(u32),
    Outdev(u32),
    PhysIndev(u32),
    PhysOutdev(u32),
    HwAddr(Vec<u8>),
    /// The packet from its network header on (as much as the copy range lets through).
    Payload(Vec<u8>),
    /// The rule's prefix (without its NUL).
    Prefix(String),
    HwType(u16),
    HwHeader(Vec<u8>),
    HwLen(u16),
    CfgCmd(u8),
    CfgMode {
        copy_range: u32,
        copy_mode: u8,
    },
    CfgBufSize(u32),
    /// How long the kernel holds packets to batch them, in 1/100 s.
    CfgTimeout(u32),
    /// How many packets the kernel batches into one datagram at most.
    CfgQthresh(u32),
    CfgFlags(u16),
    Other(DefaultNla),
}

fn be16(v: &[u8]) -> Result<u16, DecodeError> {
    v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| DecodeError::from("u16 attribute too short"))
}
fn be32(v: &[u8]) -> Result<u32, DecodeError> {
    v.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| DecodeError::from("u32 attribute too short"))
}

impl UlogAttr {
    /// A packet message's attribute.
    fn parse_packet(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            NFULA_PACKET_HDR => {
                let h = PacketHdrBuffer::new_checked(v)?;
                UlogAttr::PacketHdr { hw_protocol: h.hw_protocol(), hook: h.hook() }
            }
            NFULA_MARK => UlogAttr::Mark(be32(v)?),
            NFULA_TIMESTAMP => {
                let t = TimestampBuffer::new_checked(v)?;
                UlogAttr::Timestamp { sec: t.sec(), usec: t.usec() }
            }
            NFULA_IFINDEX_INDEV => UlogAttr::Indev(be32(v)?),
            NFULA_IFINDEX_OUTDEV => UlogAttr::Outdev(be32(v)?),
            NFULA_IFINDEX_PHYSINDEV => UlogAttr::PhysIndev(be32(v)?),
            NFULA_IFINDEX_PHYSOUTDEV => UlogAttr::PhysOutdev(be32(v)?),
            NFULA_HWADDR => UlogAttr::HwAddr(HwAddrBuffer::new_checked(v)?.addr().to_vec()),
            NFULA_PAYLOAD => UlogAttr::Payload(v.to_vec()),
            NFULA_PREFIX => {
                let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                UlogAttr::Prefix(String::from_utf8_lossy(&v[..end]).into_owned())
            }
            NFULA_HWTYPE => UlogAttr::HwType(be16(v)?),
            NFULA_HWHEADER => UlogAttr::HwHeader(v.to_vec()),
            NFULA_HWLEN => UlogAttr::HwLen(be16(v)?),
            _ => UlogAttr::Other(DefaultNla::parse(nla)?),
        })
    }

    /// A configuration message's attribute.
    fn parse_config(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            NFULA_CFG_CMD => UlogAttr::CfgCmd(*v.first().ok_or_else(|| DecodeError::from("empty command"))?),
            NFULA_CFG_MODE => {
                let m = ConfigModeBuffer::new_checked(v)?;
                UlogAttr::CfgMode { copy_range: m.copy_range(), copy_mode: m.copy_mode() }
            }
            NFULA_CFG_NLBUFSIZ => UlogAttr::CfgBufSize(be32(v)?),
            NFULA_CFG_TIMEOUT => UlogAttr::CfgTimeout(be32(v)?),
            NFULA_CFG_QTHRESH => UlogAttr::CfgQthresh(be32(v)?),
            NFULA_CFG_FLAGS => UlogAttr::CfgFlags(be16(v)?),
            _ => UlogAttr::Other(DefaultNla::parse(nla)?),
        })
    }

    fn len_and_kind(&self) -> (usize, u16) {
        match self {
            UlogAttr::PacketHdr { .. } => (PACKET_HDR_LEN, NFULA_PACKET_HDR),
            UlogAttr::Mark(_) => (4, NFULA_MARK),
            UlogAttr::Timestamp { .. } => (TIMESTAMP_LEN, NFULA_TIMESTAMP),
            UlogAttr::Indev(_) => (4, NFULA_IFINDEX_INDEV),
            UlogAttr::Outdev(_) => (4, NFULA_IFINDEX_OUTDEV),
            UlogAttr::PhysIndev(_) => (4, NFULA_IFINDEX_PHYSINDEV),
            UlogAttr::PhysOutdev(_) => (4, NFULA_IFINDEX_PHYSOUTDEV),
            UlogAttr::HwAddr(_) => (PACKET_HW_LEN, NFULA_HWADDR),
            UlogAttr::Payload(b) => (b.len(), NFULA_PAYLOAD),
            UlogAttr::Prefix(s) => (s.len() + 1, NFULA_PREFIX),
            UlogAttr::HwType(_) => (2, NFULA_HWTYPE),
            UlogAttr::HwHeader(b) => (b.len(), NFULA_HWHEADER),
            UlogAttr::HwLen(_) => (2, NFULA_HWLEN),
            UlogAttr::CfgCmd(_) => (1, NFULA_CFG_CMD),
            UlogAttr::CfgMode { .. } => (CONFIG_MODE_LEN, NFULA_CFG_MODE),
            UlogAttr::CfgBufSize(_) => (4, NFULA_CFG_NLBUFSIZ),
            UlogAttr::CfgTimeout(_) => (4, NFULA_CFG_TIMEOUT),
            UlogAttr::CfgQthresh(_) => (4, NFULA_CFG_QTHRESH),
            UlogAttr::CfgFlags(_) => (2, NFULA_CFG_FLAGS),
            UlogAttr::Other(o) => (o.value_len(), o.kind()),
        }
    }
}

impl Nla for UlogAttr {
    fn value_len(&self) -> usize {
        self.len_and_kind().0
    }
    fn kind(&self) -> u16 {
        self.len_and_kind().1
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            UlogAttr::PacketHdr { hw_protocol, hook } => {
                let mut h = PacketHdrBuffer::new(buf);
                h.set_hw_protocol(*hw_protocol);
                h.set_hook(*hook);
            }
            UlogAttr::Timestamp { sec, usec } => TimestampBuffer::new(buf).set(*sec, *usec),
            UlogAttr::HwAddr(a) => HwAddrBuffer::new(&mut buf[..PACKET_HW_LEN]).set_addr(a),
            UlogAttr::CfgMode { copy_range, copy_mode } => ConfigModeBuffer::new(buf).set(*copy_range, *copy_mode),
            UlogAttr::Mark(v)
            | UlogAttr::Indev(v)
            | UlogAttr::Outdev(v)
            | UlogAttr::PhysIndev(v)
            | UlogAttr::PhysOutdev(v)
            | UlogAttr::CfgBufSize(v)
            | UlogAttr::CfgTimeout(v)
            | UlogAttr::CfgQthresh(v) => buf[..4].copy_from_slice(&v.to_be_bytes()),
            UlogAttr::HwType(v) | UlogAttr::HwLen(v) | UlogAttr::CfgFlags(v) => buf[..2].copy_from_slice(&v.to_be_bytes()),
            UlogAttr::Payload(b) | UlogAttr::HwHeader(b) => buf[..b.len()].copy_from_slice(b),
            UlogAttr::Prefix(s) => {
                buf[..s.len()].copy_from_slice(s.as_bytes());
                buf[s.len()] = 0;
            }
            UlogAttr::CfgCmd(c) => buf[0] = *c,
            UlogAttr::Other(o) => o.emit_value(buf),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlogMessage {
    pub cmd: u8,
    pub attrs: Vec<UlogAttr>,
}

impl UlogMessage {
    /// A configuration command for the group the nfgenmsg's res_id names.
    pub fn config(attrs: Vec<UlogAttr>) -> Self {
        UlogMessage { cmd: NFULNL_MSG_CONFIG, attrs }
    }
}

impl NfnlPayload for UlogMessage {
    const SUBSYS: u8 = NFNL_SUBSYS_ULOG;
    type Attr = UlogAttr;
    fn command(&self) -> u8 {
        self.cmd
    }
    fn attrs(&self) -> &[UlogAttr] {
        &self.attrs
    }
    fn parse_payload(cmd: u8, buf: &[u8]) -> Result<Self, DecodeError> {
        let parse = if cmd == NFULNL_MSG_CONFIG { UlogAttr::parse_config } else { UlogAttr::parse_packet };
        let attrs = netlink_packet_core::NlasIterator::new(buf).map(|n| n.and_then(|n| parse(&n))).collect::<Result<Vec<_>, _>>()?;
        Ok(UlogMessage { cmd, attrs })
    }
}
