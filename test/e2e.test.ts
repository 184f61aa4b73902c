// End to end: RabbitMQ, two controller processes sharing one store and one sync queue, and two agents
// as separate processes, each agent enforcing in its own "host" namespace with VMs on a bridge.
// Everything is driven through the controllers' APIs, alternately. Host a runs the iptables backend,
// host b the nftables one, so the engine's path through the agent is exercised on both.
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import amqp from 'amqplib';
import { kernelTest } from './helpers/gate.js';
import { Topology, type Vm } from './helpers/topology.js';
import { testVhost, rabbitmqctl, type TestVhost } from './helpers/broker.js';
import { restartTestBroker } from './helpers/test-broker.js';
import { freePort } from './helpers/net.js';
import { waitFor } from './helpers/wait.js';
import { holdsStore, type HostView, type StoreView } from './helpers/converged.js';
import { hostKey, HOST_EXCHANGE, DEAD_LETTER_QUEUE } from '../src/protocol/routing.js';
import { malformedCorpus } from './helpers/malformed.js';
import { testKey, testToken, removeKeys, type TestKey } from './helpers/keys.js';
import { UPDATE_CONTEXT } from '../src/protocol/signing.js';

const repo = path.resolve(__dirname, '..');
const tag = randomBytes(3).toString('hex');
/** The file's vhost on the tests' broker, and its URL for every process. */
let vhost: TestVhost;
let amqpUrl = '';
const procs: ChildProcess[] = [];
/** Admin API of each running controller process; calls alternate between them. */
const apis: { url: string; proc: ChildProcess }[] = [];
let calls = 0;
let dataDir = '';
/** The controllers' signing key (agents trust its public half) and the admin API's token. */
let key: TestKey | undefined;
let token: ReturnType<typeof testToken> | undefined;
let topoA: Topology;
let topoB: Topology;
const agents: Record<'a' | 'b', { host: string; metrics: string; proc?: ChildProcess; topo: () => Topology }> = {
  a: { host: `host-a-${tag}`, metrics: '', topo: () => topoA },
  b: { host: `host-b-${tag}`, metrics: '', topo: () => topoB },
};

// Every process's output goes to a log file of its own; when a test of this file fails, the end of
// each log is printed (stderr, so CI shows it) after the file's tests are done. Removed then.
let logDir = '';
let failures = 0;

function startNode(name: string, script: string, args: string[], env: Record<string, string>): ChildProcess {
  const log = fs.openSync(path.join(logDir, `${name}.log`), 'a');
  const child = spawn(process.execPath, ['--unhandled-rejections=strict', '--import', 'tsx', path.join(repo, script), ...args], {
    cwd: repo,
    env: { ...process.env, ...env },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  procs.push(child);
  return child;
}

function printLogs(): void {
  for (const f of fs.readdirSync(logDir).sort()) {
    const lines = fs.readFileSync(path.join(logDir, f), 'utf8').trimEnd().split('\n');
    console.error(`---- ${f} (last ${Math.min(lines.length, 80)} of ${lines.length} lines) ----`);
    console.error(lines.slice(-80).join('\n'));
  }
}

async function startController(): Promise<void> {
  const httpPort = await freePort();
  const proc = startNode(`controller-${apis.length}-${calls}`, 'src/cli/sg-controller.ts', [], {
    SG_AMQP_URL: amqpUrl,
    SG_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
    SG_DATA_DIR: dataDir,
    SG_SIGNING_KEY_FILE: key!.privateKeyFile,
    SG_HTTP_TOKEN_FILE: token!.file,
    SG_LOG_LEVEL: 'warn',
  });
  const url = `http://127.0.0.1:${httpPort}`;
  // Connected: a change made right after is published, not refused with 503.
  await waitFor('controller', async () => ((await (await fetch(`${url}/healthz`)).json()) as { connected: boolean }).connected);
  apis.push({ url, proc });
}

/** GET with one retry: a keep-alive connection the server closes just as the client reuses it fails
 *  the request ("fetch failed"), a transport race of a loaded machine that says nothing of the agent. */
async function get(url: string): Promise<Response> {
  try {
    return await fetch(url);
  } catch {
    return fetch(url);
  }
}

async function call(method: string, p: string, body?: unknown): Promise<Response> {
  const api = apis[calls++ % apis.length]!.url;
  const r = await fetch(`${api}${p}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token!.token}` },
    body: body === undefined ? null : JSON.stringify(body),
  });
  if (r.status >= 400) throw new Error(`${method} ${p}: ${r.status} ${await r.text()}`);
  return r;
}

interface Status {
  connected: boolean;
  ports: { id: string }[];
  groups: { id: string; members: number; membersRevision: number | null; membersNeeded: boolean }[];
  messagesByGroup: Record<string, number>;
  sets: { name: string; size: number }[];
  engine: { rejectedInput: number };
}
async function status(which: 'a' | 'b'): Promise<Status> {
  return (await (await get(`http://${agents[which].metrics}/status`)).json()) as Status;
}
/** Waits until the agent reports these ports' filters in the kernel: a drop checked before that
 *  would only prove the port is not filtered yet. */
