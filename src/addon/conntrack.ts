// Cutting connections through ctnetlink (the addon), never the `conntrack` tool.
import { native } from './native.js';
import { fromNative } from './errors.js';

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
  try {
    return await native.conntrackDeleteBetween(
      netns ?? null,
      pairs.map(({ a, b, zone }) => (zone === undefined ? { a, b } : { a, b, zone })),
    );
  } catch (e) {
    throw fromNative(e);
  }
}

/** Every device of the namespace (an rtnetlink dump): which bridge a port's device is in. */
export async function listLinks(netns?: string): Promise<Link[]> {
  try {
    return await native.conntrackLinks(netns ?? null);
  } catch (e) {
    throw fromNative(e);
  }
}
