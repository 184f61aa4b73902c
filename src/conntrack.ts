// Cutting connections through ctnetlink (the addon), never the `conntrack` tool.
import { native } from './native.js';

export interface AddressPair {
  a: string;
  b: string;
}

/** Deletes conntrack entries running between a and b of any pair (either direction); returns the count. */
export function deleteConntrackBetween(pairs: AddressPair[], netns?: string): Promise<number> {
  if (pairs.length === 0) return Promise.resolve(0);
  return native.conntrackDeleteBetween(netns ?? null, pairs);
}
