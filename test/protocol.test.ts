// The protocol's pure parts (schemas, routing keys, sync building) and the controller's store on a
// real LevelDB; their use over a real broker is covered by e2e.test.ts.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decode, encode, MalformedMessage, MAX_MESSAGE_BYTES, type SyncReply } from '../src/protocol/messages.js';
import { groupKey, hostKey, agentQueue } from '../src/protocol/routing.js';
import { Store } from '../src/controller/store.js';
import { buildSync } from '../src/controller/rpc.js';
import { computeNeeds } from '../src/agent/needs.js';
import { malformedCorpus } from './helpers/malformed.js';

test('every message of the malformed corpus is refused with a MalformedMessage', (t) => {
  const corpus = malformedCorpus('h1');
  t.true(corpus.length >= 30);
  for (const body of corpus) {
    t.throws(() => decode(body, ['port.bound', 'port.updated', 'port.unbound', 'group.members', 'group.rules', 'group.deleted']), { instanceOf: MalformedMessage }, body.subarray(0, 60).toString());
  }
  t.true(corpus.some((b) => b.length > MAX_MESSAGE_BYTES));
});

test('valid messages decode unchanged', (t) => {
  const m = { v: 1 as const, type: 'group.members' as const, groupId: 'g', baseRevision: 3, revision: 4, added: ['10.0.0.1', 'fd00::/64'], removed: [] };
  t.deepEqual(decode(encode(m)), m);
  const p = { v: 1 as const, type: 'port.bound' as const, host: 'h', revision: 1, port: { id: 'p', host: 'h', device: 'tap1', mac: '02:00:00:00:00:01', fixedIps: ['10.0.0.1'], securityGroups: ['g'] } };
  t.deepEqual(decode(encode(p)), p);
});

test('routing keys are derived from ids, never copied', (t) => {
  for (const id of ['g', 'a.b.#', '*', 'x'.repeat(255), 'ü\n;']) {
    t.regex(groupKey(id), /^g\.[0-9a-f]{32}$/);
    t.regex(hostKey(id), /^h\.[0-9a-f]{32}$/);
    t.regex(agentQueue(id), /^sg\.agent\.[0-9a-f]{32}$/);
  }
  t.not(groupKey('a'), groupKey('b'));
});

test('needs: rules of the local ports\' groups, members of the groups their rules name', (t) => {
  const ports = [{ id: 'p', host: 'h', device: 'd', mac: '02:00:00:00:00:01', fixedIps: [], allowedAddressPairs: [], securityGroups: ['web'], portSecurityEnabled: true }];
  const groups = new Map([['web', { rules: [{ id: 'r', direction: 'ingress' as const, ethertype: 'IPv4' as const, remoteGroupId: 'lb' }] }]]);
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
  const port = (i: number) => ({ id: `p${i}`, host: i % 2 ? 'h1' : 'h2', device: `tap${i}`, mac: '02:00:00:00:00:01', fixedIps: [`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`], allowedAddressPairs: [], securityGroups: ['web'], portSecurityEnabled: true });
  const r1 = await s.putPort('p1', port(1));
  t.deepEqual(r1.changes, [{ groupId: 'web', baseRevision: 0, revision: 1, added: ['10.0.0.1'], removed: [] }]);
  for (let i = 2; i <= 60_001; i++) await s.putPort(`p${i}`, port(i));
  await s.putPort('p2', undefined);
  await s.close();
  s = await Store.open(dir);
  t.is(s.groups.get('web')!.revision, 1);
  t.is(s.groups.get('web')!.membersRevision, 60_002);
  t.is(s.ports.size, 60_000);
  t.is(s.membersOf('web').length, 60_000);
  const parts = buildSync(s, { v: 1, type: 'sync.request', host: 'h1' });
  t.true(parts.length >= 2, '60k members and 30k ports exceed one part');
  t.is(parts.flatMap((p) => p.members.flatMap((m) => m.ips)).length, 60_000);
  t.is(parts.flatMap((p) => p.ports ?? []).length, 30_001);
  for (const p of parts) t.notThrows(() => decode<SyncReply>(encode(p), ['sync.reply']));
  await s.close();
});
