// Typed wrapper over the native ipset client for the rest of the agent. It checks what JS can get
// wrong (types) before the addon sees it, packs member lists into one buffer (MemberList), and turns
// the addon's errors into IpsetError (src/addon/errors.ts).
import { native } from './native.js';
import { callNative, IpsetError } from './errors.js';
import type { NativeIpset, JsSetSpec } from '../../native/index.js';

export { IpsetError } from './errors.js';
export type { IpsetErrorCode } from './errors.js';

export type IpFamily = 'inet' | 'inet6';
export type SetType = 'hash:ip' | 'hash:net';

export interface SetSpec {
  type: SetType;
  family: IpFamily;
  hashsize?: number;
  maxelem?: number;
  /** Default timeout (seconds) for entries; 0 or absent means entries never expire. */
  timeout?: number;
  comment?: boolean;
}

export interface SetHeader {
  name: string;
  type: string;
  family: IpFamily;
  revision: number;
  hashsize: number;
  maxelem: number;
  memory: number;
  references: number;
  entries: number;
}

export interface BatchResult {
  applied: number;
  failed: { member: string; code: import('./errors.js').IpsetErrorCode; message: string }[];
}

export interface SyncResult {
  created: boolean;
  added: number;
  removed: number;
  swapped: boolean;
}

export interface ReconcileResult {
  added: number;
  removed: number;
  repaired: boolean;
}

function call<T>(p: () => Promise<T>): Promise<T> {
  return callNative(p, 'ipset');
}

function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

// The packed form (native/core/src/ipset/packed.rs): canonical dotted quads as 5 or 6 bytes, any
// other text as a length-prefixed record that the addon parses. Only the addon decides what a valid
// member is; this fast path takes only spellings it reads the same way.
const REC_TEXT = 0x00;
const REC_V4_HOST = 0x04;
const REC_V4_NET = 0x05;
/** Longest member text (as the addon's rule); longer ones are refused here, as they cannot be packed. */
const MAX_MEMBER_TEXT = 64;

/** Writes `s` as a binary IPv4 record at `at` if it is a canonical `a.b.c.d` or `a.b.c.d/p`; returns the bytes written, 0 if not. */
function packV4(s: string, buf: Buffer, at: number): number {
  const n = s.length;
  if (n < 7 || n > 18) return 0;
  // Octets go straight to their place in a host record (at+1..at+4); a network record puts the
  // prefix first and shifts them by one at the end.
  let part = 0;
  let value = 0;
  let digits = 0;
  let i = 0;
  for (; i < n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c >= 0 && c <= 9) {
      if (digits === 1 && value === 0) return 0; // leading zero
      value = value * 10 + c;
      if (++digits > 3 || value > 255) return 0;
    } else if (c === -2) {
      // '.'
      if (digits === 0 || part === 3) return 0;
      buf[at + 1 + part++] = value;
      value = 0;
      digits = 0;
    } else if (c === -1) {
      // '/'
      break;
    } else {
      return 0;
    }
  }
  if (digits === 0 || part !== 3) return 0;
  if (i === n) {
    buf[at] = REC_V4_HOST;
    buf[at + 4] = value;
    return 5;
  }
  let prefix = 0;
  let pdigits = 0;
  for (i++; i < n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9 || (pdigits === 1 && prefix === 0) || ++pdigits > 2) return 0;
    prefix = prefix * 10 + c;
  }
  if (pdigits === 0) return 0;
  buf[at + 5] = value;
  buf[at + 4] = buf[at + 3]!;
  buf[at + 3] = buf[at + 2]!;
  buf[at + 2] = buf[at + 1]!;
  buf[at] = REC_V4_NET;
  buf[at + 1] = prefix;
  return 6;
}

