// What only the nftables backend has to prove: a transaction is all or nothing even for a process
// killed in the middle of its work; a change made by hand to our tables is repaired as the kernel
// announces it (and how fast, logged); a host switched from one backend to the other is never open
// in between and ends with only the new backend's objects; `sg-agent cleanup` removes both.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { FirewallEngine } from '../src/firewall/engine.js';
import { KernelNames } from '../src/firewall/iptables/names.js';
import { decide, openDataplane } from '../src/firewall/select.js';
import type { SecurityGroupInput } from '../src/domain/model.js';
import { kernelTest } from './helpers/gate.js';
import { Netns } from './helpers/netns.js';
import { Topology, type Vm } from './helpers/topology.js';
import { NFT, openEngine, Oracle } from './helpers/backends.js';
import { TABLE } from './helpers/nft-churn.js';
import { waitFor } from './helpers/wait.js';
import { egressAll, egressOnly, vmPort } from './helpers/firewall.js';

const repo = path.resolve(__dirname, '..');

const selfGroup: SecurityGroupInput = {
  id: 'default',
  rules: [{ id: 'i4', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'default' }, ...egressAll],
};

function churn(mode: 'churn' | 'open', ns: Netns): { child: ChildProcess; line: Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'test/helpers/nft-churn.ts'), mode, ns.path], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
    });
    child.once('exit', (code) => reject(new Error(`churn exited ${code} before it was ready`)));
  });
  return { child, line };
}

