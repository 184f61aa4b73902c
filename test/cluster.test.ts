// sg-agent and sg-controller on the three-node RabbitMQ cluster of scripts/rabbit-cluster.sh (started
// here, stopped at the end): a node crash (SIGKILL) under the agent's queue while updates flow, any
// one node down for an agent that lists the three, and a controller crash with a second controller
// on the same store taking the leadership lease. Real processes, the real kernel in a namespace; each
// test ends with zero drift: the agent holds the controller's revision and the kernel set its members.
// Recovery times are logged, never asserted.
import test, { type ExecutionContext } from 'ava';
import amqp from 'amqplib';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kernelTest } from './helpers/gate.js';
import { Topology, type Vm } from './helpers/topology.js';
import { removeKeys, testKey, testToken } from './helpers/keys.js';
import { startAgent, startController, agentConnected, type AgentProc, type ControllerProc } from './helpers/sg.js';
import { stopProcess, type Running } from './helpers/processes.js';
import { waitFor } from './helpers/wait.js';
import {
  clusterVhost,
  ensureCluster,
  killNode,
  nodeNumber,
  queueNodes,
  quorumSafeWithout,
  restartNode,
  stopCluster,
} from './helpers/cluster.js';
import { agentQueue, DEAD_LETTER_EXCHANGE } from '../src/protocol/routing.js';

let clusterStarted = false;
test.before(async () => {
  if (!kernelTest.runs) return;
  // Set first: a start that fails half-way leaves nodes to stop too.
  clusterStarted = true;
  await ensureCluster();
});
test.after.always(async () => {
  if (clusterStarted) await stopCluster();
});

interface Bed {
  t: ExecutionContext;
  /** The three nodes' URLs for the test's vhost, comma-separated, in the order given. */
  urls(order?: number[]): string;
  vhost: string;
  key: ReturnType<typeof testKey>;
  token: ReturnType<typeof testToken>;
  dataDir: string;
  topo: Topology;
  vm: Vm;
  host: string;
  track: <P extends Running>(p: P) => P;
}

async function bed(t: ExecutionContext, prefix: string): Promise<Bed> {
  const v = clusterVhost(prefix);
  const running: Running[] = [];
  const b: Bed = {
    t,
    urls: (order = [1, 2, 3]) => order.map((n) => v.urls[n - 1]).join(','),
    vhost: v.name,
    key: testKey(),
    token: testToken(),
    dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'sgcluster-ctl-')),
    topo: new Topology(),
    vm: undefined as unknown as Vm,
    host: `cl-${v.name}`,
    track: (p) => (running.push(p), p),
  };
  b.vm = b.topo.addVm(1);
  t.teardown(async () => {
    for (const p of running.reverse()) await stopProcess(p);
    b.topo.destroy();
    v.remove();
    removeKeys(b.key);
    b.token.remove();
    fs.rmSync(b.dataDir, { recursive: true, force: true });
  });
  return b;
}

const controller = (b: Bed, order?: number[]) =>
  startController({ amqpUrl: b.urls(order), key: b.key, token: b.token, dataDir: b.dataDir }).then(b.track);

/** A call the controller may refuse for a while (503: its broker node died and it is reconnecting). */
async function call(ctl: ControllerProc, method: string, p: string, body?: unknown): Promise<Response> {
  return waitFor(`${method} ${p}`, () => ctl.call(method, p, body), 60_000);
}