function pack(members: Iterable<unknown>, setName?: string): { packed: Buffer; size: number } {
  const where = setName === undefined ? {} : { setName };
  const list = Array.isArray(members) ? (members as unknown[]) : [...members];
  let buf = Buffer.allocUnsafe(list.length * 6 + 256);
  let at = 0;
  for (let k = 0; k < list.length; k++) {
    const m = list[k];
    if (typeof m !== 'string') {
      throw new IpsetError('INVALID_MEMBER', `members must be strings, got ${m === null ? 'null' : typeof m}`, {
        ...where,
        member: String(m),
      });
    }
    if (m.length === 0 || m.length > MAX_MEMBER_TEXT)
      throw new IpsetError('INVALID_MEMBER', 'not an IP address or CIDR', { ...where, member: m });
    // Room for the largest record: a text of 64 UTF-16 units is at most 192 UTF-8 bytes.
    if (at + 2 + 3 * MAX_MEMBER_TEXT > buf.length) {
      const grown = Buffer.allocUnsafe(buf.length * 2);
      buf.copy(grown, 0, 0, at);
      buf = grown;
    }
    const n = packV4(m, buf, at);
    if (n > 0) {
      at += n;
      continue;
    }
    const len = buf.write(m, at + 2, 'utf8');
    buf[at] = REC_TEXT;
    buf[at + 1] = len;
    at += 2 + len;
  }
  return { packed: buf.subarray(0, at), size: list.length };
}

const PACKED = new WeakMap<MemberList, Buffer>();

/**
 * A member list packed once for the addon. `syncSet`, `add` and `del` take a plain string array too
 * and pack it on each call; a caller that syncs the same list more than once, or keeps lists between
 * full syncs, packs it here once, and the sync then costs one pass in Rust plus the change.
 */
export class MemberList {
  /** Number of entries, duplicates included. */
  readonly size: number;
  private constructor(packed: Buffer, size: number) {
    this.size = size;
    PACKED.set(this, packed);
  }
  /**
   * Packs `members` (strings: addresses or CIDRs). Not an iterable (or a bare string) is refused with
   * INVALID_ARGUMENT, an entry that is not a member with INVALID_MEMBER.
   */
  static from(members: Iterable<string>): MemberList {
    const m = members as unknown;
    const iterable = typeof m === 'object' && m !== null && typeof (m as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function';
    if (!iterable) throw new IpsetError('INVALID_ARGUMENT', `members must be an iterable of strings (an array, a Set), not ${kindOf(m)}`);
    const { packed, size } = pack(members);
    return new MemberList(packed, size);
  }
}

/** The packed bytes of a list (for src/internal/ and tests, not part of the package's API). */
export function packedMemberList(list: MemberList): Buffer {
  return PACKED.get(list)!;
}

function packedArg(setName: string, members: unknown): Buffer {
  if (members instanceof MemberList) return PACKED.get(members)!;
  if (!Array.isArray(members)) {
    throw new IpsetError('INVALID_ARGUMENT', `members must be an array of strings or a MemberList, not ${kindOf(members)}`, { setName });
  }
  return pack(members, setName).packed;
}

function checkName(name: unknown): string {
  if (typeof name !== 'string') throw new IpsetError('INVALID_NAME', 'set name must be a string');
  return name;
}

function checkSpec(setName: string, spec: unknown): JsSetSpec {
  if (typeof spec !== 'object' || spec === null) throw new IpsetError('INVALID_SPEC', 'spec must be an object', { setName });
  const s = spec as Record<string, unknown>;
  const out: JsSetSpec = { type: String(s.type), family: String(s.family) };
  for (const k of ['hashsize', 'maxelem', 'timeout'] as const) {
    const v = s[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new IpsetError('INVALID_SPEC', `${k} must be an unsigned 32-bit integer`, { setName });
    }
    out[k] = v;
  }
  if (s.comment !== undefined) out.comment = Boolean(s.comment);
  return out;
}

function splitMembers(joined: string): string[] {
  return joined === '' ? [] : joined.split('\n');
}

/**
 * The temp set a replace of `name` builds beside it (`<name>.t`, or a hashed form for long names).
 * A sync destroys only its own temp set; one left by a crash stays until the next replace of the same
 * set, so the set's owner can recognise it with this function and remove it with `destroy`.
 */
export function tempSetName(name: string): string {
  return native.ipsetTempName(checkName(name));
}

const handles = new WeakMap<IpsetClient, NativeIpset>();

/** The addon's handle behind a client (for src/internal/, not part of the package's API). */
export function nativeHandle(client: IpsetClient): NativeIpset {
  return handles.get(client)!;
}

export class IpsetClient {
  private constructor(private readonly inner: NativeIpset) {
    handles.set(this, inner);
  }