async function kill(child: ChildProcess): Promise<void> {
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

/** The churn table as the kernel has it: which state (10.<v>) each of its set and chain holds. */
function churnState(ns: Netns): { set: Set<string>; chain: Set<string>; elements: number; rules: number } {
  const json = JSON.parse(ns.exec(NFT, ['-j', 'list', 'table', 'inet', TABLE])) as {
    nftables: Record<string, { name?: string; chain?: string; elem?: unknown[]; expr?: unknown[] }>[];
  };
  const set = new Set<string>();
  const chain = new Set<string>();
  let elements = 0;
  let rules = 0;
  for (const o of json.nftables) {
    if (o.set?.name === 's') {
      for (const e of o.set.elem ?? []) {
        elements++;
        set.add(String(e).split('.')[1]!);
      }
    }
    if (o.rule?.chain === 'c') {
      rules++;
      const addr = JSON.stringify(o.rule.expr).match(/"10\.(\d+)\./);
      chain.add(addr?.[1] ?? '?');
    }
  }
  return { set, chain, elements, rules };
}

kernelTest('a process killed with SIGKILL in the middle of its transactions leaves one whole state, never a mix', async (t) => {
  const ns = Netns.create('sgkill');
  t.teardown(() => ns.destroy());
  const seen = new Set<string>();
  for (let round = 0; round < 6; round++) {
    const { child, line } = churn('churn', ns);
    t.is(await line, 'ready');
    // Each transaction swaps 20,000 elements and 300 rules; killed at a time of its own.
    await new Promise((r) => setTimeout(r, 20 + ((round * 37) % 150)));
    await kill(child);
    const s = churnState(ns);
    t.is(s.set.size, 1, `round ${round}: the set holds one state (${[...s.set].join(', ')})`);
    t.deepEqual([...s.chain], [...s.set], `round ${round}: the chain holds the same state as the set`);
    t.is(s.elements, 20_000);
    t.is(s.rules, 300);
    seen.add([...s.set][0]!);
  }
  t.log(`states found after the kills: ${[...seen].join(', ')}`);
});

kernelTest('a batch sent without its end by a process then killed changes nothing', async (t) => {
  const ns = Netns.create('sgkill');
  t.teardown(() => ns.destroy());
  // A table in a known state first.
  const first = churn('churn', ns);
  t.is(await first.line, 'ready');
  await kill(first.child);
  const before = ns.exec(NFT, ['-s', 'list', 'ruleset']);
  const { child, line } = churn('open', ns);
  t.regex(await line, /^sent \[\]$/, 'the kernel checked every operation of the batch and found nothing wrong');
  await kill(child);
  t.is(
    ns.exec(NFT, ['-s', 'list', 'ruleset']),
    before,
    'the ruleset is as it was: the batch that deleted and remade the table was never committed',
  );
});

async function engineWithWatch(t: ExecutionContext, reconcileIntervalMs: number) {
  const topo = new Topology();
  const fw = await openEngine('nftables', topo.host, { coalesceMs: 5, reconcileIntervalMs });
  t.teardown(async () => {
    await fw.close();
    topo.destroy();
  });
  return { topo, fw, k: new Oracle('nftables', topo.host) };
}

async function until(ok: () => boolean, ms = 10_000): Promise<number> {
  const t0 = process.hrtime.bigint();
  while (!ok()) {
    if (Number(process.hrtime.bigint() - t0) / 1e6 > ms) throw new Error('not repaired in time');
    await new Promise((r) => setTimeout(r, 2));
  }
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

kernelTest('a hand-made change to our tables is repaired as the kernel announces it (latency logged)', async (t) => {
  // The periodic check is far off: a repair within it comes from the notification.
  const { topo, fw, k } = await engineWithWatch(t, 60_000);
  const [a, b, x] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
  fw.setGroup(selfGroup);
  fw.setGroup(egressOnly);
  fw.setPort(vmPort(a, ['default']));
  fw.setPort(vmPort(b, ['default']));
  fw.setPort(vmPort(x, ['egress-only']));
  fw.setGroupMembers('default', [a.ip4, b.ip4]);
  await fw.flush();
  const T = ['inet', k.nft.table];
  const set = k.setName('default', 4);
  const ingress = k.nft.ingressChain(`port-${b.name}`);
  const rules = () => topo.host.exec(NFT, ['-s', 'list', 'chain', ...T, ingress]);
  const intact = rules();
  const latencies: string[] = [];

  topo.host.exec(NFT, ['delete', 'element', ...T, set, `{ ${a.ip4} }`]);
  latencies.push(`delete element: ${(await until(() => k.setMembers('default', 4)!.has(a.ip4))).toFixed(1)} ms`);
  topo.host.exec(NFT, ['flush', 'chain', ...T, ingress]);
  latencies.push(`flush chain: ${(await until(() => rules() === intact)).toFixed(1)} ms`);
  topo.host.exec(NFT, ['delete', 'table', 'bridge', k.nft.table]);
  latencies.push(
    `delete table: ${(await until(() => topo.host.run(NFT, ['list', 'table', 'bridge', k.nft.table]).status === 0)).toFixed(1)} ms`,
  );
  t.log(`repaired after (polled with nft every 2 ms; other tests share the machine): ${latencies.join(', ')}`);
  // Each repair is reported from the watch's thread a moment after the kernel has it.
  await until(() => fw.stats.repairs >= 3);
  t.true(fw.stats.repairs >= 3, 'each repair counted');
  t.true(topo.ping(a, b.ip4), 'members admitted');
  t.false(topo.ping(x, b.ip4), 'a non-member kept out: the port is marked and dispatched again');
});

/** Pings `to` from `vm` every 10 ms until stopped: `sent()` counts the probes so far (ping -O prints a
 *  line for each one unanswered, as well as for each reply); `stop` resolves with what was sent and
 *  answered. */
function prober(vm: Vm, to: string): { sent: () => number; stop: () => Promise<{ sent: number; received: number }> } {
  const ping = ['ping', '-n', '-O', '-i', '0.01', '-W', '1', to];
  const child = spawn('ip', ['netns', 'exec', vm.ns.name, ...ping], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  return {
    sent: () => Math.max(0, ...[...out.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1]))),
    stop: async () => {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await gone;
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
      return { sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? -1) };
    },
  };
}

kernelTest(
  'switching a host between backends: the new one is in before the old one goes, and nothing gets through meanwhile',
  async (t) => {
    const topo = new Topology();
    t.teardown(() => topo.destroy());
    const [a, b, x] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
    const state = {
      ports: [vmPort(a, ['default']), vmPort(b, ['default']), vmPort(x, ['egress-only'])],
      groups: [selfGroup, egressOnly],
      members: { default: [a.ip4, b.ip4] },
    };
    const ipt = new Oracle('iptables', topo.host);
    const nft = new Oracle('nftables', topo.host);
    const fw1 = await openEngine('iptables', topo.host, { coalesceMs: 5 });
    fw1.replaceAll(state);
    await fw1.flush();
    await fw1.close();
    t.false(topo.ping(x, b.ip4));
    for (const [to, from] of [
      ['nftables', ipt],
      ['iptables', nft],
    ] as const) {
      // Probes go out before the switch starts and after it is done: every moment of it is probed.
      const p = prober(x, b.ip4);
      await waitFor(`${to}: the prober running`, () => p.sent() >= 5);
      const { dataplane, kind } = await openDataplane(to, { netns: topo.host.path, mode: 'bridged' });
      t.is(kind, to);
      const fw = new FirewallEngine(dataplane, { coalesceMs: 5 });
      fw.replaceAll(state);
      await fw.flush();
      const switched = p.sent();
      await waitFor(`${to}: probes after the switch`, () => p.sent() >= switched + 5);
      const probed = await p.stop();
      t.true(probed.sent >= switched + 5, `${to}: the prober ran through the switch (${probed.sent} sent, ${switched} when it was done)`);
      t.is(probed.received, 0, `${to}: the non-member got nothing through while the backends changed`);
      t.deepEqual(from.ours(), [], `${to}: the other backend's objects are gone`);
      t.not((to === 'nftables' ? nft : ipt).ours().length, 0);
      t.true(topo.ping(a, b.ip4), `${to}: members admitted`);
      t.false(topo.ping(x, b.ip4));
      await fw.close();
    }
  },
);

kernelTest('sg-agent cleanup removes what either backend made', async (t) => {
  const topo = new Topology();
  t.teardown(() => topo.destroy());
  const [a, b] = [topo.addVm(1), topo.addVm(2)];
  const state = { ports: [vmPort(a, ['default']), vmPort(b, ['default'])], groups: [selfGroup], members: { default: [a.ip4, b.ip4] } };
  for (const backend of ['iptables', 'nftables'] as const) {
    const fw = await openEngine(backend, topo.host, { coalesceMs: 5 });
    fw.replaceAll(state);
    await fw.flush();
    await fw.close();
  }
  const ipt = new Oracle('iptables', topo.host);
  const nft = new Oracle('nftables', topo.host);
  t.not(ipt.ours().length, 0);
  t.not(nft.ours().length, 0);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'cleanup'], {
    cwd: repo,
    env: { ...process.env, SG_NETNS: topo.host.path },
    encoding: 'utf8',
  });
  t.is(r.status, 0, r.stderr);
  t.deepEqual(ipt.ours(), []);
  t.deepEqual(nft.ours(), []);
});

