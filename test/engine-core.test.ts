// The engine core without root: state, planner, apply loop and fault isolation against the in-memory
// dataplane, which records what it is asked to do. The same paths run against the kernel with real
// packets in firewall.test.ts.
import test, { type ExecutionContext } from 'ava';
import { FirewallEngine } from '../src/firewall/engine.js';
import { MemoryDataplane } from '../src/firewall/memory.js';
import { setKey } from '../src/firewall/dataplane.js';
import type { PortInput, SecurityGroupInput } from '../src/domain/model.js';
import { waitFor } from './helpers/wait.js';

/** An engine over memory, closed when the test ends: a retry it scheduled must not outlive the test
 *  (a quarantined port's retry re-arms a 10-minute structural interval and would hold the worker). */
function engine(
  t: ExecutionContext,
  opts: { coalesceMs?: number; coalesceQuietMs?: number; structureIntervalMs?: number; structureIntervalMaxMs?: number } = {},
) {
  const dp = new MemoryDataplane();
  const fw = new FirewallEngine(dp, { coalesceMs: 2, structureIntervalMs: 0, ...opts });
  t.teardown(() => fw.close());
  return { dp, fw };
}

const port = (n: number, groups: string[], extra: Partial<PortInput> = {}): PortInput => ({
  id: `p${n}`,
  host: 'h',
  device: `tap${n}`,
  mac: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`,
  fixedIps: [`10.0.0.${n}`],
  securityGroups: groups,
  ...extra,
});
const selfGroup = (id: string, extra: Partial<SecurityGroupInput> = {}): SecurityGroupInput => ({
  id,
  rules: [
    { id: `${id}-in`, direction: 'ingress', ethertype: 'IPv4', remoteGroupId: id },
    { id: `${id}-out`, direction: 'egress', ethertype: 'IPv4' },
  ],
  ...extra,
});
const members = (dp: MemoryDataplane, g: string) => [...(dp.sets.get(setKey({ groupId: g, family: 4 })) ?? [])].sort();

test('binding one more port plans that port alone; a rule change plans the ports of its group alone', async (t) => {
  const { dp, fw } = engine(t);
  fw.setGroup(selfGroup('a'));
  fw.setGroup(selfGroup('b'));
  for (let i = 1; i <= 10; i++) fw.setPort(port(i, [i <= 5 ? 'a' : 'b']));
  await fw.flush();
  t.is(dp.filters.size, 10);
  dp.applied.length = 0;
  fw.setPort(port(11, ['a']));
  await fw.flush();
  t.deepEqual(
    dp.applied.flatMap((c) => c.filters.upsert.map((f) => f.portId)),
    ['p11'],
  );
  dp.applied.length = 0;
  fw.setGroup({
    ...selfGroup('b'),
    rules: [
      ...selfGroup('b').rules,
      { id: 'ssh', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22 },
    ],
  });
  await fw.flush();
  t.deepEqual(dp.applied.flatMap((c) => c.filters.upsert.map((f) => f.portId)).sort(), ['p10', 'p6', 'p7', 'p8', 'p9']);
  dp.applied.length = 0;
  fw.setPort(port(3, ['a']));
  await fw.flush();
  t.deepEqual(
    dp.applied.flatMap((c) => c.filters.upsert),
    [],
    'an unchanged port is not written again',
  );
});

test('a set exists while a filter names it, holds the members, and goes with the last filter naming it', async (t) => {
  const { dp, fw } = engine(t);
  fw.setGroup(selfGroup('g'));
  fw.setGroupMembers('g', ['10.0.0.1', '10.0.0.2', 'fd00::1']);
  t.is(dp.sets.size, 0);
  fw.setPort(port(1, ['g']));
  await fw.flush();
  t.deepEqual(members(dp, 'g'), ['10.0.0.1', '10.0.0.2']);
  t.false(dp.sets.has('6:g'), 'no IPv6 rule names it');
  fw.applyMemberDelta('g', ['10.0.0.3'], ['10.0.0.1']);
  await fw.flush();
  t.deepEqual(members(dp, 'g'), ['10.0.0.2', '10.0.0.3']);
  t.like(dp.applied.at(-1)!.sets.delta[0], { add: ['10.0.0.3'], del: ['10.0.0.1'] }, 'a delta, not a rewrite');
  fw.removePort('p1');
  await fw.flush();
  t.is(dp.sets.size, 0);
  t.is(dp.filters.size, 0);
});

test('status says when each set last changed (when the apply that changed it was acknowledged) and whether a change of it waits', async (t) => {
  const { dp, fw } = engine(t);
  fw.setGroup(selfGroup('g'));
  fw.setGroup(selfGroup('h'));
  fw.setGroupMembers('g', ['10.0.0.1']);
  fw.setGroupMembers('h', ['10.0.0.2']);
  fw.setPort(port(1, ['g']));
  fw.setPort(port(2, ['h']));
  const t0 = Date.now();
  await fw.flush();
  const changedAt = (g: string) => fw.status().sets.find((x) => x.groupId === g)?.changedAt;
  const [g1, h1] = [changedAt('g'), changedAt('h')];
  t.true(g1 !== undefined && g1 >= t0 && g1 <= Date.now(), `${g1} within the apply`);
  // A later change of g alone: g's time moves, h's stays.
  const t1 = Date.now();
  while (Date.now() === t1) await new Promise((r) => setTimeout(r, 1));
  const pending = (g: string) => fw.status().sets.find((x) => x.groupId === g)?.pending === true;
  t.false(pending('g'), 'nothing of g waits');
  fw.applyMemberDelta('g', ['10.0.0.3'], []);
  // Received, not yet in the kernel (the kernel backends' size is already the new one): it says so,
  // and the time is still the last apply's.
  t.true(pending('g'), 'the delta waits for its apply');
  t.is(changedAt('g'), g1);
  let inApply: boolean | undefined;
  dp.during = async () => void (inApply ??= pending('g'));
  await fw.flush();
  dp.during = null;
  t.true(inApply, 'pending while its apply is in flight');
  t.false(pending('g'), 'nothing pending once applied');
  t.true(changedAt('g')! > g1!, 'g changed again');
  t.is(changedAt('h'), h1, 'h did not change');
  t.false(pending('h'));
  fw.removePort('p1');
  await fw.flush();
  t.is(changedAt('g'), undefined, 'a set gone has no time');
});

test('a burst of member deltas is coalesced into one apply, and deltas that arrive while an apply runs go into the next', async (t) => {
  const { dp, fw } = engine(t, { coalesceMs: 10 });
  fw.setGroup(selfGroup('g'));
  fw.setPort(port(1, ['g']));
  await fw.flush();
  const applies0 = dp.applied.length;
  // Inputs arrive while an apply runs: one during each of the first five.
  let arrivedDuring = 0;
  dp.during = async () => {
    if (arrivedDuring < 5) fw.applyMemberDelta('g', [`10.1.0.${++arrivedDuring}`], []);
    await new Promise((r) => setTimeout(r, 1));
  };
  const want = new Set<string>();
  // The burst, given before the engine's loop can run even once.
  for (let i = 0; i < 200; i++) {
    fw.applyMemberDelta('g', [`10.2.${i >> 8}.${i & 255}`], []);
    want.add(`10.2.${i >> 8}.${i & 255}`);
  }
  await fw.flush();
  dp.during = null;
  for (let k = 1; k <= 5; k++) want.add(`10.1.0.${k}`);
  t.deepEqual(members(dp, 'g'), [...want].sort(), 'nothing lost');
  const added = dp.applied.slice(applies0).map((c) => c.sets.delta.flatMap((d) => d.add));
  t.is(added[0]!.length, 200, 'the whole burst in the first apply');
  t.deepEqual(added.slice(1).flat().sort(), ['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.4', '10.1.0.5'], 'what came meanwhile after it');
  t.true(added.length <= 1 + arrivedDuring, `${added.length} applies: the burst's and at most one for each input that arrived during one`);
});

