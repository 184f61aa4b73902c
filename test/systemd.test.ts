// The documented host install (packaging/README.md) works as written: its steps are followed in a
// scratch directory standing for /, and the unit's own command line (packaging/sg-agent.service) is
// run as systemd runs it — an unprivileged user (DynamicUser: here nobody) holding only the unit's
// capabilities (ambient and bounding set), no new privileges, the unit's environment and runtime
// directory, its credentials (LoadCredential: private copies only that user can read, in %d) — inside
// a throwaway network namespace. Its broker is reached over TLS through a proxy that requires this
// host's client certificate, so the agent must read its key; it must sync and write its chains and
// sets with netlink and iptables-restore as that user.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { kernelTest } from './helpers/gate.js';
import { Netns } from './helpers/netns.js';
import { brokerUser } from './helpers/broker.js';
import { startController, testBed } from './helpers/sg.js';
import { stopProcess, type Running } from './helpers/processes.js';
import { waitFor } from './helpers/wait.js';

const repo = path.resolve(__dirname, '..');
const UNIT = path.join(repo, 'packaging/sg-agent.service');
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Unit {
  execStart: string[];
  /** LoadCredential=ID:PATH */
  credentials: { id: string; source: string }[];
  environment: Record<string, string>;
  ambient: string[];
  bounding: string[];
  noNewPrivileges: boolean;
  dynamicUser: boolean;
  runtimeDirectory?: string;
}

/** The [Service] settings this test acts on (a unit file: Key=Value lines, # comments). */
function readUnit(text: string): Unit {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && !l.startsWith('['));
  const all = (key: string) => lines.filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
  const one = (key: string) => all(key).at(-1);
  const caps = (v: string | undefined) =>
    (v ?? '')
      .split(/\s+/)
      .filter(Boolean)
      .map((c) => c.replace(/^CAP_/, '').toLowerCase());
  return {
    execStart: one('ExecStart')!.split(/\s+/),
    credentials: all('LoadCredential').map((v) => ({ id: v.slice(0, v.indexOf(':')), source: v.slice(v.indexOf(':') + 1) })),
    environment: Object.fromEntries(all('Environment').map((v) => [v.slice(0, v.indexOf('=')), v.slice(v.indexOf('=') + 1)])),
    ambient: caps(one('AmbientCapabilities')),
    bounding: caps(one('CapabilityBoundingSet')),
    noNewPrivileges: one('NoNewPrivileges') === 'yes',
    dynamicUser: one('DynamicUser') === 'yes',
    ...(one('RuntimeDirectory') ? { runtimeDirectory: one('RuntimeDirectory')! } : {}),
  };
}

