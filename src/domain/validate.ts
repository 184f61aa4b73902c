// The one validator of the security-group model. The controller's API, the store, the wire decoder and
// the firewall engine all call it, so what an agent would refuse is refused at the API with a 400, and
// what reaches the engine can be rendered. Each function takes untrusted input and returns the model in
// canonical form (protocol numbers, canonical addresses, explicit nulls), or throws ValidationError
// naming the field. Semantics are Neutron's API's (neutron/db/securitygroups_db.py): an agent must
// accept every rule Neutron accepts, with Neutron's meaning.
import type { AllowedAddressPair, LogEvent, LogResource, Port, SecurityGroup, SecurityGroupLog, SecurityGroupRule } from './model.js';
import { AddressError, formatCidr, isCatchAll, isHost, isUnspecified, parseCidr, type Cidr } from './address.js';
import { DEVICE_PATTERN, LIMITS, MAC_PATTERN } from './limits.js';
import { IPV6_ONLY_PROTOCOLS, isIcmp, PROTO, PROTOCOL_NUMBERS, takesPorts } from './protocols.js';

export class ValidationError extends Error {
  readonly code = 'INVALID_INPUT';
  constructor(message: string) {
    super(message);
    this.name = 'ValidationError';
  }
}

function fail(what: string, why: string): never {
  throw new ValidationError(`${what}: ${why}`);
}

/** An object with no field but `fields`: an unknown field is a writer this version does not understand. */
function obj(what: string, v: unknown, fields: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(what, 'must be an object');
  for (const k of Object.keys(v)) if (!fields.includes(k)) fail(what, `unknown field ${JSON.stringify(k.slice(0, 40))}`);
  return v as Record<string, unknown>;
}

const RULE_FIELDS = [
  'id',
  'direction',
  'ethertype',
  'protocol',
  'portRangeMin',
  'portRangeMax',
  'remoteIpPrefix',
  'remoteGroupId',
] as const;
const GROUP_FIELDS = ['id', 'stateful', 'rules', 'revision'] as const;
const PORT_FIELDS = [
  'id',
  'host',
  'migratingTo',
  'device',
  'mac',
  'fixedIps',
  'allowedAddressPairs',
  'securityGroups',
  'portSecurityEnabled',
  'revision',
] as const;
const PAIR_FIELDS = ['ipAddress', 'macAddress'] as const;
const LOG_FIELDS = ['id', 'projectId', 'event', 'targetId'] as const;
const LOG_EVENTS: readonly LogEvent[] = ['ACCEPT', 'DROP', 'ALL'];

function list(what: string, v: unknown, max: number): unknown[] {
  if (!Array.isArray(v)) fail(what, 'must be an array');
  if (v.length > max) fail(what, `more than ${max} entries`);
  return v;
}

const absent = (v: unknown) => v === undefined || v === null;

/** Ids are free text, bounded in UTF-8 bytes: they become store keys (which are bounded in bytes),
 *  and never reach the kernel (kernel names are hashes of them). */
export function validateId(what: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || Buffer.byteLength(v, 'utf8') > LIMITS.id)
    fail(what, `must be a string of 1-${LIMITS.id} bytes in UTF-8`);
  return v;
}

export function validateRevision(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(what, 'must be a non-negative integer');
  return v;
}

function cidr(what: string, v: unknown): Cidr {
  try {
    return parseCidr(v);
  } catch (e) {
    if (e instanceof AddressError) fail(what, e.message);
    throw e;
  }
}

function logEvent(id: string, v: unknown): LogEvent {
  if (typeof v !== 'string' || !LOG_EVENTS.includes(v as LogEvent)) fail(`log ${id}: event`, `must be one of ${LOG_EVENTS.join(', ')}`);
  return v as LogEvent;
}

