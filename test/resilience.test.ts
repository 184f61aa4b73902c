// The agent and the controller survive what the broker and the other side do to them: a sync no
// controller answers (retried forever, the firewall kept as it is), a connection cut from the broker's
// side while a sync is outstanding, a controller started while the broker is unreachable, and the
// dead-letter queue's bounds. Real RabbitMQ, real processes run with unhandled rejections fatal, and
// the kernel (ipset, iptables, packets in namespaces) as the oracle.
import type { ExecutionContext } from 'ava';
import amqp from 'amqplib';
import net from 'node:net';
import { brokerTest, kernelTest } from './helpers/gate.js';
import type { Vm } from './helpers/topology.js';
import { closeConnections, rabbitmqctl } from './helpers/broker.js';
import { startController, startAgent, agentConnected, testBed, type AgentProc, type ControllerProc, type TestBed } from './helpers/sg.js';
import { stopProcess } from './helpers/processes.js';
import { waitFor } from './helpers/wait.js';
import { freePort } from './helpers/net.js';
import { Store } from '../src/controller/store.js';
import { Publisher } from '../src/controller/publisher.js';
import { DEAD_LETTER_LIMITS, DEAD_LETTER_QUEUE, HOST_EXCHANGE, hostKey } from '../src/protocol/routing.js';
import { UPDATE_CONTEXT } from '../src/protocol/signing.js';
import { encode } from '../src/protocol/messages.js';

/** Three VMs on one host: v1 in web, v3 in iso (bound from the start), v2 to be bound later in db,
 *  whose only ingress rule admits ICMP from web. */
interface Scenario extends TestBed {
  t: ExecutionContext;
  v1: Vm;
  v2: Vm;
  v3: Vm;
  host: string;
  controller?: ControllerProc;
  agent: AgentProc;
}

const port = (vm: Vm, host: string, groups: string[]) => ({
  host,
  device: vm.device,
  mac: vm.mac,
  fixedIps: [vm.ip4],
  securityGroups: groups,
});

