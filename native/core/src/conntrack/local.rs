//! The addresses a namespace holds itself, read over rtnetlink (an RTM_GETADDR dump): a connection
//! with one of them at either end is the host's own (its SSH, the agent's broker connection, what it
//! NATs for containers), never a port's, and no cut may take it, whatever address a tenant gave a port.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_sys::protocols::NETLINK_ROUTE;

use crate::netlink::{open_connected, set_recv_timeout};

/// A dump that does not answer within this is an error, never a hang of the cut.
const RECV_TIMEOUT_SECS: i64 = 5;

const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// struct ifaddrmsg: family, prefixlen, flags, scope (u8 each), index (u32).
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Every address assigned to an interface of the namespace at `netns` (or this thread's).
pub fn local_addresses(netns: Option<&Path>) -> io::Result<Vec<IpAddr>> {
    let sock = open_connected(NETLINK_ROUTE, netns)?;
    let seq: u32 = 1;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + IFADDRMSG_LEN);
    req.extend_from_slice(&((NLMSG_HDRLEN + IFADDRMSG_LEN) as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETADDR.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0u8; IFADDRMSG_LEN]); // AF_UNSPEC: both families
    sock.send(&req, 0)?;
    set_recv_timeout(&sock, RECV_TIMEOUT_SECS)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: a plain recv into a buffer we own, for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if parse_dump(&buf[..n as usize], seq, &mut out)? {
            return Ok(out);
        }
    }
}

/// Reads one datagram of the dump into `out`; true once the dump is done.
pub fn parse_dump(mut b: &[u8], seq: u32, out: &mut Vec<IpAddr>) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed RTM_GETADDR reply");
    while b.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(b[4..6].try_into().unwrap());
        let msg_seq = u32::from_ne_bytes(b[8..12].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad());
        }
        let body = &b[NLMSG_HDRLEN..len];
        if msg_seq == seq {
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let errno = body.get(0..4).map(|e| i32::from_ne_bytes(e.try_into().unwrap())).ok_or_else(bad)?;
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                }
                RTM_NEWADDR => addresses_of(body, out).ok_or_else(bad)?,
                _ => {}
            }
        }
        b = &b[align4(len).min(b.len())..];
    }
    Ok(false)
}

/// The IFA_ADDRESS and IFA_LOCAL of one RTM_NEWADDR body (they differ on point-to-point links).
fn addresses_of(body: &[u8], out: &mut Vec<IpAddr>) -> Option<()> {
    let mut a = body.get(IFADDRMSG_LEN..)?;
    while a.len() >= 4 {
        let len = u16::from_ne_bytes(a[0..2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(a[2..4].try_into().ok()?);
        if len < 4 || len > a.len() {
            return None;
        }
        let v = &a[4..len];
        if kind == IFA_ADDRESS || kind == IFA_LOCAL {
            let ip = match v.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(v).ok()?),
                16 => IpAddr::from(<[u8; 16]>::try_from(v).ok()?),
                _ => return None,
            };
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        a = &a[align4(len).min(a.len())..];
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTM_NEWADDR as the kernel sends it (include/uapi/linux/rtnetlink.h, if_addr.h).
    fn newaddr(seq: u32, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 24, 0, 0, 1, 0, 0, 0];
        for (kind, v) in attrs {
            body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(v);
            body.resize(align4(body.len()), 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&RTM_NEWADDR.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn done(seq: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0i32.to_ne_bytes());
        m
    }

    #[test]
    fn a_dump_gives_every_address_of_both_families_once() {
        let v6: [u8; 16] = "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut dgram = newaddr(7, 2, &[(IFA_ADDRESS, &[10, 0, 0, 1]), (IFA_LOCAL, &[10, 0, 0, 1]), (3, b"eth0\0")]);
        dgram.extend(newaddr(7, 10, &[(IFA_ADDRESS, &v6)]));
        let mut out = Vec::new();
        assert!(!parse_dump(&dgram, 7, &mut out).unwrap(), "not done before NLMSG_DONE");
        assert!(parse_dump(&done(7), 7, &mut out).unwrap());
        assert_eq!(out, vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]);
    }

    #[test]
    fn another_request_s_messages_and_malformed_ones_are_told_apart() {
        let mut out = Vec::new();
        // Another sequence number: not ours, skipped.
        assert!(!parse_dump(&newaddr(9, 2, &[(IFA_LOCAL, &[10, 0, 0, 2])]), 7, &mut out).unwrap());
        assert!(out.is_empty());
        // An address of neither length, or a length past the end: refused, never guessed.
        assert!(parse_dump(&newaddr(7, 2, &[(IFA_LOCAL, &[10, 0, 0])]), 7, &mut out).is_err());
        let mut cut = newaddr(7, 2, &[(IFA_LOCAL, &[10, 0, 0, 2])]);
        cut.truncate(cut.len() - 2);
        assert!(parse_dump(&cut, 7, &mut out).is_err());
    }
}