async function inKernel(which: 'a' | 'b', ids: string[], ms = 30_000): Promise<void> {
  await waitFor(
    `${ids.join(', ')} filtered on host ${which}`,
    async () => {
      const s = (await (await get(`http://${agents[which].metrics}/status`)).json()) as { ports: { id: string; inKernel: boolean }[] };
      return ids.every((id) => s.ports.some((p) => p.id === id && p.inKernel));
    },
    ms,
  );
}

/** The controller's store, as its admin API shows it. */
const store: StoreView = {
  ports: async () => (await (await call('GET', '/ports')).json()) as { id: string; host: string; revision: number }[],
  group: async (id) => {
    const r = await call('GET', `/groups/${encodeURIComponent(id)}`).catch((e: Error) => {
      if (/: 404 /.test(e.message)) return undefined;
      throw e;
    });
    return r && ((await r.json()) as { revision: number; membersRevision: number });
  },
};

/** Waits until host `which` holds what the controller says (helpers/converged.ts). A drop is asserted
 *  after this, never waited for. */
async function hostConverged(which: 'a' | 'b', ms = 60_000): Promise<void> {
  await waitFor(
    `host ${which} holds what the controller says`,
    async () => holdsStore((await (await get(`http://${agents[which].metrics}/status`)).json()) as HostView, agents[which].host, store),
    ms,
  );
}

async function rejected(which: 'a' | 'b'): Promise<number> {
  const text = await (await get(`http://${agents[which].metrics}/metrics`)).text();
  return Number(/^sg_agent_messages_rejected_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

async function startAgent(which: 'a' | 'b'): Promise<void> {
  const a = agents[which];
  a.metrics ||= `127.0.0.1:${await freePort()}`;
  a.proc = startNode(`agent-${which}`, 'src/cli/sg-agent.ts', ['run'], {
    SG_AGENT_HOST: a.host,
    SG_AMQP_URL: amqpUrl,
    SG_TRUSTED_KEYS: key!.publicKeyFile,
    SG_NETNS: a.topo().host.path,
    SG_DATAPLANE: which === 'b' ? 'nftables' : 'iptables',
    SG_METRICS_LISTEN: a.metrics,
    SG_QUEUE_EXPIRES_MS: '120000',
    SG_FULL_SYNC_INTERVAL_MS: '2000',
    SG_LOG_LEVEL: 'warn',
  });
  await waitFor(`agent ${which}`, async () => (await status(which)).connected);
}

function portBody(vm: Vm, host: string, groups: string[]) {
  return { host, device: vm.device, mac: vm.mac, fixedIps: [vm.ip4], securityGroups: groups };
}
const G = (name: string) => `${name}-${tag}`;
const selfGroup = (name: string) => ({
  rules: [
    { id: `${name}-in`, direction: 'ingress', ethertype: 'IPv4', remoteGroupId: G(name) },
    { id: `${name}-out`, direction: 'egress', ethertype: 'IPv4' },
  ],
});

/** Set once everything the tests share is up: the logs are printed too when the setup failed. */
let ready = false;
test.before(async () => {
  if (!kernelTest.runs) return;
  logDir = fs.mkdtempSync(path.join(os.tmpdir(), `sg-e2e-${tag}-`));
  vhost = await testVhost('sgtest');
  amqpUrl = vhost.url();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-ctl-'));
  key = testKey();
  token = testToken();
  await startController();
  await startController();
  topoA = new Topology();
  topoB = new Topology();
  await startAgent('a');
  await startAgent('b');
  ready = true;
});

test.afterEach.always((t) => {
  if (!t.passed) failures++;
});

test.after.always(() => {
  if ((failures || !ready) && logDir) printLogs();
  for (const p of procs) p.kill('SIGKILL');
  topoA?.destroy();
  topoB?.destroy();
  vhost?.remove();
  if (logDir) fs.rmSync(logDir, { recursive: true, force: true });
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  removeKeys(key);
  token?.remove();
});

kernelTest.serial('groups and ports created through the API become sets, chains and real filtering', async (t) => {
  const [v1, v2, v3] = [topoA.addVm(1), topoA.addVm(2), topoA.addVm(3)];
  const [v4, v5] = [topoB.addVm(4), topoB.addVm(5)];
  await call('PUT', `/groups/${G('web')}`, selfGroup('web'));
  await call('PUT', `/groups/${G('db')}`, selfGroup('db'));
  await call('PUT', `/groups/${G('iso')}`, { rules: [{ id: 'iso-out', direction: 'egress', ethertype: 'IPv4' }] });
  await call('PUT', '/ports/p1', portBody(v1, agents.a.host, [G('web')]));
  await call('PUT', '/ports/p2', portBody(v2, agents.a.host, [G('web')]));
  await call('PUT', '/ports/p3', portBody(v3, agents.a.host, [G('iso')]));
  await call('PUT', '/ports/p4', portBody(v4, agents.b.host, [G('db')]));
  await call('PUT', '/ports/p5', portBody(v5, agents.b.host, [G('db')]));
  // The controllers stall for 700 ms (what once made this test judge a drop before the port's filter
  // was in): every check below waits for the state it asserts.
  for (const a of apis) a.proc.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 700));
  for (const a of apis) a.proc.kill('SIGCONT');
  await waitFor('host a sets', async () => (await status('a')).sets.some((s) => s.size === 2));
  await waitFor('host b sets', async () => (await status('b')).sets.some((s) => s.size === 2));
  await inKernel('a', ['p1', 'p2', 'p3']);
  await inKernel('b', ['p4', 'p5']);
  await waitFor('web members reach each other', () => topoA.ping(v1, v2.ip4));
  t.false(topoA.ping(v3, v2.ip4), 'iso is not in web');
  await waitFor('db members reach each other', () => topoB.ping(v4, v5.ip4));

  // v3 joins web: traffic opens, through a member delta to host a.
  await call('PUT', '/ports/p3', portBody(v3, agents.a.host, [G('iso'), G('web')]));
  t.true(await waitFor('v3 admitted after joining web', () => topoA.ping(v3, v2.ip4)), 'v3 admitted after joining web');
});

