// Integration tests of the native ipset client against the real kernel, each in a fresh network
// namespace, with `ipset save` as the oracle after every operation.
import type { ExecutionContext } from 'ava';
import { kernelTest } from './helpers/gate.js';
import { IpsetClient, IpsetError, type SetSpec } from '../src/addon/ipset.js';
import { Netns } from './helpers/netns.js';
import { clientInFreshNetns, ipsetSave, membersOf, rejectsWith } from './helpers/ipset-oracle.js';

const NET4: SetSpec = { type: 'hash:net', family: 'inet' };
const NET6: SetSpec = { type: 'hash:net', family: 'inet6' };
const IP4: SetSpec = { type: 'hash:ip', family: 'inet' };

const setup = (t: ExecutionContext) => clientInFreshNetns(t, 'sgipset');
const rejects = rejectsWith;

function sorted(xs: Iterable<string>): string[] {
  return [...xs].sort();
}

kernelTest('negotiates the protocol and creates hash:ip and hash:net sets the ipset tool can list', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  t.true(c.protocol === 6 || c.protocol === 7);
  await c.create('n4', NET4);
  await c.create('n6', { ...NET6, hashsize: 4096, maxelem: 1000 });
  await c.create('i4', IP4);
  await c.create('i6', { type: 'hash:ip', family: 'inet6', timeout: 600 });
  const saved = ipsetSave(ns);
  t.deepEqual(sorted(saved.keys()), ['i4', 'i6', 'n4', 'n6']);
  t.regex(saved.get('n4')!.create, /^hash:net family inet /);
  t.regex(saved.get('n6')!.create, /^hash:net family inet6 hashsize 4096 maxelem 1000/);
  t.regex(saved.get('i6')!.create, /^hash:ip family inet6 .*timeout 600/);
  // The host's tool must be able to list what we made (newer revisions broke `ipset list` elsewhere).
  const listed = ns.run('ipset', ['list', '-t']);
  t.is(listed.status, 0, listed.stderr);
  t.deepEqual(sorted(await c.listNames()), ['i4', 'i6', 'n4', 'n6']);
  const h = await c.header('n6');
  t.like(h, { name: 'n6', type: 'hash:net', family: 'inet6', maxelem: 1000, references: 0, entries: 0 });
  t.true(h.memory > 0);
  await rejects(t, c.create('n4', NET4), 'SET_EXISTS');
  await t.notThrowsAsync(c.create('n4', NET4, { exist: true }));
});

