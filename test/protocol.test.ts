// The protocol's pure parts (schemas, routing keys, sync building) and the controller's store on a
// real LMDB; their use over a real broker, by two controller processes at once, is covered by
// e2e.test.ts.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decode, encode, MalformedMessage, MAX_MESSAGE_BYTES, type SyncReply } from '../src/protocol/messages.js';
import type { AnyMessage } from '../src/protocol/messages.js';
import { groupKey, hostKey, agentQueue } from '../src/protocol/routing.js';
import { Store } from '../src/controller/store.js';
import { buildSync, withLaterChanges } from '../src/controller/rpc.js';
import { coalesceUpdates, type Publisher } from '../src/controller/publisher.js';
import { OutboxRelay } from '../src/controller/relay.js';
import type { UpdateMessage } from '../src/protocol/messages.js';
import { computeNeeds } from '../src/agent/needs.js';
import { validateRules } from '../src/domain/validate.js';
import { loadConfig } from '../src/agent/config.js';
import { loadControllerConfig } from '../src/controller/config.js';
import { checkBrokerOptions, closeWithin, parseBrokerUrls } from '../src/protocol/connection.js';
import { malformedCorpus } from './helpers/malformed.js';
import { waitFor } from './helpers/wait.js';
import { liveMigrationPlacement } from './helpers/store-cases.js';

test('every message of the malformed corpus is refused with a MalformedMessage', (t) => {
  const corpus = malformedCorpus('h1');
  t.true(corpus.length >= 30);
  for (const body of corpus) {
    t.throws(
      () => void decode(body, ['port.bound', 'port.updated', 'port.unbound', 'group.members', 'group.rules', 'group.deleted']),
      { instanceOf: MalformedMessage },
      body.subarray(0, 60).toString(),
    );
  }
  t.true(corpus.some((b) => b.length > MAX_MESSAGE_BYTES));
});

test('valid messages decode unchanged, but for defaults', (t) => {
  const m = {
    v: 1 as const,
    type: 'group.members' as const,
    groupId: 'g',
    baseRevision: 3,
    revision: 4,
    added: ['10.0.0.1', 'fd00::/64'],
    removed: [],
  };
  t.deepEqual(decode(encode(m)), m);
  const p = {
    v: 1 as const,
    type: 'port.bound' as const,
    host: 'h',
    revision: 1,
    port: { id: 'p', host: 'h', device: 'tap1', mac: '02:00:00:00:00:01', fixedIps: ['10.0.0.1'], securityGroups: ['g'] },
  };
  t.deepEqual(
    decode(encode(p as unknown as AnyMessage)),
    { ...p, port: { ...p.port, allowedAddressPairs: [], portSecurityEnabled: true } },
    'defaults filled in',
  );
});

test('routing keys are derived from ids, never copied', (t) => {
  for (const id of ['g', 'a.b.#', '*', 'x'.repeat(255), 'ü\n;']) {
    t.regex(groupKey(id), /^g\.[0-9a-f]{32}$/);
    t.regex(hostKey(id), /^h\.[0-9a-f]{32}$/);
    t.regex(agentQueue(id), /^sg\.agent\.[0-9a-f]{32}$/);
  }
  t.not(groupKey('a'), groupKey('b'));
});

test("needs: rules of the local ports' groups, members of the groups their rules name", (t) => {
  const ports = [
    {
      id: 'p',
      host: 'h',
      device: 'd',
      mac: '02:00:00:00:00:01',
      fixedIps: [],
      allowedAddressPairs: [],
      securityGroups: ['web'],
      portSecurityEnabled: true,
    },
  ];
  const groups = new Map([
    ['web', { rules: [{ id: 'r', direction: 'ingress' as const, ethertype: 'IPv4' as const, remoteGroupId: 'lb' }] }],
  ]);
  const n = computeNeeds(ports, groups);
  t.deepEqual([...n.rules], ['web']);
  t.deepEqual([...n.members], ['lb']);
  t.deepEqual([...n.all].sort(), ['lb', 'web']);
});

