//! Encoding and decoding against bytes written out by hand from the kernel's header definitions
//! (include/uapi/linux/netlink.h, netfilter/nfnetlink.h, netfilter/nf_tables.h): attribute numbers,
//! NLA_F_NESTED = 0x8000, 4-byte alignment, big-endian integers, the nfgenmsg header with a
//! big-endian res_id. None of these vectors come from our own encoder.

use netlink_packet_core::{Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable};

use super::attr::*;
use super::constants::*;
use super::expr::{Data, Expr, Verdict};
use super::message::NftMessage;
use crate::netlink::{nfnl_msg_type, request, NfGenMsg, NfnlBody, NfnlMessage, NFNL_SUBSYS_NFTABLES};

fn encode(family: u8, m: NftMessage) -> Vec<u8> {
    let nf = NfnlMessage::new(NfGenMsg::new(family), m.into());
    let mut b = vec![0u8; nf.buffer_len()];
    nf.serialize(&mut b);
    b
}

fn decode(cmd: u8, payload: &[u8]) -> NftMessage {
    let mut h = NetlinkHeader::default();
    h.message_type = nfnl_msg_type(NFNL_SUBSYS_NFTABLES, cmd);
    match NfnlMessage::deserialize(&h, payload).unwrap().body {
        NfnlBody::Nftables(m) => m,
        other => panic!("not nf_tables: {other:?}"),
    }
}

/// `nft add table inet t`.
const NEWTABLE_T: &[u8] = &[
    1, 0, 0, 0, // nfgenmsg: NFPROTO_INET, NFNETLINK_V0, res_id 0
    6, 0, 1, 0, b't', 0, 0, 0, // NFTA_TABLE_NAME "t\0" + pad
];

#[test]
fn a_table_message_is_its_name_in_its_family() {
    let m = NftMessage::new(NFT_MSG_NEWTABLE, vec![NftAttr::Table(TableAttr::Name("t".into()))]);
    assert_eq!(encode(NFPROTO_INET, m.clone()), NEWTABLE_T);
    assert_eq!(decode(NFT_MSG_NEWTABLE, NEWTABLE_T), m);
    assert_eq!(nfnl_msg_type(NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWTABLE), 0x0a00);
}

/// A rule's expressions: `meta l4proto 6 return` (meta load → reg 1, cmp eq, immediate verdict).
const EXPRS_L4PROTO_RETURN: &[u8] = &[
    // NFTA_LIST_ELEM | NESTED, 36 bytes: meta
    36, 0, 0x01, 0x80, 9, 0, 1, 0, b'm', b'e', b't', b'a', 0, 0, 0, 0, // NFTA_EXPR_NAME "meta"
    20, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    8, 0, 2, 0, 0, 0, 0, 16, // NFTA_META_KEY = NFT_META_L4PROTO (be32)
    8, 0, 1, 0, 0, 0, 0, 1, // NFTA_META_DREG = NFT_REG_1
    // cmp, 44 bytes
    44, 0, 0x01, 0x80, 8, 0, 1, 0, b'c', b'm', b'p', 0, // "cmp"
    32, 0, 0x02, 0x80, 8, 0, 1, 0, 0, 0, 0, 1, // NFTA_CMP_SREG = 1
    8, 0, 2, 0, 0, 0, 0, 0, // NFTA_CMP_OP = NFT_CMP_EQ
    12, 0, 0x03, 0x80, 5, 0, 1, 0, 6, 0, 0, 0, // NFTA_CMP_DATA { NFTA_DATA_VALUE = 06 }
    // immediate, 48 bytes
    48, 0, 0x01, 0x80, 14, 0, 1, 0, b'i', b'm', b'm', b'e', b'd', b'i', b'a', b't', b'e', 0, 0, 0, // "immediate"
    28, 0, 0x02, 0x80, 8, 0, 1, 0, 0, 0, 0, 0, // NFTA_IMMEDIATE_DREG = NFT_REG_VERDICT
    16, 0, 0x02, 0x80, // NFTA_IMMEDIATE_DATA
    12, 0, 0x02, 0x80, // NFTA_DATA_VERDICT
    8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfb, // NFTA_VERDICT_CODE = NFT_RETURN (-5)
];

