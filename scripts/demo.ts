// The README's main job: a local end-to-end run of what sg-agent enforces today. Two throwaway
// namespaces joined by a veth pair; in "vm-b" an iptables rule admits ICMP only from members of an
// ipset, and the set is managed through the native addon. Membership changes open and close traffic
// without touching a single iptables rule. Everything is removed at the end.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { IpsetClient } from '../src/ipset.js';

const tag = randomBytes(2).toString('hex');
const A = `sgdemo-a-${tag}`;
const B = `sgdemo-b-${tag}`;
const sh = (args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
const inNs = (ns: string, cmd: string, args: string[]) => execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' });
const ping = (from: string, to: string) =>
  spawnSync('ip', ['netns', 'exec', from, 'ping', '-c1', '-W1', to], { stdio: 'ignore' }).status === 0;
const step = (s: string) => console.log(`\n== ${s}`);

async function main(): Promise<void> {
  step(`namespaces ${A} (10.77.0.1) and ${B} (10.77.0.2) on a veth pair`);
  sh(['netns', 'add', A]);
  sh(['netns', 'add', B]);
  sh(['link', 'add', `va${tag}`, 'netns', A, 'type', 'veth', 'peer', 'name', `vb${tag}`, 'netns', B]);
  inNs(A, 'ip', ['addr', 'add', '10.77.0.1/24', 'dev', `va${tag}`]);
  inNs(B, 'ip', ['addr', 'add', '10.77.0.2/24', 'dev', `vb${tag}`]);
  for (const [ns, dev] of [[A, `va${tag}`], [B, `vb${tag}`]] as const) {
    inNs(ns, 'ip', ['link', 'set', dev, 'up']);
    inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
  }

  const ipset = await IpsetClient.open({ netns: `/var/run/netns/${B}` });
  console.log(`native addon: kernel ipset protocol ${ipset.protocol}`);
  const spec = { type: 'hash:net', family: 'inet' } as const;
  await ipset.syncSet('sg-demo-v4', spec, ['192.0.2.0/24']);
  inNs(B, 'iptables', ['-A', 'INPUT', '-p', 'icmp', '-m', 'set', '--match-set', 'sg-demo-v4', 'src', '-j', 'ACCEPT']);
  inNs(B, 'iptables', ['-A', 'INPUT', '-p', 'icmp', '-j', 'DROP']);
  const rulesBefore = inNs(B, 'iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, '');

  step('A is not a member: ping A -> B');
  const blocked = !ping(A, '10.77.0.2');
  console.log(blocked ? 'blocked (as expected)' : 'UNEXPECTED: passed');

  step('add 10.77.0.1 to the set through the addon (syncSet), no iptables call');
  console.log(await ipset.syncSet('sg-demo-v4', spec, ['192.0.2.0/24', '10.77.0.1']));
  const admitted = ping(A, '10.77.0.2');
  console.log(admitted ? 'admitted (as expected)' : 'UNEXPECTED: blocked');
  const rulesAfter = inNs(B, 'iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, '');
  console.log(rulesAfter === rulesBefore ? 'iptables rules byte-identical' : 'UNEXPECTED: rules changed');

  step('the set as the kernel holds it (ipset list, inside the namespace)');
  console.log(inNs(B, 'ipset', ['list', 'sg-demo-v4']).trim());

  step('remove the member again');
  console.log(await ipset.del('sg-demo-v4', ['10.77.0.1']));
  const closed = !ping(A, '10.77.0.2');
  console.log(closed ? 'blocked again (as expected)' : 'UNEXPECTED: passed');

  if (!(blocked && admitted && closed && rulesAfter === rulesBefore)) throw new Error('demo: traffic check failed');
  console.log('\ndemo: OK');
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => {
    step('cleanup');
    for (const ns of [A, B]) spawnSync('ip', ['netns', 'del', ns]);
    console.log(`removed ${A} ${B}`);
  });