/** A group's security-group log, canonical (an absent target is null). */
export function validateLog(v: unknown, groupId = '?'): SecurityGroupLog {
  const what = `log of group ${groupId}`;
  const o = obj(what, v, LOG_FIELDS);
  const id = validateId(`${what}: id`, o.id);
  const projectId = validateId(`log ${id}: projectId`, o.projectId);
  const event = logEvent(id, o.event);
  const targetId = absent(o.targetId) ? null : validateId(`log ${id}: targetId`, o.targetId);
  return { id, projectId, event, targetId };
}

const LOG_RESOURCE_FIELDS = ['id', 'projectId', 'event', 'enabled', 'resourceId', 'targetId'] as const;

/** A log resource, canonical (absent group and port are null; absent `enabled` is true). */
export function validateLogResource(v: unknown): LogResource {
  const o = obj('log', v, LOG_RESOURCE_FIELDS);
  const id = validateId('log id', o.id);
  const projectId = validateId(`log ${id}: projectId`, o.projectId);
  const event = logEvent(id, o.event);
  if (!absent(o.enabled) && typeof o.enabled !== 'boolean') fail(`log ${id}: enabled`, 'must be true or false');
  const resourceId = absent(o.resourceId) ? null : validateId(`log ${id}: resourceId`, o.resourceId);
  const targetId = absent(o.targetId) ? null : validateId(`log ${id}: targetId`, o.targetId);
  return { id, projectId, event, enabled: o.enabled !== false, resourceId, targetId };
}

/** A group's logs, each id once. */
export function validateLogs(v: unknown, groupId: string): SecurityGroupLog[] {
  const logs = list(`logs of group ${groupId}`, v, LIMITS.logsPerGroup).map((l) => validateLog(l, groupId));
  if (new Set(logs.map((l) => l.id)).size !== logs.length) fail(`logs of group ${groupId}`, 'a log id appears twice');
  return logs;
}

/** A member address of a group (a port's fixed IP or allowed-pair network), in canonical text. The
 *  kernel cannot hold a /0 in a hash:net set, and "every address" in a group would let everything in
 *  through rules naming it (Neutron bug 1867119), so a catch-all never becomes a member. */
export function validateMember(v: unknown, what = 'member'): string {
  const c = cidr(what, v);
  if (c.prefix === 0) fail(what, `a catch-all network cannot be a group member: ${JSON.stringify(v)}`);
  if (isHost(c) && isUnspecified(c)) fail(what, `the unspecified address cannot be a group member: ${JSON.stringify(v)}`);
  return formatCidr(c);
}

export function validateMembers(v: unknown, what = 'members', max: number = LIMITS.syncIps): string[] {
  return list(what, v, max).map((ip) => validateMember(ip, what));
}

/** A fixed IP: one address (no prefix but its full length), not the unspecified one. */
export function validateFixedIp(what: string, v: unknown): string {
  const c = cidr(what, v);
  if (!isHost(c)) fail(what, `must be a single address, not a network: ${JSON.stringify(v)}`);
  if (isUnspecified(c)) fail(what, `the unspecified address is not a port address`);
  return formatCidr(c);
}

export function validateDevice(v: unknown): string {
  if (typeof v !== 'string' || !DEVICE_PATTERN.test(v)) fail('device', `not a valid interface name: ${JSON.stringify(v)?.slice(0, 40)}`);
  return v;
}

/** A unicast MAC, lower case (a multicast, zero or broadcast source address never belongs to a port). */
export function validateMac(what: string, v: unknown): string {
  if (typeof v !== 'string' || !MAC_PATTERN.test(v)) fail(what, `not a MAC address: ${JSON.stringify(v)?.slice(0, 40)}`);
  const mac = v.toLowerCase();
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) fail(what, `not a unicast MAC address: ${mac}`);
  if (mac === '00:00:00:00:00:00') fail(what, 'the zero MAC address is not a port address');
  return mac;
}

/** Neutron's convert_protocol + legacy IPv6 ICMP conversion: a name, a number or a numeric string;
 *  null, 'any' and protocol 0 mean any. 'icmp' (or 1) on an IPv6 rule is ICMPv6, as Neutron stores it. */
