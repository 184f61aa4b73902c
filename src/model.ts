// The security-group model shared by the firewall engine, the protocol and the control plane.
// Field names follow OpenStack Neutron's API (snake_case there, camelCase here) so operators recognise them.

export type Direction = 'ingress' | 'egress';
export type Ethertype = 'IPv4' | 'IPv6';
/** Protocol name, or an IP protocol number 0-255; null/undefined means any. */
export type Protocol = 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp' | number;

export interface SecurityGroupRule {
  id: string;
  direction: Direction;
  ethertype: Ethertype;
  protocol?: Protocol | null;
  /** tcp/udp/sctp: port range; icmp/icmpv6: portRangeMin is the ICMP type, portRangeMax the code. */
  portRangeMin?: number | null;
  portRangeMax?: number | null;
  /** Mutually exclusive with remoteGroupId. */
  remoteIpPrefix?: string | null;
  remoteGroupId?: string | null;
}

export interface SecurityGroup {
  id: string;
  /** Default true: established/related return traffic is accepted. */
  stateful: boolean;
  rules: SecurityGroupRule[];
  revision?: number;
}

export interface AllowedAddressPair {
  /** An IP or a CIDR. */
  ipAddress: string;
  macAddress?: string;
}

export interface Port {
  id: string;
  host: string;
  /** The port's interface on its host (tap/veth name). */
  device: string;
  mac: string;
  fixedIps: string[];
  allowedAddressPairs: AllowedAddressPair[];
  securityGroups: string[];
  portSecurityEnabled: boolean;
  revision?: number;
}
