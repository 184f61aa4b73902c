// Validation of the security-group model at the engine's boundary. Everything that later reaches an
// iptables-restore line or a netlink message is checked here: a device name, a MAC, an address, a
// port number. Ids are free text (they are hashed, never copied into the kernel) but bounded.
import { isIP } from 'node:net';
import type { AllowedAddressPair, Port, SecurityGroup, SecurityGroupRule } from '../model.js';

export class ModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelError';
  }
}

const MAX_ID = 1024;
const MAX_RULES = 1000;
const MAX_IPS = 256;
const PROTOCOLS = new Set(['tcp', 'udp', 'icmp', 'icmpv6', 'sctp']);

function fail(what: string, why: string): never {
  throw new ModelError(`${what}: ${why}`);
}

export function checkId(what: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_ID) fail(what, `must be a string of 1-${MAX_ID} characters`);
  return v;
}

/** Interface names the kernel accepts and iptables-restore cannot misread. */
export function checkDevice(v: unknown): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(v)) fail('device', `not a valid interface name: ${JSON.stringify(v)}`);
  return v;
}

export function checkMac(v: unknown): string {
  if (typeof v !== 'string' || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(v)) fail('mac', `not a MAC address: ${JSON.stringify(v)}`);
  return v.toLowerCase();
}

/** An address or CIDR; returns it normalised (lower case) with its family. */
export function checkCidr(what: string, v: unknown): { text: string; family: 4 | 6; prefix: number } {
  if (typeof v !== 'string' || v.length > 64) fail(what, `not an IP address or CIDR: ${JSON.stringify(v)}`);
  const [addr, pfx, extra] = v.split('/');
  const family = isIP(addr ?? '');
  if ((family !== 4 && family !== 6) || extra !== undefined) fail(what, `not an IP address or CIDR: ${JSON.stringify(v)}`);
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (pfx !== undefined) {
    if (!/^\d{1,3}$/.test(pfx) || Number(pfx) > max) fail(what, `bad prefix length in ${JSON.stringify(v)}`);
    prefix = Number(pfx);
  }
  return { text: v.toLowerCase(), family, prefix };
}

function checkPort(what: string, v: unknown, max = 65535): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) fail(what, `must be an integer 0-${max}`);
  return v;
}

export function checkRule(groupId: string, r: unknown): SecurityGroupRule {
  if (typeof r !== 'object' || r === null) fail(`rule of group ${groupId}`, 'must be an object');
  const o = r as Record<string, unknown>;
  const id = checkId('rule id', o.id);
  const what = `rule ${id}`;
  if (o.direction !== 'ingress' && o.direction !== 'egress') fail(what, 'direction must be ingress or egress');
  if (o.ethertype !== 'IPv4' && o.ethertype !== 'IPv6') fail(what, 'ethertype must be IPv4 or IPv6');
  let protocol: SecurityGroupRule['protocol'] = null;
  if (o.protocol !== undefined && o.protocol !== null && o.protocol !== 'any') {
    if (typeof o.protocol === 'number') {
      if (!Number.isInteger(o.protocol) || o.protocol < 0 || o.protocol > 255) fail(what, 'protocol number must be 0-255');
      protocol = o.protocol;
    } else if (typeof o.protocol === 'string' && PROTOCOLS.has(o.protocol)) {
      protocol = o.protocol as SecurityGroupRule['protocol'];
    } else fail(what, `unknown protocol ${JSON.stringify(o.protocol)}`);
  }
  const icmp = protocol === 'icmp' || protocol === 'icmpv6';
  const portRangeMin = checkPort(`${what} port_range_min`, o.portRangeMin, icmp ? 255 : 65535);
  const portRangeMax = checkPort(`${what} port_range_max`, o.portRangeMax, icmp ? 255 : 65535);
  if (!icmp && portRangeMin !== null && portRangeMax !== null && portRangeMin > portRangeMax) fail(what, 'port_range_min > port_range_max');
  if (icmp && portRangeMin === null && portRangeMax !== null) fail(what, 'an ICMP code needs an ICMP type');
  const ported = protocol === 'tcp' || protocol === 'udp' || protocol === 'sctp';
  if (!ported && !icmp && (portRangeMin !== null || portRangeMax !== null)) fail(what, 'port ranges need tcp, udp, sctp, icmp or icmpv6');
  if (protocol === 'icmp' && o.ethertype === 'IPv6') fail(what, 'icmp with IPv6: use icmpv6');
  if (protocol === 'icmpv6' && o.ethertype === 'IPv4') fail(what, 'icmpv6 with IPv4: use icmp');
  const hasPrefix = o.remoteIpPrefix !== undefined && o.remoteIpPrefix !== null;
  const hasGroup = o.remoteGroupId !== undefined && o.remoteGroupId !== null;
  if (hasPrefix && hasGroup) fail(what, 'remote_ip_prefix and remote_group_id are mutually exclusive');
  let remoteIpPrefix: string | null = null;
  if (hasPrefix) {
    const c = checkCidr(`${what} remote_ip_prefix`, o.remoteIpPrefix);
    if ((c.family === 4) !== (o.ethertype === 'IPv4')) fail(what, 'remote_ip_prefix family differs from ethertype');
    remoteIpPrefix = c.text;
  }
  return {
    id,
    direction: o.direction,
    ethertype: o.ethertype,
    protocol,
    portRangeMin,
    portRangeMax,
    remoteIpPrefix,
    remoteGroupId: hasGroup ? checkId(`${what} remote_group_id`, o.remoteGroupId) : null,
  };
}

