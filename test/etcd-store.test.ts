// The controller's etcd store and its fenced leadership, on a three-member etcd cluster of the tests'
// own (test/helpers/etcd.ts, loopback): the store's rules as on LMDB, two controllers writing at once,
// a peer's write reaching the publishing relay through the watch, export and import, quorum lost and
// back, and a leader cut off from the majority stopping before another starts.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EtcdStore } from '../src/controller/etcd-store.js';
import { EtcdLeadership } from '../src/controller/etcd-leadership.js';
import { Store } from '../src/controller/store.js';
import { OutboxRelay } from '../src/controller/relay.js';
import { StoreUnavailableError, type StoreSnapshot } from '../src/controller/records.js';
import { coalesceUpdates, type Publisher } from '../src/controller/publisher.js';
import { buildSync, withLaterChanges } from '../src/controller/rpc.js';
import type { UpdateMessage } from '../src/protocol/messages.js';
import { ValidationError } from '../src/domain/validate.js';
import { EtcdCluster, makeTls } from './helpers/etcd.js';
import { etcdStoreOptions, loadControllerConfig, type EtcdConfig } from '../src/controller/config.js';
import { etcdTest } from './helpers/store-gates.js';
import { waitFor } from './helpers/wait.js';
import { liveMigrationPlacement } from './helpers/store-cases.js';

let cluster: EtcdCluster | undefined;
test.before(async () => {
  if (etcdTest.runs) cluster = await EtcdCluster.start(3);
});
test.after.always(async () => {
  await cluster?.stop();
});

const prefix = () => `/sgtest-${randomBytes(4).toString('hex')}/`;
const open = async (t: import('ava').ExecutionContext, p: string, endpoints = cluster!.endpoints) => {
  const s = await EtcdStore.open({ endpoints, prefix: p, requestTimeoutMs: 2_000 });
  t.teardown(() => s.close());
  return s;
};
const port = (i: number, host: string, groups: string[], ip = `10.0.${i >> 8}.${i & 255}`) => ({
  id: `p${i}`,
  host,
  device: `tap${i}`,
  mac: '02:00:00:00:00:01',
  fixedIps: [ip],
  allowedAddressPairs: [],
  securityGroups: groups,
  portSecurityEnabled: true,
});
const revisionsOf = (msgs: UpdateMessage[], type: string, group: string) =>
  msgs.filter((m) => m.type === type && 'groupId' in m && m.groupId === group).map((m) => (m as { revision: number }).revision);

etcdTest.serial(
  'the etcd store keeps ids apart however they are spelled, revisions rise past a deletion, and the outbox holds every change',
  async (t) => {
    const s = await open(t, prefix());
    const hostile = ['g', 'g\u0000', 'g\u0000x', 'g\u001e', 'g/', 'g%2F', "g'; DROP", 'g\uffff'];
    for (const [i, g] of hostile.entries()) await s.putPort(`p${i}`, port(i, hostile[i]!, [g], `10.0.0.${i + 1}`));
    for (const [i, g] of hostile.entries()) {
      t.deepEqual(s.membersOf(g), [`10.0.0.${i + 1}`], `members of ${JSON.stringify(g)}`);
      t.deepEqual(
        s.portsOnHost(g).map((p) => p.id),
        [`p${i}`],
        `ports on ${JSON.stringify(g)}`,
      );
    }
    t.is(s.outbox().length, hostile.length * 2, 'one member delta and one port message per change');
    await s.putGroup('web', true, []);
    t.is((await s.deleteGroup('web'))!.revision, 2);
    t.is(s.group('web'), undefined);
    t.is(await s.deleteGroup('web'), undefined, 'deleting twice is a no-op');
    t.is((await s.putGroup('web', true, [])).revision, 3, 're-created above the deletion');
    t.deepEqual(
      s
        .outbox()
        .slice(-3)
        .map((e) => [e.message.type, (e.message as { revision: number }).revision]),
      [
        ['group.rules', 1],
        ['group.deleted', 2],
        ['group.rules', 3],
      ],
    );
    await s.ackOutbox(s.outbox().map((e) => e.key));
    t.is(s.outbox().length, 0);
  },
);

etcdTest.serial(
  'a port migrating live is filtered on both hosts, each told of it as its own, until its binding moves (etcd)',
  async (t) => {
    await liveMigrationPlacement(t, await open(t, prefix()));
  },
);

