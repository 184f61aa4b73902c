// Neutron's JSON (its REST API's field names) into the model's, and nothing more: the meaning of every
// field — protocol names and numbers, icmp on IPv6, port ranges, prefixes with host bits — is the
// domain validator's (src/domain/validate.ts), which implements Neutron's semantics once for everyone.
import type { LogResource, Port, SecurityGroupRule } from '../domain/model.js';
import { parseCidr } from '../domain/address.js';
import { validateId, validateLogResource, validatePort, validateRule, validateMember, ValidationError } from '../domain/validate.js';

/** A rule as Neutron's API returns it (only the fields we read). */
export interface NeutronRule {
  id: string;
  security_group_id?: string;
  direction: string;
  ethertype: string;
  protocol?: string | number | null;
  port_range_min?: number | null;
  port_range_max?: number | null;
  remote_ip_prefix?: string | null;
  remote_group_id?: string | null;
  remote_address_group_id?: string | null;
}

export interface NeutronGroup {
  id: string;
  /** Whose group it is: a log naming neither a group nor a port logs its project's groups. */
  project_id?: string;
  stateful?: boolean;
  revision_number?: number;
  /** Present when read with the group (a targeted read); a full read lists rules on their own. */
  security_group_rules?: NeutronRule[];
}

export interface NeutronPort {
  id: string;
  mac_address: string;
  fixed_ips?: { ip_address: string; subnet_id?: string }[];
  allowed_address_pairs?: { ip_address: string; mac_address?: string | null }[];
  security_groups?: string[];
  /** Absent when the port_security extension driver is not loaded: then every port is secured. */
  port_security_enabled?: boolean;
  'binding:host_id'?: string | null;
  /** The active binding's profile (admin or service role only, as binding:host_id). Nova writes the
   *  destination of a live migration in it, as `migrating_to`, before the VM moves. */
  'binding:profile'?: Record<string, unknown> | null;
  device_owner?: string | null;
  revision_number?: number;
}

/** A `log` resource (the logging service plugin's /v2.0/log/logs). */
export interface NeutronLog {
  id: string;
  project_id?: string;
  resource_type?: string;
  resource_id?: string | null;
  target_id?: string | null;
  event?: string;
  enabled?: boolean;
}

export interface NeutronAddressGroup {
  id: string;
  addresses?: string[];
  revision_number?: number;
}

/** The fields read from Neutron, per resource (its `fields=` query): nothing else crosses the wire. */
export const FIELDS = {
  group: ['id', 'project_id', 'stateful', 'revision_number'],
  groupWithRules: ['id', 'project_id', 'stateful', 'revision_number', 'security_group_rules'],
  rule: [
    'id',
    'security_group_id',
    'direction',
    'ethertype',
    'protocol',
    'port_range_min',
    'port_range_max',
    'remote_ip_prefix',
    'remote_group_id',
    'remote_address_group_id',
  ],
  port: [
    'id',
    'mac_address',
    'fixed_ips',
    'allowed_address_pairs',
    'security_groups',
    'port_security_enabled',
    'binding:host_id',
    'binding:profile',
    'device_owner',
    'revision_number',
  ],
  addressGroup: ['id', 'addresses', 'revision_number'],
  log: ['id', 'project_id', 'resource_type', 'resource_id', 'target_id', 'event', 'enabled'],
} as const;

/** A security-group log in the model, or undefined for a log of another resource type (Neutron's
 *  `firewall_group` logs are not ours). Throws ValidationError. */
export function toLogResource(l: NeutronLog): LogResource | undefined {
  if (l.resource_type !== 'security_group') return undefined;
  return validateLogResource({
    id: l.id,
    projectId: l.project_id,
    event: l.event,
    enabled: l.enabled !== false,
    resourceId: l.resource_id ?? null,
    targetId: l.target_id ?? null,
  });
}

/** Address groups become groups whose members are their addresses, under ids no security group
 *  (a UUID) can have; a rule's remote_address_group_id becomes a remote group like any other, so
 *  agents need nothing new: one set per address group, updates by its own routing key. */
export const ADDRESS_GROUP_PREFIX = 'ag:';
export function addressGroupKey(id: string): string {
  return ADDRESS_GROUP_PREFIX + id;
}

/** How a port's device is named on its host. Nova and Neutron's OVS agent name the VM's tap `tap` +
 *  the first 11 characters of the port id (14 characters in all); with hybrid plugging that tap sits
 *  on the port's own Linux bridge, where sg-agent's physdev matches see its traffic. */
export interface DeviceNaming {
  prefix: string;
  /** Length of the whole name, prefix included (at most 15, the kernel's limit). */
  length: number;
}
export const NEUTRON_DEVICE_NAMING: DeviceNaming = { prefix: 'tap', length: 14 };

export function deviceName(portId: string, naming: DeviceNaming = NEUTRON_DEVICE_NAMING): string {
  return (naming.prefix + portId).slice(0, naming.length);
}

export function toRule(r: NeutronRule): SecurityGroupRule {
  if (r.remote_group_id && r.remote_address_group_id)
    throw new ValidationError(`rule ${r.id}: both a remote group and a remote address group`);
  return validateRule(
    {
      id: r.id,
      direction: r.direction,
      ethertype: r.ethertype,
      protocol: r.protocol ?? null,
      portRangeMin: r.port_range_min ?? null,
      portRangeMax: r.port_range_max ?? null,
      remoteIpPrefix: r.remote_ip_prefix ?? null,
      remoteGroupId: r.remote_address_group_id ? addressGroupKey(r.remote_address_group_id) : (r.remote_group_id ?? null),
    },
    r.security_group_id,
  );
}

