// Hooks for benchmarks and tests only (bench/native.ts, test/). Not part of the package's API: src/index.ts does
// not export this module, and test/exports.test.ts checks that it stays so.
import { native } from '../addon/native.js';
import { fromNative } from '../addon/errors.js';
import { nativeHandle, packedMemberList, type IpsetClient, type MemberList, type SetSpec, type SyncResult } from '../addon/ipset.js';

/** One full-sync diff pass in Rust (decode a packed desired list, diff it against a kept set), timed inside Rust. */
export async function measureDiff(current: MemberList, desired: MemberList): Promise<{ add: number; del: number; nanos: number }> {
  try {
    return await native.measureDiff(packedMemberList(current), packedMemberList(desired));
  } catch (e) {
    throw fromNative(e, 'ipset');
  }
}

/** `syncSet` with the in-place/swap choice forced, to measure where the threshold lies. */
export async function syncSetForced(
  client: IpsetClient,
  name: string,
  spec: SetSpec,
  members: MemberList,
  strategy: 'inplace' | 'swap',
): Promise<SyncResult> {
  try {
    return await nativeHandle(client).syncSetForced(name, spec, packedMemberList(members), strategy);
  } catch (e) {
    throw fromNative(e, 'ipset');
  }
}

/** Bytes a client has sent to the kernel: lets a test bound what a batch costs on the wire. */
export async function bytesSent(client: IpsetClient): Promise<number> {
  return nativeHandle(client).bytesSent();
}
