// Cutting connections through ctnetlink (the addon), never the `conntrack` tool.
import { native } from './native.js';
import { fromNative } from './errors.js';

export interface AddressPair {
  a: string;
  b: string;
}

/**
 * Deletes conntrack entries running between a and b of any pair (either direction); returns the count.
 * Fails with a NativeError: INVALID_ARGUMENT (not a same-family pair), NETNS_UNAVAILABLE, CONNTRACK_FAILED.
 */
export async function deleteConntrackBetween(pairs: AddressPair[], netns?: string): Promise<number> {
  if (pairs.length === 0) return 0;
  try {
    return await native.conntrackDeleteBetween(netns ?? null, pairs);
  } catch (e) {
    throw fromNative(e);
  }
}