test('the store survives a restart with its revisions, and sync replies are compact and split', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-store-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  let s = await Store.open(dir);
  await s.putGroup('web', true, [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' }]);
  const port = (i: number) => ({
    id: `p${i}`,
    host: i % 2 ? 'h1' : 'h2',
    device: `tap${i}`,
    mac: '02:00:00:00:00:01',
    fixedIps: [`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`],
    allowedAddressPairs: [],
    securityGroups: ['web'],
    portSecurityEnabled: true,
  });
  const r1 = await s.putPort('p1', port(1));
  t.deepEqual(r1.changes, [{ groupId: 'web', baseRevision: 0, revision: 1, added: ['10.0.0.1'], removed: [] }]);
  // Written concurrently: LMDB commits them in batches.
  for (let i = 2; i <= 60_001; i += 1000)
    await Promise.all(Array.from({ length: Math.min(1000, 60_002 - i) }, (_, j) => s.putPort(`p${i + j}`, port(i + j))));
  await s.putPort('p2', undefined);
  await s.close();
  s = await Store.open(dir);
  t.is(s.group('web')!.revision, 1);
  t.is(s.group('web')!.membersRevision, 60_002);
  t.is(s.ports().length, 60_000);
  t.is(s.membersOf('web').length, 60_000);
  const parts = buildSync(s, { v: 1, type: 'sync.request', host: 'h1' });
  t.true(parts.length >= 2, '60k members and 30k ports exceed one part');
  t.is(parts.flatMap((p) => p.members.flatMap((m) => m.ips)).length, 60_000);
  t.is(parts.flatMap((p) => p.ports ?? []).length, 30_001);
  for (const p of parts) t.notThrows(() => decode<SyncReply>(encode(p), ['sync.reply']));
  await s.close();
});

test('a sync reply of groups holding megabytes of rules and members goes in parts each under the message limit (unit)', (t) => {
  // 30 groups of 1,000 rules (about 6 MB of rules) and a group of 120,000 IPv6 addresses written out
  // in full: rules in one part alone made the host unable to sync at all.
  const hex = (n: number) => n.toString(16).padStart(4, '0');
  const groupIds = Array.from({ length: 30 }, (_, g) => `group-${g}-${'x'.repeat(200)}`);
  const records = new Map(
    groupIds.map((id, g) => [
      id,
      {
        id,
        stateful: true,
        revision: 1,
        membersRevision: 1,
        rules: validateRules(
          Array.from({ length: 1000 }, (_, r) => ({
            id: `rule-${g}-${r}-${'y'.repeat(40)}`,
            direction: 'ingress',
            ethertype: 'IPv6',
            protocol: 'tcp',
            portRangeMin: 1000 + r,
            portRangeMax: 2000 + r,
            remoteIpPrefix: `fd00:${hex(g)}:${hex(r)}::/64`,
          })),
          id,
        ),
      },
    ]),
  );
  const big = Array.from({ length: 120_000 }, (_, i) => `fd00:ffff:ffff:ffff:ffff:ffff:${hex(i >> 16)}:${hex(i & 0xffff)}`);
  const members = (id: string) => (id === groupIds[0] ? big : []);
  const source = {
    portsOnHost: () => [
      {
        id: 'p1',
        host: 'h1',
        device: 'tap1',
        mac: '02:00:00:00:00:01',
        fixedIps: ['fd00::1'],
        allowedAddressPairs: [],
        securityGroups: groupIds,
        portSecurityEnabled: true,
        revision: 1,
      },
    ],
    group: (id: string) => records.get(id),
    groupRevisions: (id: string) => ({ revision: records.get(id)?.revision ?? 0, membersRevision: 1 }),
    membersOf: members,
  };
  // Each group's rules name the first group as remote, so its members are in the reply too.
  for (const g of records.values()) g.rules[0] = { ...g.rules[0]!, remoteIpPrefix: null, remoteGroupId: groupIds[0]! };
  const parts = buildSync(source, { v: 1, type: 'sync.request', host: 'h1' });
  t.true(parts.length > 2, `${parts.length} parts`);
  for (const p of parts) {
    const bytes = encode(p).length;
    t.true(bytes <= MAX_MESSAGE_BYTES, `part ${p.part}: ${bytes} bytes`);
    t.notThrows(() => decode<SyncReply>(encode(p), ['sync.reply']));
  }
  t.deepEqual(
    parts.map((p) => [p.part, p.parts]),
    parts.map((_, i) => [i, parts.length]),
  );
  const groups = parts.flatMap((p) => p.groups);
  t.deepEqual(
    groups.map((g) => g.id),
    groupIds,
  );
  t.is(groups.flatMap((g) => g.rules).length, 30_000);
  t.is(parts.flatMap((p) => p.ports ?? []).length, 1);
  t.deepEqual(
    parts.flatMap((p) => p.members.filter((m) => m.groupId === groupIds[0]).flatMap((m) => m.ips)),
    big,
  );
});

test('a sync reply gives members as of the first change the relay will publish later: its next delta chains onto it', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-store-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const s = await Store.open(dir);
  t.teardown(() => s.close());
  // A publisher whose sends wait until released: a drain can be caught under way.
  const sent: UpdateMessage[] = [];
  let release: () => void = () => undefined;
  let hold: Promise<void> | null = null;
  const publisher = {
    send: async (m: UpdateMessage) => {
      sent.push(m);
      await hold;
    },
  } as unknown as Publisher;
  const relay = new OutboxRelay(s, () => publisher, { coalesceMs: 1, minIntervalMs: 60_000 });
  t.teardown(() => relay.close());
  const source = withLaterChanges(s, () => relay.laterMemberChanges());
  const reply = () => {
    const [part] = buildSync(source, { v: 1, type: 'sync.request', host: 'h1', groupIds: ['web'] });
    const m = part!.members.find((x) => x.groupId === 'web')!;
    return { revision: m.revision, ips: [...m.ips].sort() };
  };
  await s.putGroup('web', true, [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' }]);
  const port = (i: number, ip = `10.0.0.${i}`) => ({
    id: `p${i}`,
    host: i === 1 ? 'h1' : 'h2',
    device: `tap${i}`,
    mac: `02:00:00:00:00:0${i}`,
    fixedIps: [ip],
    allowedAddressPairs: [],
    securityGroups: ['web'],
    portSecurityEnabled: true,
  });
  await s.putPort('p1', port(1));
  await s.putPort('p2', port(2));
  await relay.drain();
  t.deepEqual(reply(), { revision: 2, ips: ['10.0.0.1', '10.0.0.2'] }, 'all published: the newest members');

  // Committed, not yet published: an address added, one removed, one added and removed again, and
  // one removed and added again (each its own change, its own revision).
  await s.putPort('p3', port(3));
  await s.putPort('p1', undefined);
  await s.putPort('p4', port(4));
  await s.putPort('p4', undefined);
  await s.putPort('p2', undefined);
  await s.putPort('p5', port(5, '10.0.0.2'));
  t.is(s.groupRevisions('web').membersRevision, 8);
  t.deepEqual(s.membersOf('web').sort(), ['10.0.0.2', '10.0.0.3']);
  const held = reply();
  t.deepEqual(held, { revision: 2, ips: ['10.0.0.1', '10.0.0.2'] }, 'the members as the agents last heard them');
  // Changes left for seconds are stuck (no broker, no leader): the reply does not wait for them.
  t.is(relay.laterMemberChanges(Date.now()).length, 6);
  t.deepEqual(relay.laterMemberChanges(Date.now() + 10_000), []);

  // A drain under way (its messages sent, not yet confirmed) may have gone before the asker bound
  // its queue: what it took is not undone. A change committed meanwhile is: the next drain sends it.
  hold = new Promise((r) => (release = r));
  const before = sent.length;
  const draining = relay.drain();
  await waitFor('the drain under way', () => sent.length > before);
  const [delta] = sent.slice(before).filter((m) => m.type === 'group.members');
  t.like(delta, { baseRevision: 2, revision: 8 }, "the drain's delta chains onto the reply before it");
  if (delta?.type === 'group.members') {
    const after = new Set(held.ips);
    for (const a of delta.removed) after.delete(a);
    for (const a of delta.added) after.add(a);
    t.deepEqual([...after].sort(), s.membersOf('web').sort(), "and ends at the store's members");
  }
  await s.putPort('p6', port(6));
  t.deepEqual(reply(), { revision: 8, ips: ['10.0.0.2', '10.0.0.3'] }, 'as of the drain under way');
  release();
  await draining;
  t.deepEqual(reply(), { revision: 8, ips: ['10.0.0.2', '10.0.0.3'] }, 'the change after it still to be published');
  await relay.drain();
  t.deepEqual(reply(), { revision: 9, ips: ['10.0.0.2', '10.0.0.3', '10.0.0.6'] }, 'all published: the newest members');
});

test("a sync reply whose unpublished changes do not chain up to the group's revision gives the newest members", (t) => {
  const store = {
    portsOnHost: () => [],
    group: () => undefined,
    groupRevisions: () => ({ revision: 1, membersRevision: 9 }),
    membersOf: () => ['10.0.0.1', '10.0.0.2'],
    // Revisions 5..7 missing (not expected of a store; a source of an integrator's might).
    unpublishedMemberChanges: () => [
      { groupId: 'web', baseRevision: 3, revision: 4, added: ['10.0.0.9'], removed: [] },
      { groupId: 'web', baseRevision: 7, revision: 9, added: ['10.0.0.2'], removed: [] },
    ],
  };
  const [part] = buildSync(store, { v: 1, type: 'sync.request', host: 'h1', groupIds: ['web'] });
  t.deepEqual(part!.members, [{ groupId: 'web', revision: 9, ips: ['10.0.0.1', '10.0.0.2'] }]);
});

test('coalescing merges chained member deltas of a group and keeps unchained ones apart', (t) => {
  const d = (groupId: string, base: number, added: string[], removed: string[] = []): UpdateMessage => ({
    v: 1,
    type: 'group.members',
    groupId,
    baseRevision: base,
    revision: base + 1,
    added,
    removed,
  });
  const rules: UpdateMessage = { v: 1, type: 'group.rules', groupId: 'b', revision: 3, stateful: true, rules: [] };
  const out = coalesceUpdates([
    d('a', 0, ['10.0.0.1']),
    rules,
    d('a', 1, ['10.0.0.2']),
    d('a', 2, [], ['10.0.0.1']),
    d('b', 7, ['10.0.0.9']),
    d('a', 5, ['10.0.0.3']),
  ]);
  t.deepEqual(out, [
    { v: 1, type: 'group.members', groupId: 'a', baseRevision: 0, revision: 3, added: ['10.0.0.2'], removed: [] },
    rules,
    { v: 1, type: 'group.members', groupId: 'b', baseRevision: 7, revision: 8, added: ['10.0.0.9'], removed: [] },
    // Revisions 3..5 were another writer's: this one cannot be folded into the first.
    { v: 1, type: 'group.members', groupId: 'a', baseRevision: 5, revision: 6, added: ['10.0.0.3'], removed: [] },
  ]);
});

test('the store keeps ids apart however they are spelled, revisions rise past a deletion, and the outbox holds every change', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-store-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const s = await Store.open(dir);
  t.teardown(() => s.close());
  const hostile = ['g', 'g\u0000', 'g\u0000x', 'g\u001e', 'g/', "g'; DROP", 'g\uffff'];
  const port = (i: number, g: string) => ({
    id: `p${i}`,
    host: hostile[i]!,
    device: `tap${i}`,
    mac: '02:00:00:00:00:01',
    fixedIps: [`10.0.0.${i + 1}`],
    allowedAddressPairs: [],
    securityGroups: [g],
    portSecurityEnabled: true,
  });
  for (const [i, g] of hostile.entries()) await s.putPort(`p${i}`, port(i, g));
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
});

test('a port migrating live is filtered on both hosts, each told of it as its own, until its binding moves', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-store-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const s = await Store.open(dir);
  t.teardown(() => s.close());
  await liveMigrationPlacement(t, s);
});