/** Whether `p` settles before a deadline far shorter than the window it must not wait out. */
const settlesWithin = (p: Promise<void>, ms: number) =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);

test('the coalescing window closes once inputs stop coming, and at its end while they keep coming', async (t) => {
  // Inputs stop: the apply goes after the quiet time, not at the end of a 10-minute window.
  const quiet = engine(t, { coalesceMs: 600_000, coalesceQuietMs: 5 });
  quiet.fw.setGroup(selfGroup('g'));
  quiet.fw.setPort(port(1, ['g']));
  t.true(await settlesWithin(quiet.fw.settled(), 30_000), 'applied once the inputs stopped');
  t.is(quiet.dp.filters.size, 1);
  // Inputs keep coming within the quiet time (10 minutes here): the window's end bounds the wait.
  const busy = engine(t, { coalesceMs: 5, coalesceQuietMs: 600_000 });
  busy.fw.setGroup(selfGroup('g'));
  busy.fw.setPort(port(1, ['g']));
  t.true(await settlesWithin(busy.fw.settled(), 30_000), 'applied at the end of the window');
  // Neither rule allows it yet: nothing is applied.
  const both = engine(t, { coalesceMs: 600_000, coalesceQuietMs: 600_000 });
  both.fw.setGroup(selfGroup('g'));
  t.false(await settlesWithin(both.fw.settled(), 200), 'nothing applied before either rule allows it');
});

