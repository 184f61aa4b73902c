// Cutting connections through ctnetlink (the addon), never the `conntrack` tool.
import { native } from './native.js';
import { callNative } from './errors.js';
import { batchReader } from './listener.js';

export interface AddressPair {
  a: string;
  b: string;
  /** Only entries tracked in this conntrack zone (0 is the default zone); unset: any zone. */
  zone?: number;
}

/** A device of the namespace: its index, its name, its kind (`bridge`, `veth`…; unset for a physical
 *  device) and its bridge's index (if it is in one). */
export interface Link {
  index: number;
  name: string;
  kind?: string;
  master?: number;
}

/**
 * Deletes conntrack entries running between a and b of any pair (either direction); returns the count.
 * Fails with a NativeError: INVALID_ARGUMENT (not a same-family pair, not a zone), NETNS_UNAVAILABLE,
 * CONNTRACK_FAILED.
 */
export async function deleteConntrackBetween(pairs: AddressPair[], netns?: string): Promise<number> {
  if (pairs.length === 0) return 0;
  return callNative(() =>
    native.conntrackDeleteBetween(
      netns ?? null,
      pairs.map(({ a, b, zone }) => (zone === undefined ? { a, b } : { a, b, zone })),
    ),
  );
}

/** Every device of the namespace (an rtnetlink dump): which bridge a port's device is in. */
export async function listLinks(netns?: string): Promise<Link[]> {
  return callNative(() => native.conntrackLinks(netns ?? null));
}

type LinkWatchHandle = Awaited<ReturnType<typeof native.NativeLinkWatch.start>>;

/** Devices of a namespace made, renamed or removed, heard as the kernel tells them (RTNLGRP_LINK) on a
 *  thread of the addon's own: `onChange` once per burst of changes (also when notifications were
 *  lost), never with what changed (read the devices with `listLinks`). */
export class LinkWatch {
  private constructor(private readonly h: LinkWatchHandle) {}

  /** Hears devices of the rtnetlink `kinds` (`bridge`…; every device when empty). `onError` hears of
   *  the watch ending (its socket failed). Rejects with NETNS_UNAVAILABLE or CONNTRACK_FAILED. */
  static async start(
    netns: string | undefined,
    kinds: string[],
    onChange: () => void,
    onError: (message: string) => void,
  ): Promise<LinkWatch> {
    const h = await callNative(() =>
      native.NativeLinkWatch.start(
        netns ?? null,
        kinds,
        batchReader<boolean>('changed', 'device notification', () => onChange(), onError),
      ),
    );
    return new LinkWatch(h);
  }

  stop(): Promise<void> {
    return callNative(() => this.h.stop());
  }
}
