// Security-group log resources in the controller: which groups carry which log (Neutron's meaning of
// resource_id and target_id), and the same records and messages on both stores — LMDB always, etcd on
// a three-member cluster of the tests' own — through `store export` and `import` too.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EtcdStore } from '../src/controller/etcd-store.js';
import { GroupLogsFollower, groupLogsOf } from '../src/controller/network-logs.js';
import { checkSnapshot, type ControllerStore, type StoreSnapshot } from '../src/controller/records.js';
import { Store } from '../src/controller/store.js';
import { ValidationError } from '../src/domain/validate.js';
import type { LogResource } from '../src/domain/model.js';
import type { GroupLogsMessage } from '../src/protocol/messages.js';
import { EtcdCluster } from './helpers/etcd.js';
import { etcdTest } from './helpers/store-gates.js';

const log = (l: Partial<LogResource> & { id: string }): LogResource => ({
  projectId: 'p1',
  event: 'ALL',
  enabled: true,
  resourceId: null,
  targetId: null,
  ...l,
});

test('a log of a group, of a port, of both and of a project: the groups that carry it, and for which port', (t) => {
  const portGroups = (id: string) => ({ pa: ['web', 'db'], pb: ['web'] })[id];
  const projectGroups = (p: string) => (p === 'p1' ? ['web', 'db', 'idle'] : []);
  const carried = groupLogsOf(
    [
      log({ id: 'by-group', resourceId: 'web', event: 'ACCEPT' }),
      log({ id: 'by-port', targetId: 'pa', event: 'DROP' }),
      log({ id: 'both', resourceId: 'db', targetId: 'pa' }),
      log({ id: 'project', projectId: 'p1' }),
      log({ id: 'off', resourceId: 'web', enabled: false }),
      log({ id: 'unknown-port', targetId: 'nowhere' }),
    ],
    portGroups,
    projectGroups,
  );
  const ids = (g: string) => carried.get(g)?.map((l) => `${l.id}:${l.targetId ?? '*'}:${l.event}`);
  t.deepEqual(ids('web'), ['by-group:*:ACCEPT', 'by-port:pa:DROP', 'project:*:ALL']);
  t.deepEqual(ids('db'), ['both:pa:ALL', 'by-port:pa:DROP', 'project:*:ALL']);
  t.deepEqual(ids('idle'), ['project:*:ALL'], "a project's log: every group of the project");
  t.deepEqual([...carried.keys()].sort(), ['db', 'idle', 'web'], 'a disabled log, and one of a port no store knows, are carried by none');
});

/** The group.logs messages of the store's outbox, per group: [revision, log ids]. */
function announced(store: ControllerStore, group: string): [number, string[]][] {
  return store
    .outbox()
    .map((e) => e.message)
    .filter((m): m is GroupLogsMessage => m.type === 'group.logs' && m.groupId === group)
    .map((m) => [m.revision, m.logs.map((l) => l.id)]);
}

const port = (id: string, groups: string[], ip: string) => ({
  id,
  host: 'h1',
  device: `tap-${id}`,
  mac: '02:00:00:00:00:01',
  fixedIps: [ip],
  securityGroups: groups,
});

