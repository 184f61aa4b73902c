//! A NETLINK_NETFILTER socket that batches requests and collects their acks.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};

use super::nfnetlink::{NfGenMsg, NfnlBody, NfnlMessage, NFNL_BATCH_GENID, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END};
use super::stop::{StopSignal, Woken};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::netns::in_netns;

/// The kernel echoes a failed request in full (ipset's batch error does so on purpose), and a batch
/// can fail in several messages at once, so the receive buffer must hold many 64 KiB echoes.
const RCVBUF_BYTES: usize = 16 << 20;
const SNDBUF_BYTES: usize = 4 << 20;
/// One sendmsg carries at most this much; acks for it are drained before the next one is sent,
/// which bounds what can pile up in the receive buffer.
const MAX_SEND_BYTES: usize = 1 << 20;
const RECV_CHUNK: usize = 1 << 20;
const RECV_TIMEOUT_SECS: i64 = 30;

/// A negative ack: the errno (positive) and the request as the kernel echoed it (header included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    pub errno: i32,
    pub echoed: Vec<u8>,
}

/// What came back for a batch: the messages the kernel refused (by index), whether the last message
/// was acknowledged (the kernel went through the whole batch), and an error the kernel reported for
/// the batch as a whole (its commit failed, or the batch was refused before any message was looked at).
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub refused: Vec<(usize, NlError)>,
    pub last_acked: bool,
    pub batch_error: Option<NlError>,
}

impl BatchOutcome {
    /// Committed: the whole batch gone through, nothing refused, no error for the batch.
    pub fn committed(&self) -> bool {
        self.batch_error.is_none() && self.refused.is_empty() && self.last_acked
    }
}

/// What came back for one request: the reply messages (if any) and its ack.
#[derive(Debug)]
pub struct Outcome<M> {
    pub replies: Vec<M>,
    pub result: Result<(), NlError>,
}

pub struct NfnlSocket {
    sock: Socket,
    next_seq: u32,
    max_send: usize,
    /// The socket's send buffer as the kernel reports it: a batch must fit it whole.
    sndbuf: usize,
    recv_buf: Vec<u8>,
    /// Bytes sent so far: what a batch costs on the wire, for tests that bound it.
    sent: u64,
}

impl NfnlSocket {
    /// Opens the socket inside the namespace at `netns` (or the caller's own when `None`).
    pub fn open(netns: Option<&Path>) -> io::Result<Self> {
        let sock = open_connected(NETLINK_NETFILTER, netns)?;
        let sndbuf = set_buffer(&sock, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SNDBUF_BYTES)?;
        set_buffer(&sock, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, RCVBUF_BYTES)?;
        set_recv_timeout(&sock, RECV_TIMEOUT_SECS)?;
        // The kernel refuses a sendmsg longer than sk_sndbuf - 32: stay well under it.
        let max_send = MAX_SEND_BYTES.min(sndbuf.saturating_sub(4096)).max(64 << 10);
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(1);
        Ok(NfnlSocket { sock, next_seq: seed | 1, max_send, sndbuf, recv_buf: vec![0; RECV_CHUNK + (256 << 10)], sent: 0 })
    }

    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// The port id the kernel gave this socket: notifications of its own changes carry it.
    pub fn portid(&self) -> io::Result<u32> {
        let mut addr = SocketAddr::new(0, 0);
        self.sock.get_address(&mut addr)?;
        Ok(addr.port_number())
    }

    /// Acks carry the failed message's header only (not the whole message), with the kernel's
    /// error text: a batch can fail in many large messages at once.
    pub fn cap_acks(&self) -> io::Result<()> {
        self.sock.set_cap_ack(true)?;
        self.sock.set_ext_ack(true)
    }

