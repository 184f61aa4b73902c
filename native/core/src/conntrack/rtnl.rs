//! An rtnetlink dump (NETLINK_ROUTE): one request of a GET type with its family header zeroed, and
//! the body of every reply of the matching NEW type handed on, until NLMSG_DONE. What the cuts need
//! to know of the namespace (its own addresses, its devices and their bridges) is read this way.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_sys::protocols::NETLINK_ROUTE;

use crate::netlink::{open_connected, set_recv_timeout};

/// A dump that does not answer within this is an error, never a hang of the cut.
const RECV_TIMEOUT_SECS: i64 = 5;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
pub const NLMSG_HDRLEN: usize = 16;

pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// What one dump asks for and reads: the request type, the length of its family header (zeroed:
/// every family), and the reply type whose bodies go to the reader.
#[derive(Clone, Copy)]
pub struct DumpKind {
    pub get: u16,
    pub header_len: usize,
    pub new: u16,
    /// Named in the error of a malformed reply.
    pub what: &'static str,
}

/// Dumps `kind` in the namespace at `netns` (or this thread's), each reply body to `read` (None: the
/// body is malformed, and so is the dump).
pub fn dump(netns: Option<&Path>, kind: DumpKind, mut read: impl FnMut(&[u8]) -> Option<()>) -> io::Result<()> {
    let sock = open_connected(NETLINK_ROUTE, netns)?;
    let seq: u32 = 1;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + kind.header_len);
    req.extend_from_slice(&((NLMSG_HDRLEN + kind.header_len) as u32).to_ne_bytes());
    req.extend_from_slice(&kind.get.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.resize(NLMSG_HDRLEN + kind.header_len, 0);
    sock.send(&req, 0)?;
    set_recv_timeout(&sock, RECV_TIMEOUT_SECS)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: a plain recv into a buffer we own, for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if parse_dump(&buf[..n as usize], seq, kind, &mut read)? {
            return Ok(());
        }
    }
}

/// Reads one datagram of the dump; true once the dump is done.
pub fn parse_dump(mut b: &[u8], seq: u32, kind: DumpKind, read: &mut impl FnMut(&[u8]) -> Option<()>) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("malformed {} reply", kind.what));
    while b.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
        let msg_type = u16::from_ne_bytes(b[4..6].try_into().unwrap());
        let msg_seq = u32::from_ne_bytes(b[8..12].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad());
        }
        let body = &b[NLMSG_HDRLEN..len];
        if msg_seq == seq {
            match msg_type {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let errno = body.get(0..4).map(|e| i32::from_ne_bytes(e.try_into().unwrap())).ok_or_else(bad)?;
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                }
                t if t == kind.new => read(body).ok_or_else(bad)?,
                _ => {}
            }
        }
        b = &b[align4(len).min(b.len())..];
    }
    Ok(false)
}

/// The attributes after a body's family header: (type, value) in order; None if one runs past the end.
pub fn attrs(body: &[u8], header_len: usize) -> Option<Vec<(u16, &[u8])>> {
    let mut a = body.get(header_len..)?;
    let mut out = Vec::new();
    while a.len() >= 4 {
        let len = u16::from_ne_bytes(a[0..2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(a[2..4].try_into().ok()?);
        if len < 4 || len > a.len() {
            return None;
        }
        out.push((kind, &a[4..len]));
        a = &a[align4(len).min(a.len())..];
    }
    Some(out)
}

#[cfg(test)]
pub mod testing {
    use super::*;

    /// A reply message as the kernel sends it: header, family header `head`, attributes.
    pub fn reply(msg_type: u16, seq: u32, head: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = head.to_vec();
        for (kind, v) in attrs {
            body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(v);
            body.resize(align4(body.len()), 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&msg_type.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&body);
        m
    }

    pub fn done(seq: u32) -> Vec<u8> {
        reply(NLMSG_DONE, seq, &0i32.to_ne_bytes(), &[])
    }
}
