// A RabbitMQ node of the test's own, listening for AMQP over TLS only and requiring client
// certificates (verify_peer, fail_if_no_peer_cert), with certificate login (EXTERNAL, the user named
// by the certificate's CN) beside passwords. Its own ports, data directory and node name: the
// machine's broker and its users are not touched. Certificates are made with openssl.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startRabbitNode } from './rabbit-node.js';

export interface TlsNode {
  node: string;
  port: number;
  dir: string;
  ca: string;
  /** Client certificates signed by the node's CA, by common name. */
  client(cn: string): { cert: string; key: string };
  /** A certificate the node does not trust (its own CA). */
  stranger: { ca: string; cert: string; key: string };
  stop: () => void;
}

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

function makeCa(dir: string, name: string): void {
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ed25519',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '1',
    '-subj',
    `/CN=${name}`,
  ]);
}

function issue(dir: string, ca: string, name: string, cn: string, san?: string): { cert: string; key: string } {
  openssl(dir, ['req', '-newkey', 'ed25519', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  if (san) fs.writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '1',
    ...(san ? ['-extfile', `${name}.ext`] : []),
  ]);
  return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
}

export async function startTlsNode(): Promise<TlsNode> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgtrust-tlsnode-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  const server = issue(dir, 'ca', 'server', 'localhost', 'DNS:localhost,IP:127.0.0.1');
  const strangerCert = issue(dir, 'other-ca', 'stranger', 'stranger');
  const n = await startRabbitNode({
    name: 'sgtls',
    dir,
    what: 'TLS RabbitMQ node',
    plugins: ['rabbitmq_auth_mechanism_ssl'],
    conf: ({ port }) =>
      [
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
      ].join('\n'),
  });
  return {
    node: n.node,
    port: n.port,
    dir,
    ca: path.join(dir, 'ca.pem'),
    client: (cn) => issue(dir, 'ca', `client-${cn}`, cn),
    stranger: { ca: path.join(dir, 'other-ca.pem'), ...strangerCert },
    stop: n.stop,
  };
}