    /// Sends `msgs` as one nfnetlink batch of subsystem `subsys` (BATCH_BEGIN … BATCH_END, or without
    /// the END when `terminate` is false, which the kernel checks and then aborts) in one datagram,
    /// so the kernel applies all of it or nothing. The kernel handles a netlink request inside the
    /// sending call, so every answer is waiting once the send returns. Only the last message asks
    /// for an ack (a refused one is answered anyway): an ack per message of a large batch would
    /// overrun the receive buffer (measured: 45,000 rules). A batch of no message is not sent: it
    /// would have nothing to acknowledge, and commits nothing.
    ///
    /// With `generation`, the kernel takes the batch only if the subsystem's ruleset generation is
    /// still that one (NFNL_BATCH_GENID); otherwise it refuses the whole batch with ERESTART, before
    /// looking at any message. A batch planned from what was read at a generation is so applied only
    /// to what was read.
    pub fn batch(
        &mut self,
        subsys: u8,
        mut msgs: Vec<NetlinkMessage<NfnlMessage>>,
        terminate: bool,
        generation: Option<u32>,
    ) -> io::Result<BatchOutcome> {
        if msgs.is_empty() {
            return Ok(BatchOutcome { last_acked: true, ..BatchOutcome::default() });
        }
        let delimiter = |cmd: u8, payload: Vec<u8>| {
            let h = NfGenMsg { family: 0, version: 0, res_id: subsys as u16 };
            request(h, NfnlBody::Other { subsys: 0, cmd, payload }, 0)
        };
        let mut all = Vec::with_capacity(msgs.len() + 2);
        all.push(delimiter(NFNL_MSG_BATCH_BEGIN, generation.map(batch_genid_attr).unwrap_or_default()));
        all.append(&mut msgs);
        if terminate {
            all.push(delimiter(NFNL_MSG_BATCH_END, Vec::new()));
        }
        let first = self.next_seq;
        let last_msg = if terminate { all.len() - 1 } else { all.len() };
        let mut len = 0;
        for (i, m) in all.iter_mut().enumerate() {
            m.header.flags |= NLM_F_REQUEST;
            if i > 0 && i + 1 == last_msg {
                m.header.flags |= NLM_F_ACK;
            }
            m.header.sequence_number = self.take_seq();
            m.finalize();
            len += m.buffer_len();
        }
        // The kernel refuses a datagram longer than the send buffer less 32 bytes.
        if len + 64 > self.sndbuf {
            self.grow_send_buffer(len + (64 << 10))?;
        }
        let mut buf = vec![0u8; len];
        let mut off = 0;
        for m in &all {
            let n = m.buffer_len();
            m.serialize(&mut buf[off..off + n]);
            off += n;
        }
        self.send_all(&buf)?;
        let seq_of = |i: usize| first.wrapping_add(i as u32);
        let index: HashMap<u32, usize> = (1..last_msg).map(|i| (seq_of(i), i - 1)).collect();
        let mut out = BatchOutcome::default();
        while let Some(msgs) = self.recv_messages_nonblocking::<NfnlMessage>()? {
            for msg in msgs {
                let seq = msg.header.sequence_number;
                let NetlinkPayload::Error(e) = msg.payload else { continue };
                let result = match e.code {
                    Some(code) => Err(NlError { errno: -code.get(), echoed: e.header }),
                    None => Ok(()),
                };
                if seq == first {
                    if let Err(err) = result {
                        out.batch_error = Some(err);
                    }
                } else if let Some(&i) = index.get(&seq) {
                    if i + 2 == last_msg {
                        out.last_acked = true;
                    }
                    if let Err(err) = result {
                        out.refused.push((i, err));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Raises the send buffer to hold `bytes` (a large batch goes in one datagram).
    fn grow_send_buffer(&mut self, bytes: usize) -> io::Result<()> {
        let got = set_buffer(&self.sock, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, bytes)?;
        self.sndbuf = got;
        if bytes > got {
            return Err(io::Error::other(format!("a batch of {bytes} bytes does not fit the socket's send buffer ({got})")));
        }
        Ok(())
    }

    /// Joins a multicast group (notifications); the socket then only listens.
    pub fn join_group(&mut self, group: u32) -> io::Result<()> {
        self.sock.add_membership(group)
    }

    /// Waits for a datagram until `stop` is asked or `timeout` passes (`None`: no timeout); None when
    /// none came. Notifications that did not fit the receive buffer are reported as
    /// `ErrorKind::OutOfMemory` (ENOBUFS): some were lost.
    pub fn recv_waiting<M: NetlinkDeserializable>(
        &mut self,
        stop: &StopSignal,
        timeout: Option<Duration>,
    ) -> io::Result<Option<Vec<NetlinkMessage<M>>>> {
        match stop.wait(self.sock.as_raw_fd(), timeout)? {
            Woken::Readable => self.recv_messages_nonblocking(),
            Woken::Stopped | Woken::TimedOut => Ok(None),
        }
    }

    /// One datagram if one is waiting (None otherwise), split into messages.
    fn recv_messages_nonblocking<M: NetlinkDeserializable>(&mut self) -> io::Result<Option<Vec<NetlinkMessage<M>>>> {
        let fd = self.sock.as_raw_fd();
        // SAFETY: recv into our own buffer, bounded by its length.
        let n = unsafe { libc::recv(fd, self.recv_buf.as_mut_ptr().cast(), self.recv_buf.len(), libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            if err.raw_os_error() == Some(libc::ENOBUFS) {
                return Err(io::Error::new(io::ErrorKind::OutOfMemory, "netlink: messages lost (receive buffer overrun)"));
            }
            return Err(err);
        }
        let n = n as usize;
        if n > self.recv_buf.len() {
            return Err(io::Error::other(format!("netlink datagram of {n} bytes truncated")));
        }
        split_messages(&self.recv_buf[..n]).map(Some)
    }

    /// Largest payload one request may have and still be sent (used by batchers to size messages).
    pub fn max_send(&self) -> usize {
        self.max_send
    }

    /// Sends every request (as few sendmsg calls as the buffer allows) and returns one outcome per
    /// request, in order. Each request is acked, so a failure is tied to the request that caused it.
    pub fn transact<M>(&mut self, mut reqs: Vec<NetlinkMessage<M>>) -> io::Result<Vec<Outcome<M>>>
    where
        M: NetlinkSerializable + NetlinkDeserializable,
    {
        let first_seq = self.next_seq;
        for req in reqs.iter_mut() {
            req.header.flags |= NLM_F_REQUEST | NLM_F_ACK;
            req.header.sequence_number = self.take_seq();
            req.finalize();
        }
        let mut outcomes: Vec<Outcome<M>> = reqs.iter().map(|_| Outcome { replies: Vec::new(), result: Ok(()) }).collect();
        let mut start = 0;
        while start < reqs.len() {
            let mut end = start;
            let mut len = 0;
            while end < reqs.len() && (end == start || len + reqs[end].buffer_len() <= self.max_send) {
                len += reqs[end].buffer_len();
                end += 1;
            }
            let mut buf = vec![0u8; len];
            let mut off = 0;
            for req in &reqs[start..end] {
                let n = req.buffer_len();
                req.serialize(&mut buf[off..off + n]);
                off += n;
            }
            self.send_all(&buf)?;
            let seq_of = |i: usize| first_seq.wrapping_add(i as u32);
            let index: HashMap<u32, usize> = (start..end).map(|i| (seq_of(i), i)).collect();
            let mut pending = end - start;
            while pending > 0 {
                for msg in self.recv_messages::<M>()? {
                    let Some(&i) = index.get(&msg.header.sequence_number) else { continue };
                    match msg.payload {
                        NetlinkPayload::Error(e) => {
                            if let Some(code) = e.code {
                                outcomes[i].result = Err(NlError { errno: -code.get(), echoed: e.header });
                            }
                            pending -= 1;
                        }
                        NetlinkPayload::InnerMessage(m) => outcomes[i].replies.push(m),
                        _ => {}
                    }
                }
            }
            start = end;
        }
        Ok(outcomes)
    }

    /// Runs a dump request and returns every message of the multi-part reply.
    pub fn dump<M>(&mut self, mut req: NetlinkMessage<M>) -> io::Result<Result<Vec<M>, NlError>>
    where
        M: NetlinkSerializable + NetlinkDeserializable,
    {
        req.header.flags |= NLM_F_REQUEST | NLM_F_DUMP;
        let seq = self.take_seq();
        req.header.sequence_number = seq;
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.send_all(&buf)?;
        let mut out = Vec::new();
        loop {
            for msg in self.recv_messages::<M>()? {
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Done(d) => {
                        return Ok(if d.code < 0 { Err(NlError { errno: -d.code, echoed: Vec::new() }) } else { Ok(out) });
                    }
                    NetlinkPayload::Error(e) => {
                        return Ok(match e.code {
                            Some(code) => Err(NlError { errno: -code.get(), echoed: e.header }),
                            None => Ok(out),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    fn take_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        s
    }

    fn send_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let n = self.sock.send(buf, 0)?;
        self.sent += n as u64;
        if n != buf.len() {
            return Err(io::Error::other(format!("short netlink send: {n} of {} bytes", buf.len())));
        }
        Ok(())
    }

    /// Receives one datagram and splits it into netlink messages.
    fn recv_messages<M: NetlinkDeserializable>(&mut self) -> io::Result<Vec<NetlinkMessage<M>>> {
        let fd = self.sock.as_raw_fd();
        // SAFETY: recv into our own buffer, bounded by its length.
        let n = unsafe { libc::recv(fd, self.recv_buf.as_mut_ptr().cast(), self.recv_buf.len(), libc::MSG_TRUNC) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "netlink: no answer from the kernel"));
            }
            return Err(err);
        }
        let n = n as usize;
        if n > self.recv_buf.len() {
            return Err(io::Error::other(format!("netlink datagram of {n} bytes truncated")));
        }
        split_messages(&self.recv_buf[..n])
    }
}

/// The batch-begin message's payload asking for ruleset generation `generation`: one attribute,
/// its value big-endian (the kernel reads it with nla_get_be32).
fn batch_genid_attr(generation: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(8);
    a.extend_from_slice(&8u16.to_ne_bytes());
    a.extend_from_slice(&NFNL_BATCH_GENID.to_ne_bytes());
    a.extend_from_slice(&generation.to_be_bytes());
    a
}

/// Splits a datagram into messages. A message we cannot decode is an error, not silently skipped:
/// losing an ack would leave the batch waiting forever.
pub fn split_messages<M: NetlinkDeserializable>(mut data: &[u8]) -> io::Result<Vec<NetlinkMessage<M>>> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let buf = NetlinkBuffer::new_checked(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let len = buf.length() as usize;
        let msg = NetlinkMessage::<M>::deserialize(&data[..len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("netlink decode: {e}")))?;
        out.push(msg);
        let aligned = (len + 3) & !3;
        if aligned >= data.len() {
            break;
        }
        data = &data[aligned..];
    }
    Ok(out)
}

/// Sets a socket buffer, forcing past the sysctl limit when we may (CAP_NET_ADMIN); returns the size
/// the kernel reports afterwards.
fn set_buffer(sock: &Socket, force: libc::c_int, plain: libc::c_int, bytes: usize) -> io::Result<usize> {
    let fd = sock.as_raw_fd();
    let v = bytes as libc::c_int;
    let set = |opt| unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&v as *const libc::c_int).cast(), 4) };
    if set(force) != 0 && set(plain) != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut got: libc::c_int = 0;
    let mut len: libc::socklen_t = 4;
    let opt = if force == libc::SO_SNDBUFFORCE { libc::SO_SNDBUF } else { libc::SO_RCVBUF };
    // SAFETY: getsockopt into a c_int we own.
    if unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut got as *mut libc::c_int).cast(), &mut len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(got.max(0) as usize)
}

/// A netlink socket of `protocol`, made inside the namespace at `netns` (it stays bound to that
/// namespace), talking to the kernel.
pub(crate) fn open_connected(protocol: isize, netns: Option<&Path>) -> io::Result<Socket> {
    in_netns(netns, move || {
        let mut s = Socket::new(protocol)?;
        s.bind_auto()?;
        s.connect(&SocketAddr::new(0, 0))?;
        Ok(s)
    })
}

/// A netlink socket of `protocol` made inside the namespace at `netns`, joined to the multicast
/// `group` (it hears that group's notifications of that namespace), with a receive buffer of at
/// least `rcvbuf` bytes (more than the default 208 KiB needs CAP_NET_ADMIN; without it, the default).
pub(crate) fn open_subscribed(protocol: isize, group: u32, rcvbuf: usize, netns: Option<&Path>) -> io::Result<Socket> {
    in_netns(netns, move || {
        let mut s = Socket::new(protocol)?;
        s.bind_auto()?;
        s.add_membership(group)?;
        let _ = set_buffer(&s, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, rcvbuf);
        Ok(s)
    })
}

pub(crate) fn set_recv_timeout(sock: &Socket, secs: i64) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: secs, tv_usec: 0 };
    // SAFETY: setsockopt with a timeval we own.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A request of `body` with nfgenmsg `header`; flags beyond REQUEST/ACK/DUMP are the caller's
/// (`NLM_F_EXCL` and such).
pub fn request(header: NfGenMsg, body: impl Into<NfnlBody>, flags: u16) -> NetlinkMessage<NfnlMessage> {
    let mut h = NetlinkHeader::default();
    h.flags = flags;
    let mut m = NetlinkMessage::new(h, NetlinkPayload::InnerMessage(NfnlMessage::new(header, body.into())));
    m.finalize();
    m
}