etcdTest.serial(
  "a member list larger than etcd's operations per transaction is written as several deltas, removals first; a change that cannot be split is refused as input, and the queue goes on",
  async (t) => {
    const s = await EtcdStore.open({ endpoints: cluster!.endpoints, prefix: prefix(), requestTimeoutMs: 2_000, maxTxnOps: 32 });
    t.teardown(() => s.close());
    const addr = (i: number) => `10.9.${i >> 8}.${i & 255}`;
    const first = Array.from({ length: 300 }, (_, i) => addr(i));
    // Each delta holds 30 writes of members (32 less the group's record and its message).
    t.like(await s.setGroupMembers('ag:big', first), { revision: 10 });
    t.deepEqual(s.membersOf('ag:big').sort(), [...first].sort());
    const second = Array.from({ length: 150 }, (_, i) => addr(1000 + i));
    t.like(await s.setGroupMembers('ag:big', second), { revision: 25 }, '10 deltas of removals, then 5 of additions');
    t.deepEqual(s.membersOf('ag:big').sort(), [...second].sort());
    const deltas = s
      .outbox()
      .map((e) => e.message)
      .filter((m): m is Extract<UpdateMessage, { type: 'group.members' }> => m.type === 'group.members');
    t.deepEqual(
      deltas.map((d) => [d.baseRevision, d.revision]),
      Array.from({ length: 25 }, (_, i) => [i, i + 1]),
      'the deltas chain',
    );
    const kinds = deltas.slice(10).map((d) => (d.removed.length ? (d.added.length ? 'both' : 'removal') : 'addition'));
    t.deepEqual(
      kinds,
      [...Array<string>(10).fill('removal'), ...Array<string>(5).fill('addition')],
      'removals first: no state in between holds an address that neither list holds',
    );
    // A port in 20 groups writes 20 member keys and 20 group records in one change: it cannot be split.
    const groups = Array.from({ length: 20 }, (_, g) => `g${g}`);
    const err = await t.throwsAsync(s.putPort('p1', port(1, 'h1', groups)));
    t.true(err instanceof ValidationError && err.name === 'ChangeTooLargeError', String(err));
    t.regex(err.message, /max-txn-ops/);
    await s.putPort('p2', port(2, 'h1', ['g0']));
    t.deepEqual(s.membersOf('g0'), [port(2, 'h1', []).fixedIps[0]], 'the next change goes in');
  },
);

etcdTest.serial(
  'two controllers writing one etcd store at once: no member count lost, and each group revision committed once, in order',
  async (t) => {
    const p = prefix();
    const [a, b] = [await open(t, p), await open(t, p)];
    // Ports of both controllers share addresses: a lost update of a count would leave or drop one.
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) writes.push((i % 2 ? a : b).putPort(`p${i}`, port(i, `h${i % 7}`, ['web', 'db'], `10.1.0.${i % 50}`)));
    await Promise.all(writes);
    for (let i = 0; i < 300; i += 3) writes.push((i % 2 ? b : a).putPort(`p${i}`, undefined));
    await Promise.all(writes);
    const left = new Set(
      Array.from({ length: 300 }, (_, i) => i)
        .filter((i) => i % 3 !== 0)
        .map((i) => `10.1.0.${i % 50}`),
    );
    await waitFor('both copies current', () => a.outboxDepth() === b.outboxDepth() && b.ports().length === 200);
    for (const s of [a, b]) {
      t.deepEqual(s.membersOf('web').sort(), [...left].sort());
      t.deepEqual(s.membersOf('db').sort(), [...left].sort());
    }
    const msgs = a.outbox().map((e) => e.message);
    for (const g of ['web', 'db']) {
      const revs = revisionsOf(msgs, 'group.members', g);
      t.deepEqual(
        revs,
        revs.map((_, i) => i + 1),
        `${g}: one message per revision, in commit order`,
      );
      t.is(a.groupRevisions(g).membersRevision, revs.length, `${g}: the stored revision is the last one announced`);
    }
    // A sync reply from either controller as the leader (its relay publishes every entry, none yet),
    // and the relay's next delta after it: the delta starts at the reply's revision (an agent that
    // synced applies it) and ends at the store's members. Without the lease, a relay publishes
    // nothing, and the reply gives the newest members. (`now`: the newest entry's time, so that a
    // slow run's entries are not taken as stuck.)
    for (const [s, leads] of [
      [a, true],
      [b, true],
      [a, false],
    ] as const) {
      const relay = new OutboxRelay(s, () => undefined, { coalesceMs: 1, isLeader: () => leads });
      t.teardown(() => relay.close());
      const now = Math.max(...s.outbox().map((e) => e.at));
      const source = withLaterChanges(s, () => relay.laterMemberChanges(now));
      const [part] = buildSync(source, { v: 1, type: 'sync.request', host: 'h0', groupIds: ['web'] });
      const reply = part!.members.find((m) => m.groupId === 'web')!;
      t.is(reply.revision, leads ? 0 : s.groupRevisions('web').membersRevision);
      const members = new Set(reply.ips);
      let held = reply.revision;
      for (const d of coalesceUpdates(s.outbox().map((e) => e.message))) {
        if (d.type !== 'group.members' || d.groupId !== 'web' || d.revision <= held) continue;
        t.is(d.baseRevision, held, 'the delta after the reply chains onto it');
        for (const x of d.removed) members.delete(x);
        for (const x of d.added) members.add(x);
        held = d.revision;
      }
      t.is(held, s.groupRevisions('web').membersRevision);
      t.deepEqual([...members].sort(), [...left].sort());
    }
  },
);

