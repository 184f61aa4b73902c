// The Debian `ipset` tool as an independent oracle: what `ipset save` prints inside a namespace.
import type { Netns } from './netns.js';

export interface SavedSet {
  create: string;
  members: Set<string>;
}

export function ipsetSave(ns: Netns): Map<string, SavedSet> {
  const out = new Map<string, SavedSet>();
  for (const line of ns.exec('ipset', ['save']).split('\n')) {
    const [verb, name, ...rest] = line.trim().split(/\s+/);
    if (!verb || !name) continue;
    if (verb === 'create') out.set(name, { create: rest.join(' '), members: new Set() });
    else if (verb === 'add') out.get(name)?.members.add(rest[0]!);
  }
  return out;
}

export function membersOf(ns: Netns, name: string): string[] {
  return [...(ipsetSave(ns).get(name)?.members ?? [])].sort();
}