kernelTest.serial('an agent receives updates only for the groups of its ports; bindings follow ports', async (t) => {
  const a = await status('a');
  const b = await status('b');
  t.deepEqual(a.groups.map((g) => g.id).sort(), [G('iso'), G('web')].sort());
  t.deepEqual(b.groups.map((g) => g.id).sort(), [G('db')]);
  t.is(b.messagesByGroup[G('web')], undefined, 'host b heard nothing of web');
  t.is(a.messagesByGroup[G('db')], undefined, 'host a heard nothing of db');
  // A web port lands on host b: b now needs web and binds it; a hears of the new member.
  const v6 = topoB.addVm(6);
  await call('PUT', '/ports/p6', portBody(v6, agents.b.host, [G('web')]));
  await waitFor('b binds web', async () => (await status('b')).groups.some((g) => g.id === G('web') && g.members === 4));
  await waitFor('a sees the new member', async () => (await status('a')).groups.find((g) => g.id === G('web'))?.members === 4);
  await call('DELETE', '/ports/p6');
  t.true(await waitFor('b unbinds web', async () => !(await status('b')).groups.some((g) => g.id === G('web'))), 'b unbinds web');
});

kernelTest.serial('a port migrating live is filtered on both hosts, each as its own, until its binding moves', async (t) => {
  const ports = async (which: 'a' | 'b') => (await status(which)).ports.map((p) => p.id);
  const refused = async () => (await status('a')).engine.rejectedInput + (await status('b')).engine.rejectedInput;
  const refusedBefore = await refused();
  // What each kernel holds, to see the port's rules and members go again (the next test compares the
  // kernel; an agent removes a port's emptied chains some time after the port, not with it).
  const kernel = (which: 'a' | 'b') => {
    const host = (which === 'a' ? topoA : topoB).host;
    return host.exec('iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, '') + host.exec('ipset', ['save']);
  };
  const kernelBefore = { a: kernel('a'), b: kernel('b') };
  // Bound before its VM is plugged, as Nova binds a port.
  const body = { device: topoB.vmDevice(20), mac: '02:00:00:00:00:20', fixedIps: ['10.99.0.20'], securityGroups: [G('web')] };
  await call('PUT', '/ports/pmig', { ...body, host: agents.a.host, migratingTo: agents.b.host });
  await inKernel('a', ['pmig']);
  await inKernel('b', ['pmig']);
  const stored = (await (await call('GET', '/ports/pmig')).json()) as { host: string; migratingTo?: string };
  t.like(stored, { host: agents.a.host, migratingTo: agents.b.host });
  // The binding moves to the destination: the source forgets the port, the destination keeps it.
  await call('PUT', '/ports/pmig', { ...body, host: agents.b.host });
  await waitFor('the source forgets the port', async () => !(await ports('a')).includes('pmig'));
  t.true((await ports('b')).includes('pmig'), 'the destination keeps it');
  t.is(((await (await call('GET', '/ports/pmig')).json()) as { migratingTo?: string }).migratingTo, undefined);
  await call('DELETE', '/ports/pmig');
  await waitFor('the destination forgets the port', async () => !(await ports('b')).includes('pmig'));
  for (const which of ['a', 'b'] as const)
    await waitFor(`host ${which}'s rules and sets as before`, () => kernel(which) === kernelBefore[which]);
  t.is(await refused(), refusedBefore, 'nothing refused');
});

kernelTest.serial('malformed and hostile messages are rejected to the dead-letter queue and change nothing', async (t) => {
  const before = await rejected('a');
  const rules = topoA.host.exec('iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, '');
  const sets = topoA.host.exec('ipset', ['save']);
  const conn = await amqp.connect(amqpUrl);
  const ch = await conn.createConfirmChannel();
  const dlqBefore = (await ch.checkQueue(DEAD_LETTER_QUEUE)).messageCount;
  const corpus = malformedCorpus(agents.a.host);
  t.true(corpus.length >= 30);
  // Signed by the controllers' key: what is tested here is the schema gate behind the signature's.
  for (const body of corpus)
    ch.publish(HOST_EXCHANGE, hostKey(agents.a.host), body, { headers: key!.signer.headers(body, UPDATE_CONTEXT) });
  await ch.waitForConfirms();
  await waitFor('all rejected', async () => (await rejected('a')) - before === corpus.length);
  t.is((await rejected('a')) - before, corpus.length);
  await waitFor('dead-lettered', async () => (await ch.checkQueue(DEAD_LETTER_QUEUE)).messageCount - dlqBefore >= corpus.length);
  await conn.close();
  t.is(topoA.host.exec('iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, ''), rules);
  t.is(topoA.host.exec('ipset', ['save']), sets);
  t.true((await status('a')).connected, 'still running');
});

kernelTest.serial(
  'what an agent would refuse is refused by the API; a poisoned object already in the store is quarantined and the host keeps converging',
  async (t) => {
    const api = apis[0]!.url;
    const put = (p: string, body: unknown) =>
      fetch(`${api}${p}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token!.token}` },
        body: JSON.stringify(body),
      });
    // Each of these was once accepted with 200 (or answered 500), and could stop agents.
    const refused: [string, unknown][] = [
      [
        `/groups/${G('poison')}`,
        { rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 90, portRangeMax: 80 }] },
      ],
      [`/groups/${G('poison')}`, { rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', portRangeMin: 80, portRangeMax: 80 }] }],
      [`/groups/${G('poison')}`, { rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', remoteIpPrefix: 'fd00::/8' }] }],
      ['/ports/pz', { host: agents.a.host, device: 'tzz', mac: '02:00:00:00:ee:01', fixedIps: ['fe80::1%lo'], securityGroups: [G('web')] }],
    ];
    for (const [p, body] of refused) t.is((await put(p, body)).status, 400, `${p} ${JSON.stringify(body)}`);
    t.is((await fetch(`${api}/groups/%ZZ`)).status, 400, 'bad percent-encoding is a 400, not a 500');
    // Neutron's meaning is accepted: icmp on an IPv6 rule is ICMPv6, a prefix with host bits its network.
    t.is(
      (
        await put(`/groups/${G('neutronish')}`, {
          rules: [
            { id: 'r', direction: 'ingress', ethertype: 'IPv6', protocol: 'icmp' },
            { id: 's', direction: 'ingress', ethertype: 'IPv4', remoteIpPrefix: '10.1.2.3/8' },
          ],
        })
      ).status,
      200,
    );

    // What an older controller may have stored before the validator existed: written into the store
    // behind the API's back. The agent's sync must not stop on it.
    const { open } = await import('lmdb');
    const db = open({ path: path.join(dataDir, 'store.mdb'), encoding: 'json' });
    t.teardown(async () => {
      await db.remove(['g', G('poison')]);
      await db.remove(['p', 'pz']);
      await db.remove(['h', agents.a.host, 'pz']);
      await db.close();
    });
    await db.put(['g', G('poison')], {
      id: G('poison'),
      stateful: true,
      rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 90, portRangeMax: 80 }],
      revision: 1,
      membersRevision: 0,
    });
    await db.put(['p', 'pz'], {
      id: 'pz',
      host: agents.a.host,
      device: 'tzz',
      mac: '02:00:00:00:ee:01',
      fixedIps: ['fe80::1%lo'],
      allowedAddressPairs: [],
      securityGroups: [G('web')],
      portSecurityEnabled: true,
      revision: 1,
    });
    await db.put(['h', agents.a.host, 'pz'], 1);
    const [v1, v2] = topoA.vms;
    const victim = topoA.addVm(10);
    await call('PUT', '/ports/pp', portBody(victim, agents.a.host, [G('poison')]));
    // The agent restarts: its start-up sync meets both poisoned objects.
    agents.a.proc!.kill('SIGKILL');
    await new Promise((r) => agents.a.proc!.once('exit', r));
    await startAgent('a');
    interface Q {
      quarantined: { kind: string; id: string }[];
    }
    await waitFor('both quarantined', async () => {
      const q = ((await status('a')) as unknown as Q).quarantined.map((e) => `${e.kind}:${e.id}`);
      return q.includes(`group:${G('poison')}`) && q.includes('port:pz');
    });
    // The rest converges: the port of the poisoned group is filtered with none of its rules (admits
    // nothing), a member change elsewhere and a port bound meanwhile go in.
    await inKernel('a', ['pp', 'p1', 'p2']);
    t.false(topoA.ping(v1!, victim.ip4), 'fail-closed: the quarantined group admits nothing');
    t.true(topoA.ping(v1!, v2!.ip4), 'web still works');
    const late = topoA.addVm(11);
    await call('PUT', '/ports/pl', portBody(late, agents.a.host, [G('web')]));
    await inKernel('a', ['pl']);
    await waitFor('the new member reached the kernel', () => topoA.ping(late, v2!.ip4));
    t.is(agents.a.proc!.exitCode, null, 'the agent (run with --unhandled-rejections=strict) is alive');
    await call('DELETE', '/ports/pl');
    await call('DELETE', '/ports/pp');
  },
);

kernelTest.serial('an agent killed with SIGKILL restarts and converges on what changed meanwhile', async (t) => {
  const [v1, v2, v3] = topoA.vms;
  agents.a.proc!.kill('SIGKILL');
  await new Promise((r) => agents.a.proc!.once('exit', r));
  // The firewall stays in place while the agent is down.
  t.true(topoA.ping(v3!, v2!.ip4));
  await call('PUT', '/ports/p3', portBody(v3!, agents.a.host, [G('iso')]));
  await startAgent('a');
  await hostConverged('a');
  t.false(topoA.ping(v3!, v2!.ip4), 'v3 blocked after restart');
  t.true(topoA.ping(v1!, v2!.ip4));
});

/** Zero drift: for every group host a needs, the agent holds the controller's member revision and
 *  the kernel set holds exactly the controller's members. */
async function assertNoDrift(t: import('ava').ExecutionContext): Promise<void> {
  const s = await status('a');
  for (const g of s.groups) {
    if (!g.membersNeeded) continue;
    const ctl = (await (await call('GET', `/groups/${encodeURIComponent(g.id)}`)).json()) as {
      membersRevision: number;
      members: string[];
      rules: { remoteGroupId?: string }[];
    };
    t.is(g.membersRevision ?? 0, ctl.membersRevision, `revision of ${g.id}`);
  }
  const webSet = s.sets.find((x) => x.name.startsWith('sg4-'));
  const ctlWeb = (await (await call('GET', `/groups/${G('web')}`)).json()) as { members: string[] };
  const want = [...ctlWeb.members].sort();
  const kernel = () =>
    topoA.host
      .exec('ipset', ['save', webSet!.name])
      .split('\n')
      .filter((l) => l.startsWith('add '))
      .map((l) => l.split(' ')[2])
      .sort();
  // The agent holds the revision at once; the kernel follows within one coalesced apply (the deadline is
  // for a loaded machine: restarts and a broker restart come just before).
  await waitFor('kernel set equals the controller', () => JSON.stringify(kernel()) === JSON.stringify(want), 60_000).catch(() => undefined);
  t.deepEqual(kernel(), want, 'kernel set equals the controller');
}

/** A burst of membership changes in web: ports q0..q{n-1} on an unrelated host join and leave. */
async function churn(n: number, round: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const body = {
      host: `elsewhere-${tag}`,
      device: `q${i}`,
      mac: '02:00:00:00:bb:01',
      fixedIps: [`10.101.${round}.${i}`],
      securityGroups: [G('web')],
    };
    await call('PUT', `/ports/q${i}`, body).catch(() => undefined);
  }
}

kernelTest.serial('updates racing a sync are neither lost nor applied twice', async (t) => {
  // Restart the agent while a stream of changes is being published: its start-up sync races them.
  agents.a.proc!.kill('SIGKILL');
  await new Promise((r) => agents.a.proc!.once('exit', r));
  const burst = churn(60, 1);
  await startAgent('a');
  await burst;
  await churn(20, 2);
  await waitFor('agent caught up', async () => {
    const ctl = (await (await call('GET', `/groups/${G('web')}`)).json()) as { membersRevision: number };
    return (await status('a')).groups.find((g) => g.id === G('web'))?.membersRevision === ctl.membersRevision;
  });
  await assertNoDrift(t);
});

kernelTest.serial('a broker restart in the middle of updates ends with zero drift', async (t) => {
  // The burst keeps running while the broker goes down and comes back (async, so both interleave).
  const burst = churn(60, 3);
  // Down until both agents have seen it go, so that each really reconnects.
  const down = async () => !(await status('a')).connected && !(await status('b')).connected;
  await restartTestBroker(() => waitFor('agents saw the broker go', down));
  await burst;
  await waitFor('agents reconnected', async () => (await status('a')).connected && (await status('b')).connected, 60_000);
  // Every controller: calls go to them in turn, and one still waiting out its reconnect backoff
  // refuses writes (503) in the tests that follow.
  await waitFor(
    'every controller reconnected',
    async () => {
      for (const a of apis) if (!((await (await get(`${a.url}/healthz`)).json()) as { connected: boolean }).connected) return false;
      return true;
    },
    60_000,
  );
  await call('PUT', `/ports/q0`, {
    host: `elsewhere-${tag}`,
    device: 'q0',
    mac: '02:00:00:00:bb:01',
    fixedIps: ['10.101.4.0'],
    securityGroups: [G('web')],
  });
  await churn(10, 4);
  await waitFor(
    'agent caught up',
    async () => {
      const ctl = (await (await call('GET', `/groups/${G('web')}`)).json()) as { membersRevision: number };
      return (await status('a')).groups.find((g) => g.id === G('web'))?.membersRevision === ctl.membersRevision;
    },
    30_000,
  );
  await assertNoDrift(t);
  const [v1, v2] = topoA.vms;
  t.true(topoA.ping(v1!, v2!.ip4), 'members still reach each other');
});

kernelTest.serial('sg-agent status prints the ports, groups and sets of the running agent', async (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'status'], {
    cwd: repo,
    env: { ...process.env, SG_METRICS_LISTEN: agents.a.metrics },
    encoding: 'utf8',
  });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`host ${agents.a.host} \\(connected\\)`));
  t.regex(r.stdout, /ports \(3\):/);
  t.regex(r.stdout, new RegExp(`${G('web')}\\s+members=\\d+`));
  t.regex(r.stdout, /sets \(\d+\):\n\s+sg4-[0-9a-f]{16}\s+inet\s+size=\d+/);
});

