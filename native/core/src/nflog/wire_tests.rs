//! Encoding and decoding against bytes written out by hand from the kernel's header definitions
//! (include/uapi/linux/netfilter/nfnetlink_log.h, nfnetlink.h): attribute numbers, 4-byte alignment,
//! big-endian integers, the packed config structs. None of these vectors come from our own encoder.

use netlink_packet_core::{NetlinkDeserializable, NetlinkHeader, NetlinkSerializable};

use super::constants::*;
use super::message::{UlogAttr, UlogMessage};
use super::reader::LogPacket;
use crate::netlink::{nfnl_msg_type, NfGenMsg, NfnlBody, NfnlMessage};

fn encode(header: NfGenMsg, m: UlogMessage) -> Vec<u8> {
    let nf = NfnlMessage::new(header, m.into());
    let mut b = vec![0u8; nf.buffer_len()];
    nf.serialize(&mut b);
    b
}

fn decode(cmd: u8, payload: &[u8]) -> (NfGenMsg, UlogMessage) {
    let mut h = NetlinkHeader::default();
    h.message_type = nfnl_msg_type(NFNL_SUBSYS_ULOG, cmd);
    let m = NfnlMessage::deserialize(&h, payload).unwrap();
    match m.body {
        NfnlBody::Ulog(u) => (m.header, u),
        other => panic!("not nfnetlink_log: {other:?}"),
    }
}

const GROUP_7: NfGenMsg = NfGenMsg { family: 0, version: 0, res_id: 7 };

/// Bind group 7: AF_UNSPEC, res_id 7 (big endian), NFULA_CFG_CMD { command = NFULNL_CFG_CMD_BIND }.
const BIND_7: &[u8] = &[
    0, 0, 0, 7, // nfgenmsg
    5, 0, 1, 0, 1, 0, 0, 0, // NFULA_CFG_CMD (struct nfulnl_msg_config_cmd, 1 byte) + pad
];

/// Copy up to 128 bytes of each packet, one packet per datagram.
const MODE_128: &[u8] = &[
    0, 0, 0, 7, // nfgenmsg
    10, 0, 2, 0, 0, 0, 0, 128, 2, 0, 0, 0, // NFULA_CFG_MODE { copy_range be32 128, copy_mode PACKET, pad } + pad
    8, 0, 5, 0, 0, 0, 0, 1, // NFULA_CFG_QTHRESH = 1
];

#[test]
fn configuration_commands_encode_as_the_header_defines_them() {
    let bind = UlogMessage::config(vec![UlogAttr::CfgCmd(NFULNL_CFG_CMD_BIND)]);
    assert_eq!(encode(GROUP_7, bind.clone()), BIND_7);
    assert_eq!(decode(NFULNL_MSG_CONFIG, BIND_7), (GROUP_7, bind));
    let mode = UlogMessage::config(vec![UlogAttr::CfgMode { copy_range: 128, copy_mode: NFULNL_COPY_PACKET }, UlogAttr::CfgQthresh(1)]);
    assert_eq!(encode(GROUP_7, mode.clone()), MODE_128);
    assert_eq!(decode(NFULNL_MSG_CONFIG, MODE_128).1, mode);
    assert_eq!(nfnl_msg_type(NFNL_SUBSYS_ULOG, NFULNL_MSG_CONFIG), 0x0401);
}

/// A packet logged at the forward hook of an IPv4 bridge-netfiltered frame: TCP SYN 10.0.0.1:40000 →
/// 10.0.0.2:80, prefix "sg:A:0a", mark 0x10000, in through ifindex 3, its Ethernet header.
const PACKET: &[u8] = &[
    2, 0, 0, 7, // nfgenmsg: AF_INET, group 7
    8, 0, 1, 0, 0x08, 0x00, 2, 0, // NFULA_PACKET_HDR { hw_protocol 0x0800, hook NF_INET_FORWARD, pad }
    8, 0, 2, 0, 0, 1, 0, 0, // NFULA_MARK = 0x00010000
    8, 0, 4, 0, 0, 0, 0, 3, // NFULA_IFINDEX_INDEV = 3
    16, 0, 8, 0, 0, 6, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0, // NFULA_HWADDR { hw_addrlen 6, pad, 02:00:00:00:00:01, pad to 8 }
    12, 0, 10, 0, b's', b'g', b':', b'A', b':', b'0', b'a', 0, // NFULA_PREFIX "sg:A:0a\0"
    6, 0, 15, 0, 0, 1, 0, 0, // NFULA_HWTYPE = ARPHRD_ETHER + pad
    18, 0, 16, 0, 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0, 0, 0, // NFULA_HWHEADER (14 bytes) + pad
    6, 0, 17, 0, 0, 14, 0, 0, // NFULA_HWLEN = 14 + pad
    44, 0, 9, 0, // NFULA_PAYLOAD, 40 bytes: the IPv4 header and the TCP header
    0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, //
    0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
];

#[test]
fn a_logged_packet_decodes_to_its_prefix_devices_and_headers() {
    let (h, m) = decode(NFULNL_MSG_PACKET, PACKET);
    assert_eq!((h.family, h.res_id), (2, 7));
    assert!(m.attrs.contains(&UlogAttr::HwAddr(vec![2, 0, 0, 0, 0, 1])));
    assert_eq!(encode(h, m.clone()), PACKET, "emits as it parses");
    let p = LogPacket::from_message(&m).unwrap();
    assert_eq!((p.prefix.as_str(), p.hook, p.mark, p.indev), ("sg:A:0a", 2, Some(0x10000), Some(3)));
    let e = p.ether.unwrap();
    assert_eq!((e.dst.as_str(), e.src.as_str(), e.ethertype), ("02:00:00:00:00:02", "02:00:00:00:00:01", 0x0800));
    let info = p.packet.unwrap();
    assert_eq!((info.src.to_string(), info.dst.to_string()), ("10.0.0.1".into(), "10.0.0.2".into()));
    assert_eq!((info.proto, info.sport, info.dport, info.tcp_flags), (6, Some(40000), Some(80), Some(0x02)));
}
