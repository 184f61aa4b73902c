//! Reading a log group: the socket is bound to group N (`NFULNL_CFG_CMD_BIND`, with the group as the
//! nfgenmsg's res_id) and asks for the packets' bytes up to a range (`NFULNL_COPY_PACKET`); then every
//! packet a rule logs to group N in the namespace arrives on it. `LogPacket` is one such packet as the
//! agent reads it: the rule's prefix, and the packet's addresses, protocol and ports. The kernel seam
//! `UlogKernel` (the socket, or in tests a model) keeps the binding and reading logic testable without
//! root; `NflogListener` reads on a thread of its own.

use std::io;
use std::path::Path;

use netlink_packet_core::NetlinkPayload;
use serde::Serialize;

use super::constants::*;
use super::message::{UlogAttr, UlogMessage};
use crate::error::{SysCode, SysError};
use crate::netlink::{request, ListenerThread, NfGenMsg, NfnlBody, NfnlMessage, NfnlSocket, StopSignal};
use crate::packet::{parse_ip, PacketInfo};

const AF_UNSPEC: u8 = 0;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// What the reader needs of the kernel.
pub trait UlogKernel {
    /// Sends configuration commands for `group`, each acknowledged; Err(errno) for the first refused.
    fn configure(&mut self, group: u16, cmds: Vec<UlogMessage>) -> io::Result<Result<(), i32>>;
    /// The packet messages of the next datagram, each with its nfgenmsg family, waiting for one
    /// until `stop` is asked; None when nothing came.
    fn receive(&mut self, stop: &StopSignal) -> io::Result<Option<Vec<(u8, UlogMessage)>>>;
}

impl UlogKernel for NfnlSocket {
    fn configure(&mut self, group: u16, cmds: Vec<UlogMessage>) -> io::Result<Result<(), i32>> {
        let reqs = cmds.into_iter().map(|c| request(NfGenMsg { family: AF_UNSPEC, version: 0, res_id: group }, c, 0)).collect();
        for o in self.transact::<NfnlMessage>(reqs)? {
            if let Err(e) = o.result {
                return Ok(Err(e.errno));
            }
        }
        Ok(Ok(()))
    }

    fn receive(&mut self, stop: &StopSignal) -> io::Result<Option<Vec<(u8, UlogMessage)>>> {
        Ok(self.recv_waiting::<NfnlMessage>(stop, None)?.map(|msgs| {
            msgs.into_iter()
                .filter_map(|m| match m.payload {
                    NetlinkPayload::InnerMessage(NfnlMessage { header, body: NfnlBody::Ulog(u) }) if u.cmd == NFULNL_MSG_PACKET => {
                        Some((header.family, u))
                    }
                    _ => None,
                })
                .collect()
        }))
    }
}

/// An Ethernet header as the packet arrived with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EtherHeader {
    pub dst: String,
    pub src: String,
    pub ethertype: u16,
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct LogPacket {
    /// The logging rule's prefix (what says which rule, and for which port, logged it).
    pub prefix: String,
    /// The netfilter hook it was logged at.
    pub hook: u8,
    /// When the reader received it (milliseconds since the epoch): the rate limit counts by it, not
    /// by when a busy caller gets to it.
    #[cfg_attr(test, ts(type = "number"))]
    pub at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub mark: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub indev: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub outdev: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub ether: Option<EtherHeader>,
    /// Its addresses, protocol and ports (as far as the copied bytes go).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub packet: Option<PacketInfo>,
}

fn mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

