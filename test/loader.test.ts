// Pure logic of the loader's diagnosis and the capability check (their real paths are exercised by
// pack.test.ts and the agent's start-up).
import test from 'ava';
import { missingBinaryMessage, platformKey } from '../src/addon/platform.js';
import { effectiveCapabilities, missingCapabilities } from '../src/capabilities.js';

test('platform keys follow napi-rs naming', (t) => {
  t.is(platformKey('linux', 'x64', 'gnu'), 'linux-x64-gnu');
  t.is(platformKey('linux', 'arm64', 'musl'), 'linux-arm64-musl');
  t.is(platformKey('darwin', 'arm64', 'gnu'), 'darwin-arm64');
  t.regex(platformKey(), /^linux-(x64|arm64)-(gnu|musl)$/);
});

test('the missing-binary message names the platform and the package to install', (t) => {
  const m = missingBinaryMessage('linux-arm64-gnu');
  t.regex(m, /\(linux-arm64-gnu\)/);
  t.regex(m, /npm install sg-agent-linux-arm64-gnu@/);
  const other = missingBinaryMessage('freebsd-x64');
  t.regex(other, /No prebuilt binary is published for freebsd-x64/);
  t.notRegex(other, /npm install sg-agent-freebsd/);
});

test('capabilities are read from the CapEff mask', (t) => {
  const status = 'Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t0000000000003000\n';
  t.is(effectiveCapabilities(status), 0x3000n);
  t.deepEqual(missingCapabilities(0x3000n), []);
  t.deepEqual(missingCapabilities(0x1000n), ['CAP_NET_RAW']);
  t.deepEqual(missingCapabilities(0n), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
  t.throws(() => effectiveCapabilities('Name: x\n'));
});
