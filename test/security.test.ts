// Who may change a firewall. Messages: only what a trusted controller key signed is applied — a broker
// user with write access (here: guest, with every permission on the vhost) cannot open a firewall with
// a forged update, whatever it puts in the signature headers; keys rotate without agent restarts. The
// admin API: a bearer token, the Host header, JSON bodies only, TLS, a Unix socket; no input answers
// 500. Real RabbitMQ, real processes (unhandled rejections fatal), the kernel and packets as oracles.
import test from 'ava';
import amqp from 'amqplib';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { brokerTest, kernelTest } from './helpers/gate.js';
import type { Vm } from './helpers/topology.js';
import { testKey, removeKeys } from './helpers/keys.js';
import { startController, startAgent, agentConnected, testBed, type AgentProc, type ControllerProc, type TestBed } from './helpers/sg.js';
import { startProcess, stopProcess } from './helpers/processes.js';
import { waitFor } from './helpers/wait.js';
import { forgedCases } from './helpers/forged.js';
import { hostileRequests } from './helpers/hostile-http.js';
import { freePort } from './helpers/net.js';
import { DEAD_LETTER_QUEUE, GROUP_EXCHANGE, HOST_EXCHANGE, groupKey, hostKey } from '../src/protocol/routing.js';
import { Keyring, MessageVerifier, generateSigningKey, MessageSigner, UPDATE_CONTEXT, type Refusal } from '../src/protocol/signing.js';
import { loadControllerConfig } from '../src/controller/config.js';
import { loadConfig } from '../src/agent/config.js';

const port = (vm: Vm, host: string, groups: string[]) => ({
  host,
  device: vm.device,
  mac: vm.mac,
  fixedIps: [vm.ip4],
  securityGroups: groups,
});
const web = {
  rules: [
    { id: 'w-in', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' },
    { id: 'w-out', direction: 'egress', ethertype: 'IPv4' },
  ],
};
const iso = { rules: [{ id: 'i-out', direction: 'egress', ethertype: 'IPv4' }] };

test('the verifier accepts exactly what a trusted key signed, in its context (unit)', (t) => {
  const a = testKey();
  const b = testKey();
  t.teardown(() => removeKeys(a, b));
  const v = new MessageVerifier(new Keyring([a.publicKeyFile]));
  const body = Buffer.from('{"v":1}');
  t.is(v.check(body, a.signer.headers(body, UPDATE_CONTEXT), UPDATE_CONTEXT), undefined);
  const reply = a.signer.headers(body, { kind: 'reply', correlationId: 'c1' });
  t.is(v.check(body, reply, { kind: 'reply', correlationId: 'c1' }), undefined);
  t.is(v.check(body, reply, { kind: 'reply', correlationId: 'c2' }), 'bad-signature', 'a reply to another request');
  t.is(v.check(body, undefined, UPDATE_CONTEXT), 'unsigned');
  for (const c of forgedCases({ v: 1 }, a.signer, b.signer)) t.is(v.check(c.body, c.headers, UPDATE_CONTEXT), c.refusal, c.name);
  t.throws(() => new Keyring([b.dir + '/nothing-here']), undefined, 'a missing key file stops start-up');
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'sgtrust-nokeys-'));
  t.teardown(() => fs.rmSync(empty, { recursive: true }));
  t.throws(() => new Keyring([empty]), { message: /no trusted public key/ });
  t.throws(() => MessageSigner.fromFile(path.join(empty, 'x')));
  // A directory keyring follows the directory from one lookup to the next.
  const dir = path.join(empty, 'ring');
  fs.mkdirSync(dir);
  fs.copyFileSync(a.publicKeyFile, path.join(dir, 'a.pub'));
  const ring = new Keyring([dir]);
  t.truthy(ring.get(a.keyId));
  t.falsy(ring.get(b.keyId));
  fs.copyFileSync(b.publicKeyFile, path.join(dir, 'b.pub'));
  t.truthy(ring.get(b.keyId), 'a key added is trusted at once');
  fs.rmSync(path.join(dir, 'a.pub'));
  t.falsy(ring.get(a.keyId), 'a key removed is not, from the next lookup');
  fs.writeFileSync(path.join(dir, 'junk.pub'), 'not a key');
  t.truthy(ring.get(b.keyId), 'a file without a key changes nothing');
  fs.rmSync(path.join(dir, 'b.pub'));
  t.truthy(ring.get(b.keyId), 'an emptied directory keeps the keys held (a deployment caught half-way)');
  const loose = generateSigningKey(path.join(empty, 'k'));
  fs.chmodSync(loose.privateKeyFile, 0o644);
  t.throws(() => MessageSigner.fromFile(loose.privateKeyFile), { message: /chmod 600/ }, 'a private key readable by others is refused');
});