kernelTest.serial('one queue, one consumer, 5,000 group bindings: bindings carry the scale', async (t) => {
  const topoC = new Topology();
  let agentC: ChildProcess | undefined;
  t.teardown(() => {
    agentC?.kill('SIGKILL');
    topoC.destroy();
  });
  const hostC = `host-c-${tag}`;
  const remote = (i: number) => G(`r${i}`);
  for (let k = 0; k < 5; k++) {
    const rules = Array.from({ length: 1000 }, (_, j) => ({
      id: `b${k}-${j}`,
      direction: 'ingress',
      ethertype: 'IPv4',
      protocol: 'tcp',
      portRangeMin: 80,
      portRangeMax: 80,
      remoteGroupId: remote(k * 1000 + j),
    }));
    await call('PUT', `/groups/${G(`big${k}`)}`, { rules });
  }
  await call('PUT', '/ports/pc', {
    host: hostC,
    device: 'tapc',
    mac: '02:00:00:00:cc:01',
    fixedIps: ['10.102.0.1'],
    securityGroups: [0, 1, 2, 3, 4].map((k) => G(`big${k}`)),
  });
  const metrics = `127.0.0.1:${await freePort()}`;
  agentC = startNode('agent-c', 'src/cli/sg-agent.ts', ['run'], {
    SG_AGENT_HOST: hostC,
    SG_AMQP_URL: amqpUrl,
    SG_TRUSTED_KEYS: key!.publicKeyFile,
    SG_NETNS: topoC.host.path,
    SG_METRICS_LISTEN: metrics,
    SG_LOG_LEVEL: 'warn',
  });
  const statusC = async () => (await (await get(`http://${metrics}/status`)).json()) as Status;
  await waitFor('5,005 groups bound', async () => (await statusC()).groups.length === 5005, 120_000);
  const queues = rabbitmqctl(vhost.node, ['list_queues', '-p', vhost.name, '-q', 'name', 'consumers']);
  const line = queues.split('\n').find((l) => l.startsWith('sg.agent.') && !l.includes(agents.a.host)) ?? '';
  const bindings = rabbitmqctl(vhost.node, ['list_bindings', '-p', vhost.name, '-q', 'source_name', 'destination_name']);
  const qname = (await import('../src/protocol/routing.js')).agentQueue(hostC);
  t.is(bindings.split('\n').filter((l) => l.startsWith('sg.groups') && l.includes(qname)).length, 5005);
  t.regex(queues, new RegExp(`${qname.replaceAll('.', '\\.')}\\s+1\\b`), `one consumer: ${line}`);
  // A member joins one of the 5,000 remote groups: it lands in that group's set on host c.
  await call('PUT', '/ports/pr', {
    host: `elsewhere-${tag}`,
    device: 'tapr',
    mac: '02:00:00:00:cc:02',
    fixedIps: ['10.102.9.9'],
    securityGroups: [remote(4321)],
  });
  await waitFor('member in set', async () => (await statusC()).groups.find((g) => g.id === remote(4321))?.members === 1, 30_000);
  t.true(await waitFor('kernel set', () => topoC.host.exec('ipset', ['list']).includes('10.102.9.9'), 30_000), 'kernel set');
});

