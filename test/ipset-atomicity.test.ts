// The ipset engine keeps its own atomicity, checked against the kernel with `ipset save` as the oracle,
// each test in a fresh network namespace.
import type { ExecutionContext } from 'ava';
import { kernelTest } from './helpers/gate.js';
import { IpsetClient, IpsetError, MemberList, tempSetName, type SetSpec } from '../src/addon/ipset.js';
import { bytesSent } from '../src/internal/hooks.js';
import { clientInFreshNetns, ipsetSave, membersOf, rejectsWith } from './helpers/ipset-oracle.js';

const NET4: SetSpec = { type: 'hash:net', family: 'inet' };
const IP4: SetSpec = { type: 'hash:ip', family: 'inet' };
const IP6: SetSpec = { type: 'hash:ip', family: 'inet6' };

const setup = (t: ExecutionContext) => clientInFreshNetns(t, 'sgatom');
const rejects = rejectsWith;

const ip4 = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const range = (from: number, n: number) => Array.from({ length: n }, (_, k) => ip4(from + k));

kernelTest('a sync with a member the kernel refuses changes nothing, names the member, and the old list still syncs', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const old = range(1, 300);
  await c.syncSet('s4', IP4, old);
  await c.syncSet('s6', IP6, ['fd00::1', 'fd00::2']);
  const before = ns.exec('ipset', ['save']);
  // 300 new addresses with one the kernel refuses in the middle: a swap would have been used.
  const fresh = range(10_000, 300);
  fresh.splice(150, 0, '0.0.0.0');
  const e = await rejects(t, c.syncSet('s4', IP4, fresh), 'INVALID_MEMBER');
  t.is(e.member, '0.0.0.0');
  t.is(e.setName, 's4');
  const e6 = await rejects(t, c.syncSet('s6', IP6, ['fd00::3', '::']), 'INVALID_MEMBER');
  t.is(e6.member, '::');
  const full = await rejects(
    t,
    c.syncSet(
      's4',
      { ...IP4, maxelem: 200 },
      fresh.filter((m) => m !== '0.0.0.0'),
    ),
    'SET_FULL',
  );
  t.regex(full.message, /300 members exceed maxelem 200/);
  t.is(ns.exec('ipset', ['save']), before, 'the kernel is as it was');
  // The mirror is too: syncing the old list is no change, and the kernel holds it.
  t.like(await c.syncSet('s4', IP4, old), { created: false, added: 0, removed: 0, swapped: false });
  t.deepEqual(membersOf(ns, 's4'), [...old].sort());
});

kernelTest('what the kernel refuses for each type and family is exactly what is refused up front', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  // Everything the kernel takes is taken; everything it refuses is refused before any send.
  const cases: [SetSpec, string, boolean][] = [
    [IP4, '0.0.0.0', false],
    [IP4, '0.0.0.1', true],
    [IP4, '255.255.255.255', true],
    [IP6, '::', false],
    [IP6, '::1', true],
    [NET4, '0.0.0.0/0', false],
    [NET4, '0.0.0.0/1', true],
    [NET4, '0.0.0.0', true],
    [{ type: 'hash:net', family: 'inet6' }, '::/0', false],
    [{ type: 'hash:net', family: 'inet6' }, '::', true],
    [{ type: 'hash:net', family: 'inet6' }, '::/1', true],
  ];
  for (const [i, [spec, member, ok]] of cases.entries()) {
    const name = `k${i}`;
    // The ipset tool as the oracle of what the kernel takes.
    ns.exec('ipset', ['create', name, spec.type, 'family', spec.family]);
    t.is(ns.run('ipset', ['add', name, member]).status === 0, ok, `ipset add ${spec.type} ${spec.family} ${member}`);
    const r = c.syncSet(`o${i}`, spec, [member]);
    if (ok) await t.notThrowsAsync(r);
    else t.is((await t.throwsAsync(r, { instanceOf: IpsetError }))?.code, 'INVALID_MEMBER');
  }
});

kernelTest('an in-place change that fails half-way is undone, and a set a failed sync created is gone', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const spec = { ...IP4, maxelem: 4 };
  await c.syncSet('s', spec, ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
  // Drift that keeps the count, which the client cannot see without reading the set: .3 swapped
  // for .5 by hand, so the second add of the change finds the set full.
  ns.exec('ipset', ['del', 's', '10.0.0.3']);
  ns.exec('ipset', ['add', 's', '10.0.0.5']);
  const before = ns.exec('ipset', ['save']);
  // Delete .3 (already gone) and .4, add .7 and .8: the delete of .4 and the add of .7 are
  // acknowledged, the add of .8 is not.
  const e = await rejects(t, c.syncSet('s', spec, ['10.0.0.1', '10.0.0.2', '10.0.0.7', '10.0.0.8']), 'SET_FULL');
  t.is(e.member, '10.0.0.8');
  t.is(ns.exec('ipset', ['save']), before, 'what was acknowledged was undone');
  // A sync that creates the set and fails leaves no set behind.
  await rejects(t, c.syncSet('fresh', IP4, ['10.0.0.1', '10.0.0.0/24']), 'INVALID_MEMBER');
  t.false(ipsetSave(ns).has('fresh'));
});