test('structural work waits for its interval while membership goes at once; flush forces it', async (t) => {
  const { dp, fw } = engine(t, { structureIntervalMs: 600_000, structureIntervalMaxMs: 600_000 });
  fw.setGroup(selfGroup('g'));
  fw.setPort(port(1, ['g']));
  fw.setGroupMembers('g', ['10.0.0.1']);
  await fw.settled();
  t.is(dp.filters.size, 1, 'the first change after a quiet spell goes at once');
  fw.setPort(port(2, ['g']));
  fw.applyMemberDelta('g', ['10.0.0.2'], []);
  await fw.settled(true);
  t.deepEqual(members(dp, 'g'), ['10.0.0.1', '10.0.0.2'], 'members in at once');
  t.false(dp.filters.has('p2'), 'the new filter waits for the interval');
  await fw.flush();
  t.true(dp.filters.has('p2'));
});

test('an apply that fails as a whole is retried with backoff by itself; flush reports the failure', async (t) => {
  const { dp, fw } = engine(t);
  fw.setGroup(selfGroup('g'));
  fw.setPort(port(1, ['g']));
  dp.failNext = new Error('dataplane down');
  await t.throwsAsync(fw.flush(), { message: 'dataplane down' });
  t.is(fw.stats.applyErrors, 1);
  await fw.settled();
  t.true(dp.filters.has('p1'), 'the retry went in without a flush');
});