interface Host extends TestBed {
  keysDir: string;
  v1: Vm;
  v2: Vm;
  v3: Vm;
  name: string;
  controller?: ControllerProc;
  agent?: AgentProc;
}

/** One host: v1 and v2 in web (which admits its own members), v3 in iso; the agent trusts the
 *  public keys in a directory of its own. */
async function host(t: import('ava').ExecutionContext): Promise<Host> {
  const h = {
    ...(await testBed(t, { topology: true, prefix: 'sgsec' })),
    keysDir: fs.mkdtempSync(path.join(os.tmpdir(), 'sgtrust-trusted-')),
  } as Host;
  t.teardown(() => fs.rmSync(h.keysDir, { recursive: true, force: true }));
  h.name = `sec-${h.vhost.name}`;
  [h.v1, h.v2, h.v3] = [h.topo.addVm(1), h.topo.addVm(2), h.topo.addVm(3)];
  fs.copyFileSync(h.key.publicKeyFile, path.join(h.keysDir, path.basename(h.key.publicKeyFile)));
  h.controller = h.track(await startController({ amqpUrl: h.vhost.url(), key: h.key, token: h.token, dataDir: h.dataDir }));
  await h.controller.call('PUT', '/groups/web', web);
  await h.controller.call('PUT', '/groups/iso', iso);
  await h.controller.call('PUT', '/ports/p1', port(h.v1, h.name, ['web']));
  await h.controller.call('PUT', '/ports/p2', port(h.v2, h.name, ['web']));
  await h.controller.call('PUT', '/ports/p3', port(h.v3, h.name, ['iso']));
  h.agent = h.track(
    await startAgent({
      host: h.name,
      amqpUrl: h.vhost.url(),
      trustedKeys: h.keysDir,
      netns: h.topo.host.path,
      env: { SG_FULL_SYNC_INTERVAL_MS: '0' },
    }),
  );
  await agentConnected(h.agent);
  // Traffic passes before any filter exists: wait for the kernel state, then check packets.
  await waitFor('every port filtered', () => {
    const k = kernel(h);
    return (
      [h.v1, h.v2, h.v3].every((v) => k.rules.includes(`--physdev-out ${v.device} `)) &&
      k.sets.includes(` ${h.v1.ip4}`) &&
      k.sets.includes(` ${h.v2.ip4}`)
    );
  });
  await waitFor('web members reach each other', () => h.topo.ping(h.v1, h.v2.ip4));
  t.false(h.topo.ping(h.v3, h.v2.ip4), 'iso is kept out of web');
  return h;
}