kernelTest('swap with a missing second set is SET_NOT_FOUND; rename onto an existing name is SET_EXISTS', async (t) => {
  const s = await setup(t);
  const { c } = s;
  await c.create('a', NET4);
  await c.create('b', NET4);
  const e = await rejects(t, c.swap('a', 'missing'), 'SET_NOT_FOUND');
  t.regex(e.message, /second set does not exist/);
  await rejects(t, c.swap('missing', 'a'), 'SET_NOT_FOUND');
  await rejects(t, c.rename('a', 'b'), 'SET_EXISTS');
});

kernelTest('failing elements cost one small message each, not a resend of the rest of the batch', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const present = range(0, 20_000);
  await c.syncSet('s', NET4, present);
  // What the batch costs when nothing fails.
  let sent = await bytesSent(c);
  t.deepEqual(await c.add('s', present, { exist: true }), { applied: 20_000, failed: [] });
  const onePass = (await bytesSent(c)) - sent;
  // Every element already there, without `exist`: each fails, each is reported, and the wire cost
  // stays a small multiple of one pass (a resend of the rest after each failure is ~1,000 passes).
  sent = await bytesSent(c);
  const r = await c.add('s', present);
  const failing = (await bytesSent(c)) - sent;
  t.is(r.applied, 0);
  t.is(r.failed.length, 20_000);
  t.true(r.failed.every((f) => f.code === 'ELEMENT_EXISTS'));
  t.true(failing < 5 * onePass, `${failing} bytes against ${onePass} for one pass`);
  // Deleting 100k of which half are absent, interleaved.
  await c.syncSet('d', { ...NET4, maxelem: 131072 }, range(100_000, 50_000));
  const mixed = range(100_000, 50_000).flatMap((ip, k) => [ip, ip4(300_000 + k)]);
  sent = await bytesSent(c);
  const d = await c.del('d', mixed);
  const deleting = (await bytesSent(c)) - sent;
  t.is(d.applied, 50_000);
  t.is(d.failed.length, 50_000);
  t.true(d.failed.every((f) => f.code === 'ELEMENT_MISSING'));
  t.true(deleting < 5 * 5 * onePass, `${deleting} bytes for 100k`);
  t.deepEqual(membersOf(ns, 'd'), []);
});

kernelTest('sets whose contents are not member lists are refused, never read wrong', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  ns.exec('ipset', ['create', 'nm', 'hash:net']);
  ns.exec('ipset', ['add', 'nm', '10.0.0.0/8']);
  ns.exec('ipset', ['add', 'nm', '10.1.0.0/16', 'nomatch']);
  ns.exec('ipset', ['create', 'masked', 'hash:ip', 'netmask', '24']);
  ns.exec('ipset', ['add', 'masked', '10.0.0.5']);
  ns.exec('ipset', ['create', 'ls', 'list:set']);
  ns.exec('ipset', ['create', 'ipport', 'hash:ip,port']);
  ns.exec('ipset', ['add', 'ipport', '10.0.0.1,tcp:80']);
  ns.exec('ipset', ['create', 'netport', 'hash:net,port']);
  ns.exec('ipset', ['add', 'netport', '10.0.0.0/24,udp:53']);
  ns.exec('ipset', ['create', 'netiface', 'hash:net,iface']);
  ns.exec('ipset', ['add', 'netiface', '10.0.0.0/24,lo']);
  for (const name of ['nm', 'masked', 'ls', 'ipport', 'netport', 'netiface']) {
    const e = await rejects(t, c.readSet(name), 'TYPE_MISMATCH');
    t.is(e.setName, name);
  }
  await rejects(t, c.add('ipport', ['10.0.0.2']), 'TYPE_MISMATCH');
  // A sync makes such a set what it is asked to be, and a reconcile then finds nothing to repair.
  t.like(await c.syncSet('nm', NET4, ['10.0.0.0/8']), { swapped: true });
  t.deepEqual(ipsetSave(ns).get('nm')!.members, new Set(['10.0.0.0/8']));
  t.notRegex(ns.exec('ipset', ['save', 'nm']), /nomatch/);
  t.like(await c.syncSet('masked', IP4, ['10.0.0.5']), { swapped: true });
  t.notRegex(ipsetSave(ns).get('masked')!.create, /netmask/);
  t.like(await c.reconcile('masked'), { repaired: false });
  t.like(await c.reconcile('nm'), { repaired: false });
});

