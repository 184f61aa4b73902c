// The typed boundary: every addon error is a real Error with a stable `code` (no JSON in messages),
// mapped by code in one place (src/addon/errors.ts) to IpsetError or NativeError; close() releases the socket.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { native } from '../src/addon/native.js';
import { IpsetClient, MemberList } from '../src/addon/ipset.js';
import { fromNative, IPSET_ERROR_CODES, IpsetError, NATIVE_ERROR_CODES, NativeError } from '../src/addon/errors.js';
import { deleteConntrackBetween, listLinks } from '../src/addon/conntrack.js';
import { Iptables, IptablesError } from '../src/firewall/iptables/tools.js';
import { nativeHandle } from '../src/addon/ipset.js';
import { kernelTest } from './helpers/gate.js';
import { Netns } from './helpers/netns.js';

const MISSING_NS = '/var/run/netns/sg-no-such-namespace';

kernelTest('an ipset error carries its code and what it concerns as properties of a real Error', async (t) => {
  const ns = Netns.create('sgerr');
  t.teardown(() => ns.destroy());
  const c = await IpsetClient.open({ netns: ns.path });
  t.teardown(() => c.close());
  // Straight from the addon: code, setName, member as properties; the message is text.
  const raw = await t.throwsAsync(nativeHandle(c).destroy('missing'));
  t.true(raw instanceof Error);
  t.like(raw, { code: 'SET_NOT_FOUND', setName: 'missing' });
  t.false(raw.message.trimStart().startsWith('{'), raw.message);
  // Through the wrapper: an IpsetError with the same facts.
  const e = await t.throwsAsync(c.destroy('missing'), { instanceOf: IpsetError });
  t.like(e, { code: 'SET_NOT_FOUND', setName: 'missing' });
  await c.create('s', { type: 'hash:ip', family: 'inet' });
  const m = await t.throwsAsync(c.syncSet('s', { type: 'hash:ip', family: 'inet' }, ['10.0.0.1', '10.0.0.0/8']), {
    instanceOf: IpsetError,
  });
  t.like(m, { code: 'INVALID_MEMBER', setName: 's', member: '10.0.0.0/8' });
  const closed = await t.throwsAsync(IpsetClient.open({ netns: MISSING_NS }), { instanceOf: IpsetError });
  t.regex(closed.message, /sg-no-such-namespace/);
  // napi's own refusal of an argument it cannot convert is the caller's mistake, not the kernel's.
  const napiRaw = t.throws(() => nativeHandle(c).destroy(5 as unknown as string));
  t.like(fromNative(napiRaw, 'ipset'), { name: 'IpsetError', code: 'INVALID_ARGUMENT' });
});

test('MemberList refuses what is not a list of members with INVALID_ARGUMENT, and a bad member with INVALID_MEMBER', async (t) => {
  for (const bad of [null, 5, '10.0.0.1', { length: 1 }]) {
    const e = t.throws(() => MemberList.from(bad as unknown as string[]), { instanceOf: IpsetError });
    t.is(e?.code, 'INVALID_ARGUMENT', JSON.stringify(bad));
  }
  t.is(t.throws(() => MemberList.from([5 as unknown as string]), { instanceOf: IpsetError })?.code, 'INVALID_MEMBER');
});

kernelTest('opening an ipset client in a namespace that is not one, or with options of the wrong kind, has its own codes', async (t) => {
  const missing = await t.throwsAsync(IpsetClient.open({ netns: MISSING_NS }), { instanceOf: IpsetError });
  t.like(missing, { code: 'NETNS_UNAVAILABLE', errno: 2 });
  // A file that is not a namespace, and a directory.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-netns-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'not-a-namespace');
  fs.writeFileSync(file, 'x');
  for (const p of [file, dir]) {
    const e = await t.throwsAsync(IpsetClient.open({ netns: p }), { instanceOf: IpsetError });
    t.like(e, { code: 'NETNS_UNAVAILABLE', errno: 22 }, p);
  }
  for (const opts of [{ netns: 5 }, { netns: null }, null, 'ns']) {
    const e = await t.throwsAsync(IpsetClient.open(opts as unknown as { netns?: string }), { instanceOf: IpsetError });
    t.is(e?.code, 'INVALID_ARGUMENT', JSON.stringify(opts));
  }
});