/** One store opened twice, as by two controller processes on one host; removed with the test. */
async function twoControllersStore(t: ExecutionContext): Promise<{ mine: Store; peer: Store }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-relay-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const mine = await Store.open(dir);
  const peer = await Store.open(dir);
  t.teardown(async () => {
    await mine.close();
    await peer.close();
  });
  return { mine, peer };
}

// Which outbox entries a relay takes (pure logic; a recording publisher stands in for the broker, which
// e2e.test.ts uses for real, with controller processes that die before publishing).
// Serial: it moves the clock (Date.now) for a moment, which no test running beside it may see.
test.serial("a relay publishes its own entries at once and a silent peer's only once they are orphaned", async (t) => {
  const { mine, peer } = await twoControllersStore(t);
  const sent: string[] = [];
  const publisher = {
    send: async (m: UpdateMessage) => void sent.push(`${m.type}:${(m as { groupId: string }).groupId}`),
  } as unknown as Publisher;
  const orphanAfterMs = 600_000;
  const relay = new OutboxRelay(mine, () => publisher, { coalesceMs: 1, orphanAfterMs });
  t.teardown(() => relay.close());
  await relay.drain();
  await mine.putGroup('own', true, []);
  await peer.putGroup('theirs', true, []);
  await relay.drain();
  t.deepEqual(sent, ['group.rules:own'], 'a live peer publishes its own');
  t.is(mine.outbox().length, 1);
  // The peer's entry aged past the window without waiting for it: the relay reads its clock through
  // Date.now, which runs ahead during this drain only.
  const now = Date.now;
  Date.now = () => now() + orphanAfterMs;
  try {
    await relay.drain();
  } finally {
    Date.now = now;
  }
  t.deepEqual(sent, ['group.rules:own', 'group.rules:theirs'], 'left too long: taken as orphaned');
  t.is(mine.outbox().length, 0);
});