kernelTest(
  'a named object another program put into our table is kept: by a restart (ours written afresh) and by cleanup (ours removed)',
  async (t) => {
    // Not a chain or set: only the kernel's count of what the table holds shows it is there.
    const topo = new Topology();
    t.teardown(() => topo.destroy());
    const [a, b] = [topo.addVm(1), topo.addVm(2)];
    const state = { ports: [vmPort(a, ['default']), vmPort(b, ['default'])], groups: [selfGroup], members: { default: [a.ip4, b.ip4] } };
    const nft = new Oracle('nftables', topo.host);
    const theirs = ['counter', 'inet', nft.nft.table, 'theirs'];
    const first = await openEngine('nftables', topo.host, { coalesceMs: 5 });
    first.replaceAll(state);
    await first.flush();
    await first.close();
    topo.host.exec(NFT, ['add', ...theirs]);

    const fw = await openEngine('nftables', topo.host, { coalesceMs: 5 });
    fw.replaceAll(state);
    await fw.flush();
    t.is(topo.host.run(NFT, ['list', ...theirs]).status, 0, 'the restart kept it');
    t.true(fw.portInKernel(`port-${a.name}`) && fw.portInKernel(`port-${b.name}`));
    t.true(topo.ping(a, b.ip4), 'and ours are in, afresh');
    await fw.close();

    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'cleanup'], {
      cwd: repo,
      env: { ...process.env, SG_NETNS: topo.host.path },
      encoding: 'utf8',
    });
    t.is(r.status, 1, 'cleanup says something was left');
    t.regex(r.stderr, new RegExp(`left in place: nftables inet table ${nft.nft.table} \\(holds 1 flowtable\\(s\\) or named object\\(s\\)`));
    t.is(topo.host.run(NFT, ['list', ...theirs]).status, 0, 'cleanup kept it');
    t.deepEqual(nft.ours(), [`inet table ${nft.nft.table}`], 'our bridge table went; the inet one stays for it');
    const kept = (JSON.parse(topo.host.exec(NFT, ['-j', 'list', 'table', 'inet', nft.nft.table])) as { nftables: object[] }).nftables;
    t.deepEqual(
      kept.filter((o) => 'chain' in o || 'set' in o || 'map' in o),
      [],
      'with no chain or set of ours left in it',
    );
  },
);

