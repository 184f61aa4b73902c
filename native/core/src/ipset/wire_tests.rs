//! Encoding and decoding against bytes written out by hand from the kernel's header definitions
//! (include/uapi/linux/netlink.h, netfilter/nfnetlink.h, netfilter/ipset/ip_set.h): attribute
//! numbers, NLA_F_NESTED = 0x8000, NLA_F_NET_BYTEORDER = 0x4000, 4-byte alignment, nfgenmsg with a
//! big-endian res_id. None of these vectors come from our own encoder.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkPayload, NetlinkSerializable};

use super::attr::{Elem, HeaderAttr, IpsetAttr};
use super::constants::*;
use super::error::ErrorCode;
use super::error::IpsetError;
use super::member::{Family, Member, SetType};
use super::message::IpsetMessage;
use super::wire::IpsetWire;
use crate::netlink::{split_messages, NfGenMsg, NfnlBody, NfnlMessage, NfnlPayload, NlError};

/// Encodes an ipset message as the payload of a netlink message (nfgenmsg + attributes).
fn encode_in(family: u8, m: &IpsetMessage) -> Vec<u8> {
    let nf = NfnlMessage::new(NfGenMsg::new(family), m.clone().into());
    let mut b = vec![0u8; nf.buffer_len()];
    nf.serialize(&mut b);
    b
}
fn encode(m: &IpsetMessage) -> Vec<u8> {
    encode_in(NFPROTO_UNSPEC, m)
}
fn decode(cmd: u8, payload: &[u8]) -> NfnlMessage {
    let mut h = NetlinkHeader::default();
    h.message_type = crate::netlink::nfnl_msg_type(6, cmd);
    NfnlMessage::deserialize(&h, payload).unwrap()
}
fn inner(m: &NetlinkPayload<NfnlMessage>) -> &IpsetMessage {
    match m {
        NetlinkPayload::InnerMessage(NfnlMessage { body: NfnlBody::Ipset(i), .. }) => i,
        other => panic!("not an ipset message: {other:?}"),
    }
}

