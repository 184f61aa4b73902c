// Kernel names for what the agent owns: a fixed prefix plus a stable hash of the id. User text never
// reaches a kernel name, ids that share a long prefix still get distinct names (Neutron truncated
// ids), and every name fits the kernel's limits (ipset 31 bytes, iptables chain 28).
import { createHash } from 'node:crypto';
import type { IpFamily } from '../ipset.js';

export const IPSET_NAME_MAX = 31;
export const CHAIN_NAME_MAX = 28;
const HASH_CHARS = 16; // 64 bits: no collision among any realistic number of ports or groups

export function validatePrefix(prefix: string): string {
  if (!/^[a-z][a-z0-9]{0,5}$/.test(prefix)) throw new Error(`firewall prefix must be 1-6 of [a-z0-9], starting with a letter: ${JSON.stringify(prefix)}`);
  return prefix;
}

export function idHash(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('hex').slice(0, HASH_CHARS);
}

export class KernelNames {
  /** Every apply renders every name; hashing each id once keeps that off the profile. Bounded by the
   *  ids this host has seen; cleared when it grows past what one host can hold. */
  private readonly hashes = new Map<string, string>();
  constructor(readonly prefix: string) {
    validatePrefix(prefix);
  }
  private hash(id: string): string {
    let h = this.hashes.get(id);
    if (h === undefined) {
      if (this.hashes.size >= 100_000) this.hashes.clear();
      h = idHash(id);
      this.hashes.set(id, h);
    }
    return h;
  }
  /** ipset holding the member IPs of a group for one family. */
  groupSet(groupId: string, family: IpFamily): string {
    return `${this.prefix}${family === 'inet' ? '4' : '6'}-${this.hash(groupId)}`;
  }
  /** FORWARD jumps here; it sends traffic of our ports to `portsChain`. */
  get dispatchChain(): string {
    return `${this.prefix}-dispatch`;
  }
  /** Per-port ingress/egress jumps; ends in ACCEPT for traffic no port chain dropped. */
  get portsChain(): string {
    return `${this.prefix}-ports`;
  }
  /** Terminal drop for traffic no rule admitted. */
  get fallbackChain(): string {
    return `${this.prefix}-fallback`;
  }
  ingressChain(portId: string): string {
    return `${this.prefix}-i-${this.hash(portId)}`;
  }
  egressChain(portId: string): string {
    return `${this.prefix}-o-${this.hash(portId)}`;
  }
  spoofChain(portId: string): string {
    return `${this.prefix}-s-${this.hash(portId)}`;
  }
  /** Whether a chain or set name is one of ours (for stale-object removal). */
  owns(name: string): boolean {
    return name.startsWith(`${this.prefix}-`) || new RegExp(`^${this.prefix}[46]-[0-9a-f]{${HASH_CHARS}}$`).test(name);
  }
}