test('fault isolation: a set the dataplane refuses holds back only the rules naming it; a refused filter only its port', async (t) => {
  const { dp, fw } = engine(t);
  dp.failSets.add('4:bad');
  dp.failPorts.add('p3');
  fw.setGroup(selfGroup('bad'));
  fw.setGroup(selfGroup('good'));
  fw.setPort(port(1, ['bad']));
  fw.setPort(port(2, ['good']));
  fw.setPort(port(3, ['good']));
  fw.setGroupMembers('bad', ['10.0.0.1']);
  fw.setGroupMembers('good', ['10.0.0.2', '10.0.0.3']);
  await fw.flush();
  const q = fw
    .status()
    .quarantined.map((e) => `${e.kind}:${e.id}`)
    .sort();
  t.deepEqual(q, ['filter:p3', 'set:4:bad']);
  t.true(dp.filters.has('p1'), 'the port is filtered, without the rule naming the missing set');
  t.deepEqual(
    dp.filters.get('p1')!.rules.map((r) => r.remoteGroupId),
    [null],
    'fail-closed: only its egress rule',
  );
  t.true(dp.filters.has('p2'));
  t.false(dp.filters.has('p3'));
  t.deepEqual(members(dp, 'good'), ['10.0.0.2', '10.0.0.3']);
  fw.applyMemberDelta('good', ['10.0.0.9'], []);
  await fw.flush();
  t.deepEqual(members(dp, 'good'), ['10.0.0.2', '10.0.0.3', '10.0.0.9'], 'other groups keep converging');
  // The kernel accepts them again: the retries bring both in on their own timers.
  dp.failSets.clear();
  dp.failPorts.clear();
  await waitFor('the retries bring both in', () => fw.status().quarantined.length === 0, 60_000);
  await fw.settled();
  t.deepEqual(fw.status().quarantined, []);
  t.deepEqual(members(dp, 'bad'), ['10.0.0.1']);
  t.deepEqual(
    dp.filters.get('p1')!.rules.map((r) => r.remoteGroupId),
    ['bad', null],
    'the held-back rule is in',
  );
  t.true(dp.filters.has('p3'));
});

test('cuts: a departed member, a port leaving a group, and allowed-pair addresses; never what stays admitted', async (t) => {
  const { dp, fw } = engine(t);
  fw.setGroup(selfGroup('web'));
  fw.setGroup(selfGroup('app'));
  fw.setGroup({ id: 'wide', rules: [{ id: 'w', direction: 'ingress', ethertype: 'IPv4', remoteIpPrefix: '10.0.0.0/24' }] });
  fw.setPort(port(1, ['web'], { allowedAddressPairs: [{ ipAddress: '10.9.0.1' }] }));
  fw.setPort(port(2, ['web']));
  fw.setGroupMembers('web', ['10.0.0.1', '10.0.0.2', '10.9.0.1', '10.7.0.7']);
  await fw.flush();
  dp.cuts.length = 0;
  // 10.7.0.7 leaves web: cut from both ports' addresses, the allowed pair's included.
  fw.applyMemberDelta('web', [], ['10.7.0.7']);
  await fw.flush();
  t.deepEqual(dp.cuts.map((c) => `${c.a}|${c.b}`).sort(), ['10.0.0.1|10.7.0.7', '10.0.0.2|10.7.0.7', '10.9.0.1|10.7.0.7']);
  dp.cuts.length = 0;
  // p2 moves from web to app: what only web admitted is cut.
  fw.setPort(port(2, ['app']));
  await fw.flush();
  t.true(
    dp.cuts.some((c) => c.a === '10.0.0.2' && c.b === '10.0.0.1'),
    JSON.stringify(dp.cuts),
  );
  dp.cuts.length = 0;
  // p1 leaves web for `wide`, whose prefix still admits 10.0.0.x from anywhere in ingress: 10.0.0.2 stays admitted, not cut.
  fw.setGroupMembers('web', ['10.0.0.1', '10.0.0.2']);
  await fw.flush();
  dp.cuts.length = 0;
  fw.setPort(port(1, ['wide'], { allowedAddressPairs: [{ ipAddress: '10.9.0.1' }] }));
  await fw.flush();
  t.false(
    dp.cuts.some((c) => c.b === '10.0.0.2'),
    `still admitted by the prefix rule: ${JSON.stringify(dp.cuts)}`,
  );
  dp.cuts.length = 0;
  // An allowed pair taken off a port: its connections go.
  fw.setPort(port(1, ['wide']));
  await fw.flush();
  t.deepEqual(dp.cuts, [{ a: '10.9.0.1', b: '0.0.0.0/0', device: 'tap1' }], "the port's device goes with the cut (its zone's)");
});