export function checkGroup(g: unknown): SecurityGroup {
  if (typeof g !== 'object' || g === null) fail('security group', 'must be an object');
  const o = g as Record<string, unknown>;
  const id = checkId('security group id', o.id);
  if (!Array.isArray(o.rules) || o.rules.length > MAX_RULES) fail(`group ${id}`, `rules must be an array of at most ${MAX_RULES}`);
  if (o.stateful !== undefined && typeof o.stateful !== 'boolean') fail(`group ${id}`, 'stateful must be a boolean');
  const out: SecurityGroup = { id, stateful: o.stateful !== false, rules: o.rules.map((r) => checkRule(id, r)) };
  if (typeof o.revision === 'number') out.revision = o.revision;
  return out;
}

export function checkPortModel(p: unknown): Port {
  if (typeof p !== 'object' || p === null) fail('port', 'must be an object');
  const o = p as Record<string, unknown>;
  const id = checkId('port id', o.id);
  const what = `port ${id}`;
  if (!Array.isArray(o.fixedIps) || o.fixedIps.length > MAX_IPS) fail(what, 'fixedIps must be an array');
  const fixedIps = o.fixedIps.map((ip) => {
    const c = checkCidr(`${what} fixed ip`, ip);
    if (c.prefix !== (c.family === 4 ? 32 : 128) || String(ip).includes('/')) fail(what, `fixed ip must be a plain address: ${JSON.stringify(ip)}`);
    return c.text;
  });
  const pairsIn = o.allowedAddressPairs ?? [];
  if (!Array.isArray(pairsIn) || pairsIn.length > MAX_IPS) fail(what, 'allowedAddressPairs must be an array');
  const allowedAddressPairs: AllowedAddressPair[] = pairsIn.map((pair) => {
    if (typeof pair !== 'object' || pair === null) fail(what, 'allowed address pair must be an object');
    const q = pair as Record<string, unknown>;
    const out: AllowedAddressPair = { ipAddress: checkCidr(`${what} allowed pair`, q.ipAddress).text };
    if (q.macAddress !== undefined && q.macAddress !== null) out.macAddress = checkMac(q.macAddress);
    return out;
  });
  if (!Array.isArray(o.securityGroups) || o.securityGroups.length > MAX_IPS) fail(what, 'securityGroups must be an array');
  const port: Port = {
    id,
    host: typeof o.host === 'string' ? checkId('host', o.host) : '',
    device: checkDevice(o.device),
    mac: checkMac(o.mac),
    fixedIps,
    allowedAddressPairs,
    securityGroups: o.securityGroups.map((g) => checkId(`${what} security group`, g)),
    portSecurityEnabled: o.portSecurityEnabled !== false,
  };
  if (typeof o.revision === 'number') port.revision = o.revision;
  return port;
}
