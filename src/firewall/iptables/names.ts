// Kernel names of what the iptables backend owns: a fixed prefix, a kind letter and a stable hash —
// nothing else. User text never reaches a kernel name, ids sharing a long prefix still get distinct
// names (Neutron truncated ids), every name fits the kernel's limits (ipset 31 bytes, iptables chain
// 28, ebtables chain 31), and no name can be mistaken for another program's: `owns()` accepts only
// this exact shape, so start-up and `cleanup` never touch a set or chain that merely starts like ours.
import { createHash } from 'node:crypto';
import type { Family } from '../../domain/address.js';

export const IPSET_NAME_MAX = 31;
export const CHAIN_NAME_MAX = 28;
const HASH_CHARS = 16; // 64 bits: no collision among any realistic number of ports or groups

export function validatePrefix(prefix: string): string {
  if (!/^[a-z][a-z0-9]{0,5}$/.test(prefix))
    throw new Error(`firewall prefix must be 1-6 of [a-z0-9], starting with a letter: ${JSON.stringify(prefix)}`);
  return prefix;
}

export function idHash(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('hex').slice(0, HASH_CHARS);
}

/** `idHash` remembered per id. Every plan renders the names of the ports it touches; hashing each id
 *  once keeps that off the profile. Bounded by the ids a host has seen; cleared when it grows past
 *  what a host holds. */
export class IdHashes {
  private readonly hashes = new Map<string, string>();
  of(id: string): string {
    let h = this.hashes.get(id);
    if (h === undefined) {
      if (this.hashes.size >= 100_000) this.hashes.clear();
      h = idHash(id);
      this.hashes.set(id, h);
    }
    return h;
  }
}

/** The prefix of a port's logging rules, which is how the log reader tells whose packet it got and
 *  why: the firewall prefix, A (an accepted connection) or D (a drop), and the port id's hash. */
export function logPrefix(prefix: string, event: 'ACCEPT' | 'DROP', portHash: string): string {
  return `${prefix}:${event === 'ACCEPT' ? 'A' : 'D'}:${portHash}`;
}

/** What a logged packet's prefix says, if it is one of ours (of `prefix`). */
export function readLogPrefix(prefix: string, text: string): { event: 'ACCEPT' | 'DROP'; portHash: string } | undefined {
  const m = /^([a-z0-9]+):([AD]):([0-9a-f]{16})$/.exec(text);
  if (!m || m[1] !== prefix) return undefined;
  return { event: m[2] === 'A' ? 'ACCEPT' : 'DROP', portHash: m[3]! };
}

/** Kind letters of chains: per port i (ingress), o (egress), s (anti-spoofing), a (ARP), m (source
 *  MACs); shared d (FORWARD dispatch), p (port jumps), f (fallback drop), n (INPUT dispatch), r (raw:
 *  no tracking), b (ebtables ARP dispatch), e (ebtables source-MAC dispatch). */
type ChainKind = 'i' | 'o' | 's' | 'a' | 'm' | 'd' | 'p' | 'f' | 'n' | 'r' | 'b' | 'e';

export class KernelNames {
  private readonly hashes = new IdHashes();
  private readonly ownRe: RegExp;
  constructor(readonly prefix: string) {
    validatePrefix(prefix);
    this.ownRe = new RegExp(`^(${prefix}-[iosamdpfnrbe]-[0-9a-f]{${HASH_CHARS}}|${prefix}[46]-[0-9a-f]{${HASH_CHARS}}(\\.t)?)$`);
  }
  private hash(id: string): string {
    return this.hashes.of(id);
  }
  private chain(kind: ChainKind, id: string): string {
    return `${this.prefix}-${kind}-${this.hash(id)}`;
  }
  /** A shared chain's name: hash-shaped like the rest, from the prefix and its role. */
  private shared(kind: ChainKind): string {
    return this.chain(kind, `${this.prefix}:${kind}`);
  }
  /** ipset holding the member addresses of a group for one family. */
  groupSet(groupId: string, family: Family | 'inet' | 'inet6'): string {
    const four = family === 4 || family === 'inet';
    return `${this.prefix}${four ? '4' : '6'}-${this.hash(groupId)}`;
  }
  /** FORWARD jumps here; it sends traffic of our ports to `portsChain`. */
  get dispatchChain(): string {
    return this.shared('d');
  }
  /** Per-port ingress/egress jumps; ends in ACCEPT for traffic no port chain dropped. */
  get portsChain(): string {
    return this.shared('p');
  }
  /** Terminal drop for traffic no rule admitted. */
  get fallbackChain(): string {
    return this.shared('f');
  }
  /** INPUT jumps here: traffic from a VM to the host itself goes through the port's egress chain. */
  get inputChain(): string {
    return this.shared('n');
  }
  /** raw PREROUTING jumps here: traffic of ports whose groups are all stateless is not tracked. */
  get rawChain(): string {
    return this.shared('r');
  }
  /** ebtables FORWARD and INPUT jump here: ARP from our ports goes to the port's ARP chain. */
  get arpDispatchChain(): string {
    return this.shared('b');
  }
  /** ebtables nat PREROUTING jumps here: a frame from one of our ports goes to the port's MAC chain,
   *  before the bridge learns where its source MAC is. */
  get macDispatchChain(): string {
    return this.shared('e');
  }
  ingressChain(portId: string): string {
    return this.chain('i', portId);
  }
  egressChain(portId: string): string {
    return this.chain('o', portId);
  }
  spoofChain(portId: string): string {
    return this.chain('s', portId);
  }
  arpChain(portId: string): string {
    return this.chain('a', portId);
  }
  macChain(portId: string): string {
    return this.chain('m', portId);
  }
  /** The prefix of the port's logging rules. */
  logPrefix(portId: string, event: 'ACCEPT' | 'DROP'): string {
    return logPrefix(this.prefix, event, this.hash(portId));
  }
  /** Whether a chain or set name is one of ours: exactly the shapes above, nothing else. */
  owns(name: string): boolean {
    return this.ownRe.test(name);
  }
}