test('a full sync keeps the last good version of an object its snapshot lacks as quarantined', async (t) => {
  const { dp, fw } = engine(t);
  fw.setGroup(selfGroup('g'));
  fw.setPort(port(1, ['g']));
  fw.setPort(port(2, ['g']));
  await fw.flush();
  fw.quarantineInput('port', 'p2', 'invalid in the snapshot');
  fw.replaceAll({ ports: [port(1, ['g'])], groups: [selfGroup('g')], members: { g: ['10.0.0.1'] }, keep: { ports: ['p2'] } });
  await fw.flush();
  t.true(dp.filters.has('p2'), 'last good version kept');
  t.deepEqual(
    fw.status().quarantined.map((q) => q.id),
    ['p2'],
  );
  fw.replaceAll({ ports: [port(1, ['g'])], groups: [selfGroup('g')], members: { g: ['10.0.0.1'] } });
  await fw.flush();
  t.false(dp.filters.has('p2'), 'gone once the snapshot says so without quarantine');
});

test("invalid input is refused with the validator's error, counted, and changes nothing", async (t) => {
  const { dp, fw } = engine(t);
  fw.setGroup(selfGroup('g'));
  fw.setPort(port(1, ['g']));
  await fw.flush();
  const before = dp.applied.length;
  t.throws(() => fw.setPort(port(2, ['g'], { fixedIps: ['fe80::1%lo'] })), { name: 'ValidationError' });
  t.throws(
    () =>
      fw.setGroup({
        id: 'x',
        rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 90, portRangeMax: 80 }],
      }),
    { name: 'ValidationError' },
  );
  t.throws(() => fw.applyMemberDelta('g', ['0.0.0.0/0'], []), { name: 'ValidationError' });
  t.throws(() => fw.replaceAll({ ports: [port(3, ['g'], { mac: 'zz' })], groups: [], members: {} }), { name: 'ValidationError' });
  await fw.flush();
  t.is(fw.stats.rejectedInput, 4);
  t.is(dp.applied.length, before, 'nothing applied');
  t.deepEqual([...dp.filters.keys()], ['p1']);
});

test("what a previous run left keeps filtering until this run's first apply; only then is it removed", async (t) => {
  const { dp, fw } = engine(t);
  // The kernel as a previous run left it.
  dp.sets.set('4:old', new Set(['10.9.9.9']));
  dp.filters.set('gone', {
    portId: 'gone',
    device: 'tapx',
    filtered: true,
    mac: '02:00:00:00:00:99',
    stateful: true,
    fixedIps: [],
    sources: [],
    rules: [],
    sets: [],
    key: 'x',
  });
  t.deepEqual(await fw.reconcile(), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 }, 'nothing to compare with yet');
  t.true(dp.filters.has('gone') && dp.sets.has('4:old'), 'still in place');
  fw.setGroup(selfGroup('g'));
  fw.setPort(port(1, ['g']));
  await fw.flush();
  t.false(dp.filters.has('gone'));
  t.false(dp.sets.has('4:old'));
  t.true(dp.filters.has('p1'));
});

test("portInKernel says whether a port's current filter is applied: not while it waits or is written", async (t) => {
  const { dp, fw } = engine(t, { structureIntervalMs: 600_000, structureIntervalMaxMs: 600_000 });
  fw.setGroup(selfGroup('g'));
  fw.setPort(port(1, ['g']));
  t.false(fw.portInKernel('p1'), 'not yet applied');
  await fw.flush();
  t.true(fw.portInKernel('p1'));
  let during: boolean | undefined;
  dp.during = () => {
    during = fw.portInKernel('p1');
  };
  fw.setGroup({ ...selfGroup('g'), rules: [] });
  t.false(fw.portInKernel('p1'), 'its group changed: waiting');
  await fw.flush();
  t.false(during, 'not while being written');
  t.true(fw.portInKernel('p1'));
  dp.during = null;
  dp.failPorts.add('p1');
  fw.setPort(port(1, ['g'], { fixedIps: ['10.0.0.42'] }));
  await fw.flush();
  t.false(fw.portInKernel('p1'), 'refused by the dataplane');
  t.false(fw.portInKernel('nope'));
});