kernelTest.serial('a port message lost on the way is made up for by the periodic full sync', async (t) => {
  // A change stored whose message never goes out: made with the controllers down, its outbox entries
  // dropped before any controller could publish them. (The agent's queue is exclusive to its
  // connection: nobody else can unbind it to cut it off.)
  for (const c of apis.splice(0)) {
    c.proc.kill('SIGKILL');
    await new Promise((r) => c.proc.once('exit', r));
  }
  const [, v2, v3] = topoA.vms;
  const { Store } = await import('../src/controller/store.js');
  const store = await Store.open(dataDir);
  try {
    await store.putPort('p3', {
      id: 'p3',
      ...portBody(v3!, agents.a.host, [G('iso'), G('web')]),
      allowedAddressPairs: [],
      portSecurityEnabled: true,
    });
    await store.ackOutbox(store.outbox().map((e) => e.key));
  } finally {
    await store.close();
  }
  await startController();
  await startController();
  const p3groups = async () =>
    ((await (await get(`http://${agents.a.metrics}/status`)).json()) as { ports: { id: string; groups: string[] }[] }).ports.find(
      (p) => p.id === 'p3',
    )?.groups ?? [];
  await waitFor('converged through the periodic sync', async () => (await p3groups()).includes(G('web')), 20_000);
  t.true(await waitFor('v3 admitted', () => topoA.ping(v3!, v2!.ip4), 10_000), 'v3 admitted');
});