etcdTest.serial("the leading relay publishes a peer's write as the watch brings it, in commit order, without looking for it", async (t) => {
  const p = prefix();
  const [mine, peer] = [await open(t, p), await open(t, p)];
  const sent: string[] = [];
  const publisher = {
    send: async (m: UpdateMessage) => void sent.push(`${m.type}:${(m as { revision: number }).revision}`),
  } as unknown as Publisher;
  // Looking would show as reads of the outbox's depth (what a polling relay checks every interval).
  let looked = 0;
  const watched = new Proxy(mine, {
    get: (target, prop, receiver): unknown =>
      prop === 'outboxDepth' ? () => (looked++, target.outboxDepth()) : Reflect.get(target, prop, receiver),
  });
  const relay = new OutboxRelay(watched, () => publisher, {
    coalesceMs: 1,
    minIntervalMs: 1,
    orphanAfterMs: 600_000,
    isLeader: () => true,
  });
  t.teardown(() => relay.close());
  await relay.drain();
  await peer.putGroup('g', true, []);
  await peer.putGroup('g', false, []);
  await waitFor("the peer's writes published", () => sent.length >= 2, 20_000);
  t.deepEqual(sent, ['group.rules:1', 'group.rules:2']);
  t.is(looked, 0, 'the relay never looked for entries: the watch told it');
  await waitFor('the outbox emptied', () => mine.outboxDepth() === 0 && peer.outboxDepth() === 0);
});