export function validateProtocol(what: string, v: unknown, ethertype: 'IPv4' | 'IPv6'): number | null {
  if (absent(v) || v === 'any') return null;
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string' && /^(0|[1-9][0-9]{0,2})$/.test(v)) n = Number(v);
  else if (typeof v === 'string' && Object.hasOwn(PROTOCOL_NUMBERS, v.toLowerCase())) n = PROTOCOL_NUMBERS[v.toLowerCase()]!;
  else fail(what, `unknown protocol ${JSON.stringify(v)?.slice(0, 40)}`);
  if (!Number.isInteger(n) || n < 0 || n > 255) fail(what, 'protocol number must be 0-255');
  if (n === 0) return null;
  if (ethertype === 'IPv6' && n === PROTO.icmp) return PROTO.icmpv6;
  return n;
}

function portValue(what: string, v: unknown, max: number): number | null {
  if (absent(v)) return null;
  if (typeof v === 'string' && /^[0-9]{1,5}$/.test(v)) v = Number(v);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) fail(what, `must be an integer 0-${max}`);
  return v;
}

export function validateRule(v: unknown, groupId = '?'): SecurityGroupRule {
  const o = obj(`rule of group ${groupId}`, v, RULE_FIELDS);
  const id = validateId('rule id', o.id);
  const what = `rule ${id}`;
  const direction = o.direction;
  if (direction !== 'ingress' && direction !== 'egress') fail(what, 'direction must be ingress or egress');
  const ethertype = o.ethertype;
  if (ethertype !== 'IPv4' && ethertype !== 'IPv6') fail(what, 'ethertype must be IPv4 or IPv6');
  const protocol = validateProtocol(`${what} protocol`, o.protocol, ethertype);
  if (protocol !== null && ethertype === 'IPv4' && IPV6_ONLY_PROTOCOLS.has(protocol))
    fail(what, `protocol ${protocol} exists only over IPv6`);

  let portRangeMin = portValue(`${what} port_range_min`, o.portRangeMin, 65535);
  let portRangeMax = portValue(`${what} port_range_max`, o.portRangeMax, 65535);
  if (portRangeMin !== null || portRangeMax !== null) {
    if (protocol === null) fail(what, 'a port range needs a protocol');
    if (takesPorts(protocol)) {
      if (portRangeMin === 0 || portRangeMax === 0) fail(what, 'port 0 is not a valid port');
      if (portRangeMin === null || portRangeMax === null || portRangeMin > portRangeMax)
        fail(what, 'port_range_min must be given and not exceed port_range_max');
      // As Neutron does: the whole range is no range.
      if (portRangeMin === 1 && portRangeMax === 65535) portRangeMin = portRangeMax = null;
    } else if (isIcmp(protocol)) {
      if (portRangeMin !== null && portRangeMin > 255) fail(what, 'ICMP type must be 0-255');
      if (portRangeMax !== null && portRangeMax > 255) fail(what, 'ICMP code must be 0-255');
      if (portRangeMin === null) fail(what, 'an ICMP code needs an ICMP type');
    } else {
      fail(what, `protocol ${protocol} takes no port range (only tcp, udp, sctp, udplite, dccp, and icmp type/code)`);
    }
  }

  const hasPrefix = !absent(o.remoteIpPrefix);
  const hasGroup = !absent(o.remoteGroupId);
  if (hasPrefix && hasGroup) fail(what, 'remote_ip_prefix and remote_group_id are mutually exclusive');
  let remoteIpPrefix: string | null = null;
  if (hasPrefix) {
    const c = cidr(`${what} remote_ip_prefix`, o.remoteIpPrefix);
    if ((c.family === 4) !== (ethertype === 'IPv4')) fail(what, 'remote_ip_prefix family differs from ethertype');
    // A prefix with host bits set means its network (iptables would clear them too); /0 is no constraint.
    remoteIpPrefix = c.prefix === 0 ? null : formatCidr(c);
  }
  return {
    id,
    direction,
    ethertype,
    protocol,
    portRangeMin,
    portRangeMax,
    remoteIpPrefix,
    remoteGroupId: hasGroup ? validateId(`${what} remote_group_id`, o.remoteGroupId) : null,
  };
}

