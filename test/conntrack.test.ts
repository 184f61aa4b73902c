// Cutting connections through the addon's ctnetlink client, in a throwaway namespace whose table is
// filled with `conntrack -I` (the tool as an oracle only): what runs between the pairs goes, and an
// entry with one of the namespace's own addresses at an end (either direction, a NATed reply too) is
// the host's own connection and stays, whatever address a tenant gave a port.
import test from 'ava';
import fs from 'node:fs';
import { deleteConntrackBetween, LinkWatch, listLinks } from '../src/addon/conntrack.js';
import { NativeError } from '../src/addon/errors.js';
import { kernelTest } from './helpers/gate.js';
import { Netns } from './helpers/netns.js';
import { waitFor } from './helpers/wait.js';

function entry(ns: Netns, src: string, dst: string, sport: number, reply?: { src: string; dst: string }, zone?: number): void {
  const r = ns.run('conntrack', [
    '-I',
    ...(zone !== undefined ? ['-w', String(zone)] : []),
    '-p',
    'tcp',
    '-s',
    src,
    '-d',
    dst,
    '--sport',
    String(sport),
    '--dport',
    '80',
    ...(reply ? ['--reply-src', reply.src, '--reply-dst', reply.dst, '--reply-port-src', '80', '--reply-port-dst', String(sport)] : []),
    '--state',
    'ESTABLISHED',
    '-u',
    'ASSURED',
    '-t',
    '300',
  ]);
  if (r.status !== 0) throw new Error(`conntrack -I ${src} ${dst}: ${r.stderr}`);
}

/** The table's entries as `src>dst` of their original direction (and `@zone` outside zone 0). */
function entries(ns: Netns): string[] {
  return ns
    .run('conntrack', ['-L'])
    .stdout.split('\n')
    .map((l) => [/src=(\S+) dst=(\S+)/.exec(l), /zone=(\d+)/.exec(l)] as const)
    .filter(([m]) => m !== null)
    .map(([m, z]) => `${m![1]}>${m![2]}${z ? `@${z[1]}` : ''}`)
    .sort();
}

kernelTest("a cut takes what runs between the pairs and never the namespace's own connections", async (t) => {
  const ns = Netns.create('sgct');
  t.teardown(() => ns.destroy());
  ns.exec('ip', ['addr', 'add', '10.77.0.1/32', 'dev', 'lo']);
  ns.exec('ip', ['addr', 'add', 'fd77::1/128', 'dev', 'lo']);
  entry(ns, '10.66.0.5', '10.88.0.2', 1001); // a port's connection
  entry(ns, '10.77.0.1', '10.88.0.2', 1000); // the host's own, from its address
  entry(ns, '10.88.0.4', '10.77.0.1', 1003); // to the host's address (a VM's too: not cut either)
  entry(ns, '10.66.0.6', '10.88.0.3', 1002, { src: '10.88.0.3', dst: '10.77.0.1' }); // NATed to the host's address
  entry(ns, 'fd66::5', 'fd88::2', 1004);
  entry(ns, 'fd77::1', 'fd88::2', 1005);
  // A tenant's allowed pair as wide as /8 (or the host's own address) removed: cut everything in it.
  const cut = await deleteConntrackBetween(
    [
      { a: '10.0.0.0/8', b: '0.0.0.0/0' },
      { a: 'fd00::/8', b: '::/0' },
    ],
    ns.path,
  );
  t.is(cut, 2, 'the two ports’ connections');
  t.deepEqual(entries(ns), ['10.66.0.6>10.88.0.3', '10.77.0.1>10.88.0.2', '10.88.0.4>10.77.0.1', 'fd77::1>fd88::2']);
});

