// Conntrack zones per bridge (`firewall.conntrackZoneBridges`): what enters a bridge named by one of
// the prefixes is tracked in the zone numbered like the bridge's device index, so that networks with
// overlapping addresses on one host (separate bridges) no longer share one connection table. One
// zone per bridge, not per port or group: both ends of every flow through a bridge (a port, another
// port, the uplink) must look up the same table. The number is the kernel's, so nothing is
// allocated, kept or recovered across restarts, and both backends number a bridge alike (a switch
// keeps every connection's zone); indexes above 65,535 wrap (a zone is 16 bits), and two bridges may
// then share one, as all do without zones. Only Linux bridges are zoned (ZONED_KIND). Each backend
// writes the rule its own way (nftables: `iifkind "bridge" iifname "PREFIX*" ct zone set iif`;
// iptables: `-i BRIDGE -j CT --zone N` per bridge present); the numbering and the scoping of cuts
// are here.
import { listLinks, type AddressPair as ConntrackPair, type Link } from '../addon/conntrack.js';
import type { AddressPair } from './cuts.js';

/** The kind of device that is zoned: a Linux bridge. An Open vSwitch bridge's internal port (`br-ex`,
 *  often holding the host's own address) matches a prefix as wide as `br` but is not one: the host's
 *  own traffic through it would leave in the zone 0 and come back in another. */
export const ZONED_KIND = 'bridge';

/** Whether a device's traffic is zoned: a Linux bridge whose name starts with one of the prefixes. */
export function isZonedBridge(prefixes: readonly string[], dev: Pick<Link, 'name' | 'kind'>): boolean {
  return dev.kind === ZONED_KIND && prefixes.some((p) => dev.name.startsWith(p));
}

/** The zone of what enters `bridge`: its index's low 16 bits if it is zoned, else the default zone 0. */
export function zoneOf(prefixes: readonly string[], bridge: Pick<Link, 'index' | 'name' | 'kind'>): number {
  return isZonedBridge(prefixes, bridge) ? bridge.index & 0xffff : 0;
}

/** A device name as a rule may carry it: a name may hold almost any byte (`+` is iptables' wildcard,
 *  a leading `-` an option), and the prefixes are of these characters only (src/agent/config.ts). */
const PLAIN_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** The zoned bridges among the namespace's devices, each with its zone, in index order. */
export function bridgeZones(prefixes: readonly string[], links: readonly Link[]): { bridge: string; zone: number }[] {
  return links
    .filter((l) => isZonedBridge(prefixes, l) && PLAIN_NAME.test(l.name))
    .sort((a, b) => a.index - b.index)
    .map((l) => ({ bridge: l.name, zone: zoneOf(prefixes, l) }));
}

/** Cuts scoped to the zone of each port's bridge, so that a change in one network does not end the
 *  connections of another that uses the same addresses. A device that is not there (unplugged, or
 *  not yet) has no bridge to tell its zone: its cuts stay in every zone, as without zones, erring
 *  toward ending a connection rather than leaving one its rules no longer admit. Without zones, every
 *  cut is in every zone. */
export async function cutsInZones(pairs: AddressPair[], prefixes: readonly string[], netns?: string): Promise<ConntrackPair[]> {
  if (prefixes.length === 0) return pairs.map(({ a, b }) => ({ a, b }));
  const links = await listLinks(netns);
  const byName = new Map(links.map((l) => [l.name, l]));
  const byIndex = new Map(links.map((l) => [l.index, l]));
  return pairs.map(({ a, b, device }) => {
    const dev = byName.get(device);
    const bridge = dev?.master === undefined ? undefined : byIndex.get(dev.master);
    if (!dev) return { a, b };
    if (!bridge) return { a, b, zone: 0 };
    // A name no iptables rule may carry is zoned by nftables' prefix rule and not by iptables: every zone.
    if (isZonedBridge(prefixes, bridge) && !PLAIN_NAME.test(bridge.name)) return { a, b };
    return { a, b, zone: zoneOf(prefixes, bridge) };
  });
}
