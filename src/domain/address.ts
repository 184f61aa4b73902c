// Addresses and networks: the one place they are parsed, checked and spelled. Every other module takes
// the canonical text this returns, so two spellings of one address can never be two set members, and
// what we write reads back byte-identical from the kernel's tools.
//
// Canonical text: IPv4 dotted decimal; IPv6 in the form glibc's inet_ntop prints (lower case, the first
// longest run of two or more zero words compressed, and the embedded IPv4 form for the two ranges
// inet_ntop prints that way) — which is what `ipset save` and `iptables-save` print. A network has its
// host bits cleared.

export type Family = 4 | 6;

export interface Cidr {
  family: Family;
  /** The address (host bits cleared when parsed as a network): 4 bytes or 16. */
  bytes: Uint8Array;
  prefix: number;
}

export class AddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AddressError';
  }
}

export const MAX_PREFIX: Record<Family, number> = { 4: 32, 6: 128 };
/** Longer than any address text (an IPv6 with an embedded IPv4 and a prefix is 49 characters). */
export const MAX_ADDRESS_TEXT = 64;

function parseV4(text: string, into: Uint8Array, at: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    // Decimal only, no leading zero: "010" means 8 to inet_aton and 10 to others.
    if (p.length === 0 || p.length > 3 || (p.length > 1 && p[0] === '0')) return false;
    let n = 0;
    for (let k = 0; k < p.length; k++) {
      const c = p.charCodeAt(k) - 48;
      if (c < 0 || c > 9) return false;
      n = n * 10 + c;
    }
    if (n > 255) return false;
    into[at + i] = n;
  }
  return true;
}

function parseHexWord(w: string): number {
  if (w.length === 0 || w.length > 4) return -1;
  let n = 0;
  for (let k = 0; k < w.length; k++) {
    const c = w.charCodeAt(k);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (d < 0) return -1;
    n = n * 16 + d;
  }
  return n;
}

function parseV6(text: string): Uint8Array | null {
  // No zone id ("%eth0"): it names an interface of the sender, meaningless in a set or a rule.
  const out = new Uint8Array(16);
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const words = (s: string) => (s === '' ? [] : s.split(':'));
  const head = words(halves[0]!);
  const tail = halves.length === 2 ? words(halves[1]!) : [];
  // An embedded IPv4 may only end the address.
  const all = halves.length === 2 ? tail : head;
  let v4Tail: Uint8Array | null = null;
  if (all.length && all[all.length - 1]!.includes('.')) {
    v4Tail = new Uint8Array(4);
    if (!parseV4(all.pop()!, v4Tail, 0)) return null;
  }
  const wordsNeeded = v4Tail ? 6 : 8;
  const given = head.length + tail.length;
  if (halves.length === 2 ? given > wordsNeeded - 1 : given !== wordsNeeded) return null;
  const setWord = (i: number, w: string) => {
    const n = parseHexWord(w);
    if (n < 0) return false;
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 255;
    return true;
  };
  for (let i = 0; i < head.length; i++) if (!setWord(i, head[i]!)) return null;
  for (let i = 0; i < tail.length; i++) if (!setWord(wordsNeeded - tail.length + i, tail[i]!)) return null;
  if (v4Tail) out.set(v4Tail, 12);
  return out;
}

/** Parses "address" or "address/prefix"; throws AddressError. Host bits are cleared. */
export function parseCidr(text: unknown): Cidr {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_ADDRESS_TEXT)
    throw new AddressError(`not an IP address or CIDR: ${show(text)}`);
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let family: Family;
  let bytes: Uint8Array | null;
  if (addrText.includes(':')) {
    family = 6;
    bytes = parseV6(addrText);
  } else {
    family = 4;
    bytes = new Uint8Array(4);
    if (!parseV4(addrText, bytes, 0)) bytes = null;
  }
  if (!bytes) throw new AddressError(`not an IP address or CIDR: ${show(text)}`);
  let prefix = MAX_PREFIX[family];
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    // A leading zero is refused: the ipset tool reads "/032" as octal.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > prefix) throw new AddressError(`bad prefix length in ${show(text)}`);
    prefix = Number(p);
  }
  clearHostBits(bytes, prefix);
  return { family, bytes, prefix };
}

function clearHostBits(bytes: Uint8Array, prefix: number): void {
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
}

function formatV6(b: Uint8Array): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[2 * i]! << 8) | b[2 * i + 1]!);
  // The first longest run of at least two zero words.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) best = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      out += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    // inet_ntop's embedded IPv4: ::a.b.c.d (first six words zero) and ::ffff:a.b.c.d.
    if (i === 6 && best === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      out += `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
      break;
    }
    out += w[i]!.toString(16);
    if (i < 7) out += ':';
  }
  return out;
}

export function formatAddress(c: Pick<Cidr, 'family' | 'bytes'>): string {
  return c.family === 4 ? `${c.bytes[0]}.${c.bytes[1]}.${c.bytes[2]}.${c.bytes[3]}` : formatV6(c.bytes);
}

/** Canonical text: a host without a prefix, a network as address/prefix (as `ipset save` prints). */
export function formatCidr(c: Cidr): string {
  const a = formatAddress(c);
  return c.prefix === MAX_PREFIX[c.family] ? a : `${a}/${c.prefix}`;
}

/** Always with a prefix, as `iptables-save` prints a match. */
export function formatCidrWithPrefix(c: Cidr): string {
  return `${formatAddress(c)}/${c.prefix}`;
}

export function isHost(c: Cidr): boolean {
  return c.prefix === MAX_PREFIX[c.family];
}

export function isUnspecified(c: Cidr): boolean {
  return c.bytes.every((x) => x === 0);
}

/** A network covering every address of its family (/0). */
export function isCatchAll(text: string): boolean {
  return text.endsWith('/0');
}

/** Family of an address already in canonical text (a colon alone tells). */
export function familyOf(text: string): Family {
  return text.includes(':') ? 6 : 4;
}

/** The canonical text of any accepted spelling; throws AddressError. */
export function canonicalCidr(text: unknown): string {
  return formatCidr(parseCidr(text));
}

/** Whether network `outer` contains `inner` (same family). */
export function contains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.prefix > inner.prefix) return false;
  const copy = inner.bytes.slice();
  clearHostBits(copy, outer.prefix);
  return copy.every((x, i) => x === outer.bytes[i]);
}

function show(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v.slice(0, 80)) : typeof v;
  return s;
}
