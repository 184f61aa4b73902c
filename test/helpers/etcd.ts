// An etcd cluster of our own for tests and benchmarks: members on loopback ports picked free, data in a
// throwaway directory, each run by scripts/etcd-member.sh (the lab's settings) as a child process, so
// that a member can be killed (SIGKILL) and started again; everything stopped and removed by `stop()`.
// The machine's own etcd, if any, is never used.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
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

export class EtcdCluster {
  private constructor(private readonly members: Member[], readonly dir: string) {}

  /** Starts `n` members and resolves once every one answers its health check. */
  static async start(n = 3): Promise<EtcdCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-etcd-'));
    const members: Member[] = [];
    for (let i = 1; i <= n; i++) {
      const [cp, pp] = [await freePort(), await freePort()];
      members.push({ name: `e${i}`, client: `http://127.0.0.1:${cp}`, peer: `http://127.0.0.1:${pp}`, dir: path.join(dir, `e${i}`), log: path.join(dir, `e${i}.log`), running: false });
    }
    const c = new EtcdCluster(members, dir);
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
    m.proc = spawn('bash', [script, m.name, m.dir, m.client, m.peer, cluster, state], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    m.running = true;
    m.exited = new Promise((r) => m.proc!.once('exit', () => {
      m.running = false;
      r();
    }));
  }

  private async healthy(m: Member): Promise<void> {
    await waitFor(`etcd member ${m.name} healthy`, async () => {
      if (!m.running) throw new Error(`exited:\n${fs.readFileSync(m.log, 'utf8').slice(-2000)}`);
      return ((await (await fetch(`${m.client}/health`)).json()) as { health: string }).health === 'true';
    }, 60_000);
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