fn l4proto_return() -> Vec<Expr> {
    vec![
        Expr::Meta { key: NFT_META_L4PROTO, dreg: NFT_REG_1 },
        Expr::Cmp { sreg: NFT_REG_1, op: NFT_CMP_EQ, data: vec![6] },
        Expr::Immediate { dreg: NFT_REG_VERDICT, data: Data::Verdict(Verdict::Return) },
    ]
}

#[test]
fn expressions_encode_as_the_headers_define_them() {
    let e = l4proto_return();
    let mut b = vec![0u8; e.as_slice().buffer_len()];
    e.as_slice().emit(&mut b);
    assert_eq!(b, EXPRS_L4PROTO_RETURN);
    assert_eq!(super::expr::parse_exprs(EXPRS_L4PROTO_RETURN).unwrap(), e);
}

/// `@th,64,128 fd00::1` (the target of a neighbour advertisement): a payload load of 16 bytes at
/// offset 8 of the transport header into reg 1, compared whole (a host address needs no mask).
const EXPRS_ND_TARGET: &[u8] = &[
    // NFTA_LIST_ELEM | NESTED, 52 bytes: payload
    52, 0, 0x01, 0x80, 12, 0, 1, 0, b'p', b'a', b'y', b'l', b'o', b'a', b'd', 0, // NFTA_EXPR_NAME "payload"
    36, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    8, 0, 1, 0, 0, 0, 0, 1, // NFTA_PAYLOAD_DREG = NFT_REG_1
    8, 0, 2, 0, 0, 0, 0, 2, // NFTA_PAYLOAD_BASE = NFT_PAYLOAD_TRANSPORT_HEADER
    8, 0, 3, 0, 0, 0, 0, 8, // NFTA_PAYLOAD_OFFSET = 8
    8, 0, 4, 0, 0, 0, 0, 16, // NFTA_PAYLOAD_LEN = 16
    // cmp, 56 bytes
    56, 0, 0x01, 0x80, 8, 0, 1, 0, b'c', b'm', b'p', 0, // "cmp"
    44, 0, 0x02, 0x80, 8, 0, 1, 0, 0, 0, 0, 1, // NFTA_CMP_SREG = 1
    8, 0, 2, 0, 0, 0, 0, 0, // NFTA_CMP_OP = NFT_CMP_EQ
    24, 0, 0x03, 0x80, // NFTA_CMP_DATA
    20, 0, 1, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // NFTA_DATA_VALUE fd00::1
];

#[test]
fn a_neighbour_discovery_target_is_loaded_from_the_icmpv6_header() {
    let e = super::spec::Stmt::NdTarget { cidr: "fd00::1".into() }.exprs().unwrap();
    let mut b = vec![0u8; e.as_slice().buffer_len()];
    e.as_slice().emit(&mut b);
    assert_eq!(b, EXPRS_ND_TARGET);
    assert_eq!(super::expr::parse_exprs(EXPRS_ND_TARGET).unwrap(), e);
}

#[test]
fn a_dumped_rule_reads_back_equal_though_the_kernel_leaves_nests_unflagged() {
    // The kernel dumps expression nests without NLA_F_NESTED (nla_nest_start_noflag).
    let mut dumped = EXPRS_L4PROTO_RETURN.to_vec();
    let mut i = 0;
    while i + 4 <= dumped.len() {
        // Clear the nested flag on every NFTA_LIST_ELEM / NFTA_EXPR_DATA header we wrote above.
        if dumped[i + 3] == 0x80 {
            dumped[i + 3] = 0;
        }
        i += 4;
    }
    let mut payload = vec![1u8, 0, 0, 0];
    payload.extend_from_slice(&[6, 0, 1, 0, b't', 0, 0, 0]); // NFTA_RULE_TABLE "t"
    payload.extend_from_slice(&[6, 0, 2, 0, b'c', 0, 0, 0]); // NFTA_RULE_CHAIN "c"
    payload.extend_from_slice(&[12, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 9]); // NFTA_RULE_HANDLE = 9 (be64)
    payload.extend_from_slice(&((dumped.len() + 4) as u16).to_le_bytes());
    payload.extend_from_slice(&[4, 0]); // NFTA_RULE_EXPRESSIONS, unflagged
    payload.extend_from_slice(&dumped);
    let m = decode(NFT_MSG_NEWRULE, &payload);
    assert_eq!(m.table(), Some("t"));
    assert_eq!(m.object_name(), Some("c"));
    assert_eq!(m.expressions().unwrap(), l4proto_return().as_slice());
    assert!(m.attrs.contains(&NftAttr::Rule(RuleAttr::Handle(9))));
}

