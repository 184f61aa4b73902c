// The shared part of our tables: the inet (and, bridged, bridge) table, the verdict maps that lead
// to each port's chains, the sets every port's rules share (stateless ports and addresses, ICMPv6
// type lists, the conntrack-state map) and the base chains that dispatch into the maps. Made once,
// by the first apply; a port's binding only adds map elements and chains of its own (dispatch.ts).
import type { Mode } from '../dataplane.js';
import { ICMP6_LISTS, type Icmp6List } from '../policy.js';
import { BRIDGE, INET, type NftNames } from './names.js';
import type { NftFamily, Op, Stmt } from '../../addon/nftables.js';
import { CT_STATE_VERDICTS, ICMP6_SETS, MARK_MASK } from './render.js';
import { ZONED_KIND } from '../zones.js';

/** What the shape of our tables depends on. */
export interface Layout {
  names: NftNames;
  mode: Mode;
  /** Name prefixes of VM-port devices that are dropped when no port owns them (empty: none). */
  unknownDevicePrefixes: readonly string[];
  /** Name prefixes of the bridges whose traffic is tracked in a conntrack zone of each bridge's own
   *  (empty: none, every bridge shares the host's table; always empty in routed mode). */
  zoneBridges: readonly string[];
}

/** Where an operation on our table of `family` goes. */
export function at(l: Layout, family: NftFamily): { family: NftFamily; table: string } {
  return { family, table: l.names.table };
}

/** Until the first apply is in, a chain or set may be there already (a previous run's, in a table
 *  that was kept): what is made is emptied too, in the same transaction. */
export function emptiedAsMade(ops: Op[]): Op[] {
  return ops.flatMap((o): Op[] =>
    o.op === 'chain'
      ? [o, { op: 'flushChain', family: o.family, table: o.table, chain: o.chain }]
      : o.op === 'set'
        ? [o, { op: 'flushSet', family: o.family, table: o.table, set: o.set }]
        : [o],
  );
}

/** The tables, their maps and sets, and the base chains that dispatch into the ports' chains. */
export function sharedOps(l: Layout, firstApply: boolean): Op[] {
  const inet = at(l, 'inet');
  const bridged = l.mode === 'bridged';
  const portKey = bridged ? 'mark' : 'ifname';
  const dispatch = (dir: 'from' | 'to') =>
    (bridged ? { mark: MARK_MASK } : dir === 'from' ? 'iifname' : 'oifname') as { mark: number } | 'iifname' | 'oifname';
  const ops: Op[] = [
    { op: 'table', ...inet },
    { op: 'set', ...inet, set: INET.fromPort, key: portKey, map: true },
    { op: 'set', ...inet, set: INET.toPort, key: portKey, map: true },
    { op: 'set', ...inet, set: INET.statelessPort, key: portKey },
    ...(bridged
      ? ([
          { op: 'set', ...inet, set: INET.statelessAddr4, key: 'ipv4' },
          { op: 'set', ...inet, set: INET.statelessAddr6, key: 'ipv6' },
          { op: 'set', ...inet, set: INET.statelessMac, key: 'ether' },
        ] as Op[])
      : []),
    ...Object.values(ICMP6_SETS).map((set): Op => ({ op: 'set', ...inet, set, key: 'icmp6type' })),
    { op: 'set', ...inet, set: INET.ctState, key: 'ctstate', map: true },
    // Before conntrack (raw priority): a stateless port's traffic, both ways, is not tracked; the rest
    // of a zoned bridge's is tracked in the bridge's zone.
    { op: 'chain', ...inet, chain: INET.untracked, hook: { hook: 'prerouting', priority: -300 } },
    {
      op: 'rule',
      ...inet,
      chain: INET.untracked,
      stmts: [
        bridged ? { m: 'markIn', mask: MARK_MASK, set: INET.statelessPort } : { m: 'ifnameIn', key: 'iifname', set: INET.statelessPort },
        ...notrack(l),
      ],
    },
    ...untrackedTo(l),
    ...zones(l),
    // After conntrack and DNAT: what a port sends (forwarded or to the host itself) meets its egress chain.
    { op: 'chain', ...inet, chain: INET.fromPorts, hook: { hook: 'prerouting', priority: 0 } },
    ...(bridged ? [] : unknownDeviceDrops(l, inet, INET.fromPorts, INET.knownDev, 'iifname')),
    { op: 'rule', ...inet, chain: INET.fromPorts, stmts: [{ m: 'vmap', key: dispatch('from'), map: INET.fromPort }] },
    { op: 'chain', ...inet, chain: INET.toPorts, hook: { hook: 'forward', priority: 0 } },
    ...(bridged ? [] : unknownDeviceDrops(l, inet, INET.toPorts, INET.knownDev, 'oifname')),
    { op: 'rule', ...inet, chain: INET.toPorts, stmts: [{ m: 'vmap', key: dispatch('to'), map: INET.toPort }] },
  ];
  if (!bridged && dropsUnknown(l)) ops.splice(1, 0, { op: 'set', ...inet, set: INET.knownDev, key: 'ifname' });
  if (bridged) {
    const br = at(l, 'bridge');
    // Before br_netfilter (priority 0 and -1): the mark is set when the inet hooks see the packet.
    // Our bits are cleared first, so no other frame carries a port's mark.
    ops.push(
      { op: 'table', ...br },
      { op: 'set', ...br, set: BRIDGE.fromDev, key: 'ifname', map: true },
      { op: 'set', ...br, set: BRIDGE.toDev, key: 'ifname', map: true },
      ...(dropsUnknown(l) ? [{ op: 'set', ...br, set: BRIDGE.knownDev, key: 'ifname' } as Op] : []),
      { op: 'chain', ...br, chain: BRIDGE.markFrom, hook: { hook: 'prerouting', priority: -200 } },
      ...unknownDeviceDrops(l, br, BRIDGE.markFrom, BRIDGE.knownDev, 'iifname'),
      { op: 'rule', ...br, chain: BRIDGE.markFrom, stmts: [{ m: 'markSet', mask: MARK_MASK, id: 0 }] },
      { op: 'rule', ...br, chain: BRIDGE.markFrom, stmts: [{ m: 'vmap', key: 'iifname', map: BRIDGE.fromDev }] },
      { op: 'chain', ...br, chain: BRIDGE.markTo, hook: { hook: 'forward', priority: -200 } },
      ...unknownDeviceDrops(l, br, BRIDGE.markTo, BRIDGE.knownDev, 'oifname'),
      { op: 'rule', ...br, chain: BRIDGE.markTo, stmts: [{ m: 'markSet', mask: MARK_MASK, id: 0 }] },
      { op: 'rule', ...br, chain: BRIDGE.markTo, stmts: [{ m: 'vmap', key: 'oifname', map: BRIDGE.toDev }] },
    );
  }
  const fresh = firstApply ? emptiedAsMade(ops) : ops;
  fresh.push(
    ...(Object.keys(ICMP6_SETS) as Icmp6List[]).map((list): Op => ({
      op: 'elems',
      ...inet,
      set: ICMP6_SETS[list],
      add: ICMP6_LISTS[list].map((key) => ({ key })),
    })),
    { op: 'elems', ...inet, set: INET.ctState, add: CT_STATE_VERDICTS },
  );
  return fresh;
}

