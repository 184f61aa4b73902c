// The packet an operator asks `sg-agent trace` and `sg-agent explain` about, read once for both: from
// the command line (`--src 10.0.0.5 --proto tcp --dport 22 --ingress`) or from the query of the agent's
// /explain (the same names without dashes). Strict: a value that is not an address, a protocol, a
// port or a type is refused, naming it.
import { canonicalCidr, familyOf } from '../domain/address.js';
import { MAC_PATTERN } from '../domain/limits.js';
import { PROTOCOL_NUMBERS } from '../domain/protocols.js';
import type { ProbePacket } from '../firewall/explain.js';
import type { TraceMatch } from '../firewall/trace.js';
import { ND_LINK_LAYER } from '../firewall/policy.js';

export class ProbeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProbeError';
  }
}

/** Option names (and query keys without the dashes) that describe the packet. */
export const PROBE_OPTIONS = [
  '--port',
  '--src',
  '--dst',
  '--proto',
  '--sport',
  '--dport',
  '--icmp-type',
  '--icmp-code',
  '--src-mac',
  '--nd-target',
  '--nd-lladdr',
  '--state',
] as const;
export const PROBE_FLAGS = ['--ingress', '--egress'] as const;

export interface Probe {
  port: string;
  direction: 'ingress' | 'egress';
  src?: string;
  dst?: string;
  proto?: number;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  srcMac?: string;
  /** A neighbour solicitation's or advertisement's target, and the MAC its link-layer address option
   *  names (router solicitations too). */
  ndTarget?: string;
  ndLinkLayer?: string;
  state?: ProbePacket['state'];
}

function address(v: string, what: string): string {
  let c: string;
  try {
    c = canonicalCidr(v);
  } catch {
    throw new ProbeError(`${what} must be an address, not ${JSON.stringify(v)}`);
  }
  if (c.includes('/')) throw new ProbeError(`${what} must be one address, not a network (${v})`);
  return c;
}

function int(v: string, what: string, max: number): number {
  if (!/^\d{1,5}$/.test(v) || Number(v) > max) throw new ProbeError(`${what} must be a number from 0 to ${max}, not ${JSON.stringify(v)}`);
  return Number(v);
}

/** The probe from named values (`get('src')`); `flag('ingress')` says whether a flag is given. */
export function readProbe(get: (name: string) => string | undefined, flag: (name: string) => boolean): Probe {
  const port = get('port');
  if (!port) throw new ProbeError('--port (the port id) is required');
  const ingress = flag('ingress');
  const egress = flag('egress');
  if (ingress === egress) throw new ProbeError('say which way: --ingress (to the port) or --egress (from it)');
  const p: Probe = { port, direction: ingress ? 'ingress' : 'egress' };
  const src = get('src');
  const dst = get('dst');
  if (src !== undefined) p.src = address(src, '--src');
  if (dst !== undefined) p.dst = address(dst, '--dst');
  if (p.src && p.dst && familyOf(p.src) !== familyOf(p.dst)) throw new ProbeError('--src and --dst must be of one family');
  const proto = get('proto');
  if (proto !== undefined) {
    const n = PROTOCOL_NUMBERS[proto.toLowerCase()] ?? (/^\d{1,3}$/.test(proto) && Number(proto) <= 255 ? Number(proto) : undefined);
    if (n === undefined) throw new ProbeError(`--proto must be a protocol name or number, not ${JSON.stringify(proto)}`);
    p.proto = n;
  }
  for (const [name, key, max] of [
    ['sport', 'sport', 65535],
    ['dport', 'dport', 65535],
    ['icmp-type', 'icmpType', 255],
    ['icmp-code', 'icmpCode', 255],
  ] as const) {
    const v = get(name);
    if (v !== undefined) p[key] = int(v, `--${name}`, max);
  }
  if ((p.sport !== undefined || p.dport !== undefined) && p.proto === undefined) throw new ProbeError('a port needs --proto');
  if ((p.icmpType !== undefined || p.icmpCode !== undefined) && p.proto === undefined)
    p.proto = familyOf(p.src ?? p.dst ?? '0.0.0.0') === 6 ? 58 : 1;
  const mac = get('src-mac');
  if (mac !== undefined) {
    if (!MAC_PATTERN.test(mac)) throw new ProbeError(`--src-mac must be a MAC address, not ${JSON.stringify(mac)}`);
    p.srcMac = mac.toLowerCase();
  }
  const ndTarget = get('nd-target');
  if (ndTarget !== undefined) {
    if (p.proto !== 58 || (p.icmpType !== 135 && p.icmpType !== 136))
      throw new ProbeError('--nd-target needs --icmp-type 135 or 136 (a neighbour solicitation or advertisement)');
    p.ndTarget = address(ndTarget, '--nd-target');
    if (familyOf(p.ndTarget) !== 6) throw new ProbeError(`--nd-target must be an IPv6 address, not ${ndTarget}`);
  }
  const lladdr = get('nd-lladdr');
  if (lladdr !== undefined) {
    if (p.proto !== 58 || p.icmpType === undefined || !ND_LINK_LAYER.has(p.icmpType))
      throw new ProbeError('--nd-lladdr needs --icmp-type 133, 135 or 136 (a router or neighbour solicitation, an advertisement)');
    if (!MAC_PATTERN.test(lladdr)) throw new ProbeError(`--nd-lladdr must be a MAC address, not ${JSON.stringify(lladdr)}`);
    p.ndLinkLayer = lladdr.toLowerCase();
  }
  const state = get('state');
  if (state !== undefined) {
    if (!['new', 'established', 'related', 'invalid'].includes(state))
      throw new ProbeError('--state must be new, established, related or invalid');
    p.state = state as Probe['state'];
  }
  return p;
}