#[test]
fn expressions_we_do_not_model_are_kept_whole() {
    // quota { NFTA_QUOTA_BYTES = 100 (be64), NFTA_QUOTA_FLAGS = 0 (be32) }.
    let quota_data: Vec<u8> = vec![12, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 100, 8, 0, 2, 0, 0, 0, 0, 0];
    let mut elem = vec![10, 0, 1, 0, b'q', b'u', b'o', b't', b'a', 0, 0, 0];
    elem.extend_from_slice(&((quota_data.len() + 4) as u16).to_le_bytes());
    elem.extend_from_slice(&[2, 0]);
    elem.extend_from_slice(&quota_data);
    assert_eq!(Expr::parse(&elem).unwrap(), Expr::Other { name: "quota".into(), data: quota_data });
    // A payload write (NFTA_PAYLOAD_SREG) is not a load: kept as Other, never mistaken for ours.
    let pw: Vec<u8> = vec![8, 0, 5, 0, 0, 0, 0, 1, 8, 0, 2, 0, 0, 0, 0, 1, 8, 0, 3, 0, 0, 0, 0, 12, 8, 0, 4, 0, 0, 0, 0, 4];
    let mut elem = vec![12, 0, 1, 0, b'p', b'a', b'y', b'l', b'o', b'a', b'd', 0];
    elem.extend_from_slice(&((pw.len() + 4) as u16).to_le_bytes());
    elem.extend_from_slice(&[2, 0]);
    elem.extend_from_slice(&pw);
    assert!(matches!(Expr::parse(&elem).unwrap(), Expr::Other { .. }));
}

#[test]
fn a_jump_names_its_chain() {
    // immediate { DREG 0, DATA { VERDICT { CODE NFT_JUMP (-3), CHAIN "o-1" } } }
    let e = Expr::Immediate { dreg: 0, data: Data::Verdict(Verdict::Jump("o-1".into())) };
    let mut b = vec![0u8; e.buffer_len()];
    e.emit(&mut b);
    let want: &[u8] = &[
        56, 0, 0x01, 0x80, 14, 0, 1, 0, b'i', b'm', b'm', b'e', b'd', b'i', b'a', b't', b'e', 0, 0, 0, 36, 0, 0x02, 0x80, 8, 0, 1, 0, 0, 0,
        0, 0, 24, 0, 0x02, 0x80, 20, 0, 0x02, 0x80, 8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfd, // NFT_JUMP
        8, 0, 2, 0, b'o', b'-', b'1', 0, // NFTA_VERDICT_CHAIN "o-1"
    ];
    assert_eq!(b, want);
    assert_eq!(e.jump_target(), Some("o-1"));
}

/// `add element inet t s { 10.0.0.0/24 }` on an interval set: a start and an end element.
const ELEMS_10_0_0_0_24: &[u8] = &[
    1, 0, 0, 0, // NFPROTO_INET
    6, 0, 1, 0, b't', 0, 0, 0, // NFTA_SET_ELEM_LIST_TABLE "t"
    6, 0, 2, 0, b's', 0, 0, 0, // NFTA_SET_ELEM_LIST_SET "s"
    44, 0, 0x03, 0x80, // NFTA_SET_ELEM_LIST_ELEMENTS: 4 + 16 + 24
    16, 0, 0x01, 0x80, // NFTA_LIST_ELEM
    12, 0, 0x01, 0x80, 8, 0, 1, 0, 10, 0, 0, 0, // NFTA_SET_ELEM_KEY { VALUE 10.0.0.0 }
    24, 0, 0x01, 0x80, 12, 0, 0x01, 0x80, 8, 0, 1, 0, 10, 0, 1, 0, // KEY 10.0.1.0
    8, 0, 3, 0, 0, 0, 0, 1, // NFTA_SET_ELEM_FLAGS = NFT_SET_ELEM_INTERVAL_END
];

