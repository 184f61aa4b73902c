// The packet an operator describes to `sg-agent explain` (pure: the command line's and the agent's query
// reading, and the packet explain judges). The real path, command line to a running agent, is in
// observe-agent.test.ts.
import test from 'ava';
import { probePacket, probeQuery, readProbe, type Probe } from '../src/agent/probe.js';

function fromArgs(args: Record<string, string | undefined>, flags: string[] = ['egress']): Probe {
  return readProbe(
    (n) => args[n],
    (n) => flags.includes(n),
  );
}

test('neighbour discovery: a target and a link-layer address, read strictly and carried through the query', (t) => {
  const args = {
    port: 'p1',
    src: 'fe80::1',
    dst: 'ff02::1',
    'icmp-type': '136',
    'nd-target': 'FE80::1',
    'nd-lladdr': 'FA:16:3E:00:00:01',
  };
  const p = fromArgs(args);
  t.like(p, { proto: 58, icmpType: 136, ndTarget: 'fe80::1', ndLinkLayer: 'fa:16:3e:00:00:01' });
  // The agent reads the query the command line sends: the same probe.
  const q = probeQuery(p);
  t.deepEqual(
    readProbe(
      (n) => q.get(n) ?? undefined,
      (n) => q.has(n),
    ),
    p,
  );
  t.like(probePacket(p, []), { icmpType: 136, ndTarget: 'fe80::1', ndLinkLayer: 'fa:16:3e:00:00:01' });
  t.like(fromArgs({ ...args, 'icmp-type': '133', 'nd-target': undefined }), {
    icmpType: 133,
    ndLinkLayer: 'fa:16:3e:00:00:01',
  });

  const refused = (over: Record<string, string | undefined>, message: RegExp) =>
    t.throws(() => fromArgs({ ...args, ...over }), { message });
  refused({ 'icmp-type': '128' }, /--nd-target needs --icmp-type 135 or 136/);
  refused({ 'icmp-type': '128', 'nd-target': undefined }, /--nd-lladdr needs --icmp-type 133, 135 or 136/);
  refused({ 'nd-target': '10.0.0.1' }, /--nd-target must be an IPv6 address/);
  refused({ 'nd-target': 'fd00::/64' }, /--nd-target must be one address/);
  refused({ 'nd-lladdr': 'fa:16:3e:00:00' }, /--nd-lladdr must be a MAC address/);
});