test("a relay's first drain sends a live peer's fresh entries but leaves them in the outbox for the peer to send", async (t) => {
  const { mine, peer } = await twoControllersStore(t);
  const sent: string[] = [];
  const publisher = {
    send: async (m: UpdateMessage) => void sent.push(`${m.type}:${(m as { groupId: string }).groupId}`),
  } as unknown as Publisher;
  await peer.putGroup('theirs', true, []);
  await mine.putGroup('own', true, []);
  const relay = new OutboxRelay(mine, () => publisher, { coalesceMs: 1, orphanAfterMs: 600_000 });
  t.teardown(() => relay.close());
  // The peer may have answered a sync with members as they were before its entries, counting on
  // sending them itself after the asker's binding: had this relay deleted them, nobody would.
  await relay.drain();
  t.deepEqual(sent, ['group.rules:theirs', 'group.rules:own'], 'everything sent once at start');
  t.deepEqual(
    mine.outbox().map((e) => e.owner),
    [peer.owner],
    "the peer's entry left for it",
  );
  await relay.drain();
  t.is(sent.length, 2, 'and not taken again while it is fresh');
});

// The lease holder's relay (pure logic beside test/cluster.test.ts, which kills a real one): it alone
// publishes, every entry of the shared store at once and in the order they were committed.
test('a leading relay publishes every entry of the store in commit order; a relay without the lease publishes nothing', async (t) => {
  const { mine, peer } = await twoControllersStore(t);
  const sent: string[] = [];
  const publisher = {
    send: async (m: UpdateMessage) =>
      void sent.push(`${m.type}:${(m as { groupId: string }).groupId}:${(m as { revision: number }).revision}`),
  } as unknown as Publisher;
  let leads = false;
  const relay = new OutboxRelay(mine, () => publisher, { coalesceMs: 1, orphanAfterMs: 60_000, isLeader: () => leads });
  t.teardown(() => relay.close());
  await peer.putGroup('g', true, []);
  await mine.putGroup('g', true, []);
  await peer.putGroup('g', false, []);
  await relay.drain();
  t.deepEqual(sent, [], 'without the lease, not even its own entries');
  leads = true;
  await relay.drain();
  t.deepEqual(sent, ['group.rules:g:1', 'group.rules:g:2', 'group.rules:g:3'], "everyone's entries, revisions rising");
  t.is(mine.outbox().length, 0);
  // A peer's later write is found without anyone kicking this relay.
  await peer.putGroup('g', true, []);
  await waitFor("the peer's write published", () => sent.length >= 4, 10_000).catch(() => undefined);
  t.is(sent[3], 'group.rules:g:4');
});