const kernel = (h: Host) => ({
  rules: h.topo.host.exec('iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, ''),
  sets: h.topo.host.exec('ipset', ['save']),
});
const refusals = async (a: AgentProc) => {
  const out: Record<Refusal, number> = { unsigned: 0, 'unknown-key': 0, 'bad-signature': 0 };
  for (const r of Object.keys(out) as Refusal[]) out[r] = await a.metric(`sg_agent_messages_unauthenticated_total{reason="${r}"}`);
  return out;
};

kernelTest.serial(
  'forged updates that would open the firewall are refused and counted, from a user with write access, whatever their signature',
  async (t) => {
    const h = await host(t);
    const agent = h.agent!;
    const ctlWeb = (await (await h.controller!.call('GET', '/groups/web')).json()) as { membersRevision: number };
    // Chained on the revision the agent holds, so that only the signature stands in the way.
    const members = {
      v: 1,
      type: 'group.members',
      groupId: 'web',
      baseRevision: ctlWeb.membersRevision,
      revision: ctlWeb.membersRevision + 1,
      added: ['0.0.0.0/1', '128.0.0.0/1'],
      removed: [],
    };
    const portOff = {
      v: 1,
      type: 'port.updated',
      host: h.name,
      revision: 50,
      port: { id: 'p2', ...port(h.v2, h.name, ['web']), portSecurityEnabled: false },
    };
    const forger = testKey();
    t.teardown(() => removeKeys(forger));
    const cases = [
      ...forgedCases(members, h.key.signer, forger.signer).map((c) => ({ ...c, exchange: GROUP_EXCHANGE, key: groupKey('web') })),
      ...forgedCases(portOff, h.key.signer, forger.signer).map((c) => ({ ...c, exchange: HOST_EXCHANGE, key: hostKey(h.name) })),
    ];
    const before = kernel(h);
    const counted0 = await refusals(agent);
    const conn = await amqp.connect(h.vhost.url());
    t.teardown(() => conn.close().catch(() => undefined));
    const ch = await conn.createConfirmChannel();
    const dlq0 = (await ch.checkQueue(DEAD_LETTER_QUEUE)).messageCount;
    for (const c of cases) ch.publish(c.exchange, c.key, c.body, { headers: c.headers });
    await ch.waitForConfirms();
    const want = { ...counted0 };
    for (const c of cases) want[c.refusal]++;
    await waitFor('every forgery refused', async () => JSON.stringify(await refusals(agent)) === JSON.stringify(want));
    t.deepEqual(await refusals(agent), want, 'counted by reason');
    await waitFor('dead-lettered', async () => (await ch.checkQueue(DEAD_LETTER_QUEUE)).messageCount - dlq0 === cases.length);
    t.deepEqual(kernel(h), before, 'the kernel is untouched');
    t.false(h.topo.ping(h.v3, h.v2.ip4), 'iso is still kept out of web');
    t.is(
      (await agent.status()).groups.find((g) => g.id === 'web')?.membersRevision,
      ctlWeb.membersRevision,
      "the member revision held is the controller's",
    );
    t.true(
      agent.lines.some((l) => l.includes('unauthenticated update refused')),
      'logged',
    );

    // The oracle can tell: the same delta, signed by the controller's key, does open the firewall.
    const body = Buffer.from(JSON.stringify(members));
    ch.publish(GROUP_EXCHANGE, groupKey('web'), body, { headers: h.key.signer.headers(body, UPDATE_CONTEXT) });
    await ch.waitForConfirms();
    await waitFor('the signed delta applies', () => h.topo.ping(h.v3, h.v2.ip4));
    t.false(agent.exited);
    // What the engine counts is exported as counters (increase() and rate() work on them).
    const exposition = await (await fetch(`http://${agent.metrics}/metrics`)).text();
    for (const name of ['set_operations', 'chain_restores', 'drift_repaired', 'apply_errors', 'conntrack_deleted']) {
      t.regex(exposition, new RegExp(`^# TYPE sg_agent_${name}_total counter$`, 'm'), name);
    }
    t.true((await agent.metric('sg_agent_set_operations_total')) > 0, 'and they count');
  },
);

kernelTest.serial('keys rotate through the trusted-keys directory, without restarting the agent', async (t) => {
  const h = await host(t);
  const agent = h.agent!;
  const next = testKey();
  t.teardown(() => removeKeys(next));
  // 1. The new public key goes to the agents first; 2. the controller switches to the new private key.
  fs.copyFileSync(next.publicKeyFile, path.join(h.keysDir, path.basename(next.publicKeyFile)));
  await stopProcess(h.controller, 'SIGTERM');
  h.controller = h.track(await startController({ amqpUrl: h.vhost.url(), key: next, token: h.token, dataDir: h.dataDir }));
  await h.controller.call('PUT', '/ports/p3', port(h.v3, h.name, ['iso', 'web']));
  await waitFor('a change signed by the new key applies', () => h.topo.ping(h.v3, h.v2.ip4)).catch((e) => {
    t.log(agent.dump());
    throw e;
  });
  t.is((await refusals(agent))['unknown-key'], 0, 'nothing was refused on the way');
  // 3. The old key leaves the directory: what it signs is refused from then on.
  fs.rmSync(path.join(h.keysDir, path.basename(h.key.publicKeyFile)));
  const conn = await amqp.connect(h.vhost.url());
  t.teardown(() => conn.close().catch(() => undefined));
  const ch = await conn.createConfirmChannel();
  const old = Buffer.from(
    JSON.stringify({ v: 1, type: 'port.updated', host: h.name, revision: 90, port: { id: 'p3', ...port(h.v3, h.name, ['iso']) } }),
  );
  ch.publish(HOST_EXCHANGE, hostKey(h.name), old, { headers: h.key.signer.headers(old, UPDATE_CONTEXT) });
  await ch.waitForConfirms();
  await waitFor('the retired key is refused', async () => (await refusals(agent))['unknown-key'] === 1);
  t.true(h.topo.ping(h.v3, h.v2.ip4), 'and changed nothing');
});

/** A request with full control of its headers (fetch would not send a foreign Host). */
function raw(
  url: string,
  o: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer; ca?: Buffer; socketPath?: string },
): Promise<{ status: number; body: string }> {
  const u = new URL(url.startsWith('unix:') ? 'http://localhost' : url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    // An explicit length: Node sends a DELETE's body with neither length nor chunking otherwise.
    const headers = { ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}), ...o.headers };
    const req = mod.request(
      {
        host: u.hostname,
        port: u.port,
        method: o.method ?? 'GET',
        path: o.path,
        headers,
        ...(o.ca ? { ca: o.ca } : {}),
        ...(url.startsWith('unix:') ? { socketPath: url.slice(5) } : {}),
      },
      (res) => {
        let b = '';
        res
          .setEncoding('utf8')
          .on('data', (c) => (b += c))
          .on('end', () => resolve({ status: res.statusCode!, body: b }));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

brokerTest.serial('the admin API: bearer token, Host header, JSON bodies only; no input answers 500', async (t) => {
  const { vhost, key, token, dataDir, track } = await testBed(t, { prefix: 'sgsec' });
  const ctl = track(await startController({ amqpUrl: vhost.url(), key, token, dataDir }));
  const hostHeader = new URL(ctl.api).host;
  const auth = { authorization: `Bearer ${token.token}` };
  const req = (o: Parameters<typeof raw>[1]) => raw(ctl.api, o);

  t.is((await req({ path: '/groups' })).status, 401, 'no token');
  t.is((await req({ path: '/groups', headers: { authorization: `Bearer ${token.token}x` } })).status, 401, 'wrong token');
  t.is((await req({ path: '/groups', headers: { authorization: `Basic ${token.token}` } })).status, 401, 'not a bearer token');
  t.is(
    (await req({ path: '/groups', headers: { authorization: `Bearer ${token.token.slice(0, -1)}` } })).status,
    401,
    'a prefix of the token',
  );
  t.is((await req({ path: '/groups', headers: auth })).status, 200);
  t.is((await req({ path: '/healthz' })).status, 200, 'health needs no token');
  t.is(
    (await req({ method: 'PUT', path: '/groups/g', headers: { 'content-type': 'application/json' }, body: '{"rules":[]}' })).status,
    401,
    'writes need it too',
  );

  // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own name.
  t.is((await req({ path: '/groups', headers: { ...auth, host: 'evil.example' } })).status, 421);
  t.is((await req({ path: '/groups', headers: { ...auth, host: `evil.example:${new URL(ctl.api).port}` } })).status, 421);
  t.is((await req({ path: '/healthz', headers: { host: 'evil.example' } })).status, 421, 'health too');
  t.is((await req({ path: '/groups', headers: { ...auth, host: hostHeader } })).status, 200);
  t.is(
    (await req({ path: '/groups', headers: { ...auth, host: `localhost:${new URL(ctl.api).port}` } })).status,
    200,
    'localhost names the same loopback server',
  );

  // Bodies: application/json only (what a cross-site form or a no-preflight fetch sends is refused).
  t.is(
    (await req({ method: 'PUT', path: '/groups/g', headers: { ...auth, 'content-type': 'text/plain' }, body: '{"rules":[]}' })).status,
    415,
  );
  t.is((await req({ method: 'PUT', path: '/groups/g', headers: auth, body: '{"rules":[]}' })).status, 415);
  t.is(
    (
      await req({
        method: 'PUT',
        path: '/groups/g',
        headers: { ...auth, 'content-type': 'application/json; charset=UTF-8' },
        body: '{"rules":[]}',
      })
    ).status,
    200,
  );
  t.is((await req({ path: '/groups/%ZZ', headers: auth })).status, 400, 'bad percent-encoding');

  // The hostile corpus: 4xx each, nothing stored, the controller still serving.
  const groups = (await req({ path: '/groups', headers: auth })).body;
  const ports = (await req({ path: '/ports', headers: auth })).body;
  const corpus = hostileRequests();
  t.true(corpus.length >= 30);
  for (const c of corpus) {
    const r = await req({
      method: c.method,
      path: c.path,
      headers: { ...auth, ...c.headers },
      ...(c.body !== undefined ? { body: c.body } : {}),
    }).catch((e: Error) => ({ status: 0, body: e.message }));
    t.true(r.status >= 400 && r.status < 500, `${c.name}: ${r.status} ${r.body.slice(0, 120)}`);
  }
  t.is((await req({ path: '/groups', headers: auth })).body, groups, 'no group changed');
  t.is((await req({ path: '/ports', headers: auth })).body, ports, 'no port changed');
  t.false(ctl.exited);
  t.false(
    ctl.lines.some((l) => /internal error|"level":50/.test(l)),
    'nothing logged as an internal error',
  );
});

interface SlowSocket {
  /** The server closed it (the test never does before its teardown). */
  closed: boolean;
  destroy(): void;
}

/** A connection that writes `head`, then one more byte of `drip` every 500 ms, if given, for ever. */
function slowSocket(port: number, head: string, drip?: string): SlowSocket {
  const c = net.connect(port, '127.0.0.1');
  const s: SlowSocket = { closed: false, destroy: () => c.destroy() };
  let timer: NodeJS.Timeout | undefined;
  c.on('connect', () => {
    if (head) c.write(head);
    if (drip) timer = setInterval(() => c.write(drip), 500);
  });
  c.on('data', () => undefined);
  c.on('error', () => undefined);
  c.on('close', () => {
    s.closed = true;
    clearInterval(timer);
  });
  return s;
}

test.serial('the admin API closes connections that send slowly or nothing, and keeps serving meanwhile', async (t) => {
  const { vhost, key, token, dataDir, track } = await testBed(t, { prefix: 'sgsec' });
  const ctl = track(await startController({ amqpUrl: vhost.url(), key, token, dataDir }));
  const { host, port } = new URL(ctl.api);
  const many = (n: number, head: string, drip?: string) => Array.from({ length: n }, () => slowSocket(Number(port), head, drip));
  const sockets = [
    // Headers that never end, a byte at a time.
    ...many(150, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nX-Slow: `, 'a'),
    // Connected, then nothing at all.
    ...many(50, ''),
    // Headers in full, a body that never ends.
    ...many(
      50,
      `PUT /groups/g HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token.token}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"rules":[`,
      ' ',
    ),
    // A request answered, then an idle keep-alive connection.
    ...many(20, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\n\r\n`),
  ];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  t.is((await raw(ctl.api, { path: '/healthz' })).status, 200, 'served while they hang on');
  // Node's defaults would keep the slow ones 60-90 s (headers) and 5 min (body).
  await waitFor('the server closed every slow connection', () => sockets.every((s) => s.closed), 45_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${sockets.filter((s) => !s.closed).length} of ${sockets.length} still open`);
  });
  t.is((await raw(ctl.api, { path: '/healthz' })).status, 200, 'still serving');
  t.false(ctl.exited);
  t.false(
    ctl.lines.some((l) => /internal error|"level":50/.test(l)),
    'nothing logged as an internal error',
  );
});

/** A CA and a server certificate for 127.0.0.1/localhost, made with openssl. */
function makeCerts(dir: string): { ca: string; cert: string; key: string } {
  const run = (args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  };
  run(['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=sg-test-ca']);
  run(['req', '-newkey', 'ed25519', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  fs.writeFileSync(path.join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  run([
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '1',
    '-extfile',
    'ext',
  ]);
  return { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
}

brokerTest.serial('the admin API over HTTPS and on a Unix socket, from a config file; unsafe configurations refuse to start', async (t) => {
  const { vhost, key, token, dataDir: dir, track } = await testBed(t, { prefix: 'sgsec' });
  let configs = 0;
  const certs = makeCerts(dir);
  const httpPort = await freePort();
  const config = (http: object) => {
    const file = path.join(dir, `config-${configs++}.json`);
    fs.writeFileSync(
      file,
      JSON.stringify({
        amqp: { url: vhost.url() },
        dataDir: path.join(dir, 'data'),
        signingKeyFile: key.privateKeyFile,
        http,
        log: { level: 'info' },
      }),
    );
    return file;
  };
  // Only the config file speaks: no SG_* variable of this process leaks in.
  const clean = Object.fromEntries(
    Object.keys(process.env)
      .filter((k) => k.startsWith('SG_'))
      .map((k) => [k, undefined]),
  );
  const run = (file: string) => track(startProcess('src/cli/sg-controller.ts', ['run', '--config', file], clean));

  const tls = run(config({ listen: `127.0.0.1:${httpPort}`, tokenFile: token.file, tls: { certFile: certs.cert, keyFile: certs.key } }));
  const ca = fs.readFileSync(certs.ca);
  const url = `https://127.0.0.1:${httpPort}`;
  await waitFor('HTTPS API', async () => (await raw(url, { path: '/healthz', ca })).status === 200);
  t.is((await raw(url, { path: '/groups', ca, headers: { authorization: `Bearer ${token.token}` } })).status, 200);
  t.is((await raw(url, { path: '/groups', ca })).status, 401);
  await t.throwsAsync(raw(`http://127.0.0.1:${httpPort}`, { path: '/healthz' }), undefined, 'no plain HTTP on the TLS port');
  // A connection that never starts its TLS handshake is not kept (Node's default: 2 min).
  const silent = slowSocket(httpPort, '');
  t.teardown(() => silent.destroy());
  await waitFor('the server closed a connection without a handshake', () => silent.closed, 45_000);
  await stopProcess(tls);

  const sock = path.join(dir, 'api.sock');
  run(config({ listen: `unix:${sock}`, socketMode: '600' }));
  await waitFor('socket API', async () => (await raw(`unix:${sock}`, { path: '/groups' })).status === 200);
  t.is(fs.statSync(sock).mode & 0o777, 0o600, 'only the controller user may connect');

  // Refused at start, with the reason: TCP without a token; a non-loopback address without TLS.
  for (const [http, why] of [
    [{ listen: `127.0.0.1:${await freePort()}` }, /requires a token/],
    [{ listen: `0.0.0.0:${await freePort()}`, tokenFile: token.file }, /requires TLS/],
  ] as const) {
    const p = run(config(http));
    const { code } = await p.exit;
    t.is(code, 1);
    t.regex(p.dump(), why);
  }
});

test('configuration: what a deployment must decide about trust is checked at start (unit)', (t) => {
  const key = testKey();
  t.teardown(() => removeKeys(key));
  const base = { SG_SIGNING_KEY_FILE: key.privateKeyFile, SG_HTTP_TOKEN: 'x'.repeat(16) };
  const c = loadControllerConfig(undefined, {
    ...base,
    SG_HTTP_LISTEN: '127.0.0.1:1',
    SG_HTTP_ALLOWED_HOSTS: 'api.example:1, other:2',
    SG_HTTP_SOCKET_MODE: '660',
  });
  t.deepEqual(c.http.allowedHosts, ['api.example:1', 'other:2']);
  t.is(c.http.socketMode, 0o660);
  t.is(c.http.token, 'x'.repeat(16), 'a token from the environment');
  t.throws(() => loadControllerConfig(undefined, { SG_HTTP_TOKEN: 'x'.repeat(16) }), { message: /signingKeyFile/ });
  t.throws(() => loadControllerConfig(undefined, { ...base, SG_HTTP_TOKEN: 'short' }), { message: /at least 16/ });
  t.throws(() => loadControllerConfig(undefined, { ...base, SG_HTTP_TOKEN: 'with a space inside' }), { message: /printable ASCII/ });
  t.throws(() => loadControllerConfig(undefined, { SG_SIGNING_KEY_FILE: key.privateKeyFile }), { message: /requires a token/ });
  t.throws(() => loadControllerConfig(undefined, { ...base, SG_HTTP_LISTEN: '[::]:9797' }), { message: /requires TLS/ });
  t.notThrows(
    () => loadControllerConfig(undefined, { SG_SIGNING_KEY_FILE: key.privateKeyFile, SG_HTTP_LISTEN: 'unix:/run/x.sock' }),
    'a Unix socket needs no token',
  );
  t.throws(() => loadControllerConfig(undefined, { ...base, SG_AMQP_CA_FILE: key.publicKeyFile }), { message: /not amqps/ });
  const agent = loadConfig(undefined, {
    SG_AGENT_HOST: 'h',
    SG_AMQP_URL: 'amqps://x/',
    SG_TRUSTED_KEYS: '/a, /b',
    SG_AMQP_CA_FILE: '/ca',
    SG_AMQP_EXTERNAL_AUTH: 'true',
  });
  t.deepEqual(agent.trustedKeys, ['/a', '/b']);
  t.deepEqual(agent.amqpTls, { caFile: '/ca', external: true });
});
