// How a port's traffic reaches its chains: map elements keyed by the port's mark (bridged) or its
// device (routed) that jump to the port's chains, elements that drop a device whose filter was
// refused, and a port's entries in the shared sets (stateless ports and addresses, known devices).
// Pure: each returns the operations of one change; the backend puts them in its transaction.
import type { PortFilter } from '../dataplane.js';
import { isUntracked, sourceMacs, untrackedAddresses } from '../policy.js';
import { BRIDGE, INET } from './names.js';
import type { ElemKey, NftFamily, Op, Verdict } from '../../addon/nftables.js';
import { markOf } from './render.js';
import { at, dropsUnknown, type Layout } from './tables.js';

/** One element of a verdict map of ours. */
export interface MapElem {
  family: NftFamily;
  set: string;
  key: ElemKey;
  verdict: Verdict;
}

/** The keys a filtered port is dispatched by, and the chains they lead to. */
export function dispatchElems(l: Layout, f: Pick<PortFilter, 'portId' | 'device'>, id: number | undefined): MapElem[] {
  const n = l.names;
  if (l.mode === 'routed') {
    return [
      { family: 'inet', set: INET.fromPort, key: f.device, verdict: { jump: n.egressChain(f.portId) } },
      { family: 'inet', set: INET.toPort, key: f.device, verdict: { jump: n.ingressChain(f.portId) } },
    ];
  }
  return [
    { family: 'inet', set: INET.fromPort, key: markOf(id!), verdict: { jump: n.egressChain(f.portId) } },
    { family: 'inet', set: INET.toPort, key: markOf(id!), verdict: { jump: n.ingressChain(f.portId) } },
    { family: 'bridge', set: BRIDGE.fromDev, key: f.device, verdict: { jump: n.fromDevChain(f.portId) } },
    { family: 'bridge', set: BRIDGE.toDev, key: f.device, verdict: { jump: n.toDevChain(f.portId) } },
  ];
}

/** Map elements that drop everything of a device (a new port whose filter was refused). */
export function dropElems(l: Layout, device: string): MapElem[] {
  return l.mode === 'routed'
    ? [
        { family: 'inet', set: INET.fromPort, key: device, verdict: 'drop' },
        { family: 'inet', set: INET.toPort, key: device, verdict: 'drop' },
      ]
    : [
        { family: 'bridge', set: BRIDGE.fromDev, key: device, verdict: 'drop' },
        { family: 'bridge', set: BRIDGE.toDev, key: device, verdict: 'drop' },
      ];
}

/** Operations removing the elements `del` and adding `add`. */
export function elemOps(l: Layout, add: MapElem[], del: MapElem[]): Op[] {
  const ops: Op[] = [];
  for (const e of del) ops.push({ op: 'elems', ...at(l, e.family), set: e.set, del: [e.key] });
  for (const e of add) ops.push({ op: 'elems', ...at(l, e.family), set: e.set, add: [{ key: e.key, verdict: e.verdict }] });
  return ops;
}

/** How the stateless-MAC set changes when one port's MACs there go from `before` to `after`: a MAC
 *  two ports share is added with the first and removed with the last (ports.ts counts them). */
export type MacChange = (before: readonly string[], after: readonly string[]) => { add: string[]; del: string[] };

/** Operations making a stateless port's traffic untracked (or no longer), from `had` to `now`. */
export function statelessOps(
  l: Layout,
  had: PortFilter | undefined,
  hadId: number | undefined,
  now: PortFilter | undefined,
  nowId: number | undefined,
  macChange: MacChange,
): Op[] {
  const inet = at(l, 'inet');
  const key = (f: PortFilter | undefined, id: number | undefined): ElemKey | undefined =>
    !f || !isUntracked(f) ? undefined : l.mode === 'routed' ? f.device : markOf(id!);
  const [k0, k1] = [key(had, hadId), key(now, nowId)];
  const ops: Op[] = [];
  if (k0 !== k1) {
    if (k0 !== undefined) ops.push({ op: 'elems', ...inet, set: INET.statelessPort, del: [k0] });
    if (k1 !== undefined) ops.push({ op: 'elems', ...inet, set: INET.statelessPort, add: [{ key: k1 }] });
  }
  // Routed, traffic to the port is known by the device its route leaves by (tables.ts); bridged, by
  // its addresses and its MACs (the port's own and its allowed pairs').
  if (l.mode === 'bridged') {
    const [a0, a1] = [had ? untrackedAddresses(had) : { 4: [], 6: [] }, now ? untrackedAddresses(now) : { 4: [], 6: [] }];
    for (const v of [4, 6] as const) {
      const del = a0[v].filter((ip) => !a1[v].includes(ip));
      const add = a1[v].filter((ip) => !a0[v].includes(ip));
      if (del.length || add.length)
        ops.push({ op: 'members', ...inet, set: v === 4 ? INET.statelessAddr4 : INET.statelessAddr6, add, del });
    }
    const macs = (f: PortFilter | undefined) => (f && isUntracked(f) ? sourceMacs(f) : []);
    const { add, del } = macChange(macs(had), macs(now));
    if (add.length || del.length) ops.push({ op: 'elems', ...inet, set: INET.statelessMac, add: add.map((key) => ({ key })), del });
  }
  return ops;
}

/** The known-device set's change when a port comes, goes or changes its device. */
export function knownDeviceOps(l: Layout, had: string | undefined, now: string | undefined): Op[] {
  if (!dropsUnknown(l) || had === now) return [];
  const where = at(l, l.mode === 'bridged' ? 'bridge' : 'inet');
  const set = l.mode === 'bridged' ? BRIDGE.knownDev : INET.knownDev;
  const ops: Op[] = [];
  if (had !== undefined) ops.push({ op: 'elems', ...where, set, del: [had] });
  if (now !== undefined) ops.push({ op: 'elems', ...where, set, add: [{ key: now }] });
  return ops;
}
