// The one place where an addon error becomes one of ours. The addon rejects with a real Error whose
// `code` property is a stable code (native/src/js_error.rs) and whose `setName`, `member` and
// `errno` properties say what it concerns; the codes of ipset and of everything else are disjoint,
// so the code alone picks the class.

const IPSET_CODES = [
  'SET_NOT_FOUND',
  'SET_EXISTS',
  'TYPE_MISMATCH',
  'SET_IN_USE',
  'PERMISSION_DENIED',
  'INVALID_MEMBER',
  'INVALID_NAME',
  'INVALID_SPEC',
  'SET_FULL',
  'ELEMENT_EXISTS',
  'ELEMENT_MISSING',
  'PROTOCOL',
  'KERNEL',
  'CLIENT_CLOSED',
] as const;
/** Failures of the addon outside ipset: conntrack, nf_tables, the iptables tools, namespaces. */
const NATIVE_CODES = ['INVALID_ARGUMENT', 'NETNS_UNAVAILABLE', 'CONNTRACK_FAILED', 'TOOL_SPAWN_FAILED', 'NFTABLES_FAILED'] as const;

export type IpsetErrorCode = (typeof IPSET_CODES)[number];
/** `UNCLASSIFIED`: an addon error without one of our codes (napi's own argument errors, say). */
export type NativeErrorCode = (typeof NATIVE_CODES)[number] | 'UNCLASSIFIED';

const ipsetCodes: ReadonlySet<string> = new Set(IPSET_CODES);
const nativeCodes: ReadonlySet<string> = new Set(NATIVE_CODES);

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

export class NativeError extends Error {
  readonly code: NativeErrorCode;
  readonly errno?: number;
  constructor(code: NativeErrorCode, message: string, errno?: number) {
    super(message);
    this.name = 'NativeError';
    this.code = code;
    if (errno !== undefined) this.errno = errno;
  }
}

interface AddonError {
  code?: unknown;
  message?: unknown;
  setName?: unknown;
  member?: unknown;
  errno?: unknown;
}

/**
 * Our error for what the addon threw. `unclassified` says what an error without one of our codes
 * becomes (napi's own argument errors, say): an ipset call promises IpsetErrors only.
 */
export function fromNative(err: unknown, unclassified: 'ipset' | 'native' = 'native'): IpsetError | NativeError {
  if (err instanceof IpsetError || err instanceof NativeError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as AddonError;
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : String(err);
  const errno = typeof e.errno === 'number' ? e.errno : undefined;
  if (ipsetCodes.has(code)) {
    const extra: { setName?: string; member?: string; errno?: number } = {};
    if (typeof e.setName === 'string') extra.setName = e.setName;
    if (typeof e.member === 'string') extra.member = e.member;
    if (errno !== undefined) extra.errno = errno;
    return new IpsetError(code as IpsetErrorCode, message, extra);
  }
  if (nativeCodes.has(code)) return new NativeError(code as NativeErrorCode, message, errno);
  return unclassified === 'ipset' ? new IpsetError('KERNEL', message) : new NativeError('UNCLASSIFIED', message, errno);
}