etcdTest.serial('export → import round trip equals the store, from LMDB to etcd and back', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-store-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const lmdb = await Store.open(path.join(dir, 'a'));
  t.teardown(() => lmdb.close());
  await lmdb.putGroup('web', true, [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' }]);
  for (let i = 0; i < 40; i++) await lmdb.putPort(`p${i}`, port(i, `h${i % 3}`, ['web'], `10.2.0.${i % 30}`));
  await lmdb.putPort('p3', undefined);
  await lmdb.setGroupMembers('ag:x', ['192.0.2.1', '192.0.2.0/28']);
  await lmdb.deleteGroup('web');
  const snap: StoreSnapshot = lmdb.snapshot();
  const etcd = await open(t, prefix());
  await etcd.putPort('stale', port(99, 'h9', ['old']));
  await etcd.restore(snap);
  t.deepEqual(etcd.snapshot(), snap, 'etcd holds exactly the export (what it held before is gone)');
  t.deepEqual(etcd.membersOf('web').sort(), lmdb.membersOf('web').sort());
  t.deepEqual(
    etcd
      .portsOnHost('h1')
      .map((p) => p.id)
      .sort(),
    lmdb
      .portsOnHost('h1')
      .map((p) => p.id)
      .sort(),
  );
  t.deepEqual(etcd.groupRevisions('web'), lmdb.groupRevisions('web'), 'revisions carried over: agents see them keep rising');
  // Importing the same again writes nothing.
  const before = etcd.health().revision as number;
  await etcd.restore({ ...snap, outbox: [] });
  await etcd.restore({ ...snap, outbox: [] });
  t.true((etcd.health().revision as number) - before <= 2, 'a second import of the same writes no record');
  const back = await Store.open(path.join(dir, 'b'));
  t.teardown(() => back.close());
  await back.restore(etcd.snapshot());
  t.deepEqual(back.snapshot(), etcd.snapshot(), 'and back to LMDB');
  t.is(
    (await etcd.putGroup('web', true, [])).revision,
    snap.groups.find((g) => g.id === 'web')!.revision + 1,
    'a change after the import continues the revisions',
  );
});

etcdTest.serial(
  'without a quorum changes are refused at once with a clear error, reads go on, and changes resume when it returns',
  async (t) => {
    const c = cluster!;
    const s = await open(t, prefix());
    await s.putGroup('web', true, []);
    await c.kill(1);
    await c.kill(2);
    t.teardown(async () => {
      await c.restart(1);
      await c.restart(2);
      await c.allHealthy();
    });
    await waitFor('the store says it has no quorum', () => !s.health().quorum, 20_000);
    const err = await t.throwsAsync(s.putGroup('web', false, []));
    t.true(err instanceof StoreUnavailableError, `refused as unavailable: ${err?.message}`);
    t.regex(err.message, /quorum/);
    t.is(s.group('web')?.stateful, true, 'reads are answered from the copy');
    await c.restart(1);
    await c.restart(2);
    await waitFor('quorum back', () => s.health().quorum, 60_000);
    await waitFor(
      'a change accepted again',
      () =>
        s.putGroup('web', false, []).then(
          () => true,
          () => false,
        ),
      30_000,
    );
    t.is(s.group('web')?.stateful, false);
  },
);

etcdTest.serial(
  'a leader cut off from the majority stops publishing before another controller leads; a deposed leader reads nothing to publish',
  async (t) => {
    const c = cluster!;
    const p = prefix();
    // The first controller reaches member 0 alone: killing that member cuts it off from the majority.
    const isolated = await open(t, p, [c.endpoints[0]!]);
    const other = await open(t, p, c.endpoints.slice(1));
    const a = new EtcdLeadership(isolated, { ttlS: 2 });
    const b = new EtcdLeadership(other, { ttlS: 2 });
    t.teardown(async () => {
      await a.close();
      await b.close();
    });
    let end!: () => void;
    const over = new Promise<void>((r) => (end = r));
    t.teardown(() => end());
    const conn = undefined as never;
    void a.campaign(conn, over);
    await waitFor('the first controller leads', () => a.leads, 20_000);
    void b.campaign(conn, over);
    await isolated.putGroup('g', true, []);
    t.truthy(await a.fencedOutbox(), 'the leader reads the outbox');
    t.is(await b.fencedOutbox(), null, 'the other reads nothing');
    // Cut off: both sides sampled every few milliseconds; the old leader must have stopped first.
    let aStopped = 0;
    let bStarted = 0;
    const sample = setInterval(() => {
      if (!aStopped && !a.mayPublish()) aStopped = performance.now();
      if (!bStarted && b.mayPublish()) bStarted = performance.now();
    }, 2);
    t.teardown(() => clearInterval(sample));
    await c.kill(0);
    t.teardown(async () => {
      await c.restart(0);
      await c.allHealthy();
    });
    await waitFor('another controller leads', () => bStarted > 0, 30_000);
    clearInterval(sample);
    t.true(
      aStopped > 0 && aStopped < bStarted,
      `the cut-off leader stopped ${(bStarted - aStopped).toFixed(0)} ms before the other started`,
    );
    t.log(`cut-off leader stopped; another led ${(bStarted - aStopped).toFixed(0)} ms later`);
    // An operator deleting the key deposes the leader at once: its next drain reads nothing.
    await other.client.delete().key(other.keyOf('leader').toString());
    t.is(await b.fencedOutbox(), null);
    t.false(b.leads);
  },
);

etcdTest.serial(
  "with etcd's authentication on, a user whose role reads and writes the prefix alone runs the store and the leadership; " +
    'another prefix is refused',
  async (t) => {
    const own = await EtcdCluster.start(1);
    t.teardown(() => own.stop());
    const etcdctl = (...args: string[]) => {
      const r = spawnSync('etcdctl', ['--endpoints', own.endpoints[0]!, ...args], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
      });
      if (r.status !== 0) throw new Error(`etcdctl ${args.join(' ')}: ${r.stderr}`);
    };
    // The deployment docs/agent.md gives: a role with read and write on the prefix, a user holding it.
    etcdctl('user', 'add', 'root:root-pw');
    etcdctl('role', 'add', 'sg-controller');
    etcdctl('role', 'grant-permission', 'sg-controller', 'readwrite', '/sg-controller/', '--prefix=true');
    etcdctl('user', 'add', 'sg-controller:ctl-pw');
    etcdctl('user', 'grant-role', 'sg-controller', 'sg-controller');
    etcdctl('auth', 'enable');
    const auth = { username: 'sg-controller', password: 'ctl-pw' };
    const s = await EtcdStore.open({ endpoints: own.endpoints, prefix: '/sg-controller/', auth });
    t.teardown(() => s.close());
    await s.putGroup('web', true, []);
    const leadership = new EtcdLeadership(s, { ttlS: 2 });
    t.teardown(() => leadership.close());
    let end!: () => void;
    const over = new Promise<void>((r) => (end = r));
    t.teardown(() => end());
    void leadership.campaign(undefined as never, over);
    await waitFor('the controller leads', () => leadership.leads, 20_000);
    t.is((await leadership.fencedOutbox())?.length, 1, 'the fenced read of the outbox');
    await s.ackOutbox(s.outbox().map((e) => e.key));
    t.is(s.outboxDepth(), 0);
    await t.throwsAsync(EtcdStore.open({ endpoints: own.endpoints, prefix: '/elsewhere/', auth }), { message: /permission denied/ });
    await t.throwsAsync(EtcdStore.open({ endpoints: own.endpoints, prefix: '/sg-controller/', auth: { ...auth, password: 'wrong' } }), {
      message: /authentication failed|invalid/i,
    });
  },
);