async function scenario(t: ExecutionContext, agentEnv: Record<string, string> = {}): Promise<Scenario> {
  const bed = await testBed(t, { topology: true, prefix: 'sgres' });
  const s = { ...bed, t, host: `res-${bed.vhost.name}` } as Scenario;
  [s.v1, s.v2, s.v3] = [s.topo.addVm(1), s.topo.addVm(2), s.topo.addVm(3)];
  s.controller = s.track(await startController({ amqpUrl: s.vhost.url(), key: s.key, token: s.token, dataDir: s.dataDir }));
  const c = s.controller;
  await c.call('PUT', '/groups/web', {
    rules: [
      { id: 'w-in', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' },
      { id: 'w-out', direction: 'egress', ethertype: 'IPv4' },
    ],
  });
  await c.call('PUT', '/groups/db', {
    rules: [
      { id: 'd-in', direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', remoteGroupId: 'web' },
      { id: 'd-out', direction: 'egress', ethertype: 'IPv4' },
    ],
  });
  await c.call('PUT', '/groups/iso', { rules: [{ id: 'i-out', direction: 'egress', ethertype: 'IPv4' }] });
  await c.call('PUT', '/ports/p1', port(s.v1, s.host, ['web']));
  await c.call('PUT', '/ports/p3', port(s.v3, s.host, ['iso']));
  s.agent = s.track(
    await startAgent({
      host: s.host,
      amqpUrl: s.vhost.url(),
      trustedKeys: s.key.publicKeyFile,
      netns: s.topo.host.path,
      // Short attempts, and no periodic full sync: only the mechanisms under test make progress.
      env: { SG_SYNC_TIMEOUT_MS: '300', SG_FULL_SYNC_INTERVAL_MS: '0', ...agentEnv },
    }),
  );
  await agentConnected(s.agent);
  // In sync: its first full sync done, and the group syncs that follows it (before the controller goes).
  await waitFor('the agent in sync', () => s.agent.lines.some((l) => l.includes('"msg":"agent in sync"')));
  t.is((await s.agent.status()).ports.length, 2);
  return s;
}

const kernel = (s: Scenario) => ({
  rules: s.topo.host.exec('iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, ''),
  sets: s.topo.host.exec('ipset', ['save']),
});

/** Changes the store and announces the change as a controller does (its outbox, published signed),
 *  while no controller runs: the agent hears of it but nobody answers its syncs. */
async function changeWhileControllerDown(s: Scenario, change: (store: Store) => Promise<unknown>): Promise<void> {
  await stopProcess(s.controller);
  s.controller = undefined;
  const store = await Store.open(s.dataDir);
  try {
    await change(store);
    const conn = await amqp.connect(s.vhost.url());
    const ch = await conn.createConfirmChannel();
    const publisher = new Publisher(ch, s.key.signer);
    const entries = store.outbox();
    for (const e of entries) await publisher.send(e.message);
    await store.ackOutbox(entries.map((e) => e.key));
    await conn.close();
  } finally {
    await store.close();
  }
}

/** p2 is bound to the host in db, a group the host did not need: the agent must sync db. */
const bindP2 = (s: Scenario) =>
  changeWhileControllerDown(s, (store) =>
    store.putPort('p2', { id: 'p2', ...port(s.v2, s.host, ['db']), allowedAddressPairs: [], portSecurityEnabled: true }),
  );

async function restartControllerAndConverge(s: Scenario): Promise<void> {
  s.controller = s.track(await startController({ amqpUrl: s.vhost.url(), key: s.key, token: s.token, dataDir: s.dataDir }));
  // db's rules arrive: v1 (web) reaches p2 over ICMP, v3 does not.
  await waitFor('v1 (web) reaches p2', () => s.topo.ping(s.v1, s.v2.ip4), 60_000);
  // The ping above passes unfiltered too: the drop is checked once p2's filter is in the kernel.
  await waitFor('p2 filtered', async () => (await s.agent.status()).ports.some((p) => p.id === 'p2' && p.inKernel));
  s.t.false(s.topo.ping(s.v3, s.v2.ip4), 'v3 kept out of p2');
  s.t.false(s.agent.exited, 'the agent never exited');
  s.t.false(
    s.agent.lines.some((l) => /unhandled|UnhandledPromiseRejection/i.test(l)),
    'no unhandled rejection',
  );
}

kernelTest.serial(
  'a sync no controller answers is retried forever, the session replaced now and then: the agent lives, the rules stay as they are',
  async (t) => {
    const s = await scenario(t);
    t.true(s.topo.ping(s.v3, s.v2.ip4), 'p2 not bound yet: unfiltered');
    await bindP2(s);
    await waitFor('sync of db outstanding', async () => (await s.agent.metric('sg_agent_sync_retries_total')) >= 1, 30_000);
    // The binding itself is applied (p2's chains, with none of db's rules yet: closed); then nothing more.
    await waitFor("p2's chains in place", () => kernel(s).rules.includes(`--physdev-out ${s.v2.device} `));
    const before = kernel(s);
    // Meanwhile web gains a member (a port elsewhere): the delta reaches the agent and must wait.
    await changeWhileControllerDown(s, (store) =>
      store.putPort('p9', {
        id: 'p9',
        host: 'elsewhere',
        device: 'tap9',
        mac: '02:00:00:00:00:09',
        fixedIps: ['10.100.0.9'],
        securityGroups: ['web'],
        allowedAddressPairs: [],
        portSecurityEnabled: true,
      }),
    );
    // The old agent gave up after 5 attempts and died of the unhandled rejection.
    await waitFor(
      'sync retried well past five attempts',
      async () => {
        if (s.agent.exited) throw new Error(`agent exited:\n${s.agent.dump()}`);
        return (await s.agent.metric('sg_agent_sync_retries_total')) >= 8;
      },
      90_000,
    );
    t.false(s.agent.exited);
    // No rule of db without its sync. (The member delta of web may be in: once unanswered attempts
    // ended the session, the delta that waited behind the sync is applied, in revision order.)
    t.is(kernel(s).rules, before.rules, "db's rules not applied while its sync is unanswered");
    // Unanswered attempts in a row replace the session (a channel stuck on a queue's old leader gets
    // out that way); the agent keeps connecting and asking.
    t.true((await s.agent.metric('sg_agent_reconnects_total')) >= 1, 'unanswered syncs replaced the session');
    await waitFor('the agent connected again', async () => (await s.agent.status()).connected, 60_000);
    await restartControllerAndConverge(s);
    await waitFor('the buffered member delta applied', () => kernel(s).sets.includes(' 10.100.0.9'));
  },
);

kernelTest.serial(
  'a connection closed by the broker while a sync is outstanding ends the sync; the next session syncs in full',
  async (t) => {
    const s = await scenario(t);
    await bindP2(s);
    await waitFor('sync outstanding', async () => (await s.agent.metric('sg_agent_sync_retries_total')) >= 1, 30_000);
    // Three unanswered requests in a row replace the session by themselves, so the connection may be
    // between sessions at the moment the test looks: close it once it is listed.
    const reconnects = await s.agent.metric('sg_agent_reconnects_total');
    await waitFor('the agent connection found and closed', () => closeConnections(s.vhost, `sg-agent ${s.host}`) >= 1);
    await waitFor('reconnected', async () => {
      if (s.agent.exited) throw new Error(`agent exited:\n${s.agent.dump()}`);
      return (await s.agent.metric('sg_agent_reconnects_total')) > reconnects;
    });
    // The new session's full sync asks on the new channel (and keeps asking: no controller yet).
    const retries = await s.agent.metric('sg_agent_sync_retries_total');
    await waitFor('the new session asks again', async () => (await s.agent.metric('sg_agent_sync_retries_total')) > retries + 1);
    await waitFor('the agent connected', async () => (await s.agent.status()).connected, 60_000);
    await restartControllerAndConverge(s);
  },
);

/** A TCP relay to the real broker (its AMQP port) that can be switched on and off: "the broker is
 *  down" as a client sees it (connection refused), without stopping a broker other tests share. */
async function brokerRelay(brokerPort: number): Promise<{ port: number; up(): Promise<void>; close(): void }> {
  const port = await freePort();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(brokerPort, '127.0.0.1');
    for (const x of [client, upstream]) {
      sockets.add(x);
      x.on('error', () => undefined);
      x.on('close', () => sockets.delete(x));
    }
    client.pipe(upstream).pipe(client);
  });
  return {
    port,
    up: () => new Promise((r) => server.listen(port, '127.0.0.1', () => r())),
    close: () => {
      server.close();
      for (const x of sockets) x.destroy();
    },
  };
}

brokerTest.serial('the controller starts while the broker is down, serves reads, refuses writes, and connects when it comes', async (t) => {
  const { vhost, key, token, dataDir, track } = await testBed(t, { prefix: 'sgres' });
  const relay = await brokerRelay(vhost.port);
  t.teardown(() => relay.close());
  const ctl = track(
    await startController({
      amqpUrl: `amqp://guest:guest@127.0.0.1:${relay.port}/${vhost.name}`,
      key,
      token,
      dataDir,
      waitConnected: false,
    }),
  );
  const health = async () => (await (await fetch(`${ctl.api}/healthz`)).json()) as { connected: boolean };
  t.false((await health()).connected);
  t.is((await fetch(`${ctl.api}/groups`, { headers: { authorization: `Bearer ${token.token}` } })).status, 200, 'reads are served');
  const write = await fetch(`${ctl.api}/groups/g`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token.token}`, 'content-type': 'application/json' },
    body: '{"rules":[]}',
  });
  t.is(write.status, 503, 'writes wait for the broker');
  t.false(ctl.exited, 'still running');
  await relay.up();
  await waitFor('connected once the broker answers', async () => (await health()).connected, 60_000);
  await ctl.call('PUT', '/groups/g', { rules: [] });
  // It declared what agents need.
  const queues = rabbitmqctl(vhost.node, ['list_queues', '-p', vhost.name, '-q', 'name']);
  t.regex(queues, /sg\.sync\.requests/);
  t.regex(queues, /sg\.dead\.letters/);
  t.false(ctl.exited);
});

kernelTest.serial('the dead-letter queue is bounded; oversize and unsigned messages are refused by the agent', async (t) => {
  const s = await scenario(t);
  const args = JSON.parse(rabbitmqctl(s.vhost.node, ['list_queues', '-p', s.vhost.name, 'name', 'arguments', '--formatter', 'json'])) as {
    name: string;
    arguments: [string, string, unknown][];
  }[];
  const declared = Object.fromEntries(args.find((q) => q.name === DEAD_LETTER_QUEUE)!.arguments.map(([k, , v]) => [k, v]));
  t.like(declared, {
    'x-max-length': DEAD_LETTER_LIMITS.messages,
    'x-max-length-bytes': DEAD_LETTER_LIMITS.bytes,
    'x-overflow': 'drop-head',
  });

  const conn = await amqp.connect(s.vhost.url());
  t.teardown(() => conn.close().catch(() => undefined));
  const ch = await conn.createConfirmChannel();
  const key = hostKey(s.host);
  const rejected0 = await s.agent.metric('sg_agent_messages_rejected_total');
  const unsigned0 = await s.agent.metric('sg_agent_messages_unauthenticated_total{reason="unsigned"}');
  const dlq = () =>
    (
      JSON.parse(
        rabbitmqctl(s.vhost.node, ['list_queues', '-p', s.vhost.name, 'name', 'message_bytes', 'messages', '--formatter', 'json']),
      ) as { name: string; message_bytes: number; messages: number }[]
    ).find((x) => x.name === DEAD_LETTER_QUEUE)!;
  // Five 5 MiB bodies, signed by the trusted key: over the protocol's 4 MiB limit, refused unread.
  const big = Buffer.alloc(5 << 20, 0x20);
  for (let i = 0; i < 5; i++) ch.publish(HOST_EXCHANGE, key, big, { headers: s.key.signer.headers(big, UPDATE_CONTEXT) });
  await ch.waitForConfirms();
  await waitFor('oversize refused', async () => (await s.agent.metric('sg_agent_messages_rejected_total')) - rejected0 === 5, 60_000);
  // The dead-letter queue keeps the newest that fit its byte bound (three of 5 MiB in 16 MiB).
  const q = await waitFor('dead-lettered', () => dlq().messages === 3 && dlq());
  t.true(q.message_bytes <= DEAD_LETTER_LIMITS.bytes, `${q.message_bytes} bytes kept`);
  // One 64 MiB body, unsigned: refused for its size before its signature, and not kept either.
  ch.publish(HOST_EXCHANGE, key, Buffer.alloc(64 << 20, 0x20));
  await ch.waitForConfirms();
  await waitFor(
    'the 64 MiB message refused',
    async () => (await s.agent.metric('sg_agent_messages_rejected_total')) - rejected0 === 6,
    60_000,
  );
  t.is(await s.agent.metric('sg_agent_messages_unauthenticated_total{reason="unsigned"}'), unsigned0, 'refused for its size, unread');
  await waitFor('the dead-letter queue within its bound', () => dlq().message_bytes <= DEAD_LETTER_LIMITS.bytes && dlq().messages <= 3);
  t.log(dlq());
  // A valid signed message still goes through afterwards.
  const m = encode({
    v: 1,
    type: 'port.updated',
    host: s.host,
    revision: 99,
    port: { id: 'p3', ...port(s.v3, s.host, ['iso', 'web']), allowedAddressPairs: [], portSecurityEnabled: true },
  });
  ch.publish(HOST_EXCHANGE, key, m, { headers: s.key.signer.headers(m, UPDATE_CONTEXT) });
  await ch.waitForConfirms();
  await waitFor('the agent still applies signed updates', async () =>
    (await s.agent.status()).ports.find((p) => p.id === 'p3')?.groups.includes('web'),
  );
  t.false(s.agent.exited);
});