/** web admits its own members; p1 (the VM) is in it on the agent's host: the agent needs web's members. */
async function topology(b: Bed, ctl: ControllerProc): Promise<void> {
  await call(ctl, 'PUT', '/groups/web', {
    rules: [
      { id: 'w-in', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' },
      { id: 'w-out', direction: 'egress', ethertype: 'IPv4' },
    ],
  });
  await call(ctl, 'PUT', '/ports/p1', { host: b.host, device: b.vm.device, mac: b.vm.mac, fixedIps: [b.vm.ip4], securityGroups: ['web'] });
}

async function agent(b: Bed, order?: number[]): Promise<AgentProc> {
  const a = b.track(
    await startAgent({
      host: b.host,
      amqpUrl: b.urls(order),
      trustedKeys: b.key.publicKeyFile,
      netns: b.topo.host.path,
      // No periodic full sync: only reconnection, revisions and the controllers' outbox converge.
      env: { SG_SYNC_TIMEOUT_MS: '1000', SG_FULL_SYNC_INTERVAL_MS: '0' },
    }),
  );
  try {
    await agentConnected(a);
    await waitFor('the agent in sync', () => inSyncCount(a) > 0, 60_000);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${a.dump()}`, { cause: e });
  }
  return a;
}

const inSyncCount = (a: AgentProc) => a.lines.filter((l) => l.includes('"msg":"agent in sync"')).length;
const webRevision = async (a: AgentProc) => (await a.status()).groups.find((g) => g.id === 'web')?.membersRevision ?? 0;

/** A burst of membership changes in web: ports q0..q{n-1} on another host join it, or move address. */
async function churn(ctl: ControllerProc, n: number, round: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await call(ctl, 'PUT', `/ports/q${i}`, {
      host: 'elsewhere',
      device: `q${i}`,
      mac: '02:00:00:00:bb:01',
      fixedIps: [`10.110.${round}.${i}`],
      securityGroups: ['web'],
    });
  }
}

/** Zero drift: the agent holds the controller's member revision of web, and the kernel set holds
 *  exactly the controller's members. */
async function assertNoDrift(b: Bed, ctl: ControllerProc, a: AgentProc): Promise<void> {
  const want = (await (await call(ctl, 'GET', '/groups/web')).json()) as { membersRevision: number; members: string[] };
  await waitFor('the agent holds the controller revision', async () => (await webRevision(a)) === want.membersRevision, 60_000).catch(
    () => undefined,
  );
  b.t.is(await webRevision(a), want.membersRevision, 'revision of web');
  const set = (await a.status()).sets.find((s) => s.name.startsWith('sg4-'));
  const kernel = () =>
    b.topo.host
      .exec('ipset', ['save', set!.name])
      .split('\n')
      .filter((l) => l.startsWith('add '))
      .map((l) => l.split(' ')[2])
      .sort();
  const members = [...want.members].sort();
  await waitFor('the kernel set equals the controller', () => JSON.stringify(kernel()) === JSON.stringify(members), 10_000).catch(
    () => undefined,
  );
  b.t.deepEqual(kernel(), members, 'kernel set equals the controller');
  b.t.false(a.exited, 'the agent never exited');
  b.t.false(
    a.lines.some((l) => /unhandled|UnhandledPromiseRejection/i.test(l)),
    'no unhandled rejection',
  );
}

/** The node the agent's queue lives on (its connection's: the queue is exclusive to it). */
const agentQueueNode = (b: Bed) => nodeNumber(queueNodes(b.vhost).get(agentQueue(b.host)) ?? '');

kernelTest.serial(
  "the node holding the agent's queue killed while updates flow: the agent moves to another node, zero drift",
  async (t) => {
    const b = await bed(t, 'sgcl-kill');
    const ctl = await controller(b);
    await topology(b, ctl);
    const a = await agent(b);
    const victim = await waitFor('the agent queue placed', () => agentQueueNode(b));
    t.teardown(() => restartNode(victim));
    t.log(`the agent's queue is on node ${victim}`);
    const synced = inSyncCount(a);
    const start = await webRevision(a);
    const burst = churn(ctl, 40, 1);
    await waitFor('updates flowing', async () => (await webRevision(a)) >= start + 5);
    const killedAt = Date.now();
    await killNode(victim);
    await waitFor('the agent back in sync after the crash', () => inSyncCount(a) > synced, 90_000);
    t.log(`agent in sync again ${Date.now() - killedAt} ms after node ${victim} was killed`);
    const moved = await waitFor(
      'the agent queue on another node',
      () => {
        const n = agentQueueNode(b);
        return n && n !== victim && n;
      },
      60_000,
    );
    t.log(`its queue is now on node ${moved}`);
    await burst;
    await churn(ctl, 10, 2);
    await assertNoDrift(b, ctl, a);
    await restartNode(victim);
  },
);

kernelTest.serial('an agent and a controller listing the three nodes survive any one node down', async (t) => {
  const b = await bed(t, 'sgcl-any');
  const ctl = await controller(b, [3, 1, 2]);
  await topology(b, ctl);
  // The durable queue an earlier version of the agent left under its name is replaced.
  // Node 1 may be the one the previous test restarted: accepting connections a moment after it reports up.
  const conn = await waitFor('a connection to node 1', () => amqp.connect(b.urls([1])), 60_000);
  const ch = await conn.createChannel();
  await ch.assertQueue(agentQueue(b.host), {
    durable: true,
    arguments: { 'x-expires': 600_000, 'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE },
  });
  await conn.close();
  const a = await agent(b, [2, 3, 1]);
  t.true(a.lines.some((l) => l.includes('deleting the durable queue an earlier version left')));
  for (const n of [1, 2, 3]) {
    // The node restarted last has caught up: the other two hold a majority of every quorum queue.
    await waitFor(`node ${n} not quorum-critical`, () => quorumSafeWithout(n), 120_000);
    t.teardown(() => restartNode(n));
    const downAt = Date.now();
    await killNode(n);
    // A change while node n is down reaches the kernel.
    await call(ctl, 'PUT', `/ports/r${n}`, {
      host: 'elsewhere',
      device: `r${n}`,
      mac: '02:00:00:00:cc:01',
      fixedIps: [`10.111.0.${n}`],
      securityGroups: ['web'],
    });
    await waitFor(
      `10.111.0.${n} in the kernel with node ${n} down`,
      () => b.topo.host.exec('ipset', ['save']).includes(` 10.111.0.${n}`),
      90_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n-- agent:\n${a.lines.slice(-40).join('\n')}\n-- controller:\n${ctl.lines.slice(-40).join('\n')}`);
    });
    t.log(`node ${n} down: the change reached the kernel ${Date.now() - downAt} ms after the crash`);
    await assertNoDrift(b, ctl, a);
    await restartNode(n);
  }
});

kernelTest.serial(
  'the publishing controller killed during a burst: the other takes the lease, no update lost or reordered, zero drift',
  async (t) => {
    const b = await bed(t, 'sgcl-ctl');
    // Two controllers on one store (one host), each listing the nodes in another order.
    const c1 = await controller(b, [1, 2, 3]);
    const c2 = await controller(b, [3, 2, 1]);
    const health = async (c: ControllerProc) => (await (await fetch(`${c.api}/healthz`)).json()) as { leader: boolean; outbox: number };
    const leader = await waitFor('one controller holds the lease', async () => {
      const [h1, h2] = [await health(c1), await health(c2)];
      return h1.leader !== h2.leader && (h1.leader ? c1 : c2);
    });
    const standby = leader === c1 ? c2 : c1;
    await topology(b, standby);
    const a = await agent(b);
    // Every revision of web the agent holds, sampled throughout: it may only rise.
    const seen: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        seen.push(await webRevision(a).catch(() => seen.at(-1) ?? 0));
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const start = await webRevision(a);
    // Changes go in through the standby's API: the lease holder publishes what any controller stores.
    const burst = churn(standby, 60, 1);
    await waitFor('updates flowing through the lease holder', async () => (await webRevision(a)) >= start + 5);
    const killedAt = Date.now();
    await stopProcess(leader, 'SIGKILL');
    await waitFor('the standby takes the lease', async () => (await health(standby)).leader, 60_000);
    t.log(`the standby took the lease ${Date.now() - killedAt} ms after the leader was killed`);
    await burst;
    await assertNoDrift(b, standby, a);
    sampling = false;
    await sampler;
    const drops = seen.flatMap((r, i) => (i > 0 && r < seen[i - 1]! ? [`${seen[i - 1]} → ${r}`] : []));
    t.deepEqual(drops, [], 'the revision the agent holds never went back');
    t.log(
      `revisions seen: ${seen[0]} … ${seen.at(-1)} in ${seen.length} samples; group resyncs: ${await a.metric('sg_agent_resyncs_total{scope="group"}')}, stale (duplicates) dropped: ${await a.metric('sg_agent_messages_stale_total')}`,
    );
    t.is((await health(standby)).outbox, 0, 'the outbox emptied');
  },
);