kernelTest.serial('with one of two controllers killed, the other serves the API and the sync queue', async (t) => {
  const [gone] = apis.splice(0, 1);
  gone!.proc.kill('SIGKILL');
  await new Promise((r) => gone!.proc.once('exit', r));
  // Host a restarts: its start-up sync can only be answered by the surviving controller.
  agents.a.proc!.kill('SIGKILL');
  await new Promise((r) => agents.a.proc!.once('exit', r));
  const [, v2, v3] = topoA.vms;
  await call('PUT', '/ports/p3', portBody(v3!, agents.a.host, [G('iso')]));
  await startAgent('a');
  await hostConverged('a');
  t.false(topoA.ping(v3!, v2!.ip4), 'v3 blocked after the restart');
  await call('PUT', '/ports/p3', portBody(v3!, agents.a.host, [G('iso'), G('web')]));
  await waitFor('v3 admitted again', () => topoA.ping(v3!, v2!.ip4));
  await assertNoDrift(t);
});

kernelTest.serial('a change stored but never published (controller died first) goes out when a controller starts', async (t) => {
  for (const c of apis.splice(0)) {
    c.proc.kill('SIGKILL');
    await new Promise((r) => c.proc.once('exit', r));
  }
  const { Store } = await import('../src/controller/store.js');
  const webMessages = async () => (await status('a')).messagesByGroup[G('web')] ?? 0;
  const before = await webMessages();
  // What a controller does before it publishes: the change and its messages, committed together.
  const store = await Store.open(dataDir);
  t.teardown(() => store.close());
  await store.putPort('late', {
    id: 'late',
    host: `elsewhere-${tag}`,
    device: 'tapl',
    mac: '02:00:00:00:dd:01',
    fixedIps: ['10.103.0.1'],
    allowedAddressPairs: [],
    securityGroups: [G('web')],
    portSecurityEnabled: true,
  });
  t.true(store.outbox().length > 0, 'the messages wait in the outbox');
  // No controller runs (all were killed above): a message out already would have skipped the outbox.
  t.is(await webMessages(), before, 'nothing was published yet');
  await startController();
  await waitFor('published from the outbox', async () => (await webMessages()) > before);
  await waitFor('outbox emptied', () => store.outbox().length === 0);
  const health = (await (await get(`${apis[0]!.url}/healthz`)).json()) as { outbox: number; published: number; connected: boolean };
  t.like(health, { outbox: 0, connected: true });
  t.true(health.published >= 2, 'the orphaned delta and port message went out through this controller');
  await waitFor('member reached the kernel', () => topoA.host.exec('ipset', ['list']).includes('10.103.0.1'));
  await assertNoDrift(t);
});

