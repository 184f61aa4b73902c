// The agent needs CAP_NET_ADMIN (netlink to ipset/conntrack, iptables-restore) and CAP_NET_RAW
// (iptables matches that open raw sockets); it says at start which ones it lacks instead of failing
// later with EPERM in the middle of an apply.
import fs from 'node:fs';

export const REQUIRED_CAPABILITIES = { CAP_NET_ADMIN: 12, CAP_NET_RAW: 13 } as const;
export type CapabilityName = keyof typeof REQUIRED_CAPABILITIES;

/** Parses the effective capability mask from /proc/<pid>/status text. */
export function effectiveCapabilities(statusText: string): bigint {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(statusText);
  if (!m) throw new Error('no CapEff line in process status');
  return BigInt(`0x${m[1]}`);
}

export function missingCapabilities(mask: bigint): CapabilityName[] {
  return (Object.entries(REQUIRED_CAPABILITIES) as [CapabilityName, number][])
    .filter(([, bit]) => (mask & (1n << BigInt(bit))) === 0n)
    .map(([name]) => name);
}

export function checkOwnCapabilities(): { missing: CapabilityName[]; message?: string } {
  const missing = missingCapabilities(effectiveCapabilities(fs.readFileSync('/proc/self/status', 'utf8')));
  if (missing.length === 0) return { missing };
  return {
    missing,
    message:
      `sg-agent lacks ${missing.join(' and ')}: it cannot program ipsets, conntrack or iptables. ` +
      'Run it as root or grant the capabilities (the systemd unit in packaging/ does: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW).',
  };
}