kernelTest('sg-agent check says what the kernel supports and what auto chooses, as the probe finds it', async (t) => {
  const ns = Netns.create('sgcheck');
  t.teardown(() => ns.destroy());
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'check'], {
    cwd: repo,
    env: { ...process.env, SG_NETNS: ns.path, SG_DATAPLANE: 'auto' },
    encoding: 'utf8',
  });
  t.is(r.status, 0, r.stderr);
  for (const what of ['nf_tables inet family', 'nf_tables bridge family', 'nf_conntrack_bridge', 'conntrack zones', 'br_netfilter'])
    t.regex(r.stdout, new RegExp(what));
  const { kernelSupport } = await import('../src/firewall/select.js');
  const support = await kernelSupport(ns.path);
  // This kernel runs the nftables backend's tests: the probe must find all the inet table needs
  // (a probe that asks for too much, or asks wrongly, would send auto to iptables).
  t.true('inet' in support.nftables && support.nftables.inet, JSON.stringify(support.nftables));
  t.true('inet' in support.nftables && support.nftables.conntrackZones, 'this kernel sets zones from a rule (the zone tests run on it)');
  const d = decide(support, 'bridged');
  t.regex(r.stdout, new RegExp(`dataplane: auto → ${d.kind} \\(auto would choose ${d.kind}: `));
});

test('auto takes nftables only where the kernel has all it needs, and says why (decision logic)', (t) => {
  const full = { inet: true, bridge: true, conntrackBridge: false, bridgeMeta: false, conntrackZones: true, notes: [] };
  t.is(decide({ nftables: full, brNetfilter: true }, 'bridged').kind, 'nftables');
  const noBridge = decide(
    { nftables: { ...full, bridge: false, notes: ['bridge: the kernel does not support this'] }, brNetfilter: true },
    'bridged',
  );
  t.is(noBridge.kind, 'iptables');
  t.regex(noBridge.reason, /bridge-family/);
  t.is(
    decide({ nftables: { ...full, bridge: false }, brNetfilter: true }, 'routed').kind,
    'nftables',
    'routed ports need no bridge family',
  );
  t.is(decide({ nftables: { error: 'NFTABLES_FAILED: no nf_tables' }, brNetfilter: true }, 'routed').kind, 'iptables');
});