test('broker URLs: one, several separated by commas, or a list; each checked', (t) => {
  t.deepEqual(parseBrokerUrls('amqp://a:5701/v, amqp://b:5702/v,,'), ['amqp://a:5701/v', 'amqp://b:5702/v']);
  t.deepEqual(parseBrokerUrls(['amqp://a/', ' amqp://b/ ']), ['amqp://a/', 'amqp://b/']);
  const env = { SG_AGENT_HOST: 'h', SG_AMQP_URL: 'amqp://a:5701/v,amqp://b:5702/v' };
  t.deepEqual(loadConfig(undefined, env).amqpUrls, ['amqp://a:5701/v', 'amqp://b:5702/v']);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sg-cfg-')), 'agent.json');
  t.teardown(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  fs.writeFileSync(file, JSON.stringify({ host: 'h', amqp: { urls: ['amqp://c:5703/v', 'amqp://d:5704/v'] } }));
  t.deepEqual(loadConfig(file, {}).amqpUrls, ['amqp://c:5703/v', 'amqp://d:5704/v']);
  fs.writeFileSync(file, JSON.stringify({ host: 'h', amqp: { url: 'amqp://e/' } }));
  t.deepEqual(loadConfig(file, {}).amqpUrls, ['amqp://e/'], 'amqp.url still works');
  t.throws(() => checkBrokerOptions({ urls: ['amqp://a/', 'http://b/'] }), { message: /amqp/ });
  t.throws(() => checkBrokerOptions({ urls: [] }), { message: /no broker URL/ });
  t.is(
    loadControllerConfig(undefined, { SG_SIGNING_KEY_FILE: '/k', SG_HTTP_LISTEN: '', SG_AMQP_URL: 'amqp://a/,amqp://b/' }).amqpUrl,
    'amqp://a/,amqp://b/',
  );
});

test('a close the broker never answers does not hold up a stop past its grace; one it answers is waited for (unit)', async (t) => {
  // amqplib settles a close only on the broker's answer: a broker gone leaves it pending forever.
  let answered = false;
  await closeWithin({ close: () => new Promise<void>(() => undefined) }, 50);
  await closeWithin(
    {
      close: () =>
        new Promise<void>((r) =>
          setImmediate(() => {
            answered = true;
            r();
          }),
        ),
    },
    60_000,
  );
  t.true(answered);
  await closeWithin({ close: () => Promise.reject(new Error('channel already closed')) }, 50);
  t.pass('a refused close is no error of the stop');
});