#[test]
fn an_interval_is_a_start_and_an_end_element() {
    let m = NftMessage::new(
        NFT_MSG_NEWSETELEM,
        vec![
            NftAttr::Elems(ElemListAttr::Table("t".into())),
            NftAttr::Elems(ElemListAttr::Set("s".into())),
            NftAttr::Elems(ElemListAttr::Elements(vec![
                Elem { key: vec![10, 0, 0, 0], ..Default::default() },
                Elem { key: vec![10, 0, 1, 0], flags: NFT_SET_ELEM_INTERVAL_END, ..Default::default() },
            ])),
        ],
    );
    assert_eq!(encode(NFPROTO_INET, m.clone()), ELEMS_10_0_0_0_24);
    assert_eq!(decode(NFT_MSG_NEWSETELEM, ELEMS_10_0_0_0_24), m);
}

#[test]
fn a_base_chain_carries_its_hook_type_and_policy() {
    let m = NftMessage::new(
        NFT_MSG_NEWCHAIN,
        vec![
            NftAttr::Chain(ChainAttr::Table("t".into())),
            NftAttr::Chain(ChainAttr::Name("c".into())),
            NftAttr::Chain(ChainAttr::Hook(Hook { hooknum: NF_INET_FORWARD, priority: -200 })),
            NftAttr::Chain(ChainAttr::Type("filter".into())),
            NftAttr::Chain(ChainAttr::Policy(1)),
        ],
    );
    let want: &[u8] = &[
        7, 0, 0, 0, // NFPROTO_BRIDGE
        6, 0, 1, 0, b't', 0, 0, 0, // NFTA_CHAIN_TABLE
        6, 0, 3, 0, b'c', 0, 0, 0, // NFTA_CHAIN_NAME
        20, 0, 0x04, 0x80, // NFTA_CHAIN_HOOK
        8, 0, 1, 0, 0, 0, 0, 2, // NFTA_HOOK_HOOKNUM = NF_BR_FORWARD
        8, 0, 2, 0, 0xff, 0xff, 0xff, 0x38, // NFTA_HOOK_PRIORITY = -200
        11, 0, 7, 0, b'f', b'i', b'l', b't', b'e', b'r', 0, 0, // NFTA_CHAIN_TYPE "filter"
        8, 0, 5, 0, 0, 0, 0, 1, // NFTA_CHAIN_POLICY = NF_ACCEPT
    ];
    assert_eq!(encode(NFPROTO_BRIDGE, m.clone()), want);
    assert_eq!(decode(NFT_MSG_NEWCHAIN, want), m);
}

#[test]
fn batch_delimiters_have_no_subsystem_and_name_nf_tables_big_endian() {
    // NFNL_MSG_BATCH_BEGIN: type 0x10, nfgenmsg { AF_UNSPEC, V0, res_id = htons(NFNL_SUBSYS_NFTABLES) }.
    let h = NfGenMsg { family: 0, version: 0, res_id: NFNL_SUBSYS_NFTABLES as u16 };
    let mut m = request(h, NfnlBody::Other { subsys: 0, cmd: NFNL_MSG_BATCH_BEGIN, payload: vec![] }, 0);
    m.finalize();
    let mut b = vec![0u8; m.buffer_len()];
    m.serialize(&mut b);
    assert_eq!(b.len(), 20);
    assert_eq!(&b[4..6], &[0x10, 0x00], "nlmsg_type = NLMSG_MIN_TYPE");
    assert_eq!(&b[16..20], &[0, 0, 0, 10]);
}