export function validateRules(v: unknown, groupId: string): SecurityGroupRule[] {
  return list(`rules of group ${groupId}`, v, LIMITS.rulesPerGroup).map((r) => validateRule(r, groupId));
}

export function validateGroup(v: unknown): SecurityGroup {
  const o = obj('security group', v, GROUP_FIELDS);
  const id = validateId('security group id', o.id);
  if (!absent(o.stateful) && typeof o.stateful !== 'boolean') fail(`group ${id}`, 'stateful must be a boolean');
  const g: SecurityGroup = { id, stateful: o.stateful !== false, rules: validateRules(o.rules, id) };
  if (!absent(o.revision)) g.revision = validateRevision(`group ${id} revision`, o.revision);
  return g;
}

export function validatePort(v: unknown): Port {
  const o = obj('port', v, PORT_FIELDS);
  const id = validateId('port id', o.id);
  const what = `port ${id}`;
  const fixedIps = [
    ...new Set(list(`${what} fixedIps`, o.fixedIps, LIMITS.ipsPerPort).map((ip) => validateFixedIp(`${what} fixed ip`, ip))),
  ];
  const allowedAddressPairs: AllowedAddressPair[] = list(`${what} allowedAddressPairs`, o.allowedAddressPairs ?? [], LIMITS.ipsPerPort).map(
    (pair) => {
      const q = obj(`${what} allowed address pair`, pair, PAIR_FIELDS);
      const out: AllowedAddressPair = { ipAddress: formatCidr(cidr(`${what} allowed pair`, q.ipAddress)) };
      if (!absent(q.macAddress)) out.macAddress = validateMac(`${what} allowed pair mac`, q.macAddress);
      return out;
    },
  );
  if (!absent(o.portSecurityEnabled) && typeof o.portSecurityEnabled !== 'boolean') fail(what, 'portSecurityEnabled must be a boolean');
  const port: Port = {
    id,
    // No host (an unbound port: a member of its groups, filtered nowhere) is '' in the model, so the
    // model's own form validates again.
    host: absent(o.host) || o.host === '' ? '' : validateId(`${what} host`, o.host),
    device: validateDevice(o.device),
    mac: validateMac(`${what} mac`, o.mac),
    fixedIps,
    allowedAddressPairs,
    securityGroups: [
      ...new Set(
        list(`${what} securityGroups`, o.securityGroups, LIMITS.groupsPerPort).map((g) => validateId(`${what} security group`, g)),
      ),
    ],
    portSecurityEnabled: o.portSecurityEnabled !== false,
  };
  // A migration's destination equal to the host (the binding activated, the profile not yet cleared)
  // is no second host.
  if (!absent(o.migratingTo) && o.migratingTo !== '') {
    const to = validateId(`${what} migratingTo`, o.migratingTo);
    if (!port.host) fail(what, 'migratingTo without a host: only a bound port migrates');
    if (to !== port.host) port.migratingTo = to;
  }
  const macs = new Set([port.mac, ...allowedAddressPairs.map((p) => p.macAddress ?? port.mac)]);
  if (macs.size > LIMITS.macsPerPort) fail(what, `has ${macs.size} MACs (its own and its allowed pairs'), more than ${LIMITS.macsPerPort}`);
  if (!absent(o.revision)) port.revision = validateRevision(`${what} revision`, o.revision);
  return port;
}

/** The addresses a port contributes to the membership of its groups: its fixed IPs and the networks of
 *  its allowed address pairs, catch-alls left out (see validateMember). Input must be validated. */
export function portMemberAddresses(port: Pick<Port, 'fixedIps' | 'allowedAddressPairs'>): string[] {
  const out = new Set(port.fixedIps);
  for (const p of port.allowedAddressPairs)
    if (!isCatchAll(p.ipAddress) && p.ipAddress !== '0.0.0.0' && p.ipAddress !== '::') out.add(p.ipAddress);
  return [...out];
}
