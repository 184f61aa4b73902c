// Typed wrapper over the native ipset client for the rest of the agent. It validates what JS can get
// wrong (types, separators) before the addon sees it, and turns the addon's errors into IpsetError.
import { native } from './native.js';
import type { NativeIpset, JsSetSpec } from '../native/index.js';

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
  failed: { member: string; code: IpsetErrorCode; message: string }[];
}

export interface SyncResult {
  created: boolean;
  added: number;
  removed: number;
  swapped: boolean;
  nanos: number;
}

export interface ReconcileResult {
  added: number;
  removed: number;
  repaired: boolean;
}

export type IpsetErrorCode =
  | 'SET_NOT_FOUND'
  | 'SET_EXISTS'
  | 'TYPE_MISMATCH'
  | 'SET_IN_USE'
  | 'PERMISSION_DENIED'
  | 'INVALID_MEMBER'
  | 'INVALID_NAME'
  | 'INVALID_SPEC'
  | 'SET_FULL'
  | 'ELEMENT_EXISTS'
  | 'ELEMENT_MISSING'
  | 'PROTOCOL'
  | 'KERNEL';

export class IpsetError extends Error {
  readonly code: IpsetErrorCode;
  readonly setName?: string;
  readonly member?: string;
  readonly errno?: number;
  constructor(code: IpsetErrorCode, message: string, extra: { setName?: string; member?: string; errno?: number } = {}) {
    const where = [extra.setName && `set ${extra.setName}`, extra.member !== undefined && `element ${JSON.stringify(extra.member)}`]
      .filter(Boolean)
      .join(', ');
    super(where ? `${message} (${where})` : message);
    this.name = 'IpsetError';
    this.code = code;
    if (extra.setName !== undefined) this.setName = extra.setName;
    if (extra.member !== undefined) this.member = extra.member;
    if (extra.errno !== undefined) this.errno = extra.errno;
  }
}

function fromNative(err: unknown): IpsetError {
  if (err instanceof IpsetError) return err;
  const text = err instanceof Error ? err.message : String(err);
  try {
    const j = JSON.parse(text) as { code: IpsetErrorCode; message: string; set?: string; member?: string; errno?: number };
    if (typeof j.code === 'string') {
      const extra: { setName?: string; member?: string; errno?: number } = {};
      if (j.set !== undefined) extra.setName = j.set;
      if (j.member !== undefined) extra.member = j.member;
      if (j.errno !== undefined) extra.errno = j.errno;
      return new IpsetError(j.code, j.message, extra);
    }
  } catch {
    // not one of ours: fall through
  }
  return new IpsetError('KERNEL', text);
}

async function call<T>(p: () => Promise<T>): Promise<T> {
  try {
    return await p();
  } catch (e) {
    throw fromNative(e);
  }
}

const MAX_MEMBER_TEXT = 64;

/** Checks the JS-side shape of a member list and joins it for the addon (one string crosses, not N). */
function joinMembers(setName: string, members: unknown): string {
  if (!Array.isArray(members)) throw new IpsetError('INVALID_MEMBER', 'members must be an array of strings', { setName });
  for (const m of members) {
    if (typeof m !== 'string') {
      throw new IpsetError('INVALID_MEMBER', `members must be strings, got ${m === null ? 'null' : typeof m}`, { setName, member: String(m) });
    }
    // The addon splits on newlines; anything else invalid is refused there, with the same code.
    if (m.length === 0 || m.length > MAX_MEMBER_TEXT || m.includes('\n')) {
      throw new IpsetError('INVALID_MEMBER', 'not an IP address or CIDR', { setName, member: m });
    }
  }
  return members.join('\n');
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

export class IpsetClient {
  private constructor(private readonly inner: NativeIpset) {}

  /** Opens a client. `netns`: a namespace path ('/var/run/netns/X', '/proc/PID/ns/net'); default: ours. */
  static async open(opts: { netns?: string } = {}): Promise<IpsetClient> {
    return new IpsetClient(await call(() => native.NativeIpset.open(opts.netns ?? null)));
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
  async readSet(name: string): Promise<{ header: SetHeader; members: string[] }> {
    const n = checkName(name);
    const r = await call(() => this.inner.readSet(n));
    return { header: { ...r.header, family: r.header.family as IpFamily, entries: r.header.entries ?? 0 }, members: splitMembers(r.members) };
  }
  async add(name: string, members: string[], opts: { exist?: boolean } = {}): Promise<BatchResult> {
    const n = checkName(name);
    const joined = joinMembers(n, members);
    return (await call(() => this.inner.add(n, joined, opts.exist ?? false))) as BatchResult;
  }
  async del(name: string, members: string[], opts: { exist?: boolean } = {}): Promise<BatchResult> {
    const n = checkName(name);
    const joined = joinMembers(n, members);
    return (await call(() => this.inner.del(n, joined, opts.exist ?? false))) as BatchResult;
  }
  async test(name: string, member: string): Promise<boolean> {
    const n = checkName(name);
    joinMembers(n, [member]);
    return call(() => this.inner.test(n, member));
  }
  /** Makes the set hold exactly `members`, creating it, changing it in place, or swapping in a new one. */
  async syncSet(name: string, spec: SetSpec, members: string[], opts: { strategy?: 'auto' | 'inplace' | 'swap' } = {}): Promise<SyncResult> {
    const n = checkName(name);
    const s = checkSpec(n, spec);
    const joined = joinMembers(n, members);
    return call(() => this.inner.syncSet(n, s, joined, opts.strategy ?? null));
  }
  /** Re-reads the kernel and repairs the set to what this client last made it hold. */
  async reconcile(name: string): Promise<ReconcileResult> {
    const n = checkName(name);
    return call(() => this.inner.reconcile(n));
  }
  /** Releases the socket when the last reference goes (the addon closes it on collection). */
  close(): void {
    // The native handle owns the socket; dropping our reference lets GC close it. Nothing to flush.
  }
}

/** For the native.diff100k benchmark: the pure Rust diff of two lists, timed inside Rust. */
export function measureDiff(current: string[], desired: string[]): Promise<{ add: number; del: number; nanos: number }> {
  return call(() => native.measureDiff(current.join('\n'), desired.join('\n')));
}
