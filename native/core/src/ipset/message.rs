//! An ipset netlink message: command, nfgenmsg header and attributes.

use netlink_packet_core::{
    DecodeError, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable,
};

use super::attr::{DataContext, ElemAttr, HeaderAttr, IpsetAttr};
use super::constants::*;
use crate::netlink::{emit_nfnl_payload, nfnl_msg_type, nfnl_payload_len, NfGenMsg, NFGENMSG_LEN};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsetMessage {
    pub cmd: u8,
    pub nfgen: NfGenMsg,
    pub attrs: Vec<IpsetAttr>,
}

impl IpsetMessage {
    pub fn new(cmd: u8, attrs: Vec<IpsetAttr>) -> Self {
        IpsetMessage { cmd, nfgen: NfGenMsg::new(NFPROTO_UNSPEC), attrs }
    }

    pub fn set_name(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match a {
            IpsetAttr::SetName(s) => Some(s.as_str()),
            _ => None,
        })
    }
    pub fn type_name(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match a {
            IpsetAttr::TypeName(s) => Some(s.as_str()),
            _ => None,
        })
    }
    pub fn u8_attr(&self, pick: fn(&IpsetAttr) -> Option<u8>) -> Option<u8> {
        self.attrs.iter().find_map(pick)
    }
    pub fn header_data(&self) -> &[HeaderAttr] {
        self.attrs
            .iter()
            .find_map(|a| match a {
                IpsetAttr::HeaderData(h) => Some(h.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }
    pub fn elements(&self) -> impl Iterator<Item = &Vec<ElemAttr>> {
        self.attrs
            .iter()
            .filter_map(|a| match a {
                IpsetAttr::Adt(e) => Some(e.iter()),
                _ => None,
            })
            .flatten()
    }
    pub fn lineno(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            IpsetAttr::LineNo(n) => Some(*n),
            _ => None,
        })
    }

    /// How DATA is read in a message of this command (see `attr` module comment).
    fn data_context(cmd: u8) -> DataContext {
        match cmd {
            IPSET_CMD_ADD | IPSET_CMD_DEL | IPSET_CMD_TEST => DataContext::Element,
            _ => DataContext::Header,
        }
    }

    /// Parses the payload after the netlink header (nfgenmsg + attributes).
    pub fn parse_payload(cmd: u8, payload: &[u8]) -> Result<Self, DecodeError> {
        let nfgen = NfGenMsg::parse(payload)?;
        let attrs = IpsetAttr::parse_all(&payload[NFGENMSG_LEN..], Self::data_context(cmd))?;
        Ok(IpsetMessage { cmd, nfgen, attrs })
    }
}

impl NetlinkSerializable for IpsetMessage {
    fn message_type(&self) -> u16 {
        nfnl_msg_type(NFNL_SUBSYS_IPSET, self.cmd)
    }
    fn buffer_len(&self) -> usize {
        nfnl_payload_len(&self.attrs)
    }
    fn serialize(&self, buf: &mut [u8]) {
        emit_nfnl_payload(&self.nfgen, &self.attrs, buf)
    }
}

impl NetlinkDeserializable for IpsetMessage {
    type Error = DecodeError;
    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        let subsys = (header.message_type >> 8) as u8;
        if subsys != NFNL_SUBSYS_IPSET {
            return Err(DecodeError::from(format!("not an ipset message (subsystem {subsys})")));
        }
        Self::parse_payload((header.message_type & 0xff) as u8, payload)
    }
}
