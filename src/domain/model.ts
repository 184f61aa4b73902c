// The security-group model shared by the firewall engine, the protocol and the control plane, in the
// canonical form `src/domain/validate.ts` returns. Field names follow OpenStack Neutron's API
// (snake_case there, camelCase here) so operators recognise them.

export type Direction = 'ingress' | 'egress';
export type Ethertype = 'IPv4' | 'IPv6';

export interface SecurityGroupRule {
  id: string;
  direction: Direction;
  ethertype: Ethertype;
  /** IP protocol number (1-255); null means any. Names are converted on input (src/domain/protocols.ts). */
  protocol: number | null;
  /** tcp/udp/sctp/udplite/dccp: the port range (both or neither); icmp/icmpv6: portRangeMin is the
   *  ICMP type, portRangeMax the code. */
  portRangeMin: number | null;
  portRangeMax: number | null;
  /** Canonical network (host bits cleared); null for any. Mutually exclusive with remoteGroupId. */
  remoteIpPrefix: string | null;
  remoteGroupId: string | null;
}

export interface SecurityGroup {
  id: string;
  /** Default true: established/related return traffic is accepted. */
  stateful: boolean;
  rules: SecurityGroupRule[];
  revision?: number;
}

/** What a security-group log records: the first packet of each connection a rule admits, what the
 *  port's filter drops, or both (Neutron's logging API: `event`). */
export type LogEvent = 'ACCEPT' | 'DROP' | 'ALL';

/** A Neutron `log` resource (resource type `security_group`, enabled) as a group's state carries it to
 *  the hosts of the group's ports: the group's ports are logged — only `targetId` when it names one —
 *  for their connections this group's rules admit (ACCEPT) and for what their filter drops (DROP). */
export interface SecurityGroupLog {
  id: string;
  projectId: string;
  event: LogEvent;
  /** A port: only it is logged. Null: every port of the group. */
  targetId: string | null;
}

/** A security-group log resource as the control plane holds it (Neutron's `log` of resource type
 *  `security_group`): which ports it logs — the ports of `resourceId` (a group), only `targetId` (a
 *  port) if given, or with neither every port of the project — for which events, whether enabled.
 *  The controller turns each into the `SecurityGroupLog`s of the groups concerned. */
export interface LogResource {
  id: string;
  projectId: string;
  event: LogEvent;
  enabled: boolean;
  resourceId: string | null;
  targetId: string | null;
}

export interface AllowedAddressPair {
  /** An address or a network, canonical. */
  ipAddress: string;
  macAddress?: string;
}

export interface Port {
  id: string;
  host: string;
  /** The destination of a live migration under way (Neutron's `migrating_to`): the port is filtered
   *  there too, so that its filter is in place before the VM arrives. Never equal to `host`. */
  migratingTo?: string;
  /** The port's interface on its host (tap/veth name). */
  device: string;
  mac: string;
  fixedIps: string[];
  allowedAddressPairs: AllowedAddressPair[];
  securityGroups: string[];
  portSecurityEnabled: boolean;
  revision?: number;
}

/** A rule as callers may write it: a protocol name, number or numeric string; omitted fields are null. */
export type SecurityGroupRuleInput = Pick<SecurityGroupRule, 'id' | 'direction' | 'ethertype'> & {
  protocol?: string | number | null;
  portRangeMin?: number | string | null;
  portRangeMax?: number | string | null;
  remoteIpPrefix?: string | null;
  remoteGroupId?: string | null;
};

export interface SecurityGroupInput {
  id: string;
  stateful?: boolean;
  rules: SecurityGroupRuleInput[];
  revision?: number;
}

/** A port as callers may write it: optional fields default (no pairs, port security on). */
export type PortInput = Omit<Port, 'allowedAddressPairs' | 'portSecurityEnabled'> &
  Partial<Pick<Port, 'allowedAddressPairs' | 'portSecurityEnabled'>>;