kernelTest('add, del and test, single and batched, agree with ipset save', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.create('s', NET4);
  t.deepEqual(await c.add('s', ['10.0.0.1']), { applied: 1, failed: [] });
  const batch = Array.from({ length: 5000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`);
  t.deepEqual(await c.add('s', batch), { applied: 5000, failed: [] });
  t.is(membersOf(ns, 's').length, 5001);
  t.true(await c.test('s', '10.1.3.7'));
  t.false(await c.test('s', '10.9.9.9'));
  t.deepEqual(await c.del('s', batch.slice(0, 2500)), { applied: 2500, failed: [] });
  t.deepEqual(membersOf(ns, 's'), sorted(['10.0.0.1', ...batch.slice(2500)]));
  // Idempotent forms: no error for what is already there / already gone.
  t.deepEqual(await c.add('s', ['10.0.0.1'], { exist: true }), { applied: 1, failed: [] });
  t.deepEqual(await c.del('s', ['10.7.7.7'], { exist: true }), { applied: 1, failed: [] });
  // Strict forms say which element failed and why.
  const dup = await c.add('s', ['10.0.0.1']);
  t.is(dup.applied, 0);
  t.like(dup.failed[0], { member: '10.0.0.1', code: 'ELEMENT_EXISTS' });
  const gone = await c.del('s', ['10.7.7.7']);
  t.like(gone.failed[0], { member: '10.7.7.7', code: 'ELEMENT_MISSING' });
});

kernelTest('a batch that fails mid-way reports the failed element and applies all the others', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.create('s', IP4);
  await c.add('s', ['192.0.2.50', '192.0.2.200']);
  // 3000 elements span two netlink messages; two of them already exist.
  const batch = Array.from({ length: 3000 }, (_, i) => `192.0.${2 + (i >> 8)}.${i & 255}`);
  const r = await c.add('s', batch);
  t.is(r.applied, 2998);
  t.deepEqual(r.failed.map((f) => f.member).sort(), ['192.0.2.200', '192.0.2.50']);
  t.true(r.failed.every((f) => f.code === 'ELEMENT_EXISTS'));
  t.is(membersOf(ns, 's').length, 3000);
});

kernelTest('flush, rename, swap, destroy', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.syncSet('a', NET4, ['10.0.0.1', '10.0.1.0/24']);
  await c.syncSet('b', NET4, ['10.9.0.0/16']);
  await c.swap('a', 'b');
  t.deepEqual(membersOf(ns, 'a'), ['10.9.0.0/16']);
  t.deepEqual(membersOf(ns, 'b'), ['10.0.0.1', '10.0.1.0/24']);
  await c.rename('a', 'c');
  t.deepEqual(sorted(ipsetSave(ns).keys()), ['b', 'c']);
  await rejects(t, c.rename('b', 'c'), 'SET_EXISTS');
  await c.flush('b');
  t.deepEqual(membersOf(ns, 'b'), []);
  await c.destroy('b');
  t.deepEqual(sorted(ipsetSave(ns).keys()), ['c']);
  await rejects(t, c.destroy('b'), 'SET_NOT_FOUND');
  await rejects(t, c.flush('nope'), 'SET_NOT_FOUND');
  await rejects(t, c.add('nope', ['10.0.0.1']), 'SET_NOT_FOUND');
});

kernelTest('IPv6 and hash:net with mixed prefix lengths, normalised as the kernel stores them', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.syncSet('v4', NET4, ['10.0.0.1', '10.0.0.9/32', '10.1.0.0/16', '10.2.3.4/24', '172.16.0.0/12', '192.0.2.128/25']);
  t.deepEqual(membersOf(ns, 'v4'), sorted(['10.0.0.1', '10.0.0.9', '10.1.0.0/16', '10.2.3.0/24', '172.16.0.0/12', '192.0.2.128/25']));
  await c.syncSet('v6', NET6, ['fd00::1', 'FD00:0:0:1::/64', '2001:db8::/32', 'fd00::2/128']);
  t.deepEqual(membersOf(ns, 'v6'), sorted(['fd00::1', 'fd00:0:0:1::/64', '2001:db8::/32', 'fd00::2']));
  const back = await c.readSet('v6');
  t.deepEqual(sorted(back.members), membersOf(ns, 'v6'));
  t.is(back.header.entries, 4);
});

kernelTest('syncSet: creates, diffs in place, swaps for large changes and leaves no temp set', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const a = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
  t.like(await c.syncSet('s', NET4, a), { created: true, added: 3, removed: 0, swapped: false });
  t.like(await c.syncSet('s', NET4, ['10.0.0.2', '10.0.0.3', '10.0.0.4']), { created: false, added: 1, removed: 1, swapped: false });
  t.deepEqual(membersOf(ns, 's'), ['10.0.0.2', '10.0.0.3', '10.0.0.4']);
  t.like(await c.syncSet('s', NET4, ['10.0.0.2', '10.0.0.3', '10.0.0.4']), { added: 0, removed: 0 });
  // A different maxelem needs a new set: built aside and swapped in.
  const r = await c.syncSet('s', { ...NET4, maxelem: 131072 }, ['10.0.0.4', '10.0.0.5']);
  t.true(r.swapped);
  t.regex(ipsetSave(ns).get('s')!.create, /maxelem 131072/);
  t.deepEqual(membersOf(ns, 's'), ['10.0.0.4', '10.0.0.5']);
  t.deepEqual(sorted(ipsetSave(ns).keys()), ['s'], 'no temp set left');
  // Type change on an unreferenced set: replaced.
  await c.syncSet('s', IP4, ['10.0.0.6']);
  t.regex(ipsetSave(ns).get('s')!.create, /^hash:ip /);
  t.deepEqual(sorted(ipsetSave(ns).keys()), ['s']);
});

kernelTest('a 100k-member set: sync, a 1% diff, a full replace, read back', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const a = Array.from({ length: 100_000 }, (_, i) => ip(i));
  const spec = { ...NET4, maxelem: 262144 };
  t.like(await c.syncSet('big', spec, a), { created: true, added: 100_000 });
  t.is(membersOf(ns, 'big').length, 100_000);
  const b = [...a.slice(1000), ...Array.from({ length: 1000 }, (_, i) => ip(500_000 + i))];
  t.like(await c.syncSet('big', spec, b), { added: 1000, removed: 1000, swapped: false });
  t.deepEqual(membersOf(ns, 'big'), sorted(b));
  const other = Array.from({ length: 100_000 }, (_, i) => ip(1_000_000 + i));
  t.like(await c.syncSet('big', spec, other), { swapped: true });
  const back = await c.readSet('big');
  t.is(back.members.length, 100_000);
  t.deepEqual(sorted(back.members), membersOf(ns, 'big'));
  t.deepEqual(sorted(back.members), sorted(other));
  t.deepEqual(sorted(ipsetSave(ns).keys()), ['big'], 'no temp set left');
});

kernelTest('swap of mismatched types or families is refused', async (t) => {
  const s = await setup(t);
  const { c } = s;
  await c.create('n4', NET4);
  await c.create('n6', NET6);
  await c.create('i4', IP4);
  await rejects(t, c.swap('n4', 'n6'), 'TYPE_MISMATCH');
  await rejects(t, c.swap('n4', 'i4'), 'TYPE_MISMATCH');
});

kernelTest('a set referenced by an iptables rule cannot be destroyed, and is updated by swap', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.syncSet('ref', NET4, ['10.0.0.1']);
  ns.exec('iptables', ['-A', 'INPUT', '-m', 'set', '--match-set', 'ref', 'src', '-j', 'DROP']);
  t.is((await c.header('ref')).references, 1);
  const e = await rejects(t, c.destroy('ref'), 'SET_IN_USE');
  t.regex(e.message, /in use/);
  t.is(e.setName, 'ref');
  // Growing maxelem goes through a swap, which the kernel allows under a reference.
  const r = await c.syncSet('ref', { ...NET4, maxelem: 200000 }, ['10.0.0.2']);
  t.true(r.swapped);
  t.deepEqual(membersOf(ns, 'ref'), ['10.0.0.2']);
  t.regex(ns.exec('iptables', ['-S', 'INPUT']), /--match-set ref src/);
  // A type change would need destroy: refused, with the reason.
  const m = await rejects(t, c.syncSet('ref', IP4, ['10.0.0.3']), 'TYPE_MISMATCH');
  t.regex(m.message, /in use/);
  t.deepEqual(membersOf(ns, 'ref'), ['10.0.0.2']);
});

kernelTest('many concurrent calls from JS on two clients', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const c2 = await IpsetClient.open({ netns: ns.path });
  await c.create('cc', IP4);
  const ips = Array.from({ length: 400 }, (_, i) => `198.51.${i >> 8}.${i & 255}`);
  const results = await Promise.all(ips.map((ip, i) => (i % 2 ? c : c2).add('cc', [ip])));
  t.true(results.every((r) => r.applied === 1 && r.failed.length === 0));
  const tests = await Promise.all(ips.map((ip) => c2.test('cc', ip)));
  t.true(tests.every(Boolean));
  t.deepEqual(membersOf(ns, 'cc'), sorted(ips));
});

kernelTest('bad input is refused before any kernel call and changes nothing', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.syncSet('s4', NET4, ['10.0.0.1']);
  await c.syncSet('i4', IP4, ['10.0.0.1']);
  const before = ns.exec('ipset', ['save']);
  const bad: [() => Promise<unknown>, string][] = [
    [() => c.add('s4', ['10.0.0.256']), 'INVALID_MEMBER'],
    [() => c.add('s4', ['not-an-ip']), 'INVALID_MEMBER'],
    [() => c.add('s4', ['10.0.0.1/33']), 'INVALID_MEMBER'],
    [() => c.add('s4', ['010.0.0.1']), 'INVALID_MEMBER'],
    [() => c.add('s4', ['fd00::1']), 'INVALID_MEMBER'],
    [() => c.add('s4', ['0.0.0.0/0']), 'INVALID_MEMBER'],
    [() => c.add('s4', ['10.0.0.2\n10.0.0.3']), 'INVALID_MEMBER'],
    [() => c.add('s4', ['']), 'INVALID_MEMBER'],
    [() => c.add('s4', ['10.0.0.2; ipset destroy']), 'INVALID_MEMBER'],
    [() => c.add('i4', ['10.0.0.0/24']), 'INVALID_MEMBER'],
    [() => c.add('s4', [42 as unknown as string]), 'INVALID_MEMBER'],
    [() => c.add('s4', [null as unknown as string]), 'INVALID_MEMBER'],
    [() => c.add('s4', [{ ip: '10.0.0.2' } as unknown as string]), 'INVALID_MEMBER'],
    [() => c.add('s4', '10.0.0.2' as unknown as string[]), 'INVALID_ARGUMENT'],
    // A batch is validated whole: one bad element, nothing sent.
    [() => c.add('s4', ['10.0.0.2', '10.0.0.3', 'bogus', '10.0.0.4']), 'INVALID_MEMBER'],
    [() => c.syncSet('s4', NET4, ['10.0.0.5', '10.0.0.300']), 'INVALID_MEMBER'],
    [() => c.create('x'.repeat(32), NET4), 'INVALID_NAME'],
    [() => c.create('bad name', NET4), 'INVALID_NAME'],
    [() => c.create('a;b', NET4), 'INVALID_NAME'],
    [() => c.create('ünï', NET4), 'INVALID_NAME'],
    [() => c.create('', NET4), 'INVALID_NAME'],
    [() => c.destroy(7 as unknown as string), 'INVALID_NAME'],
    [() => c.create('ok', { type: 'list:set', family: 'inet' } as unknown as SetSpec), 'INVALID_SPEC'],
    [() => c.create('ok', { type: 'hash:ip', family: 'ipx' } as unknown as SetSpec), 'INVALID_SPEC'],
    [() => c.create('ok', { ...NET4, maxelem: -1 }), 'INVALID_SPEC'],
    [() => c.syncSet('s4', { ...NET4, maxelem: 2 }, ['10.0.0.1', '10.0.0.2', '10.0.0.3']), 'SET_FULL'],
  ];
  for (const [call, code] of bad) {
    const e = await t.throwsAsync(call(), { instanceOf: IpsetError });
    t.is<string | undefined, string>(e?.code, code, e?.message);
  }
  const e = await t.throwsAsync(c.add('s4', ['10.0.0.2', 'bogus']), { instanceOf: IpsetError });
  t.is(e?.member, 'bogus');
  t.is(e?.setName, 's4');
  t.is(ns.exec('ipset', ['save']), before);
});

kernelTest('a full set reports SET_FULL for the elements that did not fit', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.create('tiny', { ...IP4, maxelem: 4 });
  const r = await c.add('tiny', ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
  t.is(r.applied, 4);
  t.deepEqual(
    r.failed.map((f) => [f.member, f.code]),
    [
      ['10.0.0.5', 'SET_FULL'],
      ['10.0.0.6', 'SET_FULL'],
    ],
  );
  t.is(membersOf(ns, 'tiny').length, 4);
});

kernelTest('after a full set, every later member of the batch is tried: what the set holds is no SET_FULL', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  await c.syncSet('tiny', { ...IP4, maxelem: 4 }, ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
  // 3000 members span two netlink messages; the set is full from the first one on.
  const batch = ['10.0.0.9', '10.0.0.2', ...Array.from({ length: 3000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`), '10.0.0.3'];
  const withExist = await c.add('tiny', batch, { exist: true });
  t.is(withExist.applied, 2, 'the two members the set holds are accepted, as the kernel accepts them with exist');
  t.false(withExist.failed.some((f) => f.member === '10.0.0.2' || f.member === '10.0.0.3'));
  t.true(withExist.failed.every((f) => f.code === 'SET_FULL'));
  const strict = await c.add('tiny', batch);
  t.deepEqual(
    strict.failed.filter((f) => f.code !== 'SET_FULL').map((f) => [f.member, f.code]),
    [
      ['10.0.0.2', 'ELEMENT_EXISTS'],
      ['10.0.0.3', 'ELEMENT_EXISTS'],
    ],
  );
  t.is(strict.failed.length, batch.length);
  t.deepEqual(membersOf(ns, 'tiny'), ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
});

