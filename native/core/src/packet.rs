//! A packet's addresses, protocol and ports from the bytes of its headers, as the kernel hands them
//! to a listener (a trace event's network and transport headers, a logged packet's payload): what an
//! operator reads of a packet in `sg-agent trace` and in a security-group log line. Pure; anything
//! short or of another kind is `None`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// IPv6 extension headers that are walked over to find the transport header.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTS: u8 = 60;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
const SCTP: u8 = 132;
const UDPLITE: u8 = 136;
const DCCP: u8 = 33;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct PacketInfo {
    /// 4 or 6.
    #[cfg_attr(test, ts(type = "4 | 6"))]
    pub family: u8,
    #[cfg_attr(test, ts(type = "string"))]
    pub src: IpAddr,
    #[cfg_attr(test, ts(type = "string"))]
    pub dst: IpAddr,
    /// The transport protocol (after any IPv6 extension headers).
    pub proto: u8,
    /// The IP datagram's length, as its header says.
    pub length: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub dport: Option<u16>,
    /// TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10…).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub tcp_flags: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub icmp_code: Option<u8>,
}

/// Where the transport header starts and which protocol it is, from an IP header.
fn network(ip: &[u8]) -> Option<(PacketInfo, usize)> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = (ip.first()? & 0x0f) as usize * 4;
            if ip.len() < 20 || ihl < 20 {
                return None;
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let info = PacketInfo::new(4, src.into(), dst.into(), ip[9], u16::from_be_bytes([ip[2], ip[3]]) as u32);
            Some((info, ihl))
        }
        6 => {
            if ip.len() < 40 {
                return None;
            }
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            let dst: [u8; 16] = ip[24..40].try_into().ok()?;
            let mut next = ip[6];
            let mut at = 40;
            // Extension headers, as far as the bytes go: each says what follows and how long it is.
            while matches!(next, HOP_BY_HOP | ROUTING | FRAGMENT | DEST_OPTS) {
                let h = ip.get(at..at + 2)?;
                next = h[0];
                at += if next == FRAGMENT { 8 } else { (h[1] as usize + 1) * 8 };
            }
            let length = u16::from_be_bytes([ip[4], ip[5]]) as u32 + 40;
            Some((PacketInfo::new(6, Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into(), next, length), at))
        }
        _ => None,
    }
}

impl PacketInfo {
    fn new(family: u8, src: IpAddr, dst: IpAddr, proto: u8, length: u32) -> Self {
        PacketInfo { family, src, dst, proto, length, sport: None, dport: None, tcp_flags: None, icmp_type: None, icmp_code: None }
    }

    /// Fills in ports, flags or ICMP type and code from a transport header.
    fn transport(mut self, th: &[u8]) -> Self {
        match self.proto {
            TCP | UDP | SCTP | UDPLITE | DCCP if th.len() >= 4 => {
                self.sport = Some(u16::from_be_bytes([th[0], th[1]]));
                self.dport = Some(u16::from_be_bytes([th[2], th[3]]));
                if self.proto == TCP {
                    self.tcp_flags = th.get(13).copied();
                }
            }
            ICMP | ICMPV6 if th.len() >= 2 => {
                self.icmp_type = Some(th[0]);
                self.icmp_code = Some(th[1]);
            }
            _ => {}
        }
        self
    }
}

/// A whole packet from its IP header on (a logged packet's payload).
pub fn parse_ip(packet: &[u8]) -> Option<PacketInfo> {
    let (info, at) = network(packet)?;
    Some(info.transport(packet.get(at..).unwrap_or(&[])))
}

/// A packet from its network header and, apart, its transport header (as a trace event has them).
pub fn parse_headers(network_header: &[u8], transport_header: Option<&[u8]>) -> Option<PacketInfo> {
    let (info, at) = network(network_header)?;
    Some(info.transport(transport_header.unwrap_or_else(|| network_header.get(at..).unwrap_or(&[]))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 TCP SYN 10.0.0.1:40000 → 10.0.0.2:80, 60 bytes (RFC 791 / 793 layouts).
    const TCP4_SYN: &[u8] = &[
        0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4, proto 6
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0xa0, 0x02, 0xff, 0xff, 0, 0, 0, 0, // SYN
    ];

    #[test]
    fn an_ipv4_tcp_packet_gives_its_addresses_ports_and_flags() {
        let p = parse_ip(TCP4_SYN).unwrap();
        assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((p.family, p.proto, p.length, p.sport, p.dport, p.tcp_flags), (4, 6, 60, Some(40000), Some(80), Some(0x02)));
        // The same, the transport header apart (a trace event's shape).
        assert_eq!(parse_headers(&TCP4_SYN[..20], Some(&TCP4_SYN[20..])), Some(p));
    }

    #[test]
    fn an_ipv6_echo_request_behind_a_hop_by_hop_header() {
        let mut b = vec![0x60, 0, 0, 0, 0, 16, HOP_BY_HOP, 64];
        b.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        b.extend([ICMPV6, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop: next ICMPv6, 8 bytes
        b.extend([128, 0, 0, 0, 0, 1, 0, 1]); // echo request
        let p = parse_ip(&b).unwrap();
        assert_eq!((p.family, p.proto, p.icmp_type, p.icmp_code, p.length), (6, ICMPV6, Some(128), Some(0), 56));
        assert_eq!(p.dst, "fd00::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn what_is_short_or_not_ip_is_none() {
        assert_eq!(parse_ip(&TCP4_SYN[..12]), None);
        assert_eq!(parse_ip(&[0x20; 40]), None);
        assert_eq!(parse_ip(&[]), None);
        let p = parse_ip(&TCP4_SYN[..22]).unwrap();
        assert_eq!(p.sport, None, "a transport header cut short gives no ports");
    }
}