export interface Rejected {
  id: string;
  reason: string;
}

/** A group's rules in the model; a rule the model cannot hold is left out and reported. Rules only
 *  allow, so leaving one out can only deny more (fail closed), never open anything. */
export function toRules(rules: NeutronRule[]): { rules: SecurityGroupRule[]; rejected: Rejected[] } {
  const out: SecurityGroupRule[] = [];
  const rejected: Rejected[] = [];
  for (const r of rules) {
    try {
      out.push(toRule(r));
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      rejected.push({ id: String(r.id), reason: e.message });
    }
  }
  // One order for one content, so that an unchanged group compares equal however Neutron listed it.
  out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { rules: out, rejected };
}

/** Which host a port's filtering belongs to. Ports Neutron's own network services own (DHCP, routers,
 *  ...: device_owner `network:*`) are never hybrid-plugged taps on a compute host, so they bind to no
 *  host; they stay members of their groups like any port. Unbound ports: no host either. */
export function portHost(p: NeutronPort): string {
  if (p.device_owner?.startsWith('network:')) return '';
  return p['binding:host_id'] ?? '';
}

/** The destination of the port's live migration, if one is under way: `migrating_to` in the active
 *  binding's profile, as Neutron's own agents read it (neutron/agent/rpc.py, migrating_to_host). Only
 *  Nova's service role writes a profile. One that is not a host name the model takes is no migration:
 *  the port stays filtered on its host, as without one. */
export function portMigratingTo(p: NeutronPort): string | undefined {
  const to = p['binding:profile']?.migrating_to;
  if (!portHost(p) || typeof to !== 'string' || to === '') return undefined;
  try {
    return validateId('migrating_to', to);
  } catch (e) {
    if (e instanceof ValidationError) return undefined;
    throw e;
  }
}

/** A port in the model, validated (throws ValidationError). */
export function toPort(p: NeutronPort, naming: DeviceNaming = NEUTRON_DEVICE_NAMING): Port {
  const migratingTo = portMigratingTo(p);
  return validatePort({
    id: p.id,
    host: portHost(p),
    ...(migratingTo ? { migratingTo } : {}),
    device: deviceName(p.id, naming),
    mac: p.mac_address,
    fixedIps: (p.fixed_ips ?? []).map((f) => f.ip_address),
    allowedAddressPairs: (p.allowed_address_pairs ?? []).map((a) =>
      a.mac_address ? { ipAddress: a.ip_address, macAddress: a.mac_address } : { ipAddress: a.ip_address },
    ),
    securityGroups: p.security_groups ?? [],
    portSecurityEnabled: p.port_security_enabled !== false,
  });
}

/** An address group's addresses as members. A catch-all (0.0.0.0/0, ::/0) means "every address" in
 *  Neutron; a set cannot hold a /0, so it becomes its two halves, which together mean the same.
 *  An address the model refuses is left out and reported (fewer members: fail closed). */
export function toAddressGroupMembers(ag: NeutronAddressGroup): { members: string[]; rejected: Rejected[] } {
  const members = new Set<string>();
  const rejected: Rejected[] = [];
  for (const a of ag.addresses ?? []) {
    try {
      for (const m of halvesOfCatchAll(a)) members.add(validateMember(m, `address group ${ag.id}`));
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      rejected.push({ id: `${ag.id}/${String(a).slice(0, 64)}`, reason: e.message });
    }
  }
  return { members: [...members].sort(), rejected };
}

function halvesOfCatchAll(address: string): string[] {
  let c;
  try {
    c = parseCidr(address);
  } catch {
    return [address]; // the validator says why
  }
  if (c.prefix !== 0) return [address];
  return c.family === 4 ? ['0.0.0.0/1', '128.0.0.0/1'] : ['::/1', '8000::/1'];
}

/** The model's port minus what the store adds, for comparing what Neutron says with what is stored. */
export function samePort(a: Port, b: Port): boolean {
  return (
    a.host === b.host &&
    (a.migratingTo ?? '') === (b.migratingTo ?? '') &&
    a.device === b.device &&
    a.mac === b.mac &&
    a.portSecurityEnabled === b.portSecurityEnabled &&
    sameList(a.fixedIps, b.fixedIps) &&
    sameList(a.securityGroups, b.securityGroups) &&
    sameList(
      a.allowedAddressPairs.map((p) => `${p.ipAddress} ${p.macAddress ?? ''}`),
      b.allowedAddressPairs.map((p) => `${p.ipAddress} ${p.macAddress ?? ''}`),
    )
  );
}

export function sameRules(a: SecurityGroupRule[], b: SecurityGroupRule[]): boolean {
  if (a.length !== b.length) return false;
  const key = (r: SecurityGroupRule) =>
    JSON.stringify([r.id, r.direction, r.ethertype, r.protocol, r.portRangeMin, r.portRangeMax, r.remoteIpPrefix, r.remoteGroupId]);
  return sameList(a.map(key), b.map(key));
}

function sameList(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  const s = [...a].sort();
  const t = [...b].sort();
  return s.every((x, i) => x === t[i]);
}