kernelTest('syncSet after other writers changed the set: the kernel holds exactly the list', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const want = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.3.0.0/16'];
  const others = ['10.7.0.1', '10.7.0.2', '10.7.0.3', '10.7.0.4'];
  const holdsTheList = async (what: string) => {
    await c.syncSet('s', NET4, want);
    t.deepEqual(membersOf(ns, 's'), sorted(want), what);
  };
  await holdsTheList('first sync');
  ns.exec('ipset', ['del', 's', '10.0.0.2']);
  await holdsTheList('after ipset del');
  ns.exec('ipset', ['add', 's', '10.66.0.1']);
  await holdsTheList('after ipset add');
  ns.exec('ipset', ['flush', 's']);
  await holdsTheList('after ipset flush');
  ns.exec('ipset', ['destroy', 's']);
  t.like(await c.syncSet('s', NET4, want), { created: true, added: 4 });
  t.deepEqual(membersOf(ns, 's'), sorted(want), 'after ipset destroy');
  // Made again with as many other members, and swapped with a set of as many other members: the
  // count is the same, the set is not.
  ns.exec('ipset', ['destroy', 's']);
  ns.exec('ipset', ['restore'], ['create s hash:net family inet', ...others.map((m) => `add s ${m}`), ''].join('\n'));
  await holdsTheList('after destroy and create');
  ns.exec('ipset', ['restore'], ['create o hash:net family inet', ...others.map((m) => `add o ${m}`), ''].join('\n'));
  ns.exec('ipset', ['swap', 's', 'o']);
  await holdsTheList('after ipset swap');
  // A second client syncing its own list, and destroying and making the set again.
  const c2 = await IpsetClient.open({ netns: ns.path });
  t.teardown(() => c2.close());
  await c2.syncSet('s', NET4, others.slice(0, 2));
  await holdsTheList('after a second client synced');
  await c2.destroy('s');
  await c2.syncSet('s', NET4, others.slice(0, 3));
  await holdsTheList('after a second client made it again');
});