  /**
   * Opens a client. `netns`: a namespace path ('/var/run/netns/X', '/proc/PID/ns/net'); default: ours.
   * Opening changes nothing in the kernel. A path that is not a network namespace (missing, or another
   * kind of file) rejects with NETNS_UNAVAILABLE, options of the wrong kind with INVALID_ARGUMENT.
   */
  static async open(opts: { netns?: string } = {}): Promise<IpsetClient> {
    if (typeof opts !== 'object' || opts === null)
      throw new IpsetError('INVALID_ARGUMENT', `options must be an object, not ${kindOf(opts)}`);
    const { netns } = opts as { netns?: unknown };
    if (netns !== undefined && typeof netns !== 'string') {
      throw new IpsetError('INVALID_ARGUMENT', `netns must be a namespace path (a string), not ${kindOf(netns)}`);
    }
    return new IpsetClient(await call(() => native.NativeIpset.open(netns ?? null)));
  }

  /** The kernel ipset protocol in use (7, or 6 on older kernels). */
  get protocol(): number {
    return this.inner.protocol;
  }

  async create(name: string, spec: SetSpec, opts: { exist?: boolean } = {}): Promise<void> {
    const n = checkName(name);
    const s = checkSpec(n, spec);
    return call(() => this.inner.create(n, s, opts.exist ?? false));
  }
  async destroy(name: string): Promise<void> {
    const n = checkName(name);
    return call(() => this.inner.destroy(n));
  }
  async flush(name: string): Promise<void> {
    const n = checkName(name);
    return call(() => this.inner.flush(n));
  }
  async rename(from: string, to: string): Promise<void> {
    const [a, b] = [checkName(from), checkName(to)];
    return call(() => this.inner.rename(a, b));
  }
  async swap(a: string, b: string): Promise<void> {
    const [x, y] = [checkName(a), checkName(b)];
    return call(() => this.inner.swap(x, y));
  }
  async listNames(): Promise<string[]> {
    return call(() => this.inner.listNames());
  }
  async header(name: string): Promise<SetHeader> {
    const n = checkName(name);
    const h = await call(() => this.inner.header(n));
    return { ...h, family: h.family as IpFamily, entries: h.entries ?? 0 };
  }
  /** The set's header and members. A set whose contents are not a member list (another type, a netmask, a nomatch entry) is refused with TYPE_MISMATCH. */
  async readSet(name: string): Promise<{ header: SetHeader; members: string[] }> {
    const n = checkName(name);
    const r = await call(() => this.inner.readSet(n));
    return {
      header: { ...r.header, family: r.header.family as IpFamily, entries: r.header.entries ?? 0 },
      members: splitMembers(r.members),
    };
  }
  async add(name: string, members: readonly string[] | MemberList, opts: { exist?: boolean } = {}): Promise<BatchResult> {
    const n = checkName(name);
    const packed = packedArg(n, members);
    return (await call(() => this.inner.add(n, packed, opts.exist ?? false))) as BatchResult;
  }
  async del(name: string, members: readonly string[] | MemberList, opts: { exist?: boolean } = {}): Promise<BatchResult> {
    const n = checkName(name);
    const packed = packedArg(n, members);
    return (await call(() => this.inner.del(n, packed, opts.exist ?? false))) as BatchResult;
  }
  async test(name: string, member: string): Promise<boolean> {
    const n = checkName(name);
    pack([member], n);
    return call(() => this.inner.test(n, member));
  }
  /**
   * Makes the set hold exactly `members`, creating it, changing it in place, or swapping in a new one;
   * or, when anything fails, leaves it (and this client's view of it) as it was and says which member.
   */
  async syncSet(name: string, spec: SetSpec, members: readonly string[] | MemberList): Promise<SyncResult> {
    const n = checkName(name);
    const s = checkSpec(n, spec);
    const packed = packedArg(n, members);
    return call(() => this.inner.syncSet(n, s, packed));
  }
  /** Re-reads the kernel and repairs the set to what this client last made it hold. */
  async reconcile(name: string): Promise<ReconcileResult> {
    const n = checkName(name);
    return call(() => this.inner.reconcile(n));
  }
  /** Closes the socket once calls already made are done; later calls fail with CLIENT_CLOSED. */
  async close(): Promise<void> {
    return call(() => this.inner.close());
  }
}
