// The command lines as an operator meets them: run as child processes, every start-up error is one line
// naming what is wrong (the file, the key, the variable, the port, the namespace) and a non-zero exit,
// never a stack; `--help` after any command prints help and starts nothing; `--version` on both. And
// the configuration read strictly: unknown keys (with the closest known one), wrong types, values a
// setting refuses, for the agent and the controller alike. No case here can touch a kernel: every
// `sg-agent run` is pointed at a namespace that does not exist, and fails before it could enter one.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/agent/config.js';
import { loadControllerConfig } from '../src/controller/config.js';
import { ConfigError, parseTcpListen, urlAuthority } from '../src/settings.js';
import { testKey, removeKeys } from './helpers/keys.js';
import { freePort } from './helpers/net.js';

const repo = path.resolve(__dirname, '..');
const NO_NETNS = '/nonexistent/sg-cli-test-netns';

interface Outcome {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A command line with only the SG_* variables given (none of this process's leak in). */
function cli(script: 'sg-agent' | 'sg-controller', args: string[], env: Record<string, string> = {}): Outcome {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SG_')));
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, `src/cli/${script}.ts`), ...args], {
    cwd: repo,
    env: { ...clean, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit 1 and exactly one line on stderr, matching `what`, with no stack frame. */
function oneLine(t: import('ava').ExecutionContext, r: Outcome, what: RegExp, prog = 'sg-agent'): void {
  const lines = r.stderr.split('\n').filter(Boolean);
  t.is(r.status, 1, r.stderr);
  t.is(lines.length, 1, `one line: ${r.stderr}`);
  t.regex(lines[0] ?? '', new RegExp(`^${prog}: `));
  t.regex(lines[0] ?? '', what);
  t.notRegex(r.stderr, /^\s+at /m, 'no stack');
}

function tmpDir(t: import('ava').ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-cli-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const write = (dir: string, name: string, v: unknown) => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, typeof v === 'string' ? v : JSON.stringify(v));
  return f;
};

/** What every `sg-agent run` here gets unless a case replaces it: nothing that could reach a kernel. */
const agentEnv = (keys: string) => ({
  SG_AGENT_HOST: 'h',
  SG_AMQP_URL: 'amqp://127.0.0.1:1',
  SG_TRUSTED_KEYS: keys,
  SG_NETNS: NO_NETNS,
  SG_METRICS_LISTEN: '',
});

test('sg-agent: a config file missing, unreadable as JSON, with an unknown key or a wrong type: one line naming it', (t) => {
  const dir = tmpDir(t);
  const env = { SG_NETNS: NO_NETNS, SG_METRICS_LISTEN: '' };
  const base = { host: 'h', amqp: { url: 'amqp://127.0.0.1:1' } };
  const missing = path.join(dir, 'nope.json');
  oneLine(t, cli('sg-agent', ['run', '--config', missing], env), new RegExp(`config file ${missing}: no such file`));
  const broken = write(dir, 'broken.json', '{"host": ');
  oneLine(t, cli('sg-agent', ['run', '--config', broken], env), new RegExp(`config file ${broken}: not JSON`));
  const typo = write(dir, 'typo.json', { ...base, dataPlane: 'nftables' });
  oneLine(t, cli('sg-agent', ['run', '--config', typo], env), /unknown key "dataPlane" \(did you mean "dataplane"\?\)/);
  const flat = write(dir, 'flat.json', { ...base, prefix: 'sg' });
  oneLine(t, cli('sg-agent', ['run', '--config', flat], env), /unknown key "prefix" \(did you mean "firewall.prefix"\?\)/);
  const coalesce = write(dir, 'coalesce.json', { ...base, firewall: { coalesceMs: true } });
  oneLine(
    t,
    cli('sg-agent', ['run', '--config', coalesce], env),
    /firewall\.coalesceMs must be a whole number of milliseconds \(0 to 2147483647\), not true/,
  );
  const host = write(dir, 'host.json', { ...base, host: 42 });
  oneLine(t, cli('sg-agent', ['run', '--config', host], env), /host must be a string, not 42/);
});

test('sg-agent run: no trusted keys, a bad log level or prefix, a namespace that is not there, a metrics port taken: one line each', async (t) => {
  const key = testKey();
  t.teardown(() => removeKeys(key));
  const env = agentEnv(key.publicKeyFile);
  oneLine(t, cli('sg-agent', ['run'], { ...env, SG_TRUSTED_KEYS: '' }), /trustedKeys \(SG_TRUSTED_KEYS\) is required/);
  oneLine(t, cli('sg-agent', ['run'], { ...env, SG_TRUSTED_KEYS: '/nonexistent/keys' }), /trustedKeys: \/nonexistent\/keys: no such file/);
  oneLine(t, cli('sg-agent', ['run'], { ...env, SG_LOG_LEVEL: 'verbose' }), /SG_LOG_LEVEL must be .*info.*, not "verbose"/);
  oneLine(t, cli('sg-agent', ['run'], { ...env, SG_PREFIX: 'Neutron-' }), /SG_PREFIX .*prefix must be 1-6/);
  oneLine(
    t,
    cli('sg-agent', ['run'], { ...env, SG_COALESCE_MS: 'soon' }),
    /SG_COALESCE_MS must be a whole number of milliseconds \(0 to 2147483647\), not "soon"/,
  );
  // A misspelt variable would leave the default in force without a word.
  oneLine(
    t,
    cli('sg-agent', ['run'], { ...env, SG_DATAPLAN: 'nftables' }),
    /unknown environment variable SG_DATAPLAN \(did you mean SG_DATAPLANE\?\)/,
  );
  // The broker's URL is read beside the settings' table: its misspelling is caught all the same.
  oneLine(
    t,
    cli('sg-agent', ['run'], { ...env, SG_AMQP_URLS: 'amqp://elsewhere' }),
    /unknown environment variable SG_AMQP_URLS \(did you mean SG_AMQP_URL\?\)/,
  );
  oneLine(
    t,
    cli('sg-agent', ['run'], env),
    new RegExp(`cannot open the iptables firewall in netns ${NO_NETNS}: .*cannot enter network namespace`),
  );
  // Taken by this test; the agent must say so before it opens anything in the kernel.
  const taken = net.createServer();
  const port = await freePort();
  await new Promise<void>((r) => taken.listen(port, '127.0.0.1', r));
  t.teardown(() => taken.close());
  oneLine(
    t,
    cli('sg-agent', ['run'], { ...env, SG_METRICS_LISTEN: `127.0.0.1:${port}` }),
    new RegExp(`metrics\\.listen 127\\.0\\.0\\.1:${port}: address already in use`),
  );
});

test('help after any command starts nothing; --version on both; a misspelt option is refused', (t) => {
  const key = testKey();
  t.teardown(() => removeKeys(key));
  for (const args of [['run', '--help'], ['run', '--config', '/x.json', '-h'], ['check', '--help'], ['--help']]) {
    const r = cli('sg-agent', args, agentEnv(key.publicKeyFile));
    t.is(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stdout, /^usage: sg-agent <command>/, args.join(' '));
  }
  for (const args of [['run', '--help'], ['--help'], ['--config', '/x.json', '--help']]) {
    const r = cli('sg-controller', args);
    t.is(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stdout, /^usage: sg-controller/, args.join(' '));
  }
  const { version } = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V', 'version']) {
    const r = cli('sg-controller', [flag]);
    t.is(r.status, 0, r.stderr);
    t.is(r.stdout.trim(), `sg-controller ${version}`);
  }
  const r = cli('sg-agent', ['run', '--confg', '/etc/sg-agent/config.json'], agentEnv(key.publicKeyFile));
  t.is(r.status, 2);
  t.regex(r.stderr, /^sg-agent: unknown option "--confg" \(did you mean --config\?\)/);
});

test('sg-controller: start-up errors are one line too (a key file missing, an unknown key, the API port taken)', async (t) => {
  const key = testKey();
  const dir = tmpDir(t);
  t.teardown(() => removeKeys(key));
  const env = {
    SG_AMQP_URL: 'amqp://127.0.0.1:1',
    SG_DATA_DIR: path.join(dir, 'data'),
    SG_HTTP_LISTEN: `unix:${path.join(dir, 'api.sock')}`,
  };
  oneLine(
    t,
    cli('sg-controller', [], { ...env, SG_SIGNING_KEY_FILE: path.join(dir, 'none.pem') }),
    /signing key .*none\.pem: no such file/,
    'sg-controller',
  );
  const typo = write(dir, 'controller.json', { signingKeyFile: key.privateKeyFile, http: { listen: '', tokenfile: '/t' } });
  oneLine(
    t,
    cli('sg-controller', ['--config', typo], env),
    /unknown key "http\.tokenfile" \(did you mean "http\.tokenFile"\?\)/,
    'sg-controller',
  );
  const withKey = { ...env, SG_SIGNING_KEY_FILE: key.privateKeyFile };
  oneLine(
    t,
    cli('sg-controller', [], { ...withKey, SG_NEUTRON_URLS: 'http://n' }),
    /unknown environment variable SG_NEUTRON_URLS \(did you mean SG_NEUTRON_URL\?\)/,
    'sg-controller',
  );
  const notADir = write(dir, 'plain-file', '');
  oneLine(
    t,
    cli('sg-controller', [], { ...withKey, SG_DATA_DIR: path.join(notADir, 'data') }),
    /data directory .*plain-file\/data: a part of the path is not a directory/,
    'sg-controller',
  );
  const taken = net.createServer();
  const port = await freePort();
  await new Promise<void>((r) => taken.listen(port, '127.0.0.1', r));
  t.teardown(() => taken.close());
  const busy = { ...env, SG_SIGNING_KEY_FILE: key.privateKeyFile, SG_HTTP_LISTEN: `127.0.0.1:${port}`, SG_HTTP_TOKEN: 'x'.repeat(16) };
  oneLine(t, cli('sg-controller', [], busy), new RegExp(`http\\.listen 127\\.0\\.0\\.1:${port}: address already in use`), 'sg-controller');
});

test('the example configurations (packaging/, docs/neutron.md) hold only known keys of the right types (unit)', (t) => {
  const example = loadConfig(path.join(repo, 'packaging/config.example.json'), {});
  t.is(example.amqpTls.keyFile, path.join(repo, 'packaging/amqp-client.key'), 'the key beside the config: the systemd credential');
  const neutronDoc = fs.readFileSync(path.join(repo, 'docs/neutron.md'), 'utf8');
  const block = /### 5\. sg-agent[\s\S]*?```json\n([\s\S]*?)```/.exec(neutronDoc)?.[1];
  t.truthy(block, "docs/neutron.md shows a compute host's config");
  const dir = tmpDir(t);
  t.like(loadConfig(write(dir, 'neutron-host.json', block!), {}), { dropUnknownDevices: ['tap'], mode: 'bridged' });
  // Every key known: what stops it is only that its files are not on this machine.
  t.throws(() => loadControllerConfig(path.join(repo, 'packaging/controller.example.json'), { SG_HTTP_TOKEN: 'x'.repeat(16) }), {
    instanceOf: ConfigError,
    message: /broker TLS CA file \/etc\/sg-controller\/tls\/ca\.pem: no such file/,
  });
});

test('configuration is read strictly, the same way for agent and controller (unit)', (t) => {
  const dir = tmpDir(t);
  const agent =
    (v: unknown, env: Record<string, string> = {}) =>
    () =>
      loadConfig(write(dir, 'agent.json', v), env);
  const base = { host: 'h', amqp: { url: 'amqps://b/' } };
  t.throws(agent({ ...base, firewall: { mode: 'bridge' } }), {
    instanceOf: ConfigError,
    message: /firewall\.mode must be bridged or routed, not "bridge"/,
  });
  t.throws(agent({ ...base, firewall: { prefix: 'a-b' } }), { instanceOf: ConfigError, message: /firewall\.prefix/ });
  t.throws(agent({ ...base, log: { level: 'loud' } }), { instanceOf: ConfigError, message: /log\.level must be/ });
  t.throws(agent({ ...base, networkLog: { rateLimit: 50 } }), {
    instanceOf: ConfigError,
    message: /networkLog\.rateLimit must be a whole number from 100 to 10000/,
  });
  t.throws(agent(base, { SG_NETWORK_LOG_BURST_LIMIT: '20000' }), {
    instanceOf: ConfigError,
    message: /SG_NETWORK_LOG_BURST_LIMIT must be a whole number from 25 to 10000/,
  });
  t.throws(agent({ ...base, firewall: { iptablesMarkBit: 24 } }), {
    instanceOf: ConfigError,
    message: /firewall\.iptablesMarkBit must be a whole number from 0 to 15/,
  });
  t.throws(agent(base, { SG_IPTABLES_MARK_BIT: '0x1000000' }), { instanceOf: ConfigError, message: /SG_IPTABLES_MARK_BIT/ });
  t.is(agent({ ...base, firewall: { iptablesMarkBit: 7 } })().iptablesMarkBit, 7);
  t.is(agent(base)().iptablesMarkBit, 13, 'the default bit: 0x2000');
  const nft = { ...base, dataplane: 'nftables' };
  t.deepEqual(agent({ ...nft, firewall: { conntrackZoneBridges: ['brq'] } })().conntrackZoneBridges, ['brq']);
  t.deepEqual(agent(base)().conntrackZoneBridges, [], 'no zones unless asked for');
  t.deepEqual(agent({ ...base, dataplane: 'auto' }, { SG_CONNTRACK_ZONE_BRIDGES: 'brq,qbr' })().conntrackZoneBridges, ['brq', 'qbr']);
  t.throws(agent({ ...nft, firewall: { conntrackZoneBridges: ['br q'] } }), {
    instanceOf: ConfigError,
    message: /firewall\.conntrackZoneBridges must be interface-name prefixes/,
  });
  t.throws(agent({ ...nft, firewall: { conntrackZoneBridges: ['brq'], mode: 'routed' } }), {
    instanceOf: ConfigError,
    message: /firewall\.conntrackZoneBridges .*needs bridged mode/,
  });
  t.deepEqual(agent(base, { SG_CONNTRACK_ZONE_BRIDGES: 'brq' })().conntrackZoneBridges, ['brq'], 'on the iptables backend too');
  t.throws(agent({ ...base, metrics: { listen: '9464' } }), { instanceOf: ConfigError, message: /metrics\.listen must be host:port/ });
  t.throws(agent({ ...base, trustedKeys: '/etc/keys' }), {
    instanceOf: ConfigError,
    message: /trustedKeys must be a list of strings, not "\/etc\/keys"/,
  });
  t.throws(agent({ ...base, amqp: { url: 'amqps://b/', tls: { external: 'yes' } } }), {
    instanceOf: ConfigError,
    message: /amqp\.tls\.external must be true or false/,
  });
  t.throws(agent({ ...base, firewall: 'iptables' }), { instanceOf: ConfigError, message: /firewall must be an object/ });
  t.throws(agent({ ...base, dataplane: 'nftables', firewall: { dataplane: 'iptables' } }), {
    instanceOf: ConfigError,
    message: /set the same thing/,
  });
  t.throws(agent({ ...base, zzz: 1 }), { instanceOf: ConfigError, message: /unknown key "zzz" \(known: host, / });
  t.throws(agent(base, { SG_AMQP_EXTERNAL_AUTH: 'maybe' }), {
    instanceOf: ConfigError,
    message: /SG_AMQP_EXTERNAL_AUTH must be true or false/,
  });
  // Times: whole milliseconds a Node timer can wait (a longer one fires at once: a busy loop).
  const ms = /must be a whole number of milliseconds \(0 to 2147483647\)/;
  t.throws(agent(base, { SG_FULL_SYNC_INTERVAL_MS: '3000000000' }), { instanceOf: ConfigError, message: ms });
  t.throws(agent(base, { SG_COALESCE_MS: '9'.repeat(400) }), { instanceOf: ConfigError, message: ms });
  t.throws(agent(base, { SG_COALESCE_MS: '20.5' }), { instanceOf: ConfigError, message: ms });
  t.throws(agent({ ...base, firewall: { reconcileIntervalMs: 1e10 } }), { instanceOf: ConfigError, message: ms });
  t.throws(agent({ ...base, syncTimeoutMs: 1500.5 }), { instanceOf: ConfigError, message: ms });
  t.throws(agent(base, { SG_SYNC_TIMEOUT_MS: '0' }), {
    instanceOf: ConfigError,
    message: /SG_SYNC_TIMEOUT_MS must be at least 100, not 0/,
  });
  t.throws(agent({ ...base, firewall: { structureIntervalMs: 5000, structureIntervalMaxMs: 10 } }), {
    instanceOf: ConfigError,
    message: /firewall\.structureIntervalMaxMs in .* \(10\) is below firewall\.structureIntervalMs in .* \(5000\)/,
  });
  t.throws(agent({ host: 'h', amqp: { url: 'amqp://a/', urls: ['amqp://b/'] } }), {
    instanceOf: ConfigError,
    message: /amqp\.url in .* and amqp\.urls in .* both name the brokers; keep one/,
  });
  t.throws(agent(base, { SG_NETWORK_LOG_FILE: '' }), {
    instanceOf: ConfigError,
    message: /SG_NETWORK_LOG_FILE must be a file path, not ""/,
  });
  // Listen addresses: read one way when loaded, opened and dialled.
  for (const listen of ['[::1]:9464', ':9464', '0.0.0.0:9464', 'localhost:1'])
    t.is(agent(base, { SG_METRICS_LISTEN: listen })().metricsListen, listen);
  for (const listen of ['::1:9464', '[::1]', 'localhost', 'h:65536', '[10.0.0.1]:1', 'a b:1'])
    t.throws(agent(base, { SG_METRICS_LISTEN: listen }), {
      instanceOf: ConfigError,
      message: /SG_METRICS_LISTEN must be host:port, \[IPv6\]:port or :port/,
    });
  t.deepEqual(parseTcpListen('[::1]:9464'), { host: '::1', port: 9464 });
  t.deepEqual(parseTcpListen(':0'), { host: '127.0.0.1', port: 0 });
  t.is(urlAuthority({ host: '::1', port: 1 }), '[::1]:1');
  // Every documented key, in the file: accepted. Relative paths are beside the file (a systemd
  // credential beside the config it came with).
  const full = {
    host: 'h',
    amqp: { url: 'amqps://b/', tls: { caFile: '/ca.pem', certFile: 'client.pem', keyFile: 'client.key', external: true } },
    trustedKeys: ['/etc/sg-agent/keys', 'keys'],
    netns: '/var/run/netns/x',
    dropUnknownDevices: ['tap'],
    firewall: {
      prefix: 'sg',
      mode: 'routed',
      dataplane: 'auto',
      coalesceMs: 50,
      structureIntervalMs: 0,
      structureIntervalMaxMs: 100,
      reconcileIntervalMs: 60000,
    },
    metrics: { listen: '' },
    syncTimeoutMs: 100,
    queueExpiresMs: 1,
    fullSyncIntervalMs: 0,
    log: { level: 'debug' },
  };
  const c = agent(full)();
  t.deepEqual(c.amqpTls, {
    caFile: '/ca.pem',
    certFile: path.join(dir, 'client.pem'),
    keyFile: path.join(dir, 'client.key'),
    external: true,
  });
  t.deepEqual(c.trustedKeys, ['/etc/sg-agent/keys', path.join(dir, 'keys')]);
  t.like(c, {
    mode: 'routed',
    dataplane: 'auto',
    coalesceMs: 50,
    structureIntervalMs: 0,
    metricsListen: '',
    logLevel: 'debug',
    dropUnknownDevices: ['tap'],
  });
  t.like(agent({ host: 'h', amqpUrl: 'amqp://a/', dataplane: 'nftables' }, { SG_COALESCE_MS: '7', SG_DATAPLANE: 'auto' })(), {
    coalesceMs: 7,
    dataplane: 'auto',
    amqpUrl: 'amqp://a/',
  });

  const key = testKey();
  t.teardown(() => removeKeys(key));
  const controller =
    (v: unknown, env: Record<string, string> = {}) =>
    () =>
      loadControllerConfig(write(dir, 'controller.json', v), env);
  const cbase = { signingKeyFile: key.privateKeyFile, http: { listen: '' } };
  t.throws(controller({ ...cbase, dataDir: 42 }), { instanceOf: ConfigError, message: /dataDir must be a file path \(a string\), not 42/ });
  t.throws(controller({ ...cbase, log: { level: 'verbose' } }), { instanceOf: ConfigError, message: /log\.level must be/ });
  t.throws(controller({ ...cbase, http: { listen: 'unix:/x.sock', socketMode: 600 } }), {
    instanceOf: ConfigError,
    message: /http\.socketMode must be a string, not 600/,
  });
  t.throws(controller({ ...cbase, signingkeyfile: 'x' }), {
    instanceOf: ConfigError,
    message: /unknown key "signingkeyfile" \(did you mean "signingKeyFile"\?\)/,
  });
  t.throws(controller(cbase, { SG_AMQP_EXTERNAL_AUTH: 'ja' }), { instanceOf: ConfigError, message: /SG_AMQP_EXTERNAL_AUTH/ });
  t.throws(controller(cbase, { SG_LOG_LEVEL: 'chatty' }), { instanceOf: ConfigError, message: /SG_LOG_LEVEL/ });
  // `unix:` with no path would have been taken for TCP, with no token asked for.
  t.throws(controller({ ...cbase, http: { listen: 'unix:' } }), {
    instanceOf: ConfigError,
    message: /http\.listen unix: names no socket path/,
  });
  t.truthy(controller({ ...cbase, http: { listen: 'unix:/run/sg/api.sock' } })());
  for (const listen of ['127.0.0.1:99999', 'localhost', '::1:9797'])
    t.throws(controller(cbase, { SG_HTTP_LISTEN: listen, SG_HTTP_TOKEN: 'x'.repeat(16) }), {
      instanceOf: ConfigError,
      message: /http\.listen must be host:port, \[IPv6\]:port or :port or unix:\/path/,
    });
  t.is(controller(cbase, { SG_HTTP_LISTEN: '[::1]:9797', SG_HTTP_TOKEN: 'x'.repeat(16) })().http.listen, '[::1]:9797');
  t.throws(controller(cbase, { SG_DATA_DIR: '' }), { instanceOf: ConfigError, message: /SG_DATA_DIR must be a file path, not ""/ });
  t.throws(controller(cbase, { SG_ETCD_REQUEST_TIMEOUT_MS: '100.5' }), {
    instanceOf: ConfigError,
    message: /SG_ETCD_REQUEST_TIMEOUT_MS must be a whole number of milliseconds/,
  });
  // Read beside the table (the environment wins over the file): misspellings are caught all the same.
  for (const [typo, meant] of [
    ['SG_AMQP_ULR', 'SG_AMQP_URL'],
    ['SG_HTTP_TOKN', 'SG_HTTP_TOKEN'],
    ['SG_ETCD_PASSWRD', 'SG_ETCD_PASSWORD'],
  ] as const)
    t.throws(controller(cbase, { [typo]: 'x' }), {
      instanceOf: ConfigError,
      message: `unknown environment variable ${typo} (did you mean ${meant}?)`,
    });
  t.is(controller(cbase, { SG_AMQP_URL: 'amqp://b:5672' })().amqpUrl, 'amqp://b:5672', 'the right name is taken');
  t.is(controller({ ...cbase, dataDir: 'data' })().dataDir, path.join(dir, 'data'), 'relative: beside the file');
  t.is(
    loadControllerConfig(undefined, { SG_SIGNING_KEY_FILE: key.privateKeyFile, SG_HTTP_TOKEN: 'x'.repeat(16) }).http.listen,
    '127.0.0.1:9797',
    "not Neutron's 9696",
  );
});