kernelTest('a set made again as hash:ip behind the client is never sent hash:net elements', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const want = ['10.0.0.1', '10.0.0.2', '10.9.0.0/22'];
  await c.syncSet('s', NET4, want);
  ns.exec('ipset', ['destroy', 's']);
  ns.exec('ipset', ['restore'], ['create s hash:ip family inet', 'add s 10.0.0.1', 'add s 10.0.0.2', 'add s 10.0.0.3', ''].join('\n'));
  // A network in a hash:ip set would be taken as a range of 1,024 addresses.
  const e = await rejects(t, c.add('s', ['10.8.0.0/22'], { exist: true }), 'TYPE_MISMATCH');
  t.is(e.setName, 's');
  await rejects(t, c.del('s', ['10.0.0.1'], { exist: true }), 'TYPE_MISMATCH');
  t.deepEqual(membersOf(ns, 's'), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  // A sync makes it the set asked for.
  await c.syncSet('s', NET4, want);
  t.regex(ipsetSave(ns).get('s')!.create, /^hash:net family inet /);
  t.deepEqual(membersOf(ns, 's'), sorted(want));
});

kernelTest('a set with a timeout is read at every sync: a member that expired is put back', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const spec: SetSpec = { ...NET4, timeout: 600 };
  const want = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
  await c.syncSet('t', spec, want);
  // .2 gets a 1 s timeout and expires; a member is added in its place, so the count holds too.
  ns.exec('ipset', ['add', 't', '10.0.0.2', 'timeout', '1', '-exist']);
  ns.exec('ipset', ['add', 't', '10.0.0.9']);
  for (const deadline = Date.now() + 30_000; membersOf(ns, 't').includes('10.0.0.2');) {
    if (Date.now() > deadline) return t.fail('the member did not expire within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  await c.syncSet('t', spec, want);
  t.deepEqual(membersOf(ns, 't'), want);
});

kernelTest('reconcile repairs drift made by hand and readSet refreshes the mirror', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  const want = ['10.0.0.1', '10.0.0.2', '10.3.0.0/16'];
  await c.syncSet('d', NET4, want);
  ns.exec('ipset', ['del', 'd', '10.0.0.2']);
  ns.exec('ipset', ['add', 'd', '10.66.0.1']);
  t.like(await c.reconcile('d'), { added: 1, removed: 1, repaired: true });
  t.deepEqual(membersOf(ns, 'd'), sorted(want));
  ns.exec('ipset', ['flush', 'd']);
  t.like(await c.reconcile('d'), { added: 3, repaired: true });
  ns.exec('ipset', ['destroy', 'd']);
  t.like(await c.reconcile('d'), { repaired: true });
  t.deepEqual(membersOf(ns, 'd'), sorted(want));
  t.like(await c.reconcile('d'), { added: 0, removed: 0, repaired: false });
  await rejects(t, c.reconcile('unmanaged'), 'SET_NOT_FOUND');
});

kernelTest('opening a client changes nothing, here or in other namespaces', async (t) => {
  const s = await setup(t);
  const { ns, c } = s;
  ns.exec('ipset', ['create', 'sgtmp-0123456789abcdef', 'hash:net']);
  ns.exec('ipset', ['create', 'theirs', 'hash:ip']);
  await IpsetClient.open({ netns: ns.path });
  t.deepEqual(sorted(ipsetSave(ns).keys()), ['sgtmp-0123456789abcdef', 'theirs']);
  const other = Netns.create('sgipset');
  t.teardown(() => other.destroy());
  const c2 = await IpsetClient.open({ netns: other.path });
  await c2.create('only-here', NET4);
  t.deepEqual(sorted(await c.listNames()), ['sgtmp-0123456789abcdef', 'theirs']);
  t.deepEqual(sorted(ipsetSave(other).keys()), ['only-here']);
});
