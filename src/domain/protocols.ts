// IP protocols as security-group rules name them, with Neutron's meaning (neutron_lib's
// IP_PROTOCOL_MAP and the API's conversions): the model holds the protocol number, or null for any.

/** Every name Neutron's API accepts, with its number. 'icmpv6' is Neutron's legacy alias of ipv6-icmp. */
export const PROTOCOL_NUMBERS: Readonly<Record<string, number>> = {
  ah: 51,
  dccp: 33,
  egp: 8,
  esp: 50,
  gre: 47,
  hopopt: 0,
  icmp: 1,
  igmp: 2,
  ip: 0,
  ipip: 4,
  'ipv6-encap': 41,
  'ipv6-frag': 44,
  'ipv6-icmp': 58,
  icmpv6: 58,
  'ipv6-nonxt': 59,
  'ipv6-opts': 60,
  'ipv6-route': 43,
  ospf: 89,
  pgm: 113,
  rsvp: 46,
  sctp: 132,
  tcp: 6,
  udp: 17,
  udplite: 136,
  vrrp: 112,
};

export const PROTO = { icmp: 1, tcp: 6, udp: 17, dccp: 33, icmpv6: 58, sctp: 132, udplite: 136 } as const;

/** Protocols whose rules take a destination port range (Neutron's SG_PORT_PROTO_NUMS). */
export const PORT_PROTOCOLS: ReadonlySet<number> = new Set([PROTO.tcp, PROTO.udp, PROTO.dccp, PROTO.sctp, PROTO.udplite]);

/** Protocols whose rules take an ICMP type (port_range_min) and code (port_range_max). */
export const ICMP_PROTOCOLS: ReadonlySet<number> = new Set([PROTO.icmp, PROTO.icmpv6]);

/** Protocols that exist only over IPv6: an IPv4 rule naming one is refused, as Neutron refuses it. */
export const IPV6_ONLY_PROTOCOLS: ReadonlySet<number> = new Set([41, 43, 44, 58, 59, 60]);

export function isIcmp(protocol: number | null): boolean {
  return protocol !== null && ICMP_PROTOCOLS.has(protocol);
}

export function takesPorts(protocol: number | null): boolean {
  return protocol !== null && PORT_PROTOCOLS.has(protocol);
}
