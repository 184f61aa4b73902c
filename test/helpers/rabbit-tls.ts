// A RabbitMQ node of the test's own, listening for AMQP over TLS only and requiring client
// certificates (verify_peer, fail_if_no_peer_cert), with certificate login (EXTERNAL, the user named
// by the certificate's CN) beside passwords. Its own ports, data directory and node name: the
// machine's broker and its users are not touched. Certificates are made with openssl.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.js';
import { ensureRabbit } from './rabbit.js';

export interface TlsNode {
  node: string;
  port: number;
  dir: string;
  ca: string;
  /** Client certificates signed by the node's CA, by common name. */
  client(cn: string): { cert: string; key: string };
  /** A certificate the node does not trust (its own CA). */
  stranger: { ca: string; cert: string; key: string };
  stop(): void;
}

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

function makeCa(dir: string, name: string): void {
  openssl(dir, ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '1', '-subj', `/CN=${name}`]);
}

function issue(dir: string, ca: string, name: string, cn: string, san?: string): { cert: string; key: string } {
  openssl(dir, ['req', '-newkey', 'ed25519', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  if (san) fs.writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', ...(san ? ['-extfile', `${name}.ext`] : [])]);
  return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
}

export async function startTlsNode(): Promise<TlsNode> {
  await ensureRabbit(); // epmd, and the Erlang cookie the CLI uses
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgtrust-tlsnode-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  const server = issue(dir, 'ca', 'server', 'localhost', 'DNS:localhost,IP:127.0.0.1');
  const strangerCert = issue(dir, 'other-ca', 'stranger', 'stranger');
  const [port, distPort, nodePort] = [await freePort(), await freePort(), await freePort()];
  const node = `sgtls${randomBytes(3).toString('hex')}@localhost`;
  fs.writeFileSync(path.join(dir, 'rabbitmq.conf'), [
    'listeners.tcp = none',
    `listeners.ssl.default = 127.0.0.1:${port}`,
    `ssl_options.cacertfile = ${path.join(dir, 'ca.pem')}`,
    `ssl_options.certfile = ${server.cert}`,
    `ssl_options.keyfile = ${server.key}`,
    'ssl_options.verify = verify_peer',
    'ssl_options.fail_if_no_peer_cert = true',
    'auth_mechanisms.1 = EXTERNAL',
    'auth_mechanisms.2 = PLAIN',
    'ssl_cert_login_from = common_name',
    'loopback_users = none',
    '',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'enabled_plugins'), '[rabbitmq_auth_mechanism_ssl].\n');
  // The server runs as the rabbitmq user: it must read its files and write its data and logs.
  spawnSync('chown', ['-R', 'rabbitmq:rabbitmq', dir]);
  fs.chmodSync(dir, 0o755);
  const env = {
    ...process.env,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(nodePort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: path.join(dir, 'pid'),
  };
  const stop = () => {
    const r = spawnSync('rabbitmqctl', ['-n', node, 'stop'], { stdio: 'ignore', timeout: 60_000 });
    // Not reachable (still starting, or failed half-way): end the process we started, by its pid.
    const pidFile = path.join(dir, 'pid');
    if (r.status !== 0 && fs.existsSync(pidFile)) {
      const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
      if (pid > 1) spawnSync('kill', ['-KILL', String(pid)]);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  spawnSync('rabbitmq-server', ['-detached'], { env, stdio: 'ignore' });
  // await_startup needs the node registered with epmd first, which takes the VM a few seconds.
  let up = spawnSync('true', { encoding: 'utf8' });
  for (const end = Date.now() + 120_000; Date.now() < end; await new Promise((r) => setTimeout(r, 1000))) {
    up = spawnSync('rabbitmqctl', ['-n', node, 'await_startup', '--timeout', '60'], { encoding: 'utf8', timeout: 90_000 });
    if (up.status === 0) break;
  }
  if (up.status !== 0) {
    const log = fs.existsSync(path.join(dir, 'log')) ? fs.readdirSync(path.join(dir, 'log')).map((f) => fs.readFileSync(path.join(dir, 'log', f), 'utf8').slice(-2000)).join('\n') : '';
    stop();
    throw new Error(`TLS RabbitMQ node did not start: ${up.stderr || up.stdout}\n${log}`);
  }
  return {
    node,
    port,
    dir,
    ca: path.join(dir, 'ca.pem'),
    client: (cn) => issue(dir, 'ca', `client-${cn}`, cn),
    stranger: { ca: path.join(dir, 'other-ca.pem'), ...strangerCert },
    stop,
  };
}
