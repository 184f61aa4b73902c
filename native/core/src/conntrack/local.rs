//! The addresses a namespace holds itself, read over rtnetlink (an RTM_GETADDR dump): a connection
//! with one of them at either end is the host's own (its SSH, the agent's broker connection, what it
//! NATs for containers), never a port's, and no cut may take it, whatever address a tenant gave a port.

use std::io;
use std::net::IpAddr;
use std::path::Path;

use super::rtnl::{attrs, dump, DumpKind};

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// RTM_GETADDR; the header is struct ifaddrmsg: family, prefixlen, flags, scope (u8 each), index (u32).
const ADDRESSES: DumpKind = DumpKind { get: 22, header_len: 8, new: 20, what: "RTM_GETADDR" };

/// Every address assigned to an interface of the namespace at `netns` (or this thread's).
pub fn local_addresses(netns: Option<&Path>) -> io::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    dump(netns, ADDRESSES, |body| addresses_of(body, &mut out))?;
    Ok(out)
}

/// The IFA_ADDRESS and IFA_LOCAL of one RTM_NEWADDR body (they differ on point-to-point links).
fn addresses_of(body: &[u8], out: &mut Vec<IpAddr>) -> Option<()> {
    for (kind, v) in attrs(body, ADDRESSES.header_len)? {
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
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::super::rtnl::parse_dump;
    use super::super::rtnl::testing::{done, reply};
    use super::*;

    /// An RTM_NEWADDR as the kernel sends it (include/uapi/linux/rtnetlink.h, if_addr.h).
    fn newaddr(seq: u32, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        reply(ADDRESSES.new, seq, &[family, 24, 0, 0, 1, 0, 0, 0], attrs)
    }

    fn parse(b: &[u8], out: &mut Vec<IpAddr>) -> io::Result<bool> {
        parse_dump(b, 7, ADDRESSES, &mut |body: &[u8]| addresses_of(body, out))
    }

    #[test]
    fn a_dump_gives_every_address_of_both_families_once() {
        let v6: [u8; 16] = "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut dgram = newaddr(7, 2, &[(IFA_ADDRESS, &[10, 0, 0, 1]), (IFA_LOCAL, &[10, 0, 0, 1]), (3, b"eth0\0")]);
        dgram.extend(newaddr(7, 10, &[(IFA_ADDRESS, &v6)]));
        let mut out = Vec::new();
        assert!(!parse(&dgram, &mut out).unwrap(), "not done before NLMSG_DONE");
        assert!(parse(&done(7), &mut out).unwrap());
        assert_eq!(out, vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]);
    }

    #[test]
    fn another_request_s_messages_and_malformed_ones_are_told_apart() {
        let mut out = Vec::new();
        // Another sequence number: not ours, skipped.
        assert!(!parse(&newaddr(9, 2, &[(IFA_LOCAL, &[10, 0, 0, 2])]), &mut out).unwrap());
        assert!(out.is_empty());
        // An address of neither length, or a length past the end: refused, never guessed.
        assert!(parse(&newaddr(7, 2, &[(IFA_LOCAL, &[10, 0, 0])]), &mut out).is_err());
        let mut cut = newaddr(7, 2, &[(IFA_LOCAL, &[10, 0, 0, 2])]);
        cut.truncate(cut.len() - 2);
        assert!(parse(&cut, &mut out).is_err());
    }
}