fn nlmsghdr(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&ty.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&seq.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

/// `ipset create s1 hash:net family inet maxelem 65536` at revision 6, protocol 7.
const CREATE_S1: &[u8] = &[
    2, 0, 0, 0, // nfgenmsg: NFPROTO_IPV4, NFNETLINK_V0, res_id 0
    5, 0, 1, 0, 7, 0, 0, 0, // IPSET_ATTR_PROTOCOL = 7
    7, 0, 2, 0, b's', b'1', 0, 0, // IPSET_ATTR_SETNAME "s1\0" + pad
    13, 0, 3, 0, b'h', b'a', b's', b'h', b':', b'n', b'e', b't', 0, 0, 0, 0, // IPSET_ATTR_TYPENAME
    5, 0, 4, 0, 6, 0, 0, 0, // IPSET_ATTR_REVISION = 6
    5, 0, 5, 0, 2, 0, 0, 0, // IPSET_ATTR_FAMILY = NFPROTO_IPV4
    12, 0, 0x07, 0x80, // IPSET_ATTR_DATA | NLA_F_NESTED
    8, 0, 0x13, 0x40, 0, 1, 0, 0, // IPSET_ATTR_MAXELEM | NET_BYTEORDER = 65536 (big endian)
];

/// `add s1 10.0.0.0/24` as one element of an ADT batch, element line 1, top-level LINENO 0.
fn add_s1_payload(top_lineno: u32) -> Vec<u8> {
    let mut v = vec![
        0, 0, 0, 0, // nfgenmsg: NFPROTO_UNSPEC
        5, 0, 1, 0, 7, 0, 0, 0, // PROTOCOL 7
        7, 0, 2, 0, b's', b'1', 0, 0, // SETNAME "s1"
        8, 0, 9, 0, // IPSET_ATTR_LINENO (host order)
    ];
    v.extend_from_slice(&top_lineno.to_ne_bytes());
    v.extend_from_slice(&[
        36, 0, 0x08, 0x80, // IPSET_ATTR_ADT | NESTED
        32, 0, 0x07, 0x80, // IPSET_ATTR_DATA | NESTED
        12, 0, 0x01, 0x80, // IPSET_ATTR_IP | NESTED
        8, 0, 0x01, 0x40, 10, 0, 0, 0, // IPSET_ATTR_IPADDR_IPV4 | NET_BYTEORDER
        5, 0, 3, 0, 24, 0, 0, 0, // IPSET_ATTR_CIDR = 24
        8, 0, 9, 0, // IPSET_ATTR_CADT_LINENO
    ]);
    v.extend_from_slice(&1u32.to_ne_bytes());
    v
}

#[test]
fn create_encodes_as_the_kernel_expects() {
    let m = IpsetMessage::new(
        IPSET_CMD_CREATE,
        vec![
            IpsetAttr::Protocol(7),
            IpsetAttr::SetName("s1".into()),
            IpsetAttr::TypeName("hash:net".into()),
            IpsetAttr::Revision(6),
            IpsetAttr::Family(NFPROTO_IPV4),
            IpsetAttr::HeaderData(vec![HeaderAttr::MaxElem(65536)]),
        ],
    );
    let nf = NfnlMessage::new(NfGenMsg::new(NFPROTO_IPV4), m.clone().into());
    assert_eq!(nf.message_type(), 0x0602);
    assert_eq!(encode_in(NFPROTO_IPV4, &m), CREATE_S1);
    assert_eq!(decode(IPSET_CMD_CREATE, CREATE_S1), nf);
}

#[test]
fn batched_add_encodes_elements_inside_adt() {
    let member = Member::parse("10.0.0.7/24").unwrap();
    let m = IpsetMessage::new(
        IPSET_CMD_ADD,
        vec![
            IpsetAttr::Protocol(7),
            IpsetAttr::SetName("s1".into()),
            IpsetAttr::LineNo(0),
            IpsetAttr::Adt(vec![member.to_elem(SetType::HashNet, Some(1))]),
        ],
    );
    assert_eq!(NfnlMessage::new(NfGenMsg::default(), m.clone().into()).message_type(), 0x0609);
    assert_eq!(encode(&m), add_s1_payload(0));
    assert_eq!(IpsetMessage::parse_payload(IPSET_CMD_ADD, &add_s1_payload(0)[4..]).unwrap(), m);
}

#[test]
fn multipart_list_dump_decodes_header_and_members() {
    let mut part1 = vec![
        2, 0, 0, 0, // nfgenmsg
        5, 0, 1, 0, 7, 0, 0, 0, // PROTOCOL
        7, 0, 2, 0, b's', b'1', 0, 0, // SETNAME
        13, 0, 3, 0, b'h', b'a', b's', b'h', b':', b'n', b'e', b't', 0, 0, 0, 0, // TYPENAME
        5, 0, 4, 0, 6, 0, 0, 0, // REVISION
        5, 0, 5, 0, 2, 0, 0, 0, // FAMILY
        44, 0, 0x07, 0x80, // DATA
        8, 0, 0x12, 0x40, 0, 0, 4, 0, // HASHSIZE 1024
        8, 0, 0x13, 0x40, 0, 1, 0, 0, // MAXELEM 65536
        8, 0, 0x19, 0x40, 0, 0, 0, 1, // REFERENCES 1
        8, 0, 0x1a, 0x40, 0, 0, 2, 0x58, // MEMSIZE 600
        8, 0, 0x18, 0x40, 0, 0, 0, 2, // ELEMENTS 2
    ];
    let part2 = vec![
        2, 0, 0, 0, // nfgenmsg
        5, 0, 1, 0, 7, 0, 0, 0, // PROTOCOL
        7, 0, 2, 0, b's', b'1', 0, 0, // SETNAME
        52, 0, 0x08, 0x80, // ADT
        24, 0, 0x07, 0x80, // DATA
        12, 0, 0x01, 0x80, 8, 0, 0x01, 0x40, 10, 0, 0, 1, // IP 10.0.0.1
        5, 0, 3, 0, 32, 0, 0, 0, // CIDR 32
        24, 0, 0x07, 0x80, // DATA
        12, 0, 0x01, 0x80, 8, 0, 0x01, 0x40, 10, 1, 0, 0, // IP 10.1.0.0
        5, 0, 3, 0, 16, 0, 0, 0, // CIDR 16
    ];
    const NLM_F_MULTI: u16 = 2;
    let mut dgram = nlmsghdr(16 + part1.len() as u32, 0x0607, NLM_F_MULTI, 7);
    dgram.append(&mut part1);
    dgram.extend(nlmsghdr(16 + part2.len() as u32, 0x0607, NLM_F_MULTI, 7));
    dgram.extend(&part2);
    dgram.extend(nlmsghdr(20, 3, NLM_F_MULTI, 7)); // NLMSG_DONE
    dgram.extend(0i32.to_le_bytes());

    let msgs = split_messages::<NfnlMessage>(&dgram).unwrap();
    assert_eq!(msgs.len(), 3);
    let head = inner(&msgs[0].payload);
    assert_eq!(head.set_name(), Some("s1"));
    assert_eq!(head.type_name(), Some("hash:net"));
    assert_eq!(
        head.header_data(),
        &[
            HeaderAttr::HashSize(1024),
            HeaderAttr::MaxElem(65536),
            HeaderAttr::References(1),
            HeaderAttr::MemSize(600),
            HeaderAttr::Elements(2),
        ]
    );
    let body = inner(&msgs[1].payload);
    let members: Vec<String> = body.elements().filter_map(Member::from_elem).map(|m| m.to_string()).collect();
    assert_eq!(members, ["10.0.0.1", "10.1.0.0/16"]);
    assert!(matches!(msgs[2].payload, NetlinkPayload::Done(_)));
    let e0 = body.elements().next().unwrap();
    assert_eq!(e0.ip, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(Member::from_elem(e0).unwrap().family(), Family::Inet);
}

#[test]
fn batch_error_echo_names_the_failing_element() {
    // The kernel's reply to a failed ADT batch: NLMSG_ERROR, errno -IPSET_ERR_EXIST, our request
    // echoed whole with the top-level LINENO overwritten by the failing element's line (1).
    let request = add_s1_payload(1);
    let echoed_hdr = nlmsghdr(16 + request.len() as u32, 0x0609, 0x0205, 42);
    let mut payload = (-IPSET_ERR_EXIST).to_le_bytes().to_vec();
    payload.extend(&echoed_hdr);
    payload.extend(&request);
    let mut dgram = nlmsghdr(16 + payload.len() as u32, 2, 0, 42);
    dgram.extend(&payload);

    let msgs = split_messages::<NfnlMessage>(&dgram).unwrap();
    let NetlinkPayload::Error(e) = &msgs[0].payload else { panic!("error message") };
    assert_eq!(e.code.map(|c| c.get()), Some(-IPSET_ERR_EXIST));
    let err = NlError { errno: IPSET_ERR_EXIST, echoed: e.header.clone() };
    assert_eq!(IpsetWire::failed_line(&err, IPSET_CMD_ADD), Some(0));
    // Without a line the whole message failed.
    let mut whole = echoed_hdr.clone();
    whole.extend(add_s1_payload(0));
    assert_eq!(IpsetWire::failed_line(&NlError { errno: libc::ENOENT, echoed: whole }, IPSET_CMD_ADD), None);
}

#[test]
fn plain_ack_and_protocol_reply() {
    // IPSET_CMD_PROTOCOL reply: PROTOCOL 7, PROTOCOL_MIN 6, followed by the ack (error 0).
    let reply = [2u8, 0, 0, 0, 5, 0, 1, 0, 7, 0, 0, 0, 5, 0, 10, 0, 6, 0, 0, 0];
    let mut dgram = nlmsghdr(16 + reply.len() as u32, 0x0601, 0, 9);
    dgram.extend(reply);
    dgram.extend(nlmsghdr(36, 2, 0x100, 9));
    dgram.extend(0i32.to_le_bytes());
    dgram.extend(nlmsghdr(16 + 4 + 12, 0x0601, 5, 9)); // echoed request header (capped ack)
    let msgs = split_messages::<NfnlMessage>(&dgram).unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(inner(&msgs[0].payload).attrs, vec![IpsetAttr::Protocol(7), IpsetAttr::ProtocolMin(6)]);
    let NetlinkPayload::Error(ack) = &msgs[1].payload else { panic!() };
    assert!(ack.code.is_none());
}

#[test]
fn unknown_attributes_survive_as_other() {
    // An attribute number we do not know (31) round-trips through `Other`.
    let payload = [0u8, 0, 0, 0, 8, 0, 31, 0, 1, 2, 3, 4];
    let m = IpsetMessage::parse_payload(IPSET_CMD_LIST, &payload[4..]).unwrap();
    assert!(matches!(&m.attrs[0], IpsetAttr::Other(_)));
    assert_eq!(encode(&m), payload);
}

#[test]
fn list_elements_that_are_not_members_decode_as_such() {
    // A hash:net element with CADT_FLAGS = IPSET_FLAG_NOMATCH (1 << 2), and a hash:net,port one with
    // IPSET_ATTR_PORT (4, big endian u16, NET_BYTEORDER) and IPSET_ATTR_PROTO (7).
    let nomatch = [
        28, 0, 0x07, 0x80, // DATA
        12, 0, 0x01, 0x80, 8, 0, 0x01, 0x40, 10, 0, 0, 0, // IP 10.0.0.0
        5, 0, 3, 0, 24, 0, 0, 0, // CIDR 24
        8, 0, 0x08, 0x40, 0, 0, 0, 4, // CADT_FLAGS nomatch
    ];
    let e = Elem::parse(&nomatch[4..]).unwrap();
    assert_eq!(e.cadt_flags, Some(IPSET_FLAG_NOMATCH));
    assert_eq!(e.cidr, Some(24));
    let port = [
        12, 0, 0x01, 0x80, 8, 0, 0x01, 0x40, 10, 0, 0, 1, // IP 10.0.0.1
        6, 0, 0x04, 0x40, 0, 80, 0, 0, // PORT 80
        5, 0, 7, 0, 6, 0, 0, 0, // PROTO tcp
    ];
    let e = Elem::parse(&port).unwrap();
    assert_eq!(e.other.len(), 2);
    assert_eq!(Member::from_elem(&e).unwrap().to_string(), "10.0.0.1");
}

#[test]
fn masked_set_headers_decode() {
    // IPSET_ATTR_NETMASK (20) = 24, and IPSET_ATTR_BITMASK (12) holding a nested IPv4 address.
    let data = [
        5, 0, 20, 0, 24, 0, 0, 0, // NETMASK 24
        12, 0, 0x0c, 0x80, 8, 0, 0x01, 0x40, 255, 255, 0, 255, // BITMASK { IPADDR_IPV4 }
    ];
    let mut payload = vec![7u8, 0, 7, 0x80];
    payload[0] = (4 + data.len()) as u8;
    payload.extend(data);
    let m = IpsetMessage::parse_payload(IPSET_CMD_LIST, &payload).unwrap();
    assert_eq!(m.header_data(), &[HeaderAttr::Netmask(24), HeaderAttr::Bitmask(IpAddr::V4(Ipv4Addr::new(255, 255, 0, 255)))]);
    assert_eq!(m.attrs[0].buffer_len(), payload.len());
}

#[test]
fn swap_and_rename_read_the_second_name_error_each_their_way() {
    // IPSET_ERR_EXIST_SETNAME2: for swap the second set is missing, for rename the new name is taken.
    assert_eq!(IpsetError::from_errno(IPSET_ERR_EXIST_SETNAME2, IPSET_CMD_SWAP).code, ErrorCode::SetNotFound);
    assert_eq!(IpsetError::from_errno(IPSET_ERR_EXIST_SETNAME2, IPSET_CMD_RENAME).code, ErrorCode::SetExists);
    assert_eq!(IpsetError::from_errno(libc::ENOENT, IPSET_CMD_SWAP).code, ErrorCode::SetNotFound);
}

#[test]
fn a_single_element_request_carries_data_without_adt() {
    // What the failure path of a batch sends per element: DATA directly under the command.
    let member = Member::parse("10.0.0.0/24").unwrap();
    let m = IpsetMessage::new(
        IPSET_CMD_DEL,
        vec![IpsetAttr::Protocol(7), IpsetAttr::SetName("s1".into()), IpsetAttr::ElemData(member.to_elem(SetType::HashNet, None))],
    );
    assert_eq!(
        encode(&m),
        [
            0, 0, 0, 0, // nfgenmsg
            5, 0, 1, 0, 7, 0, 0, 0, // PROTOCOL 7
            7, 0, 2, 0, b's', b'1', 0, 0, // SETNAME
            24, 0, 0x07, 0x80, // DATA | NESTED
            12, 0, 0x01, 0x80, 8, 0, 0x01, 0x40, 10, 0, 0, 0, // IP
            5, 0, 3, 0, 24, 0, 0, 0, // CIDR 24
        ]
    );
}
