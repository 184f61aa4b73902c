// The compute-host package (packaging/neutron) installs as docs/neutron.md says — a plain
// `pip install packaging/neutron` into a fresh virtualenv — on a host with no route to a package
// index (pip run in a network namespace of its own, with an empty home: no cache, no config), and
// leaves its source tree as it was (no build/, no *.egg-info, nothing but Python's bytecode cache).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kernelTest } from './helpers/gate.js';
import { Netns } from './helpers/netns.js';

const repo = path.resolve(__dirname, '..');
const pkg = path.join(repo, 'packaging/neutron');

/** Every file and directory under `dir` with its size and modification time; Python's bytecode
 *  caches aside (git-ignored; written wherever Python imports from a writable directory, here the
 *  build backend). */
function snapshot(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => !path.join(e.parentPath, e.name).includes('__pycache__'))
    .map((e) => {
      const p = path.join(e.parentPath, e.name);
      const st = fs.statSync(p);
      return `${path.relative(dir, p)} ${e.isDirectory() ? 'dir' : `${st.size} ${st.mtimeMs}`}`;
    })
    .sort();
}

kernelTest.serial('pip install packaging/neutron works offline into a fresh venv and leaves the tree as it was', (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-pip-'));
  const ns = Netns.create('sgpip');
  t.teardown(() => {
    ns.destroy();
    fs.rmSync(work, { recursive: true, force: true });
  });
  const venv = spawnSync('python3', ['-m', 'venv', path.join(work, 'venv')], { encoding: 'utf8' });
  if (venv.status !== 0) return void t.fail(`python3 -m venv: ${venv.stderr}`);
  const python = path.join(work, 'venv/bin/python');
  const home = path.join(work, 'home');
  fs.mkdirSync(home);
  const before = snapshot(pkg);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home };
  const install = spawnSync('ip', ['netns', 'exec', ns.name, path.join(work, 'venv/bin/pip'), 'install', pkg], {
    encoding: 'utf8',
    env,
    cwd: work,
  });
  t.is(install.status, 0, `${install.stdout}\n${install.stderr}`.slice(-3000));
  t.deepEqual(snapshot(pkg), before, 'the source tree is unchanged');
  // What the OVS agent loads: the entry point, and the package behind it.
  const probe = `
import json
from importlib.metadata import entry_points, version
from sg_agent_neutron import device_name
eps = [e.value for e in entry_points(group='neutron.agent.firewall_drivers') if e.name == 'sg_agent']
print(json.dumps({'version': version('sg-agent-neutron'), 'driver': eps, 'device': device_name('3f1b2c4d-5e6f-4a7b')}))`;
  const r = spawnSync(python, ['-c', probe], { encoding: 'utf8', cwd: work });
  t.is(r.status, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), {
    version: '0.1.0',
    driver: ['sg_agent_neutron.firewall:HybridPlugNoopFirewallDriver'],
    device: 'tap3f1b2c4d-5e',
  });
});