kernelTest('rules by protocol, port range, CIDR and remote group, both families, driven through the API', async (t) => {
  const [srv, cli, other] = [topoB.addVm(7), topoB.addVm(8), topoB.addVm(9)];
  topoB.serve(srv, 8005);
  topoB.serve(srv, 9000);
  const both = (vm: Vm) => [vm.ip4, vm.ip6];
  const egress = {
    rules: [
      { id: 'c-o4', direction: 'egress', ethertype: 'IPv4' },
      { id: 'c-o6', direction: 'egress', ethertype: 'IPv6' },
    ],
  };
  await call('PUT', `/groups/${G('cli')}`, egress);
  await call('PUT', `/groups/${G('cli-not')}`, egress);
  await call('PUT', `/groups/${G('svc')}`, {
    rules: [
      {
        id: 's-t',
        direction: 'ingress',
        ethertype: 'IPv4',
        protocol: 'tcp',
        portRangeMin: 8000,
        portRangeMax: 8010,
        remoteGroupId: G('cli'),
      },
      {
        id: 's-t6',
        direction: 'ingress',
        ethertype: 'IPv6',
        protocol: 'tcp',
        portRangeMin: 9000,
        portRangeMax: 9000,
        remoteGroupId: G('cli'),
      },
      {
        id: 's-u',
        direction: 'ingress',
        ethertype: 'IPv4',
        protocol: 'udp',
        portRangeMin: 9000,
        portRangeMax: 9000,
        remoteIpPrefix: `${other.ip4}/32`,
      },
      { id: 's-o4', direction: 'egress', ethertype: 'IPv4' },
    ],
  });
  await call('PUT', '/ports/psrv', { ...portBody(srv, agents.b.host, [G('svc')]), fixedIps: both(srv) });
  await call('PUT', '/ports/pcli', { ...portBody(cli, agents.b.host, [G('cli')]), fixedIps: both(cli) });
  await call('PUT', '/ports/pother', { ...portBody(other, agents.b.host, [G('cli-not')]), fixedIps: both(other) });
  await inKernel('b', ['psrv', 'pcli', 'pother']);
  await waitFor('cli admitted to tcp 8005', () => topoB.tcp(cli, srv.ip4, 8005));
  await waitFor('cli admitted over IPv6 to tcp 9000', () => topoB.tcp(cli, srv.ip6, 9000));
  t.false(topoB.tcp(cli, srv.ip4, 9000), 'tcp 9000 is not in the IPv4 range');
  t.false(topoB.tcp(other, srv.ip4, 8005), 'a non-member gets no tcp');
  t.false(topoB.tcp(other, srv.ip6, 9000), 'nor over IPv6');
  t.true(topoB.udp(other, srv.ip4, 9000), 'udp from the /32');
  t.false(topoB.udp(cli, srv.ip4, 9000), 'udp only from the /32');
  t.false(topoB.ping(cli, srv.ip4), 'no icmp rule');
  // cli leaves the group: its addresses leave both sets, through member deltas only.
  const restores = async () =>
    Number(/^sg_agent_chain_restores_total (\d+)/m.exec(await (await get(`http://${agents.b.metrics}/metrics`)).text())?.[1] ?? NaN);
  const before = await restores();
  await call('PUT', '/ports/pcli', { ...portBody(cli, agents.b.host, [G('cli-not')]), fixedIps: both(cli) });
  await hostConverged('b');
  t.false(topoB.tcp(cli, srv.ip4, 8005), 'cli closed out');
  t.false(topoB.tcp(cli, srv.ip6, 9000), 'and over IPv6');
  t.true(topoB.udp(other, srv.ip4, 9000), 'the CIDR rule stays');
  t.true((await restores()) - before <= 2, 'the membership change itself rewrote no chain beyond the port update');
});