/** One sequence of changes, the same on every store: what groups carry and announce after each. */
async function logsFollowChanges(t: ExecutionContext, store: ControllerStore): Promise<void> {
  const follower = new GroupLogsFollower(store);
  await store.putGroup('web', true, []);
  await store.putGroup('db', true, []);
  await store.putPort('pa', port('pa', ['web'], '10.0.0.1'));
  await t.throwsAsync(store.putLogResource({ id: 'bad', projectId: 'p1', event: 'SOME' }), {
    instanceOf: ValidationError,
    message: /event/,
  });
  t.true(await store.putLogResource({ id: 'l1', projectId: 'p1', event: 'DROP', targetId: 'pa' }));
  t.false(
    await store.putLogResource({ id: 'l1', projectId: 'p1', event: 'DROP', targetId: 'pa', enabled: true }),
    'the same again writes nothing',
  );
  t.is(await follower.follow(), 1);
  t.deepEqual(store.group('web')?.logs, [{ id: 'l1', projectId: 'p1', event: 'DROP', targetId: 'pa' }]);
  t.deepEqual(announced(store, 'web'), [[1, ['l1']]]);

  // The port moves to another group: the log follows it.
  await store.putPort('pa', port('pa', ['db'], '10.0.0.1'));
  t.is(await follower.follow(), 2);
  t.deepEqual(announced(store, 'web'), [
    [1, ['l1']],
    [2, []],
  ]);
  t.deepEqual(announced(store, 'db'), [[1, ['l1']]]);
  t.is(await follower.follow(), 0, 'nothing changed: nothing written');

  // Disabled, then enabled and deleted; two changes at once end as the later one left the store.
  await store.putLogResource({ id: 'l1', projectId: 'p1', event: 'DROP', targetId: 'pa', enabled: false });
  await Promise.all([
    follower.follow(),
    store.putLogResource({ id: 'l2', projectId: 'p1', event: 'ALL', resourceId: 'db' }).then(() => follower.follow()),
  ]);
  t.deepEqual(
    store.group('db')?.logs?.map((l) => l.id),
    ['l2'],
  );
  t.true(await store.deleteLogResource('l2'));
  t.false(await store.deleteLogResource('l2'));
  await follower.follow();
  const db = announced(store, 'db');
  t.deepEqual(
    db.map(([r]) => r),
    db.map((_, i) => i + 1),
    'one message per change, revisions rising by one',
  );
  t.deepEqual(
    db.slice(-2).map(([, ids]) => ids),
    [['l2'], []],
    'the last two: the new log, then none',
  );
  t.deepEqual(store.group('db')?.logs, [], 'no log left on the group');
  t.is(store.group('db')?.logsRevision, db.at(-1)![0], "the record's revision is the last message's");

  // A deleted group's logs go with it; created again, it carries the log that names it once more.
  await store.putLogResource({ id: 'l3', projectId: 'p1', event: 'ALL', resourceId: 'web' });
  await follower.follow();
  const had = store.group('web')!.logsRevision!;
  await store.deleteGroup('web');
  t.is(await follower.follow(), 0, 'a group that does not exist carries nothing');
  await store.putGroup('web', true, []);
  t.deepEqual(store.group('web')?.logs, [], 'created again: no log yet');
  t.is(await follower.follow(), 1);
  t.deepEqual(
    store.group('web')?.logs?.map((l) => l.id),
    ['l3'],
  );
  t.is(store.group('web')?.logsRevision, had + 1, "the logs' revision kept rising past the deletion");
  t.deepEqual(
    store
      .logResources()
      .map((r) => r.id)
      .sort(),
    ['l1', 'l3'],
  );
}

/** Export, then import into `into`: log resources and the groups' logs come along. */
async function logsSurviveExportImport(t: ExecutionContext, from: ControllerStore, into: ControllerStore): Promise<void> {
  const snap = checkSnapshot(JSON.parse(JSON.stringify(from.snapshot())), 'the export');
  t.deepEqual(snap.logResources?.map((r) => r.id).sort(), ['l1', 'l3']);
  await into.restore(snap);
  // Records in id order: the etcd store lists them in the order its mirror learnt them.
  const byId = <T extends { id: string }>(xs: T[] | undefined) => xs && [...xs].sort((x, y) => (x.id < y.id ? -1 : 1));
  const sorted = (x: StoreSnapshot) => ({ ...x, groups: byId(x.groups), ports: byId(x.ports), logResources: byId(x.logResources) });
  t.deepEqual(sorted(into.snapshot()), sorted(from.snapshot()));
  t.deepEqual(into.logResource('l3'), from.logResource('l3'));
  t.deepEqual(into.group('web')?.logs, from.group('web')?.logs);
  t.throws(() => checkSnapshot({ ...snap, logResources: [{ id: 'x' }] }, 'a bad export'), { message: /log x: projectId/ });
}

function tmpDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-logs-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function lmdb(t: ExecutionContext, dir: string): Promise<Store> {
  const s = await Store.open(dir);
  t.teardown(() => s.close());
  return s;
}

test("LMDB store: log resources, the groups' logs they give, their messages, export and import", async (t) => {
  const dir = tmpDir(t);
  const store = await lmdb(t, path.join(dir, 'a'));
  await logsFollowChanges(t, store);
  await logsSurviveExportImport(t, store, await lmdb(t, path.join(dir, 'b')));
});

let cluster: EtcdCluster | undefined;
test.before(async () => {
  if (etcdTest.runs) cluster = await EtcdCluster.start(3);
});
test.after.always(async () => {
  await cluster?.stop();
});

async function etcd(t: ExecutionContext): Promise<EtcdStore> {
  const s = await EtcdStore.open({
    endpoints: cluster!.endpoints,
    prefix: `/sgtest-${randomBytes(4).toString('hex')}/`,
    requestTimeoutMs: 2_000,
  });
  t.teardown(() => s.close());
  return s;
}

etcdTest.serial("etcd store: log resources, the groups' logs they give, their messages, export and import to and from LMDB", async (t) => {
  const store = await etcd(t);
  await logsFollowChanges(t, store);
  const copy = await lmdb(t, tmpDir(t));
  await logsSurviveExportImport(t, store, copy);
  await logsSurviveExportImport(t, copy, await etcd(t));
});
