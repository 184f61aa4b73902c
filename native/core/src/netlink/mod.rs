//! Netlink framing for NETLINK_NETFILTER subsystems (ipset, ctnetlink).
//!
//! `nfnetlink` is the one message shape every subsystem shares (nfgenmsg header + a body chosen by
//! subsystem); `socket` sends many requests in one `sendmsg`, collects their acks once, and drains
//! multi-part dumps. What a payload means is the business of `crate::ipset` and `crate::conntrack`.

mod nfnetlink;
mod socket;

pub use nfnetlink::{
    nfnl_msg_type, NfGenMsg, NfGenMsgBuffer, NfnlBody, NfnlMessage, NfnlPayload, NFGENMSG_LEN,
    NFNETLINK_V0, NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_IPSET, NFNL_SUBSYS_NFTABLES,
};
pub use socket::{request, split_messages, NfnlSocket, NlError, Outcome};
