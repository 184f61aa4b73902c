// The package as users get it: packed tarballs installed into an empty directory with no Rust
// toolchain on PATH and no access to this repository's node_modules, then used for real.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { kernelTest } from './helpers/gate.js';
import { Netns } from './helpers/netns.js';
import { ipsetSave } from './helpers/ipset-oracle.js';

const repo = path.resolve(__dirname, '..');
const version = (JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string }).version;

/** PATH without any directory that holds cargo or rustc. */
function pathWithoutRust(): string {
  return (process.env.PATH ?? '')
    .split(':')
    .filter((d) => d && !fs.existsSync(path.join(d, 'cargo')) && !fs.existsSync(path.join(d, 'rustc')))
    .join(':');
}

let work: string;
let app: string;
let env: NodeJS.ProcessEnv;

test.before(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-pack-'));
  app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'pack-smoke', private: true }));
  env = { ...process.env, PATH: pathWithoutRust(), CARGO_HOME: '/nonexistent', RUSTUP_HOME: '/nonexistent' };
  delete env.NODE_PATH;
  execFileSync('bash', [path.join(repo, 'scripts/pack-local.sh'), path.join(work, 'pack')], { cwd: repo, stdio: 'pipe' });
  execFileSync(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--omit=dev',
      `../pack/sg-agent-${version}.tgz`,
      `../pack/sg-agent-linux-x64-gnu-${version}.tgz`,
    ],
    { cwd: app, env, stdio: 'pipe', timeout: 240_000 },
  );
});

test.after.always(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test.serial('no Rust toolchain is reachable from the install environment', (t) => {
  const r = spawnSync('sh', ['-c', 'command -v cargo || command -v rustc'], { env });
  t.not(r.status, 0, `found ${r.stdout.toString()}`);
  t.false(fs.existsSync(path.join(app, 'node_modules', '.bin', 'napi')), 'dev dependencies must not be installed');
});

kernelTest.serial('the installed sg-agent --version names package, native binary and kernel protocol', (t) => {
  const ns = Netns.create('sgpack');
  t.teardown(() => ns.destroy());
  const out = execFileSync('ip', ['netns', 'exec', ns.name, path.join(app, 'node_modules/.bin/sg-agent'), '--version'], {
    env,
    encoding: 'utf8',
  });
  t.regex(
    out.trim(),
    new RegExp(`^sg-agent ${version.replaceAll('.', '\\.')} \\(native \\d+\\.\\d+\\.\\d+, kernel ipset protocol [67]\\)$`),
  );
});

kernelTest.serial('the installed addon creates a set, adds a member and reads it back in a namespace', (t) => {
  const ns = Netns.create('sgpack');
  t.teardown(() => ns.destroy());
  const script = `
    const { IpsetClient } = require('sg-agent');
    (async () => {
      const c = await IpsetClient.open();
      await c.create('smoke', { type: 'hash:net', family: 'inet' });
      await c.add('smoke', ['192.0.2.0/24']);
      const r = await c.readSet('smoke');
      console.log(JSON.stringify({ type: r.header.type, members: r.members }));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const out = execFileSync('ip', ['netns', 'exec', ns.name, process.execPath, '-e', script], { cwd: app, env, encoding: 'utf8' });
  t.deepEqual(JSON.parse(out), { type: 'hash:net', members: ['192.0.2.0/24'] });
  t.deepEqual([...(ipsetSave(ns).get('smoke')?.members ?? [])], ['192.0.2.0/24']);
  // It really is the installed copy, not this repository's.
  const resolved = execFileSync(process.execPath, ['-p', "require.resolve('sg-agent')"], { cwd: app, env, encoding: 'utf8' }).trim();
  t.true(resolved.startsWith(app), resolved);
});

test.serial('the installed package exports the control-plane library: protocol, publisher, store', (t) => {
  const script = `
    const sg = require('sg-agent');
    const os = require('node:os'); const fs = require('node:fs'); const path = require('node:path');
    (async () => {
      const m = sg.decode(sg.encode({ v: 1, type: 'group.deleted', groupId: 'g', revision: 2 }), ['group.deleted']);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-pack-store-'));
      const store = await sg.Store.open(dir);
      await store.putGroup('g', true, [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'g' }]);
      const r = await store.putPort('p', { id: 'p', host: 'h', device: 'tap0', mac: '02:00:00:00:00:01', fixedIps: ['10.0.0.1'], allowedAddressPairs: [], securityGroups: ['g'], portSecurityEnabled: true });
      const parts = sg.buildSync(store, { v: 1, type: 'sync.request', host: 'h' });
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
      console.log(JSON.stringify({ type: m.type, key: sg.groupKey('g').length, changes: r.changes.length, members: parts[0].members[0].ips, publisher: typeof sg.Publisher }));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const out = execFileSync(process.execPath, ['-e', script], { cwd: app, env, encoding: 'utf8' });
  t.deepEqual(JSON.parse(out), { type: 'group.deleted', key: 'g.'.length + 32, changes: 1, members: ['10.0.0.1'], publisher: 'function' });
});

test.serial('without the platform package, the loader says what is missing and what to install', (t) => {
  fs.rmSync(path.join(app, 'node_modules', 'sg-agent-linux-x64-gnu'), { recursive: true, force: true });
  const r = spawnSync(path.join(app, 'node_modules/.bin/sg-agent'), ['--version'], { env, encoding: 'utf8' });
  t.is(r.status, 1);
  t.regex(r.stderr, /no native binary for this platform \(linux-x64-gnu\)/);
  t.regex(r.stderr, /npm install sg-agent-linux-x64-gnu@/);
  t.notRegex(r.stderr, /Cannot find module/);
});