test('every code the addon gives is one src/addon/errors.ts maps, and every code is documented', (t) => {
  const addon = native.errorCodes();
  const own = ['INVALID_ARGUMENT', 'UNCLASSIFIED'];
  t.deepEqual([...IPSET_ERROR_CODES].sort(), [...new Set([...addon.ipset, ...own])].sort());
  t.deepEqual([...NATIVE_ERROR_CODES].sort(), [...new Set([...addon.other, 'UNCLASSIFIED'])].sort());
  const root = path.join(__dirname, '..');
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const docs = fs.readFileSync(path.join(root, 'docs', 'native.md'), 'utf8');
  const section = (text: string, heading: string) => {
    const at = text.indexOf(heading);
    t.true(at >= 0, heading);
    const next = text.indexOf('\n## ', at + heading.length);
    return text.slice(at, next < 0 ? undefined : next);
  };
  const ipsetUse = section(readme, '## Using the ipset client');
  const publicApi = section(readme, '## Public API');
  const errors = section(docs, '## Errors');
  for (const code of IPSET_ERROR_CODES) {
    t.true(ipsetUse.includes(`\`${code}\``), `README, Using the ipset client: ${code}`);
    t.true(errors.includes(`\`${code}\``), `docs/native.md, Errors: ${code}`);
  }
  for (const code of NATIVE_ERROR_CODES) {
    t.true(publicApi.includes(`\`${code}\``), `README, Public API: ${code}`);
    t.true(errors.includes(`\`${code}\``), `docs/native.md, Errors: ${code}`);
  }
});

test('conntrack and tool failures are NativeErrors with their own codes', async (t) => {
  const pair = await t.throwsAsync(deleteConntrackBetween([{ a: '10.0.0.1', b: 'fd00::1' }]), { instanceOf: NativeError });
  t.is(pair?.code, 'INVALID_ARGUMENT');
  const zone = await t.throwsAsync(deleteConntrackBetween([{ a: '10.0.0.1', b: '10.0.0.2', zone: 65536 }]), { instanceOf: NativeError });
  t.is(zone?.code, 'INVALID_ARGUMENT', 'a zone is 16 bits');
  const ns = await t.throwsAsync(deleteConntrackBetween([{ a: '10.0.0.1', b: '10.0.0.2' }], MISSING_NS), { instanceOf: NativeError });
  t.like(ns, { code: 'NETNS_UNAVAILABLE', errno: 2 });
  const links = await t.throwsAsync(listLinks(MISSING_NS), { instanceOf: NativeError });
  t.like(links, { code: 'NETNS_UNAVAILABLE', errno: 2 });
  const tool = await t.throwsAsync(native.runToolInNetns(null, 'sh', ['-c', 'true'], Buffer.alloc(0)));
  t.is((tool as unknown as { code: string }).code, 'INVALID_ARGUMENT');
  const ipt = await t.throwsAsync(new Iptables(MISSING_NS).save(4), { instanceOf: IptablesError });
  t.true(ipt.cause instanceof NativeError);
  t.is((ipt.cause as NativeError).code, 'NETNS_UNAVAILABLE');
});

function socketCount(): number {
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:');
    } catch {
      return false;
    }
  }).length;
}

kernelTest.serial('close() releases the socket after the calls already made; later calls fail with CLIENT_CLOSED', async (t) => {
  const ns = Netns.create('sgclose');
  t.teardown(() => ns.destroy());
  const before = socketCount();
  const c = await IpsetClient.open({ netns: ns.path });
  t.is(socketCount(), before + 1);
  const pending = c.syncSet('s', { type: 'hash:net', family: 'inet' }, ['10.0.0.0/8']);
  await c.close();
  t.like(await pending, { created: true });
  t.is(socketCount(), before);
  const e = await t.throwsAsync(c.listNames(), { instanceOf: IpsetError });
  t.is(e?.code, 'CLIENT_CLOSED');
  await t.notThrowsAsync(c.close());
  t.deepEqual(ns.exec('ipset', ['list', '-n']).trim(), 's');
});