etcdTest.serial(
  'over TLS with a client certificate, configured as an operator configures it; without the certificate etcd refuses the controller',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-etcd-tls-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const tls = makeTls(dir);
    const own = await EtcdCluster.start(1, tls);
    t.teardown(() => own.stop());
    const env = {
      SG_SIGNING_KEY_FILE: '/k',
      SG_HTTP_LISTEN: '',
      SG_STORE: 'etcd',
      SG_ETCD_ENDPOINTS: own.endpoints[0]!,
      SG_ETCD_CA_FILE: tls.ca,
      SG_ETCD_CERT_FILE: tls.clientCert,
      SG_ETCD_KEY_FILE: tls.clientKey,
    };
    const cfg = loadControllerConfig(undefined, env);
    t.is(cfg.store.kind, 'etcd');
    const s = await EtcdStore.open(etcdStoreOptions((cfg.store as { etcd: EtcdConfig }).etcd));
    t.teardown(() => s.close());
    t.is((await s.putGroup('web', true, [])).revision, 1);
    await t.throwsAsync(
      EtcdStore.open({
        endpoints: own.endpoints,
        prefix: '/sg-controller/',
        tls: { ca: fs.readFileSync(tls.ca) },
        requestTimeoutMs: 1_000,
      }),
      { instanceOf: StoreUnavailableError },
    );
    t.throws(() => loadControllerConfig(undefined, { ...env, SG_ETCD_CA_FILE: undefined }), { message: /caFile/ });
    t.throws(() => loadControllerConfig(undefined, { ...env, SG_ETCD_KEY_FILE: undefined }), {
      message: /certFile and store.etcd.tls.keyFile/,
    });
    t.throws(() => loadControllerConfig(undefined, { ...env, SG_ETCD_ENDPOINTS: `${own.endpoints[0]},http://127.0.0.1:2379` }), {
      message: /all be https/,
    });
    t.throws(() => loadControllerConfig(undefined, { SG_SIGNING_KEY_FILE: '/k', SG_HTTP_LISTEN: '', SG_ETCD_ENDPOINTS: 'http://a:2379' }), {
      message: /the store is lmdb/,
    });
  },
);