kernelTest('addresses read back as ipset save prints them; octal-looking prefixes are refused', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const v6 = [
    '::1.2.3.4',
    '::0.1.2.3',
    '::ffff:1.2.3.4',
    '::ffff:0:1.2.3.4',
    '1::1.2.3.4',
    '::0.0.1.2',
    '0:0:0:0:0:1:0:0',
    '1:0:0:0:1:0:0:0',
    'fd00::1',
  ];
  await c.syncSet('v6', IP6, v6);
  const back = await c.readSet('v6');
  t.deepEqual([...back.members].sort(), membersOf(ns, 'v6'));
  t.true(back.members.includes('::1.2.3.4'));
  for (const bad of ['10.0.0.1/032', '10.0.0.0/08', '10.0.0.0/00']) {
    const e = await rejects(t, c.syncSet('p', NET4, [bad]), 'INVALID_MEMBER');
    t.is(e.member, bad);
  }
  t.false(ipsetSave(ns).has('p'));
});

kernelTest('reconcile reports a repair when the set had to be made again', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.syncSet('empty', NET4, []);
  ns.exec('ipset', ['destroy', 'empty']);
  t.like(await c.reconcile('empty'), { repaired: true });
  t.true(ipsetSave(ns).has('empty'));
  await c.syncSet('d', NET4, ['10.0.0.1']);
  ns.exec('ipset', ['destroy', 'd']);
  ns.exec('ipset', ['create', 'd', 'hash:net', 'family', 'inet6']);
  t.like(await c.reconcile('d'), { repaired: true });
  t.regex(ipsetSave(ns).get('d')!.create, /family inet /);
  t.deepEqual(membersOf(ns, 'd'), ['10.0.0.1']);
});

kernelTest('create with exist over a set of another family or type is TYPE_MISMATCH', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.create('n', NET4);
  const before = ns.exec('ipset', ['save']);
  await rejects(t, c.create('n', { type: 'hash:net', family: 'inet6' }, { exist: true }), 'TYPE_MISMATCH');
  await rejects(t, c.create('n', IP4, { exist: true }), 'TYPE_MISMATCH');
  await rejects(t, c.create('n', { ...NET4, maxelem: 10 }, { exist: true }), 'SET_EXISTS');
  await t.notThrowsAsync(c.create('n', NET4, { exist: true }));
  t.is(ns.exec('ipset', ['save']), before);
});

kernelTest('opening a client touches no set; a stale temp set goes only with the next replace of its own set', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  ns.exec('ipset', ['create', 'sgtmp-0123456789abcdef', 'hash:net']);
  ns.exec('ipset', ['create', 'theirs.t', 'hash:net']);
  const name = 'sg4-0123456789abcdef';
  t.is(tempSetName(name), `${name}.t`);
  t.is(tempSetName('x'.repeat(31)).length, 31);
  await c.syncSet(name, NET4, range(0, 300));
  // As a crash half-way through a replace would leave it.
  ns.exec('ipset', ['create', tempSetName(name), 'hash:net']);
  const c2 = await IpsetClient.open({ netns: ns.path });
  t.teardown(() => c2.close());
  t.deepEqual([...ipsetSave(ns).keys()].sort(), [name, `${name}.t`, 'sgtmp-0123456789abcdef', 'theirs.t']);
  t.like(await c.syncSet(name, NET4, range(1000, 300)), { swapped: true });
  t.deepEqual([...ipsetSave(ns).keys()].sort(), [name, 'sgtmp-0123456789abcdef', 'theirs.t']);
  // Temp-shaped names are not taken for sets of their own.
  await rejects(t, c.create('mine.t', NET4), 'INVALID_NAME');
});

kernelTest('MemberList: packed once, synced many times, same result as strings', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const a = MemberList.from(range(0, 1000));
  const b = MemberList.from(new Set([...range(10, 990), '10.9.0.0/16', 'fd00::1'].slice(0, -1)));
  t.is(a.size, 1000);
  t.like(await c.syncSet('m', NET4, a), { created: true, added: 1000 });
  t.like(await c.syncSet('m', NET4, b), { added: 1, removed: 10 });
  t.like(await c.syncSet('m', NET4, a), { added: 10, removed: 1 });
  t.deepEqual(membersOf(ns, 'm'), range(0, 1000).sort());
  t.deepEqual(await c.add('m', MemberList.from(['10.200.0.1'])), { applied: 1, failed: [] });
  t.throws(() => MemberList.from([7 as unknown as string]), { instanceOf: IpsetError });
});
