//! The seam between the nf_tables client's logic (transactions and their mirror, read-back, repair)
//! and the socket: what the client asks of the kernel, so that the same logic also runs against a
//! model kernel with failures injected (`model`, in tests) — as `ipset::kernel` does for ipsets.

use std::io;

use super::message::NftMessage;
use super::request::NftRequest;
use crate::netlink::{request, BatchOutcome, NfGenMsg, NfnlBody, NfnlSocket, NlError, NFNL_SUBSYS_NFTABLES};

/// The kernel's nf_tables, as the client uses it.
pub trait NftKernel {
    /// Sends `reqs` as one batch transaction (committed when `commit`, else checked and aborted) and
    /// reports how it fared. With `generation`, the batch is refused whole (ERESTART, as
    /// `batch_error`) unless the ruleset's generation is still that one. An `Err` after the batch was
    /// sent leaves its outcome unknown.
    fn batch(&mut self, reqs: Vec<NftRequest>, commit: bool, generation: Option<u32>) -> io::Result<BatchOutcome>;
    /// Every object `req` (a GET with NLM_F_DUMP) selects, with the family it belongs to.
    fn dump(&mut self, req: NftRequest) -> io::Result<Result<Vec<(u8, NftMessage)>, NlError>>;
    /// The replies to one request (a GET by name, the ruleset's generation).
    fn get(&mut self, req: NftRequest) -> io::Result<Result<Vec<NftMessage>, NlError>>;
}

fn to_netlink(r: NftRequest) -> netlink_packet_core::NetlinkMessage<crate::netlink::NfnlMessage> {
    request(NfGenMsg::new(r.family), r.msg, r.flags)
}

impl NftKernel for NfnlSocket {
    fn batch(&mut self, reqs: Vec<NftRequest>, commit: bool, generation: Option<u32>) -> io::Result<BatchOutcome> {
        NfnlSocket::batch(self, NFNL_SUBSYS_NFTABLES, reqs.into_iter().map(to_netlink).collect(), commit, generation)
    }

    fn dump(&mut self, req: NftRequest) -> io::Result<Result<Vec<(u8, NftMessage)>, NlError>> {
        Ok(NfnlSocket::dump(self, to_netlink(req))?.map(|msgs| {
            msgs.into_iter()
                .filter_map(|m| match m.body {
                    NfnlBody::Nftables(n) => Some((m.header.family, n)),
                    _ => None,
                })
                .collect()
        }))
    }

    fn get(&mut self, req: NftRequest) -> io::Result<Result<Vec<NftMessage>, NlError>> {
        let mut out = self.transact(vec![to_netlink(req)])?;
        let o = out.pop().expect("one outcome per request");
        Ok(o.result.map(|()| {
            o.replies
                .into_iter()
                .filter_map(|m| match m.body {
                    NfnlBody::Nftables(n) => Some(n),
                    _ => None,
                })
                .collect()
        }))
    }
}
