//! An ipset payload (NFNL_SUBSYS_IPSET): the command and its attributes. The nfgenmsg header around
//! it belongs to `netlink::NfnlMessage`.

use netlink_packet_core::DecodeError;

use super::attr::{DataContext, Elem, HeaderAttr, IpsetAttr};
use super::constants::*;
use crate::netlink::{NfnlPayload, NFNL_SUBSYS_IPSET};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsetMessage {
    pub cmd: u8,
    pub attrs: Vec<IpsetAttr>,
}

impl IpsetMessage {
    pub fn new(cmd: u8, attrs: Vec<IpsetAttr>) -> Self {
        IpsetMessage { cmd, attrs }
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
    pub fn elements(&self) -> impl Iterator<Item = &Elem> {
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

    /// How DATA is read in a message of this command (see the `attr` module comment).
    fn data_context(cmd: u8) -> DataContext {
        match cmd {
            IPSET_CMD_ADD | IPSET_CMD_DEL | IPSET_CMD_TEST => DataContext::Element,
            _ => DataContext::Header,
        }
    }
}

impl NfnlPayload for IpsetMessage {
    const SUBSYS: u8 = NFNL_SUBSYS_IPSET;
    type Attr = IpsetAttr;
    fn command(&self) -> u8 {
        self.cmd
    }
    fn attrs(&self) -> &[IpsetAttr] {
        &self.attrs
    }
    fn parse_payload(cmd: u8, buf: &[u8]) -> Result<Self, DecodeError> {
        Ok(IpsetMessage { cmd, attrs: IpsetAttr::parse_all(buf, Self::data_context(cmd))? })
    }
}
