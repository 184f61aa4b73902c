// An etcd cluster of our own for tests and benchmarks: members on loopback ports picked free, data in a
// throwaway directory, each run by scripts/etcd-member.sh (the lab's settings) as a child process, so
// that a member can be killed (SIGKILL) and started again; everything stopped and removed by `stop()`,
// or, should the process that started it end first (ava ends a worker that outlives its timeout), by
// a watcher process that kills the members by the pids written beside their data.
// The machine's own etcd, if any, is never used.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.js';
import { waitFor } from './wait.js';

const repo = path.resolve(__dirname, '../..');
const script = path.join(repo, 'scripts/etcd-member.sh');

/** Whether the etcd binary is here (Debian's etcd-server, which scripts/setup.sh installs). */
export const hasEtcd = () => spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;

interface Member {
  name: string;
  client: string;
  peer: string;
  dir: string;
  proc?: ChildProcess;
  running: boolean;
  exited?: Promise<void>;
  log: string;
}

/** PEM files for an etcd member that takes clients over TLS with certificates (made by `makeTls`). */
export interface EtcdTls {
  dir: string;
  ca: string;
  /** A client certificate the CA signed (CN sg-controller), and its key. */
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl in `dir`. */
export function makeTls(dir: string): EtcdTls {
  const ssl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  fs.writeFileSync(path.join(dir, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  ssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'ca-key.pem',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=sg-test-etcd-ca',
  );
  for (const [name, cn, ext] of [
    ['server', '127.0.0.1', true],
    ['client', 'sg-controller', false],
  ] as const) {
    ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${cn}`,
    );
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca-key.pem',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      ...(ext ? ['-extfile', 'san.cnf'] : []),
    );
  }
  for (const f of fs.readdirSync(dir)) if (f.endsWith('-key.pem')) fs.chmodSync(path.join(dir, f), 0o600);
  return { dir, ca: path.join(dir, 'ca.pem'), clientCert: path.join(dir, 'client.pem'), clientKey: path.join(dir, 'client-key.pem') };
}

export class EtcdCluster {
  private constructor(
    private readonly members: Member[],
    readonly dir: string,
    private readonly tls?: EtcdTls,
  ) {}

  /** Starts `n` members and resolves once every one answers its health check; with `tls`, clients
   *  reach them over https and must present a certificate. */
  static async start(n = 3, tls?: EtcdTls): Promise<EtcdCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-etcd-'));
    const members: Member[] = [];
    for (let i = 1; i <= n; i++) {
      const [cp, pp] = [await freePort(), await freePort()];
      members.push({
        name: `e${i}`,
        client: `${tls ? 'https' : 'http'}://127.0.0.1:${cp}`,
        peer: `http://127.0.0.1:${pp}`,
        dir: path.join(dir, `e${i}`),
        log: path.join(dir, `e${i}.log`),
        running: false,
      });
    }
    const c = new EtcdCluster(members, dir, tls);
    const killMembers = `for f in ${dir}/*.pid; do kill -9 "$(cat "$f")" 2>/dev/null; done`;
    const reap = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ${killMembers}; rm -rf ${dir}`;
    spawn('sh', ['-c', reap], { detached: true, stdio: 'ignore' }).unref();
    try {
      for (const m of members) c.spawn(m, 'new');
      await Promise.all(members.map((m) => c.healthy(m)));
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.client);
  }

  private spawn(m: Member, state: 'new' | 'existing'): void {
    const cluster = this.members.map((x) => `${x.name}=${x.peer}`).join(',');
    const out = fs.openSync(m.log, 'a');
    m.proc = spawn('bash', [script, m.name, m.dir, m.client, m.peer, cluster, state], {
      stdio: ['ignore', out, out],
      env: { ...process.env, ...(this.tls ? { SG_ETCD_TLS_DIR: this.tls.dir } : {}) },
    });
    fs.closeSync(out);
    fs.writeFileSync(`${m.dir}.pid`, String(m.proc.pid));
    m.running = true;
    m.exited = new Promise((r) =>
      m.proc!.once('exit', () => {
        m.running = false;
        fs.rmSync(`${m.dir}.pid`, { force: true });
        r();
      }),
    );
  }

  private async healthy(m: Member): Promise<void> {
    await waitFor(
      `etcd member ${m.name} healthy`,
      async () => {
        if (!m.running) throw new Error(`exited:\n${fs.readFileSync(m.log, 'utf8').slice(-2000)}`);
        return ((await this.get(`${m.client}/health`)) as { health: string }).health === 'true';
      },
      60_000,
    );
  }

  private async get(url: string): Promise<unknown> {
    if (!this.tls) return (await fetch(url)).json();
    const t = this.tls;
    return new Promise((resolve, reject) => {
      // No SNI: the member is named by its address, which SNI may not carry.
      https
        .get(
          url,
          { ca: fs.readFileSync(t.ca), cert: fs.readFileSync(t.clientCert), key: fs.readFileSync(t.clientKey), servername: '' },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve(JSON.parse(body)));
          },
        )
        .on('error', reject);
    });
  }

  /** SIGKILL of member i (0-based): a crash. */
  async kill(i: number): Promise<void> {
    const m = this.members[i]!;
    if (!m.running) return;
    m.proc!.kill('SIGKILL');
    await m.exited;
  }

  /** Starts member i again on its data (it rejoins); resolves once it runs (it is healthy only with a
   *  quorum, which it may be the one to restore: not waited for). */
  async restart(i: number): Promise<void> {
    const m = this.members[i]!;
    if (m.running) return;
    this.spawn(m, 'existing');
  }

  /** Waits until every running member reports healthy (a quorum is back). */
  async allHealthy(): Promise<void> {
    await Promise.all(this.members.filter((m) => m.running).map((m) => this.healthy(m)));
  }

  async stop(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) await this.kill(i);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