kernelTest('the nf_tables client: a transaction at a generation goes in only if no one committed since', async (t) => {
  const ns = Netns.create('sgnftgen');
  t.teardown(() => ns.destroy());
  const { NftClient } = await import('../src/addon/nftables.js');
  const c = await NftClient.open(ns.path);
  t.teardown(() => c.close());
  const at = { family: 'inet', table: 'gens' } as const;
  t.true(
    (
      await c.transact([
        { op: 'table', ...at },
        { op: 'chain', ...at, chain: 'c' },
      ])
    ).committed,
  );
  const read = (await c.describe('inet', 'gens'))!;
  t.like(read, { others: 0, chains: [{ name: 'c' }] });
  // Another program adds a named object after the read: a delete decided from the read is refused.
  ns.exec(NFT, ['add', 'quota', 'inet', 'gens', 'q', '{ over 1 mbytes }']);
  const r = await c.transact([{ op: 'delTable', ...at }], read.generation);
  t.false(r.committed);
  t.deepEqual(
    r.failures.map((f) => [f.op, f.code]),
    [[null, 'RETRY']],
  );
  t.is(ns.run(NFT, ['list', 'quota', 'inet', 'gens', 'q']).status, 0, 'nothing changed');
  const again = (await c.describe('inet', 'gens'))!;
  t.is(again.others, 1, 'read again, the object is counted');
  t.not(again.generation, read.generation);
  // With nothing committed since the read, the transaction goes in.
  ns.exec(NFT, ['delete', 'quota', 'inet', 'gens', 'q']);
  const last = (await c.describe('inet', 'gens'))!;
  t.true((await c.transact([{ op: 'delTable', ...at }], last.generation)).committed);
  t.not(ns.run(NFT, ['list', 'table', 'inet', 'gens']).status, 0, 'the table is gone');
});

// Serial: it counts this process's sockets, which the file's other tests open and close concurrently.
kernelTest.serial(
  'the nf_tables client: a refused operation is named and nothing changes; errors carry codes; close releases its sockets',
  async (t) => {
    const ns = Netns.create('sgnfterr');
    t.teardown(() => ns.destroy());
    const { NftClient } = await import('../src/addon/nftables.js');
    const { NativeError } = await import('../src/addon/errors.js');
    const sockets = () =>
      fs.readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:');
        } catch {
          return false;
        }
      }).length;
    const before = sockets();
    const c = await NftClient.open(ns.path);
    const at = { family: 'inet', table: 'errs' } as const;
    t.like(
      await c.transact([
        { op: 'table', ...at },
        { op: 'chain', ...at, chain: 'c' },
      ]),
      { committed: true, failures: [] },
    );
    const ruleset = ns.exec(NFT, ['-s', 'list', 'ruleset']);
    // The second operation names a set that does not exist: the first (a new chain) is not made either.
    const r = await c.transact([
      { op: 'chain', ...at, chain: 'd' },
      {
        op: 'rule',
        ...at,
        chain: 'c',
        stmts: [
          { m: 'addrIn', family: 4, dir: 'saddr', set: 'nope' },
          { m: 'verdict', v: 'accept' },
        ],
      },
    ]);
    t.false(r.committed);
    t.deepEqual(
      r.failures.map((f) => [f.op, f.code]),
      [[1, 'NOT_FOUND']],
    );
    t.is(ns.exec(NFT, ['-s', 'list', 'ruleset']), ruleset, 'nothing of the refused transaction is in the kernel');
    const bad = await t.throwsAsync(c.transact([{ op: 'rule', ...at, chain: 'c', stmts: [{ m: 'port', dir: 'dport', min: 9, max: 8 }] }]), {
      instanceOf: NativeError,
    });
    t.is(bad?.code, 'INVALID_ARGUMENT', 'a statement that cannot be encoded is refused before the kernel sees it');
    const missing = await t.throwsAsync(NftClient.open('/var/run/netns/sg-no-such-namespace'), { instanceOf: NativeError });
    t.is(missing?.code, 'NETNS_UNAVAILABLE');
    c.watch(() => undefined);
    t.is(sockets(), before + 2, 'the client and its watch');
    await c.close();
    t.is(sockets(), before, 'both sockets released');
    const closed = await t.throwsAsync(c.listTables(), { instanceOf: NativeError });
    t.is(closed?.code, 'NFTABLES_FAILED');
  },
);

/** VMs a and b in the default group, and s stateless whose allowed pair covers their network (their
 *  traffic must stay tracked), each serving TCP 4100; `tracked(ip)` lists the entries to ip. */
