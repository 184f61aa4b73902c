//! nf_tables trace events: a packet with its nftrace bit set (`meta nftrace set 1`, or iptables-nft's
//! `TRACE`) is announced to NFNLGRP_NFTRACE at every rule it meets — the table, chain and rule handle,
//! the verdict, and its headers. `TraceEvent` is one event in the words `sg-agent trace` maps back to
//! its own names; `TraceListener` hears them in a namespace, on a thread of its own, until stopped.

use std::path::Path;

use serde::Serialize;

use super::attr::TraceAttr;
use super::constants::*;
use super::expr::Verdict;
use super::message::NftMessage;
use crate::error::{SysCode, SysError};
use crate::netlink::{ListenerThread, NfnlBody, NfnlMessage, NfnlSocket};
use crate::packet::{parse_headers, PacketInfo};

/// One step of a traced packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct TraceEvent {
    /// The same for every event of one packet.
    pub id: u32,
    /// The table's family: inet, bridge, ip, ip6 (iptables-nft's tables), or another number.
    pub family: String,
    pub table: String,
    pub chain: String,
    /// rule (a rule matched), return (the chain ended), policy (a base chain's policy decided).
    #[cfg_attr(test, ts(type = "'rule' | 'return' | 'policy'"))]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "number", optional))]
    pub handle: Option<u64>,
    /// accept, drop, return, continue, jump, goto (`target` names the chain), or a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub verdict: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub iif: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub oif: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub mark: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub packet: Option<PacketInfo>,
}

fn family_name(nfproto: u8) -> String {
    match nfproto {
        NFPROTO_INET => "inet".into(),
        NFPROTO_BRIDGE => "bridge".into(),
        NFPROTO_IPV4 => "ip".into(),
        NFPROTO_IPV6 => "ip6".into(),
        n => n.to_string(),
    }
}

fn verdict_words(v: &Verdict) -> (String, Option<String>) {
    match v {
        Verdict::Accept => ("accept".into(), None),
        Verdict::Drop => ("drop".into(), None),
        Verdict::Continue => ("continue".into(), None),
        Verdict::Break => ("break".into(), None),
        Verdict::Return => ("return".into(), None),
        Verdict::Jump(c) => ("jump".into(), Some(c.clone())),
        Verdict::Goto(c) => ("goto".into(), Some(c.clone())),
        Verdict::Other(n) => (n.to_string(), None),
    }
}

impl TraceEvent {
    /// The event a trace message (of the table family `nfproto`) announces; None for other messages.
    pub fn from_message(nfproto: u8, m: &NftMessage) -> Option<TraceEvent> {
        if m.cmd != NFT_MSG_TRACE {
            return None;
        }
        let mut e = TraceEvent {
            id: 0,
            family: family_name(nfproto),
            table: String::new(),
            chain: String::new(),
            kind: "rule",
            handle: None,
            verdict: None,
            target: None,
            iif: None,
            oif: None,
            mark: None,
            packet: None,
        };
        let (mut network, mut transport) = (None, None);
        for a in m.trace_attrs() {
            match a {
                TraceAttr::Id(v) => e.id = *v,
                TraceAttr::Table(s) => e.table = s.clone(),
                TraceAttr::Chain(s) => e.chain = s.clone(),
                TraceAttr::RuleHandle(h) => e.handle = Some(*h),
                TraceAttr::Type(t) => {
                    e.kind = match *t {
                        NFT_TRACETYPE_POLICY => "policy",
                        NFT_TRACETYPE_RETURN => "return",
                        _ => "rule",
                    }
                }
                TraceAttr::Verdict(v) => {
                    let (word, target) = verdict_words(v);
                    e.verdict = Some(word);
                    e.target = target;
                }
                TraceAttr::Policy(p) if e.verdict.is_none() => {
                    e.verdict = Some(if *p == NF_ACCEPT as u32 { "accept" } else { "drop" }.into())
                }
                TraceAttr::Iif(v) => e.iif = Some(*v),
                TraceAttr::Oif(v) => e.oif = Some(*v),
                TraceAttr::Mark(v) => e.mark = Some(*v),
                TraceAttr::NetworkHeader(b) => network = Some(b.as_slice()),
                TraceAttr::TransportHeader(b) => transport = Some(b.as_slice()),
                _ => {}
            }
        }
        e.packet = network.and_then(|n| parse_headers(n, transport));
        Some(e)
    }
}

/// Hears the trace events of a namespace until stopped (or dropped).
pub struct TraceListener {
    thread: ListenerThread,
}

impl TraceListener {
    /// Joins NFNLGRP_NFTRACE in `netns` (or this namespace) and hands each datagram's events to
    /// `on_events`, on a thread of its own; a failure to receive goes to `on_error` and ends it.
    pub fn start<F, G>(netns: Option<&Path>, on_events: F, on_error: G) -> Result<TraceListener, SysError>
    where
        F: Fn(Vec<TraceEvent>) + Send + 'static,
        G: Fn(String) + Send + 'static,
    {
        let mut sock = NfnlSocket::open(netns).map_err(|e| SysError::from_io(SysCode::NftablesFailed, &e))?;
        sock.join_group(NFNLGRP_NFTRACE).map_err(|e| SysError::from_io(SysCode::NftablesFailed, &e))?;
        let thread = ListenerThread::spawn("sg-nft-trace", move |signal| {
            while !signal.is_stopped() {
                match sock.recv_waiting::<NfnlMessage>(signal, None) {
                    Ok(Some(msgs)) => {
                        let events: Vec<TraceEvent> = msgs
                            .into_iter()
                            .filter_map(|m| match m.payload {
                                netlink_packet_core::NetlinkPayload::InnerMessage(NfnlMessage { header, body: NfnlBody::Nftables(n) }) => {
                                    TraceEvent::from_message(header.family, &n)
                                }
                                _ => None,
                            })
                            .collect();
                        if !events.is_empty() {
                            on_events(events);
                        }
                    }
                    Ok(None) => {}
                    // Events lost to a full buffer: the ones after them still come.
                    Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => on_error("trace events lost (receive buffer overrun)".into()),
                    Err(e) => {
                        on_error(format!("nf_tables trace events: {e}"));
                        return;
                    }
                }
            }
        })
        .map_err(|e| SysError::from_io(SysCode::NftablesFailed, &e))?;
        Ok(TraceListener { thread })
    }

    /// Stops listening; returns once the thread is gone (at once: its wait ends on the stop).
    pub fn stop(&mut self) {
        self.thread.stop();
    }
}
