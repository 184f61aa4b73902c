//! `struct nfgenmsg`, the 4-byte header every nfnetlink payload starts with
//! (include/uapi/linux/netfilter/nfnetlink.h).

use netlink_packet_core::DecodeError;

pub const NFGENMSG_LEN: usize = 4;
pub const NFNETLINK_V0: u8 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NfGenMsg {
    /// AF_* / NFPROTO_* family the request is about (0 = unspecified).
    pub family: u8,
    pub version: u8,
    /// Resource id, big endian on the wire (subsystem specific; 0 for ipset and ctnetlink requests).
    pub res_id: u16,
}

impl NfGenMsg {
    pub fn new(family: u8) -> Self {
        NfGenMsg { family, version: NFNETLINK_V0, res_id: 0 }
    }

    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = self.family;
        buf[1] = self.version;
        buf[2..4].copy_from_slice(&self.res_id.to_be_bytes());
    }

    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < NFGENMSG_LEN {
            return Err(DecodeError::from(format!("nfgenmsg needs {NFGENMSG_LEN} bytes, got {}", buf.len())));
        }
        Ok(NfGenMsg { family: buf[0], version: buf[1], res_id: u16::from_be_bytes([buf[2], buf[3]]) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn res_id_is_big_endian() {
        let mut b = [0u8; 4];
        NfGenMsg { family: 10, version: 0, res_id: 0x0102 }.emit(&mut b);
        assert_eq!(b, [10, 0, 0x01, 0x02]);
        assert_eq!(NfGenMsg::parse(&b).unwrap().res_id, 0x0102);
        assert!(NfGenMsg::parse(&b[..3]).is_err());
    }
}