/** A CA, a server certificate for the proxy (127.0.0.1) and this host's client certificate. */
function makeCerts(dir: string): void {
  const run = (args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  };
  run(['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=sg-unit-ca']);
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const [name, cn, ext] of [
    ['server', '127.0.0.1', ['-extfile', 'server.ext']],
    ['client', 'compute-01', []],
  ] as const) {
    run(['req', '-newkey', 'ed25519', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    run([
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '1',
      ...ext,
    ]);
  }
}

/** TLS in the namespace, requiring a client certificate of the CA, relayed over a Unix socket to the
 *  machine's broker (a Unix socket crosses namespaces; nothing is added to the machine's network). */
const PROXY = `
const fs = require('node:fs'), net = require('node:net'), tls = require('node:tls');
const [dir, sock] = process.argv.slice(1);
const read = (f) => fs.readFileSync(dir + '/' + f);
tls.createServer({ key: read('server.key'), cert: read('server.pem'), ca: read('ca.pem'), requestCert: true, rejectUnauthorized: true }, (s) => {
  console.log('client certificate ' + s.getPeerCertificate().subject.CN);
  const up = net.connect(sock);
  s.pipe(up).pipe(s);
  s.on('error', () => up.destroy());
  up.on('error', () => s.destroy());
}).listen(5671, '127.0.0.1', () => console.log('listening'));
`;

kernelTest.serial(
  "the documented systemd install starts: unprivileged, only the unit's capabilities, config and key as credentials",
  async (t) => {
    for (const tool of ['setpriv', 'openssl']) {
      if (spawnSync('which', [tool]).status !== 0) return void t.fail(`${tool} is needed`);
    }
    const unitText = fs.readFileSync(UNIT, 'utf8');
    const verify = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' });
    if (verify.error) t.log("systemd-analyze is not installed: the unit file's syntax is not checked");
    else t.is(`${verify.stdout}${verify.stderr}`.trim(), '', 'systemd-analyze verify: no complaint');
    const unit = readUnit(unitText);
    t.true(unit.dynamicUser, 'the unit runs as a dynamic user');

    const { vhost, key, token, dataDir, track } = await testBed(t, { prefix: 'sgunit' });
    const host = `unit-${vhost.name}`;
    // The scratch "/": everything the documented steps write under /etc and systemd under /run.
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-unit-'));
    const ns = Netns.create('sgunit');
    const running: Running[] = [];
    const broker = new URL(vhost.url());
    const relay = net.createServer((c) => {
      const up = net.connect(Number(broker.port || 5672), broker.hostname);
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    t.teardown(async () => {
      for (const p of running) await stopProcess(p);
      relay.close();
      ns.destroy();
      fs.rmSync(root, { recursive: true, force: true });
    });
    fs.chmodSync(root, 0o755);
    const inRoot = (p: string) => path.join(root, p);
    const remap = (s: string) =>
      s.replaceAll('/etc/sg-agent', inRoot('/etc/sg-agent')).replaceAll('/run/sg-agent', inRoot('/run/sg-agent'));
    const etc = inRoot('/etc/sg-agent');
    const pki = inRoot('/pki');
    fs.mkdirSync(etc, { recursive: true, mode: 0o755 });
    fs.mkdirSync(pki, { recursive: true, mode: 0o700 });
    makeCerts(pki);

    // The steps of packaging/README.md (Install), with the edits the example config asks for.
    const user = brokerUser(vhost, 'agent', host);
    const config = JSON.parse(fs.readFileSync(path.join(repo, 'packaging/config.example.json'), 'utf8')) as {
      host: string;
      amqp: { url: string; tls: { external?: boolean } };
    };
    config.host = host;
    // The proxy checks the certificate; the broker behind it takes the per-host user's password.
    config.amqp.url = `amqps://${user.user}:${user.password}@127.0.0.1:5671/${encodeURIComponent(vhost.name)}`;
    delete config.amqp.tls.external;
    const install = (from: string | Buffer, to: string, mode: number) => {
      fs.writeFileSync(to, from, { mode });
      fs.chmodSync(to, mode);
    };
    install(remap(JSON.stringify(config, null, 2)), path.join(etc, 'config.json'), 0o600);
    install(fs.readFileSync(path.join(pki, 'ca.pem')), path.join(etc, 'amqp-ca.pem'), 0o644);
    install(fs.readFileSync(path.join(pki, 'client.pem')), path.join(etc, 'amqp-client.pem'), 0o644);
    install(fs.readFileSync(path.join(pki, 'client.key')), path.join(etc, 'amqp-client.key'), 0o600);
    fs.mkdirSync(path.join(etc, 'keys'), { mode: 0o755 });
    install(fs.readFileSync(key.publicKeyFile), path.join(etc, 'keys', path.basename(key.publicKeyFile)), 0o644);

    // What systemd does at start: credentials copied, readable by the service's user only; the runtime
    // directory made and handed to it.
    const nobody = { uid: 65534, gid: 65534 };
    const creds = inRoot('/run/credentials/sg-agent.service');
    fs.mkdirSync(creds, { recursive: true });
    for (const c of unit.credentials) {
      const to = path.join(creds, c.id);
      fs.copyFileSync(inRoot(c.source), to);
      fs.chownSync(to, nobody.uid, nobody.gid);
      fs.chmodSync(to, 0o400);
    }
    fs.chownSync(creds, nobody.uid, nobody.gid);
    fs.chmodSync(creds, 0o500);
    if (unit.runtimeDirectory) {
      const dir = inRoot(`/run/${unit.runtimeDirectory}`);
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
      fs.chownSync(dir, nobody.uid, nobody.gid);
    }
    const environment = Object.fromEntries(Object.entries(unit.environment).map(([k, v]) => [k, remap(v)]));

    // The broker, in the namespace: TLS requiring the client certificate, relayed to the broker.
    const sock = path.join(root, 'broker.sock');
    await new Promise<void>((r) => relay.listen(sock, r));
    const tlsProxy = spawnIn(ns, [process.execPath, '-e', PROXY, pki, sock]);
    running.push(tlsProxy);
    await waitFor('the TLS proxy listens', () => {
      if (tlsProxy.exited) throw new Error(`the TLS proxy exited:\n${tlsProxy.dump()}`);
      return tlsProxy.lines.includes('listening');
    });

    const controller = track(await startController({ amqpUrl: vhost.url(), key, token, dataDir }));

    // The unit's command line; `sg-agent` is this tree's (installed, it is the same file compiled).
    const exec = unit.execStart.map((a) => remap(a.replaceAll('%d', creds)));
    const sgAgent = exec.indexOf('sg-agent');
    t.true(sgAgent >= 0, `ExecStart runs sg-agent: ${unit.execStart.join(' ')}`);
    exec.splice(
      sgAgent,
      1,
      process.execPath,
      '--import',
      pathToFileURL(require.resolve('tsx')).href,
      path.join(repo, 'src/cli/sg-agent.ts'),
    );
    const caps = (list: string[]) => ['-all', ...list.map((c) => `+${c}`)].join(',');
    const setpriv = [
      'setpriv',
      `--reuid=${nobody.uid}`,
      `--regid=${nobody.gid}`,
      '--clear-groups',
      `--inh-caps=${caps(unit.ambient)}`,
      `--ambient-caps=${caps(unit.ambient)}`,
      `--bounding-set=${caps(unit.bounding)}`,
      ...(unit.noNewPrivileges ? ['--no-new-privs'] : []),
      '--',
    ];
    const env = { PATH: SYSTEM_PATH, LANG: 'C.UTF-8', CREDENTIALS_DIRECTORY: creds, ...environment };
    const agent = spawnIn(ns, ['env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...setpriv, ...exec], '/');
    running.push(agent);
    const exitedEarly = agent.exit.then(() => Promise.reject(new Error(`the agent exited:\n${agent.dump()}`)));
    exitedEarly.catch(() => undefined);
    await Promise.race([
      waitFor('the agent in sync with the controller', () => agent.lines.some((l) => l.includes('"agent in sync"')), 60_000),
      exitedEarly,
    ]);
    t.true(
      tlsProxy.lines.includes('client certificate compute-01'),
      'it logged in with the client certificate (its key from the credentials)',
    );
    const status = fs.readFileSync(`/proc/${agent.child.pid}/status`, 'utf8');
    t.regex(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m, 'not root');
    t.regex(status, /^CapEff:\s+0000000000003000$/m, 'CAP_NET_ADMIN and CAP_NET_RAW only');

    // A port for this host: its chains through iptables-restore, its group's set through netlink.
    await controller.call('PUT', '/groups/web', { rules: [{ id: 'w-in', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' }] });
    await controller.call('PUT', '/ports/p1', {
      host,
      device: 'tapunit1',
      mac: '02:00:00:00:0a:01',
      fixedIps: ['10.77.0.5'],
      securityGroups: ['web'],
    });
    await waitFor(
      "the port's chains and its group's set in the kernel",
      () =>
        ns.exec('iptables-save', ['-t', 'filter']).includes('--physdev-out tapunit1 ') && ns.exec('ipset', ['save']).includes(' 10.77.0.5'),
    );
    t.false(agent.exited);
    t.false(
      agent.lines.some((l) => /EACCES|EPERM|permission denied/i.test(l)),
      'nothing was refused to it',
    );
  },
);

/** A process in the namespace (root until it drops privileges itself), its output kept. */
function spawnIn(ns: Netns, argv: string[], cwd = repo): Running {
  const child = spawn('ip', ['netns', 'exec', ns.name, ...argv], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const collect = (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean));
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const r: Running = {
    child,
    lines,
    exited: false,
    exit: new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        r.exited = true;
        resolve({ code, signal });
      }),
    ),
    dump: () => lines.join('\n'),
  };
  return r;
}
