// What several firewall benchmarks build the same way: the default group (ingress from itself,
// egress anywhere), a bound port of it, and an nftables engine in a namespace that records every
// transaction it sends (to replay or time them alone).
import type { PortInput, SecurityGroupInput } from '../src/domain/model.js';
import type { Op } from '../src/addon/nftables.js';
import { FirewallEngine } from '../src/firewall/engine.js';
import type { NftablesDataplane } from '../src/firewall/nftables/backend.js';
import { openBackend } from '../src/firewall/select.js';

export const macOf = (p: number) => `02:00:00:00:${(p >> 8).toString(16).padStart(2, '0')}:${(p & 255).toString(16).padStart(2, '0')}`;

export const defaultGroup: SecurityGroupInput = {
  id: 'default',
  rules: [
    { id: 'i4', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'default' },
    { id: 'i6', direction: 'ingress', ethertype: 'IPv6', remoteGroupId: 'default' },
    { id: 'e4', direction: 'egress', ethertype: 'IPv4' },
    { id: 'e6', direction: 'egress', ethertype: 'IPv6' },
  ],
};

/** Port `p` of the default group on host `b`, with these addresses. */
export const benchPort = (p: number, fixedIps: string[]): PortInput => ({
  id: `p${p}`,
  host: 'b',
  device: `tap${p}`,
  mac: macOf(p),
  fixedIps,
  securityGroups: ['default'],
});

/** The nftables backend in `netns`, an engine over it that applies at once, and every transaction
 *  it sent, in order. */
export async function recordingNftEngine(
  netns: string,
  opts: { mode?: 'bridged' | 'routed' } = {},
): Promise<{ dp: NftablesDataplane; fw: FirewallEngine; recorded: Op[][] }> {
  const dp = (await openBackend('nftables', { netns, ...opts })) as NftablesDataplane;
  const recorded: Op[][] = [];
  const transact = dp.client.transact.bind(dp.client);
  dp.client.transact = (ops: Op[]) => (recorded.push(ops), transact(ops));
  return { dp, fw: new FirewallEngine(dp, { coalesceMs: 1, structureIntervalMs: 0 }), recorded };
}