impl LogPacket {
    /// A packet message as the agent reads it; None for a packet of neither IP family.
    pub fn from_message(m: &UlogMessage) -> Option<LogPacket> {
        let mut p = LogPacket { prefix: String::new(), hook: 0, at: 0, mark: None, indev: None, outdev: None, ether: None, packet: None };
        let (mut proto, mut hwtype, mut hwheader) = (None, None, None);
        for a in &m.attrs {
            match a {
                UlogAttr::PacketHdr { hw_protocol, hook } => {
                    proto = Some(*hw_protocol);
                    p.hook = *hook;
                }
                UlogAttr::Prefix(s) => p.prefix = s.clone(),
                UlogAttr::Mark(v) => p.mark = Some(*v),
                UlogAttr::Indev(v) => p.indev = Some(*v),
                UlogAttr::Outdev(v) => p.outdev = Some(*v),
                UlogAttr::Payload(b) => p.packet = parse_ip(b),
                UlogAttr::HwType(t) => hwtype = Some(*t),
                UlogAttr::HwHeader(h) => hwheader = Some(h.as_slice()),
                _ => {}
            }
        }
        if !matches!(proto, Some(ETH_P_IP | ETH_P_IPV6)) {
            return None;
        }
        if let (Some(ARPHRD_ETHER), Some(h)) = (hwtype, hwheader) {
            if h.len() >= 14 {
                p.ether = Some(EtherHeader { dst: mac(&h[0..6]), src: mac(&h[6..12]), ethertype: u16::from_be_bytes([h[12], h[13]]) });
            }
        }
        Some(p)
    }
}

/// A socket bound to one log group.
pub struct NflogReader<K: UlogKernel = NfnlSocket> {
    kernel: K,
}

impl NflogReader<NfnlSocket> {
    /// Binds log group `group` in `netns` (or this namespace), copying up to `copy_range` bytes of
    /// each packet (its headers are what is read).
    pub fn open(netns: Option<&Path>, group: u16, copy_range: u32) -> Result<Self, SysError> {
        let sock = NfnlSocket::open(netns).map_err(|e| SysError::from_io(SysCode::NflogFailed, &e))?;
        NflogReader::bind(sock, group, copy_range)
    }
}

impl<K: UlogKernel> NflogReader<K> {
    /// Binds the group through `kernel`. A packet is handed over at once (a queue threshold of 1):
    /// the rules' own rate limits bound how many come.
    pub fn bind(mut kernel: K, group: u16, copy_range: u32) -> Result<Self, SysError> {
        let cmds = vec![
            UlogMessage::config(vec![UlogAttr::CfgCmd(NFULNL_CFG_CMD_BIND)]),
            UlogMessage::config(vec![UlogAttr::CfgMode { copy_range, copy_mode: NFULNL_COPY_PACKET }, UlogAttr::CfgQthresh(1)]),
        ];
        match kernel.configure(group, cmds) {
            Ok(Ok(())) => Ok(NflogReader { kernel }),
            Ok(Err(errno)) => Err(SysError {
                code: SysCode::NflogFailed,
                errno: Some(errno),
                message: format!(
                    "log group {group}: {}{}",
                    io::Error::from_raw_os_error(errno),
                    if errno == libc::EBUSY { " (another socket has bound it)" } else { "" }
                ),
            }),
            Err(e) => Err(SysError::from_io(SysCode::NflogFailed, &e)),
        }
    }

    /// The packets of the next datagram, waiting for one until `stop` is asked; empty when none came.
    /// Packets lost to a full receive buffer are an `OutOfMemory` error; the next read goes on.
    pub fn read(&mut self, stop: &StopSignal) -> io::Result<Vec<LogPacket>> {
        let got = self.kernel.receive(stop)?.unwrap_or_default();
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Ok(got.iter().filter_map(|(_, m)| LogPacket::from_message(m)).map(|p| LogPacket { at, ..p }).collect())
    }
}

/// Reads a log group on a thread of its own until stopped (or dropped).
pub struct NflogListener {
    thread: ListenerThread,
}

impl NflogListener {
    /// Binds the group (so a refusal is an error here) and hands each datagram's packets to
    /// `on_packets`; packets lost, or the socket failing, go to `on_error` (the latter ends it).
    pub fn start<F, G>(netns: Option<&Path>, group: u16, copy_range: u32, on_packets: F, on_error: G) -> Result<NflogListener, SysError>
    where
        F: Fn(Vec<LogPacket>) + Send + 'static,
        G: Fn(String) + Send + 'static,
    {
        let mut reader = NflogReader::open(netns, group, copy_range)?;
        let thread = ListenerThread::spawn("sg-nflog", move |signal| {
            while !signal.is_stopped() {
                match reader.read(signal) {
                    Ok(p) if p.is_empty() => {}
                    Ok(p) => on_packets(p),
                    Err(e) if e.kind() == io::ErrorKind::OutOfMemory => on_error("logged packets lost (receive buffer overrun)".into()),
                    Err(e) => {
                        on_error(format!("log group {group}: {e}"));
                        return;
                    }
                }
            }
        })
        .map_err(|e| SysError::from_io(SysCode::NflogFailed, &e))?;
        Ok(NflogListener { thread })
    }