kernelTest('a cut in a zone leaves the same connection of another zone (conntrack zones: another network)', async (t) => {
  const ns = Netns.create('sgct');
  t.teardown(() => ns.destroy());
  entry(ns, '10.66.0.5', '10.66.0.6', 1001, undefined, 7);
  entry(ns, '10.66.0.5', '10.66.0.6', 1001, undefined, 9);
  entry(ns, '10.66.0.5', '10.66.0.6', 1001);
  t.is(await deleteConntrackBetween([{ a: '10.66.0.5', b: '0.0.0.0/0', zone: 7 }], ns.path), 1);
  t.deepEqual(entries(ns), ['10.66.0.5>10.66.0.6', '10.66.0.5>10.66.0.6@9']);
  t.is(await deleteConntrackBetween([{ a: '10.66.0.5', b: '0.0.0.0/0', zone: 0 }], ns.path), 1, 'zone 0 is the default zone');
  t.deepEqual(entries(ns), ['10.66.0.5>10.66.0.6@9']);
  t.is(await deleteConntrackBetween([{ a: '10.66.0.5', b: '0.0.0.0/0' }], ns.path), 1, 'no zone: every zone');
  t.deepEqual(entries(ns), []);
});

kernelTest("the namespace's devices are listed with their bridge's index", async (t) => {
  const ns = Netns.create('sgct');
  t.teardown(() => ns.destroy());
  ns.exec('ip', ['link', 'add', 'brz', 'type', 'bridge']);
  ns.exec('ip', ['link', 'add', 'vz0', 'type', 'veth', 'peer', 'name', 'vz1']);
  ns.exec('ip', ['link', 'set', 'vz0', 'master', 'brz']);
  const links = await listLinks(ns.path);
  const byName = new Map(links.map((l) => [l.name, l]));
  const index = (dev: string) => ns.ifindex(dev);
  t.like(byName.get('brz'), { index: index('brz'), master: undefined });
  t.like(byName.get('vz0'), { index: index('vz0'), master: index('brz') });
  t.is(byName.get('vz1')?.master, undefined);
  t.truthy(byName.get('lo'));
});

kernelTest('a watch of bridges hears one made, renamed and removed; a namespace that is not there is refused', async (t) => {
  const ns = Netns.create('sgct');
  t.teardown(() => ns.destroy());
  let heard = 0;
  const errors: string[] = [];
  const watch = await LinkWatch.start(
    ns.path,
    ['bridge'],
    () => heard++,
    (m) => errors.push(m),
  );
  t.teardown(() => watch.stop());
  for (const [what, cmd] of [
    ['made', ['add', 'brw', 'type', 'bridge']],
    ['renamed', ['set', 'brw', 'name', 'brx']],
    ['removed', ['del', 'brx']],
  ] as const) {
    const before = heard;
    ns.exec('ip', ['link', ...cmd]);
    await waitFor(`a bridge ${what} heard`, () => heard > before);
  }
  t.deepEqual(errors, []);
  // Idle, its thread sleeps until the kernel or its stop wakes it: it does not run at all (it woke
  // ten times a second to look at a stop flag before).
  const runs = () =>
    fs
      .readdirSync('/proc/self/task')
      .filter((id) => fs.readFileSync(`/proc/self/task/${id}/comm`, 'utf8').trim() === 'sg-links')
      .reduce((n, id) => n + Number(fs.readFileSync(`/proc/self/task/${id}/schedstat`, 'utf8').split(' ')[2]), 0);
  const before = runs();
  t.true(before > 0, 'the watch has its thread');
  await new Promise((r) => setTimeout(r, 1000));
  t.is(runs(), before, 'an idle watch does not run');
  await watch.stop();
  const nowhere = () => undefined;
  const missing = await t.throwsAsync(LinkWatch.start('/var/run/netns/sg-no-such-namespace', ['bridge'], nowhere, nowhere), {
    instanceOf: NativeError,
  });
  t.is(missing?.code, 'NETNS_UNAVAILABLE');
});

test('no pairs: nothing read, nothing cut (unit)', async (t) => {
  t.is(await deleteConntrackBetween([], '/var/run/netns/sg-no-such-namespace'), 0);
});