/** The probe as the agent's query (the names without dashes). */
export function probeQuery(p: Probe): URLSearchParams {
  const q = new URLSearchParams({ port: p.port, [p.direction]: '' });
  const put = (k: string, v: string | number | undefined) => v !== undefined && q.set(k, String(v));
  put('src', p.src);
  put('dst', p.dst);
  put('proto', p.proto);
  put('sport', p.sport);
  put('dport', p.dport);
  put('icmp-type', p.icmpType);
  put('icmp-code', p.icmpCode);
  put('src-mac', p.srcMac);
  put('nd-target', p.ndTarget);
  put('nd-lladdr', p.ndLinkLayer);
  put('state', p.state);
  return q;
}

/** What trace marks: the probe's match (at least an address: tracing all of a port's traffic is
 *  rarely what is meant, and costs the most). */
export function traceMatch(p: Probe): TraceMatch {
  if (!p.src && !p.dst) throw new ProbeError('trace needs --src or --dst');
  return {
    direction: p.direction,
    ...(p.src ? { src: p.src } : {}),
    ...(p.dst ? { dst: p.dst } : {}),
    ...(p.proto !== undefined ? { proto: p.proto } : {}),
    ...(p.dport !== undefined ? { dport: p.dport } : {}),
    ...(p.icmpType !== undefined ? { icmpType: p.icmpType } : {}),
  };
}

/** The packet explain judges: the port's own address stands in for its own end when not given
 *  (the destination of ingress, the source of egress); the other end must be given. */
export function probePacket(p: Probe, portAddresses: readonly string[]): ProbePacket {
  const remote = p.direction === 'ingress' ? p.src : p.dst;
  if (!remote)
    throw new ProbeError(`explain needs ${p.direction === 'ingress' ? '--src (who sends to the port)' : '--dst (where the port sends)'}`);
  const own = (p.direction === 'ingress' ? p.dst : p.src) ?? portAddresses.find((a) => familyOf(a) === familyOf(remote));
  if (!own) throw new ProbeError(`the port has no IPv${familyOf(remote)} address: give ${p.direction === 'ingress' ? '--dst' : '--src'}`);
  return {
    direction: p.direction,
    src: p.direction === 'ingress' ? remote : own,
    dst: p.direction === 'ingress' ? own : remote,
    proto: p.proto ?? null,
    ...(p.sport !== undefined ? { sport: p.sport } : {}),
    ...(p.dport !== undefined ? { dport: p.dport } : {}),
    ...(p.icmpType !== undefined ? { icmpType: p.icmpType } : {}),
    ...(p.icmpCode !== undefined ? { icmpCode: p.icmpCode } : {}),
    ...(p.srcMac ? { srcMac: p.srcMac } : {}),
    ...(p.ndTarget ? { ndTarget: p.ndTarget } : {}),
    ...(p.ndLinkLayer ? { ndLinkLayer: p.ndLinkLayer } : {}),
    ...(p.state ? { state: p.state } : {}),
  };
}
