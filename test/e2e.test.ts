// End to end: RabbitMQ, the controller and two agents as separate processes, each agent enforcing in
// its own "host" namespace with VMs on a bridge. Everything is driven through the controller's API.
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import amqp from 'amqplib';
import { requireNetns } from './helpers/netns.js';
import { Topology, type Vm } from './helpers/topology.js';
import { ensureRabbit } from './helpers/rabbit.js';
import { hostKey, HOST_EXCHANGE, DEAD_LETTER_QUEUE } from '../src/protocol/routing.js';
import { malformedCorpus } from './helpers/malformed.js';

const repo = path.resolve(__dirname, '..');
const tag = randomBytes(3).toString('hex');
const vhost = `sgtest-${tag}`;
const amqpUrl = `amqp://guest:guest@127.0.0.1:5672/${vhost}`;
const procs: ChildProcess[] = [];
let api = '';
let topoA: Topology;
let topoB: Topology;
const agents: Record<'a' | 'b', { host: string; metrics: string; proc?: ChildProcess; topo: () => Topology }> = {
  a: { host: `host-a-${tag}`, metrics: '', topo: () => topoA },
  b: { host: `host-b-${tag}`, metrics: '', topo: () => topoB },
};

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function startNode(script: string, args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, script), ...args], {
    cwd: repo,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  procs.push(child);
  return child;
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined | false> | T | undefined | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function call(method: string, p: string, body?: unknown): Promise<Response> {
  const r = await fetch(`${api}${p}`, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? null : JSON.stringify(body) });
  if (r.status >= 400) throw new Error(`${method} ${p}: ${r.status} ${await r.text()}`);
  return r;
}

interface Status {
  connected: boolean;
  groups: { id: string; members: number; membersRevision: number | null }[];
  messagesByGroup: Record<string, number>;
  sets: { name: string; size: number }[];
  engine: { rejectedInput: number };
}
async function status(which: 'a' | 'b'): Promise<Status> {
  return (await (await fetch(`http://${agents[which].metrics}/status`)).json()) as Status;
}
async function rejected(which: 'a' | 'b'): Promise<number> {
  const text = await (await fetch(`http://${agents[which].metrics}/metrics`)).text();
  return Number(/^sg_agent_messages_rejected_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

async function startAgent(which: 'a' | 'b'): Promise<void> {
  const a = agents[which];
  a.metrics ||= `127.0.0.1:${await freePort()}`;
  a.proc = startNode('src/cli/sg-agent.ts', ['run'], {
    SG_AGENT_HOST: a.host,
    SG_AMQP_URL: amqpUrl,
    SG_NETNS: a.topo().host.path,
    SG_METRICS_LISTEN: a.metrics,
    SG_QUEUE_EXPIRES_MS: '120000',
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

let ready = false;
test.before(async () => {
  if (process.getuid?.() !== 0) return;
  await ensureRabbit();
  spawnSync('rabbitmqctl', ['add_vhost', vhost], { stdio: 'ignore' });
  spawnSync('rabbitmqctl', ['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*'], { stdio: 'ignore' });
  const httpPort = await freePort();
  startNode('src/cli/sg-controller.ts', [], {
    SG_AMQP_URL: amqpUrl,
    SG_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
    SG_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'sg-ctl-')),
    SG_LOG_LEVEL: 'warn',
  });
  api = `http://127.0.0.1:${httpPort}`;
  await waitFor('controller', async () => (await fetch(`${api}/healthz`)).ok);
  topoA = new Topology();
  topoB = new Topology();
  await startAgent('a');
  await startAgent('b');
  ready = true;
});

test.after.always(() => {
  for (const p of procs) p.kill('SIGKILL');
  topoA?.destroy();
  topoB?.destroy();
  spawnSync('rabbitmqctl', ['delete_vhost', vhost], { stdio: 'ignore' });
});

test.serial('groups and ports created through the API become sets, chains and real filtering', async (t) => {
  if (!requireNetns(t) || !ready) return;
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
  await waitFor('host a sets', async () => (await status('a')).sets.some((s) => s.size === 2));
  await waitFor('host b sets', async () => (await status('b')).sets.some((s) => s.size === 2));
  await waitFor('web members reach each other', () => topoA.ping(v1, v2.ip4));
  t.false(topoA.ping(v3, v2.ip4), 'iso is not in web');
  await waitFor('db members reach each other', () => topoB.ping(v4, v5.ip4));

  // v3 joins web: traffic opens, through a member delta to host a.
  await call('PUT', '/ports/p3', portBody(v3, agents.a.host, [G('iso'), G('web')]));
  await waitFor('v3 admitted after joining web', () => topoA.ping(v3, v2.ip4));
  t.pass();
});

test.serial('an agent receives updates only for the groups of its ports; bindings follow ports', async (t) => {
  if (!requireNetns(t) || !ready) return;
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
  await waitFor('b unbinds web', async () => !(await status('b')).groups.some((g) => g.id === G('web')));
  t.pass();
});

test.serial('malformed and hostile messages are rejected to the dead-letter queue and change nothing', async (t) => {
  if (!requireNetns(t) || !ready) return;
  const before = await rejected('a');
  const rules = topoA.host.exec('iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, '');
  const sets = topoA.host.exec('ipset', ['save']);
  const conn = await amqp.connect(amqpUrl);
  const ch = await conn.createConfirmChannel();
  const dlqBefore = (await ch.checkQueue(DEAD_LETTER_QUEUE)).messageCount;
  const corpus = malformedCorpus(agents.a.host);
  t.true(corpus.length >= 30);
  for (const body of corpus) ch.publish(HOST_EXCHANGE, hostKey(agents.a.host), body);
  await ch.waitForConfirms();
  await waitFor('all rejected', async () => (await rejected('a')) - before === corpus.length);
  t.is((await rejected('a')) - before, corpus.length);
  await waitFor('dead-lettered', async () => (await ch.checkQueue(DEAD_LETTER_QUEUE)).messageCount - dlqBefore >= corpus.length);
  await conn.close();
  t.is(topoA.host.exec('iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, ''), rules);
  t.is(topoA.host.exec('ipset', ['save']), sets);
  t.true((await status('a')).connected, 'still running');
});

test.serial('an agent killed with SIGKILL restarts and converges on what changed meanwhile', async (t) => {
  if (!requireNetns(t) || !ready) return;
  const [v1, v2, v3] = topoA.vms;
  agents.a.proc!.kill('SIGKILL');
  await new Promise((r) => agents.a.proc!.once('exit', r));
  // The firewall stays in place while the agent is down.
  t.true(topoA.ping(v3!, v2!.ip4));
  await call('PUT', '/ports/p3', portBody(v3!, agents.a.host, [G('iso')]));
  await startAgent('a');
  await waitFor('v3 blocked after restart', () => !topoA.ping(v3!, v2!.ip4));
  t.true(topoA.ping(v1!, v2!.ip4));
});