#[test]
fn a_generation_reply_reads_its_id() {
    // NFT_MSG_NEWGEN { NFTA_GEN_ID = 7, NFTA_GEN_PROC_PID = 42, NFTA_GEN_PROC_NAME "nft" }
    let payload: &[u8] = &[0, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0, 7, 8, 0, 2, 0, 0, 0, 0, 42, 8, 0, 3, 0, b'n', b'f', b't', 0];
    let m = decode(NFT_MSG_NEWGEN, payload);
    assert_eq!(m.gen_id(), Some(7));
    assert!(m.attrs.contains(&NftAttr::Gen(GenAttr::ProcName("nft".into()))));
}

/// `counter` as the kernel dumps it after 3 packets of 180 bytes: NFTA_COUNTER_BYTES and
/// NFTA_COUNTER_PACKETS, 64-bit big endian, each after an NFTA_COUNTER_PAD (3) that aligns it.
const EXPR_COUNTER_DUMPED: &[u8] = &[
    48, 0, 0x01, 0x80, 12, 0, 1, 0, b'c', b'o', b'u', b'n', b't', b'e', b'r', 0, // NFTA_EXPR_NAME "counter"
    32, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    4, 0, 3, 0, // NFTA_COUNTER_PAD
    12, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 180, // NFTA_COUNTER_BYTES = 180
    12, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 3, // NFTA_COUNTER_PACKETS = 3
];

