// The Debian `ipset` tool as an independent oracle: what `ipset save` prints inside a namespace; and
// the setup every ipset test file shares.
import type { ExecutionContext } from 'ava';
import { IpsetClient, IpsetError } from '../../src/addon/ipset.js';
import { Netns } from './netns.js';

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

/** A fresh namespace and a client in it, both gone when the test ends (a kernelTest's, test/helpers/gate.ts). */
export async function clientInFreshNetns(t: ExecutionContext, prefix: string): Promise<{ ns: Netns; c: IpsetClient }> {
  const ns = Netns.create(prefix);
  t.teardown(() => ns.destroy());
  const c = await IpsetClient.open({ netns: ns.path });
  t.teardown(() => c.close());
  return { ns, c };
}

/** Asserts that `p` rejects with an IpsetError of `code`, and returns the error. */
export async function rejectsWith(t: ExecutionContext, p: Promise<unknown>, code: string): Promise<IpsetError> {
  const e = await t.throwsAsync(p, { instanceOf: IpsetError });
  t.is<string | undefined, string>(e?.code, code, e?.message);
  return e;
}