    /// Stops reading; returns once the thread is gone (at once: its wait ends on the stop). The
    /// kernel unbinds the group when the socket closes.
    pub fn stop(&mut self) {
        self.thread.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A kernel that records the configuration it is sent and hands out queued datagrams.
    #[derive(Default)]
    struct Model {
        configured: Vec<(u16, Vec<UlogMessage>)>,
        refuse: Option<i32>,
        queued: VecDeque<Vec<(u8, UlogMessage)>>,
    }

    impl UlogKernel for Model {
        fn configure(&mut self, group: u16, cmds: Vec<UlogMessage>) -> io::Result<Result<(), i32>> {
            self.configured.push((group, cmds));
            Ok(self.refuse.map_or(Ok(()), Err))
        }
        fn receive(&mut self, _stop: &StopSignal) -> io::Result<Option<Vec<(u8, UlogMessage)>>> {
            Ok(self.queued.pop_front())
        }
    }

    fn logged(prefix: &str, hw_protocol: u16, payload: Vec<u8>) -> UlogMessage {
        UlogMessage {
            cmd: NFULNL_MSG_PACKET,
            attrs: vec![
                UlogAttr::PacketHdr { hw_protocol, hook: 2 },
                UlogAttr::Prefix(prefix.into()),
                UlogAttr::HwType(ARPHRD_ETHER),
                UlogAttr::HwHeader(vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]),
                UlogAttr::Payload(payload),
            ],
        }
    }

    /// UDP 10.0.0.1:1000 → 10.0.0.2:53.
    fn udp4() -> Vec<u8> {
        vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x03, 0xe8, 0, 53, 0, 8, 0, 0]
    }

    #[test]
    fn binding_asks_for_the_group_then_for_the_packets_bytes() {
        let r = NflogReader::bind(Model::default(), 7, 128).unwrap();
        let sent = &r.kernel.configured;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 7, "the group goes in the nfgenmsg's res_id");
        assert_eq!(sent[0].1[0].attrs, vec![UlogAttr::CfgCmd(NFULNL_CFG_CMD_BIND)]);
        assert_eq!(sent[0].1[1].attrs, vec![UlogAttr::CfgMode { copy_range: 128, copy_mode: NFULNL_COPY_PACKET }, UlogAttr::CfgQthresh(1)]);
    }

    #[test]
    fn a_group_another_socket_holds_is_refused_with_its_errno() {
        let e = NflogReader::bind(Model { refuse: Some(libc::EBUSY), ..Model::default() }, 7, 128).err().unwrap();
        assert_eq!((e.code, e.errno), (SysCode::NflogFailed, Some(libc::EBUSY)));
        assert!(e.message.contains("another socket"), "{}", e.message);
    }

    #[test]
    fn packets_read_with_their_prefix_headers_and_ports_and_non_ip_ones_left_out() {
        let mut m = Model::default();
        m.queued.push_back(vec![(2, logged("sg:D:0123456789abcdef", ETH_P_IP, udp4())), (7, logged("x", 0x0806, vec![0; 28]))]);
        let mut r = NflogReader::bind(m, 7, 128).unwrap();
        let stop = StopSignal::new().unwrap();
        let got = r.read(&stop).unwrap();
        assert_eq!(got.len(), 1, "an ARP packet is not one of ours");
        let p = &got[0];
        assert_eq!(p.prefix, "sg:D:0123456789abcdef");
        assert_eq!(p.ether.as_ref().unwrap().src, "02:00:00:00:00:01");
        let info = p.packet.as_ref().unwrap();
        assert_eq!((info.proto, info.sport, info.dport), (17, Some(1000), Some(53)));
        assert!(r.read(&stop).unwrap().is_empty(), "nothing more queued");
    }
}