#[test]
fn a_counter_reads_its_counts_and_equals_the_one_written() {
    let read = super::expr::parse_exprs(EXPR_COUNTER_DUMPED).unwrap();
    let [Expr::Counter(c)] = read.as_slice() else { panic!("{read:?}") };
    assert_eq!((c.packets, c.bytes), (3, 180));
    // As written: both counts 0, no padding.
    let written = vec![Expr::Counter(super::expr::Counts::default())];
    let mut b = vec![0u8; written.as_slice().buffer_len()];
    written.as_slice().emit(&mut b);
    assert_eq!(&b[..4], &[44, 0, 0x01, 0x80]);
    assert_eq!(&b[4..16], &EXPR_COUNTER_DUMPED[4..16]);
    assert_eq!(&b[16..20], &[28, 0, 0x02, 0x80]);
    assert_eq!(&b[20..], &[12, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(read, written, "what a counter counted is not what the rule is: drift compares equal");
}

/// A trace event as the kernel announces it (nf_tables_trace_notify): an inet packet, UDP
/// 10.0.0.1:5000 → 10.0.0.2:53, meeting rule 5 of chain "c" of table "t", which returned.
const TRACE_RULE_RETURN: &[u8] = &[
    1, 0, 0, 0, // nfgenmsg: NFPROTO_INET
    6, 0, 1, 0, b't', 0, 0, 0, // NFTA_TRACE_TABLE "t"
    6, 0, 2, 0, b'c', 0, 0, 0, // NFTA_TRACE_CHAIN "c"
    12, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 5, // NFTA_TRACE_RULE_HANDLE = 5 (be64)
    8, 0, 4, 0, 0, 0, 0, 3, // NFTA_TRACE_TYPE = NFT_TRACETYPE_RULE
    12, 0, 5, 0x80, 8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfb, // NFTA_TRACE_VERDICT { NFTA_VERDICT_CODE = NFT_RETURN }
    8, 0, 6, 0, 1, 2, 3, 4, // NFTA_TRACE_ID
    24, 0, 8, 0, 0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // NFTA_TRACE_NETWORK_HEADER
    8, 0, 9, 0, 0x13, 0x88, 0, 53, // NFTA_TRACE_TRANSPORT_HEADER: ports 5000 → 53
    8, 0, 15, 0, 0, 0, 0, 2, // NFTA_TRACE_NFPROTO = NFPROTO_IPV4
];

#[test]
fn a_trace_event_names_its_rule_verdict_and_packet() {
    let m = decode(NFT_MSG_TRACE, TRACE_RULE_RETURN);
    assert!(m.trace_attrs().any(|a| *a == TraceAttr::Verdict(Verdict::Return)));
    assert_eq!(encode(NFPROTO_INET, m.clone()), TRACE_RULE_RETURN, "emits as it parses");
    let e = super::trace::TraceEvent::from_message(NFPROTO_INET, &m).unwrap();
    assert_eq!((e.id, e.family.as_str(), e.table.as_str(), e.chain.as_str()), (0x01020304, "inet", "t", "c"));
    assert_eq!((e.kind, e.handle, e.verdict.as_deref()), ("rule", Some(5), Some("return")));
    let p = e.packet.unwrap();
    assert_eq!((p.proto, p.sport, p.dport), (17, Some(5000), Some(53)));
    assert_eq!(p.dst.to_string(), "10.0.0.2");
}

/// `limit rate 100/second burst 25 packets` as the kernel dumps it (nft_limit_dump): each 64-bit
/// attribute after an NFTA_LIMIT_PAD (6).
const EXPR_LIMIT_DUMPED: &[u8] = &[
    76, 0, 0x01, 0x80, 10, 0, 1, 0, b'l', b'i', b'm', b'i', b't', 0, 0, 0, // NFTA_EXPR_NAME "limit"
    60, 0, 0x02, 0x80, // NFTA_EXPR_DATA
    4, 0, 6, 0, 12, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 100, // PAD, NFTA_LIMIT_RATE = 100
    4, 0, 6, 0, 12, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, // PAD, NFTA_LIMIT_UNIT = 1 (second)
    8, 0, 3, 0, 0, 0, 0, 25, // NFTA_LIMIT_BURST = 25
    8, 0, 4, 0, 0, 0, 0, 0, // NFTA_LIMIT_TYPE = NFT_LIMIT_PKTS
    8, 0, 5, 0, 0, 0, 0, 0, // NFTA_LIMIT_FLAGS = 0
];

#[test]
fn a_limit_reads_back_as_the_statement_writes_it() {
    let read = super::expr::parse_exprs(EXPR_LIMIT_DUMPED).unwrap();
    let written = super::spec::Stmt::Limit { rate: 100, burst: 25 }.exprs().unwrap();
    assert_eq!(read, written);
    assert_eq!(written[0], Expr::Limit { rate: 100, unit: 1, burst: 25, kind: NFT_LIMIT_PKTS, flags: 0 });
}

/// `log prefix "sg:D:0a" group 7` as the kernel dumps it (nft_log_dump: the prefix, then the group
/// as a 16-bit big-endian value).
const EXPR_LOG_DUMPED: &[u8] = &[
    36, 0, 0x01, 0x80, 8, 0, 1, 0, b'l', b'o', b'g', 0, // NFTA_EXPR_NAME "log"
    24, 0, 0x02, 0x80, // NFTA_EXPR_DATA
    12, 0, 2, 0, b's', b'g', b':', b'D', b':', b'0', b'a', 0, // NFTA_LOG_PREFIX
    6, 0, 1, 0, 0, 7, 0, 0, // NFTA_LOG_GROUP = 7 (be16) + pad
];

#[test]
fn a_log_reads_back_as_the_statement_writes_it() {
    let read = super::expr::parse_exprs(EXPR_LOG_DUMPED).unwrap();
    let written = super::spec::Stmt::Log { group: 7, prefix: "sg:D:0a".into() }.exprs().unwrap();
    assert_eq!(read, written);
    assert!(super::spec::Stmt::Log { group: 7, prefix: "x".repeat(128) }.exprs().is_err(), "the kernel's prefix limit");
}

/// `fib daddr type != local`: a route lookup of the destination's address type into reg 1, compared
/// with RTN_LOCAL in host order (as nft writes it).
const EXPRS_DADDR_NOT_LOCAL: &[u8] = &[
    // NFTA_LIST_ELEM | NESTED, 40 bytes: fib
    40, 0, 0x01, 0x80, 8, 0, 1, 0, b'f', b'i', b'b', 0, // NFTA_EXPR_NAME "fib"
    28, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    8, 0, 1, 0, 0, 0, 0, 1, // NFTA_FIB_DREG = NFT_REG_1
    8, 0, 2, 0, 0, 0, 0, 3, // NFTA_FIB_RESULT = NFT_FIB_RESULT_ADDRTYPE
    8, 0, 3, 0, 0, 0, 0, 2, // NFTA_FIB_FLAGS = NFTA_FIB_F_DADDR
    // cmp, 44 bytes
    44, 0, 0x01, 0x80, 8, 0, 1, 0, b'c', b'm', b'p', 0, // "cmp"
    32, 0, 0x02, 0x80, 8, 0, 1, 0, 0, 0, 0, 1, // NFTA_CMP_SREG = 1
    8, 0, 2, 0, 0, 0, 0, 1, // NFTA_CMP_OP = NFT_CMP_NEQ
    12, 0, 0x03, 0x80, // NFTA_CMP_DATA
    8, 0, 1, 0, 2, 0, 0, 0, // NFTA_DATA_VALUE RTN_LOCAL, host order (little endian here)
];

#[test]
fn a_destination_not_local_is_a_route_lookup_of_its_type() {
    let e = super::spec::Stmt::DaddrNotLocal.exprs().unwrap();
    let mut b = vec![0u8; e.as_slice().buffer_len()];
    e.as_slice().emit(&mut b);
    assert_eq!(b, EXPRS_DADDR_NOT_LOCAL);
    assert_eq!(super::expr::parse_exprs(EXPRS_DADDR_NOT_LOCAL).unwrap(), e);
}

#[test]
fn a_destination_mac_in_a_set_is_a_link_layer_load_looked_up() {
    let e = super::spec::Stmt::EtherDaddrIn { set: "macs".into() }.exprs().unwrap();
    let mut b = vec![0u8; e.as_slice().buffer_len()];
    e.as_slice().emit(&mut b);
    let parsed = super::expr::parse_exprs(&b).unwrap();
    assert_eq!(parsed, e);
    // The load: the link-layer header's first six bytes (the destination), into register 1.
    let load = [
        8, 0, 1, 0, 0, 0, 0, 1, // NFTA_PAYLOAD_DREG = NFT_REG_1
        8, 0, 2, 0, 0, 0, 0, 0, // NFTA_PAYLOAD_BASE = NFT_PAYLOAD_LL_HEADER
        8, 0, 3, 0, 0, 0, 0, 0, // NFTA_PAYLOAD_OFFSET = 0
        8, 0, 4, 0, 0, 0, 0, 6, // NFTA_PAYLOAD_LEN = 6
    ];
    assert!(b.windows(load.len()).any(|w| w == load), "payload ll 0 6");
    assert!(b.windows(5).any(|w| w == b"macs\0"), "the set named");
}

/// `fib daddr oifname @devs`: a route lookup of the destination's output device name into reg 1,
/// looked up in the set (as nft writes it).
const EXPRS_FIB_DADDR_OIFNAME_IN: &[u8] = &[
    // NFTA_LIST_ELEM | NESTED, 40 bytes: fib
    40, 0, 0x01, 0x80, 8, 0, 1, 0, b'f', b'i', b'b', 0, // NFTA_EXPR_NAME "fib"
    28, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    8, 0, 1, 0, 0, 0, 0, 1, // NFTA_FIB_DREG = NFT_REG_1
    8, 0, 2, 0, 0, 0, 0, 2, // NFTA_FIB_RESULT = NFT_FIB_RESULT_OIFNAME
    8, 0, 3, 0, 0, 0, 0, 2, // NFTA_FIB_FLAGS = NFTA_FIB_F_DADDR
    // lookup, 40 bytes (an attribute's length leaves out its padding)
    40, 0, 0x01, 0x80, 11, 0, 1, 0, b'l', b'o', b'o', b'k', b'u', b'p', 0, 0, // "lookup"
    24, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    9, 0, 1, 0, b'd', b'e', b'v', b's', 0, 0, 0, 0, // NFTA_LOOKUP_SET "devs"
    8, 0, 2, 0, 0, 0, 0, 1, // NFTA_LOOKUP_SREG = NFT_REG_1 (no flags: not inverted)
];

#[test]
fn a_destination_device_in_a_set_is_a_route_lookup_of_its_output_name() {
    let e = super::spec::Stmt::FibDaddrOifnameIn { set: "devs".into() }.exprs().unwrap();
    let mut b = vec![0u8; e.as_slice().buffer_len()];
    e.as_slice().emit(&mut b);
    assert_eq!(b, EXPRS_FIB_DADDR_OIFNAME_IN);
    assert_eq!(super::expr::parse_exprs(EXPRS_FIB_DADDR_OIFNAME_IN).unwrap(), e);
}

/// `ct zone set iif`: the input device's index loaded into register 1, and the conntrack zone
/// set from it (the kernel takes the register's first 16 bits; include/uapi/linux/netfilter/nf_tables.h).
const EXPRS_CT_ZONE_SET_IIF: &[u8] = &[
    // NFTA_LIST_ELEM | NESTED, 36 bytes: meta
    36, 0, 0x01, 0x80, 9, 0, 1, 0, b'm', b'e', b't', b'a', 0, 0, 0, 0, // NFTA_EXPR_NAME "meta"
    20, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    8, 0, 2, 0, 0, 0, 0, 4, // NFTA_META_KEY = NFT_META_IIF
    8, 0, 1, 0, 0, 0, 0, 1, // NFTA_META_DREG = NFT_REG_1
    // ct, 32 bytes
    32, 0, 0x01, 0x80, 7, 0, 1, 0, b'c', b't', 0, 0, // NFTA_EXPR_NAME "ct"
    20, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    8, 0, 2, 0, 0, 0, 0, 17, // NFTA_CT_KEY = NFT_CT_ZONE
    8, 0, 4, 0, 0, 0, 0, 1, // NFTA_CT_SREG = NFT_REG_1 (a set, not a load: no NFTA_CT_DREG)
];

#[test]
fn a_zone_from_the_input_device_is_a_meta_load_and_a_conntrack_set() {
    let e = super::spec::Stmt::CtZoneSetIif.exprs().unwrap();
    let mut b = vec![0u8; e.as_slice().buffer_len()];
    e.as_slice().emit(&mut b);
    assert_eq!(b, EXPRS_CT_ZONE_SET_IIF);
    assert_eq!(super::expr::parse_exprs(EXPRS_CT_ZONE_SET_IIF).unwrap(), e, "read back as the set it is, not as a load");
}

/// `iifkind "bridge"`: the input device's link kind, compared NUL-padded to IFNAMSIZ.
const EXPRS_IIFKIND_BRIDGE: &[u8] = &[
    // NFTA_LIST_ELEM | NESTED, 36 bytes: meta
    36, 0, 0x01, 0x80, 9, 0, 1, 0, b'm', b'e', b't', b'a', 0, 0, 0, 0, // NFTA_EXPR_NAME "meta"
    20, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    8, 0, 2, 0, 0, 0, 0, 26, // NFTA_META_KEY = NFT_META_IIFKIND
    8, 0, 1, 0, 0, 0, 0, 1, // NFTA_META_DREG = NFT_REG_1
    // cmp, 56 bytes
    56, 0, 0x01, 0x80, 8, 0, 1, 0, b'c', b'm', b'p', 0, // NFTA_EXPR_NAME "cmp"
    44, 0, 0x02, 0x80, // NFTA_EXPR_DATA | NESTED
    8, 0, 1, 0, 0, 0, 0, 1, // NFTA_CMP_SREG = NFT_REG_1
    8, 0, 2, 0, 0, 0, 0, 0, // NFTA_CMP_OP = NFT_CMP_EQ
    24, 0, 0x03, 0x80, // NFTA_CMP_DATA | NESTED
    20, 0, 1, 0, b'b', b'r', b'i', b'd', b'g', b'e', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // NFTA_DATA_VALUE: 16 bytes
];

#[test]
fn an_input_device_kind_is_a_meta_load_and_a_padded_compare() {
    let e = super::spec::Stmt::Iifkind { kind: "bridge".into() }.exprs().unwrap();
    let mut b = vec![0u8; e.as_slice().buffer_len()];
    e.as_slice().emit(&mut b);
    assert_eq!(b, EXPRS_IIFKIND_BRIDGE);
    assert_eq!(super::expr::parse_exprs(EXPRS_IIFKIND_BRIDGE).unwrap(), e);
}