/** Rules of the untracked chain for traffic *to* a stateless port. An allowed pair may be any
 *  network, one holding other VMs' addresses (another tenant's) or the host's own: their traffic
 *  must stay tracked, or the replies to their connections are dropped as unrelated. Bridged: to one
 *  of the port's addresses (policy.ts, untrackedAddresses) and one of its MACs, never to an address
 *  of the host. Routed: whatever the route to the destination leaves by the port's device, which is
 *  how the host delivers to its addresses and pairs; a more specific route (another VM's address)
 *  or a local address leaves by another device, or by none. */
function untrackedTo(l: Layout): Op[] {
  const inet = at(l, 'inet');
  if (l.mode === 'routed') {
    return [{ op: 'rule', ...inet, chain: INET.untracked, stmts: [{ m: 'fibDaddrOifnameIn', set: INET.statelessPort }, ...notrack(l)] }];
  }
  return ([4, 6] as const).map((v): Op => ({
    op: 'rule',
    ...inet,
    chain: INET.untracked,
    stmts: [
      { m: 'nfproto', v },
      { m: 'etherDaddrIn', set: INET.statelessMac },
      { m: 'addrIn', family: v, dir: 'daddr', set: v === 4 ? INET.statelessAddr4 : INET.statelessAddr6 },
      { m: 'daddrNotLocal' },
      ...notrack(l),
    ],
  }));
}

/** `notrack`, and with zones an end to the chain: a zone set after it would track the packet again
 *  (the zone is a conntrack template, which takes the place of "untracked"), and one set before it
 *  would make the kernel ignore the notrack (a packet with a template counts as seen). */
function notrack(l: Layout): Stmt[] {
  return zoned(l) ? [{ m: 'notrack' }, { m: 'verdict', v: 'accept' }] : [{ m: 'notrack' }];
}

/** Whether some bridges' traffic is tracked in zones of their own. */
export function zoned(l: Layout): boolean {
  return l.zoneBridges.length > 0;
}

/** What enters a zoned bridge (a Linux bridge: a frame it hands to the IP hooks comes in by the
 *  bridge) is tracked in the zone numbered like the bridge's device index (../zones.ts): one rule per
 *  prefix, the kernel reading the number, so a bridge made later is zoned from its first frame. */
function zones(l: Layout): Op[] {
  if (!zoned(l)) return [];
  const inet = at(l, 'inet');
  return l.zoneBridges.map((prefix): Op => ({
    op: 'rule',
    ...inet,
    chain: INET.untracked,
    stmts: [{ m: 'iifkind', kind: ZONED_KIND }, { m: 'ifnamePrefix', key: 'iifname', prefix }, { m: 'ctZoneSetIif' }],
  }));
}

/** Whether devices named like VM ports that no port owns are dropped. */
export function dropsUnknown(l: Layout): boolean {
  return l.unknownDevicePrefixes.length > 0;
}

/** First rules of a dispatch chain when unknown devices are dropped: a device named like a VM port
 *  that is not in the set of known ones goes no further (the iptables backend does the same with
 *  a `-m physdev`/`-i` rule per prefix after the known ports' dispatch). */
function unknownDeviceDrops(
  l: Layout,
  where: { family: NftFamily; table: string },
  chain: string,
  known: string,
  key: 'iifname' | 'oifname',
): Op[] {
  return l.unknownDevicePrefixes.map((prefix): Op => ({
    op: 'rule',
    ...where,
    chain,
    stmts: [
      { m: 'ifnamePrefix', key, prefix },
      { m: 'ifnameIn', key, set: known, negate: true },
      { m: 'verdict', v: 'drop' },
    ],
  }));
}