kernelTest('SIGTERM stops the agent with the firewall left in place; sg-agent cleanup removes all it owns', async (t) => {
  const [v1, v2, v3] = topoA.vms;
  await call('PUT', '/ports/p3', portBody(v3!, agents.a.host, [G('iso')]));
  await hostConverged('a');
  t.false(topoA.ping(v3!, v2!.ip4), 'v3 blocked');
  const ours = () => ({
    chains: topoA.host
      .exec('iptables-save', ['-t', 'filter'])
      .split('\n')
      .filter((l) => /^:sg-|-j sg-/.test(l))
      .sort(),
    sets: topoA.host
      .exec('ipset', ['list', '-n'])
      .split('\n')
      .filter((n) => /^sg[46]-/.test(n))
      .sort(),
  });
  const before = ours();
  t.true(before.chains.length > 0 && before.sets.length > 0);
  const proc = agents.a.proc!;
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  proc.kill('SIGTERM');
  t.is(await exited, 0, 'a clean exit');
  t.deepEqual(ours(), before, 'chains and sets stay');
  t.true(topoA.ping(v1!, v2!.ip4), 'members still reach each other');
  t.false(topoA.ping(v3!, v2!.ip4), 'and the non-member is still kept out');

  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'cleanup'], {
    cwd: repo,
    env: { ...process.env, SG_NETNS: topoA.host.path },
    encoding: 'utf8',
  });
  t.is(r.status, 0, r.stderr);
  t.deepEqual(ours(), { chains: [], sets: [] }, 'nothing of ours is left');
  t.true(topoA.ping(v3!, v2!.ip4), 'unfiltered once cleaned up');

  await startAgent('a');
  await hostConverged('a');
  t.false(topoA.ping(v3!, v2!.ip4), 'filtering again after a restart');
  t.true(topoA.ping(v1!, v2!.ip4));
});
