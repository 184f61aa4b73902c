//! The namespace's devices and the bridge (master) each is in, read over rtnetlink (an RTM_GETLINK
//! dump). With conntrack zones, a bridge's traffic is tracked in a zone numbered like the bridge's
//! device index, so a cut for a port is scoped to the zone of the bridge its device is in.

use std::io;
use std::path::Path;

use super::rtnl::{attrs, dump, DumpKind};

const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;

pub(super) const RTM_NEWLINK: u16 = 16;
pub(super) const RTM_DELLINK: u16 = 17;
/// RTM_GETLINK; the header is struct ifinfomsg: family (u8), pad (u8), type (u16), index (i32),
/// flags and change (u32 each).
const LINKS: DumpKind = DumpKind { get: 18, header_len: 16, new: RTM_NEWLINK, what: "RTM_GETLINK" };

/// One device: its index, its name, its kind (`bridge`, `veth`…; none for a physical device), and the
/// index of the device it is enslaved to (a bridge), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub master: Option<u32>,
}

/// Every device of the namespace at `netns` (or this thread's).
pub fn links(netns: Option<&Path>) -> io::Result<Vec<Link>> {
    let mut out = Vec::new();
    dump(netns, LINKS, |body| {
        out.push(link_of(body)?);
        Some(())
    })?;
    Ok(out)
}

/// A device as an RTM_NEWLINK or RTM_DELLINK body describes it; None if the body is malformed.
pub(super) fn link_of(body: &[u8]) -> Option<Link> {
    let index = u32::from_ne_bytes(body.get(4..8)?.try_into().ok()?);
    let (mut name, mut kind, mut master) = (None, None, None);
    for (t, v) in attrs(body, LINKS.header_len)? {
        // The type without NLA_F_NESTED and NLA_F_NET_BYTEORDER (the kernel may flag a nest).
        match t & 0x3fff {
            IFLA_IFNAME => name = Some(c_string(v)?),
            IFLA_MASTER => master = Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)),
            // Nested: IFLA_INFO_KIND among the link's details.
            IFLA_LINKINFO => kind = attrs(v, 0)?.into_iter().find(|(t, _)| *t == IFLA_INFO_KIND).and_then(|(_, k)| c_string(k)),
            _ => {}
        }
    }
    Some(Link { index, name: name?, kind, master })
}

fn c_string(v: &[u8]) -> Option<String> {
    String::from_utf8(v.split(|&b| b == 0).next()?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::super::rtnl::parse_dump;
    use super::super::rtnl::testing::{done, reply};
    use super::*;

    /// An RTM_NEWLINK as the kernel sends it (include/uapi/linux/rtnetlink.h, if_link.h).
    fn newlink(seq: u32, index: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut head = vec![0u8, 0, 1, 0];
        head.extend_from_slice(&index.to_ne_bytes());
        head.extend_from_slice(&[0; 8]);
        reply(LINKS.new, seq, &head, attrs)
    }

    #[test]
    fn a_dump_gives_each_device_with_its_bridge() {
        // IFLA_LINKINFO { IFLA_INFO_KIND "bridge" } (the nest's flag is the kernel's to set or not).
        let info = [11u8, 0, 1, 0, b'b', b'r', b'i', b'd', b'g', b'e', 0, 0];
        let mut dgram = newlink(7, 5, &[(IFLA_IFNAME, b"br1\0"), (4, &1500u32.to_ne_bytes()), (IFLA_LINKINFO, &info)]);
        dgram.extend(newlink(7, 9, &[(IFLA_IFNAME, b"tap1\0"), (IFLA_MASTER, &5u32.to_ne_bytes())]));
        let mut out = Vec::new();
        let mut read = |body: &[u8]| {
            out.push(link_of(body)?);
            Some(())
        };
        assert!(!parse_dump(&dgram, 7, LINKS, &mut read).unwrap());
        assert!(parse_dump(&done(7), 7, LINKS, &mut read).unwrap());
        assert_eq!(
            out,
            vec![
                Link { index: 5, name: "br1".into(), kind: Some("bridge".into()), master: None },
                Link { index: 9, name: "tap1".into(), kind: None, master: Some(5) }
            ]
        );
        // A device without a name is malformed, not guessed at.
        assert!(parse_dump(&newlink(7, 3, &[]), 7, LINKS, &mut |b: &[u8]| link_of(b).map(|_| ())).is_err());
    }
}
