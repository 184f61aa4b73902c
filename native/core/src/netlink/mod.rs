//! Netlink framing for NETLINK_NETFILTER subsystems (ipset, ctnetlink, nf_tables).
//!
//! `nfnetlink` is the one message shape every subsystem shares (nfgenmsg header + a body chosen by
//! subsystem); `socket` sends many requests in one `sendmsg`, collects their acks once, and drains
//! multi-part dumps, sends nf_tables batches in one datagram, and listens for notifications. What a
//! payload means is the business of `crate::ipset`, `crate::conntrack` and `crate::nftables`.

mod nfnetlink;
mod socket;
mod stop;

pub use nfnetlink::{
    nfnl_msg_type, NfGenMsg, NfGenMsgBuffer, NfnlBody, NfnlMessage, NfnlPayload, NFGENMSG_LEN, NFNETLINK_V0, NFNL_BATCH_GENID,
    NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_IPSET, NFNL_SUBSYS_NFTABLES,
};
pub(crate) use socket::{open_connected, open_subscribed, set_recv_timeout};
pub use socket::{request, split_messages, BatchOutcome, NfnlSocket, NlError, Outcome};
pub use stop::{ListenerThread, StopSignal, Woken};
