// The one place where an addon error becomes one of ours. The addon rejects with a real Error whose
// `code` property is a stable code (native/src/js_error.rs) and whose `setName`, `member` and
// `errno` properties say what it concerns. The class is the calling part's: every call of the ipset
// client rejects with an IpsetError, every other part of the addon with a NativeError; the code is
// the addon's, the same in both where both can give it (INVALID_ARGUMENT, NETNS_UNAVAILABLE).

/** Every code an IpsetError can carry (the addon's ipset codes, `native.errorCodes().ipset`, and the two below). */
export const IPSET_ERROR_CODES = [
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
  'NETNS_UNAVAILABLE',
  // Not the addon's: an argument of the wrong kind, refused in JS (or by napi's conversion).
  'INVALID_ARGUMENT',
  // Not the addon's: an addon failure without a code of ours (a panic in the addon: a bug to report).
  'UNCLASSIFIED',
] as const;
/** Every code a NativeError can carry: conntrack, nf_tables, the packet log, the iptables tools, namespaces (`native.errorCodes().other`), and UNCLASSIFIED. */
export const NATIVE_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NETNS_UNAVAILABLE',
  'CONNTRACK_FAILED',
  'TOOL_SPAWN_FAILED',
  'NFTABLES_FAILED',
  'NFLOG_FAILED',
  'UNCLASSIFIED',
] as const;

export type IpsetErrorCode = (typeof IPSET_ERROR_CODES)[number];
export type NativeErrorCode = (typeof NATIVE_ERROR_CODES)[number];

const ipsetCodes: ReadonlySet<string> = new Set(IPSET_ERROR_CODES);
const nativeCodes: ReadonlySet<string> = new Set(NATIVE_ERROR_CODES);

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

/** napi's own refusal of an argument it cannot convert (`StringExpected`, `InvalidArg`, …): the caller's mistake. */
function isNapiArgumentStatus(code: string): boolean {
  return code === 'InvalidArg' || /^[A-Z][A-Za-z]*Expected$/.test(code);
}

/**
 * Our error for what the addon threw, of the class of the part that was called (`ipset`: the ipset
 * client, whose calls reject with IpsetErrors only; `native`: conntrack, nf_tables, the tools).
 */
export function fromNative(err: unknown, part: 'ipset'): IpsetError;
export function fromNative(err: unknown, part?: 'native'): NativeError;
export function fromNative(err: unknown, part: 'ipset' | 'native' = 'native'): IpsetError | NativeError {
  if (err instanceof IpsetError || err instanceof NativeError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as AddonError;
  const raw = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : String(err);
  const errno = typeof e.errno === 'number' ? e.errno : undefined;
  const known = part === 'ipset' ? ipsetCodes : nativeCodes;
  const code = known.has(raw) ? raw : isNapiArgumentStatus(raw) ? 'INVALID_ARGUMENT' : 'UNCLASSIFIED';
  if (part === 'native') return new NativeError(code as NativeErrorCode, message, errno);
  const extra: { setName?: string; member?: string; errno?: number } = {};
  if (typeof e.setName === 'string') extra.setName = e.setName;
  if (typeof e.member === 'string') extra.member = e.member;
  if (errno !== undefined) extra.errno = errno;
  return new IpsetError(code as IpsetErrorCode, message, extra);
}

/** A call into the addon whose rejection becomes our error of the part called (fromNative). */
export async function callNative<T>(f: () => Promise<T>, part: 'ipset' | 'native' = 'native'): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw part === 'ipset' ? fromNative(e, 'ipset') : fromNative(e);
  }
}