function statelessNeighbours(t: ExecutionContext) {
  const topo = new Topology();
  t.teardown(() => topo.destroy());
  const [a, b, s] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
  const open: SecurityGroupInput = {
    id: 'open',
    stateful: false,
    rules: [{ id: 'o-in', direction: 'ingress', ethertype: 'IPv4' }, ...egressAll],
  };
  const state = {
    ports: [vmPort(a, ['default']), vmPort(b, ['default']), vmPort(s, ['open'], { allowedAddressPairs: [{ ipAddress: '10.100.0.0/24' }] })],
    groups: [selfGroup, open],
    members: { default: [a.ip4, b.ip4, s.ip4] },
  };
  topo.serve(b, 4100);
  topo.serve(s, 4100);
  const tracked = (ip: string) => topo.host.run('conntrack', ['-L', '-d', ip]).stdout.trim();
  return { topo, a, b, s, state, tracked, ipt: new Oracle('iptables', topo.host), nft: new Oracle('nftables', topo.host) };
}

kernelTest(
  'switching backends with a stateless port: the old raw and ebtables objects go, its traffic stays untracked and a neighbour’s tracked',
  async (t) => {
    const { topo, a, b, s, state, tracked, ipt, nft } = statelessNeighbours(t);
    const first = await openEngine('iptables', topo.host, { coalesceMs: 5 });
    first.replaceAll(state);
    await first.flush();
    await first.close();
    const raw = new KernelNames('sg').rawChain;
    t.true(
      ipt.ours().some((l) => l.startsWith(`:${raw} `)),
      'the iptables backend made its raw chain (the stateless port)',
    );
    for (const [to, from] of [
      ['nftables', ipt],
      ['iptables', nft],
    ] as const) {
      topo.host.exec('conntrack', ['-F']);
      const { dataplane } = await openDataplane(to, { netns: topo.host.path, mode: 'bridged' });
      const fw = new FirewallEngine(dataplane, { coalesceMs: 5 });
      fw.replaceAll(state);
      await fw.flush();
      t.deepEqual(from.ours(), [], `${to}: the other backend's objects are gone, raw and ebtables chains included`);
      t.true(topo.tcp(a, s.ip4, 4100), `${to}: a reaches the stateless port`);
      t.is(tracked(s.ip4), '', `${to}: the stateless port's traffic is not tracked`);
      t.true(topo.tcp(a, b.ip4, 4100), `${to}: a reaches b inside the stateless port's pair`);
      t.not(tracked(b.ip4), '', `${to}: and that connection is tracked`);
      await fw.close();
    }
  },
);

kernelTest(
  'both backends in place at once (the moment of a switch) with a stateless port: its traffic untracked, a neighbour’s tracked and answered',
  async (t) => {
    // A switch applies the new backend before it removes the old one's objects: for that moment every
    // packet meets both. Made to last here: each backend applied on its own, neither removing the other.
    const { topo, a, b, s, state, tracked, ipt, nft } = statelessNeighbours(t);
    for (const order of [
      ['iptables', 'nftables'],
      ['nftables', 'iptables'],
    ] as const) {
      for (const backend of order) {
        const fw = await openEngine(backend, topo.host, { coalesceMs: 5 });
        fw.replaceAll(state);
        await fw.flush();
        await fw.close();
      }
      t.not(ipt.ours().length, 0, 'the iptables objects are in place');
      t.not(nft.ours().length, 0, 'and the nftables ones');
      topo.host.exec('conntrack', ['-F']);
      t.true(topo.tcp(a, s.ip4, 4100), `${order[1]} last: a reaches the stateless port`);
      t.true(topo.tcp(s, b.ip4, 4100), `${order[1]} last: the stateless port reaches b`);
      t.is(tracked(s.ip4), '', `${order[1]} last: nothing to the stateless port is tracked`);
      t.is(topo.host.run('conntrack', ['-L', '-s', s.ip4]).stdout.trim(), '', `${order[1]} last: nor from it`);
      t.true(topo.tcp(a, b.ip4, 4100), `${order[1]} last: a reaches b inside the stateless port's pair, and is answered`);
      t.not(tracked(b.ip4), '', `${order[1]} last: that connection is tracked`);
      for (const backend of order) {
        const fw = await openEngine(backend, topo.host, { coalesceMs: 5 });
        await fw.cleanup();
      }
    }
  },
);
