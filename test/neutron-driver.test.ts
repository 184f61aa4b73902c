// The compute-host side (packaging/neutron): its Python tests, run with Neutron's own agent code from
// the test venv, and the device names of both sides compared.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { deviceName } from '../src/neutron/translate.js';

const repo = path.resolve(__dirname, '..');
let python = '';
test.before(() => {
  python = execFileSync('bash', [path.join(repo, 'scripts/neutron-venv.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
});

test('the OVS-agent firewall driver: loaded by Neutron, hybrid plugging, no filtering by the agent', (t) => {
  const r = spawnSync(python, ['-W', 'ignore', '-m', 'unittest', 'discover', '-v', '-s', path.join(repo, 'packaging/neutron/tests')], {
    encoding: 'utf8',
  });
  t.log(
    r.stderr
      .split('\n')
      .filter((l) => / \.\.\. /.test(l))
      .join('\n'),
  );
  t.is(r.status, 0, r.stderr.slice(-3000));
  t.regex(r.stderr, /Ran [1-9]\d* tests?[\s\S]*\nOK/);
});

test("the controller names a port's device as the host side does", (t) => {
  const ids = ['3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d', 'a0000000-0000-4000-8000-000000000000'];
  const naming = [
    { prefix: 'tap', length: 14 },
    { prefix: 'vnet', length: 15 },
  ];
  for (const n of naming) {
    const code = `import json,sys; from sg_agent_neutron import device_name; print(json.dumps([device_name(i, prefix=${JSON.stringify(n.prefix)}, length=${n.length}) for i in ${JSON.stringify(ids)}]))`;
    const py = JSON.parse(execFileSync(python, ['-c', code], { encoding: 'utf8' })) as string[];
    t.deepEqual(
      ids.map((id) => deviceName(id, n)),
      py,
    );
  }
});
