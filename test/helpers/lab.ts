// The three-machine lab of scripts/lab.sh for tests and benchmarks: a lab of their own (namespaces
// named after a random tag, data in a throwaway directory), its machines killed, partitioned and
// started again through the script, its controllers' APIs called over their Unix sockets, its agents
// read inside their namespaces. A watcher process takes the lab down should the caller die before
// `down()`.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { waitFor } from './wait.js';
import { GROUP_EXCHANGE, groupKey } from '../../src/protocol/routing.js';

const repo = path.resolve(__dirname, '../..');
const script = path.join(repo, 'scripts/lab.sh');

/** Whether the lab's programs are here (scripts/setup.sh installs them). */
export const hasLabTools = () =>
  ['etcd', 'rabbitmq-server', 'curl'].every((t) => fs.existsSync(`/usr/bin/${t}`) || fs.existsSync(`/usr/sbin/${t}`));

export interface Health {
  ok: boolean;
  connected: boolean;
  leader: boolean;
  outbox: number;
  published: number;
  store: { store: string; quorum: boolean; revision?: number };
}

export interface AgentStatus {
  connected: boolean;
  ports: { id: string; inKernel: boolean }[];
  groups: { id: string; members: number; membersRevision: number | null; rulesRevision: number | null }[];
  sets: { name: string; groupId: string; family: number; size: number }[];
}

export interface Response {
  status: number;
  body: unknown;
}

export class Lab {
  private watcher?: ChildProcess;
  private constructor(
    readonly name: string,
    readonly dir: string,
  ) {}

  static async up(o: { hosts?: number; logLevel?: string } = {}): Promise<Lab> {
    const lab = new Lab(`sgl${randomBytes(3).toString('hex')}`, fs.mkdtempSync(path.join(os.tmpdir(), 'sg-lab-')));
    // Should this process end without taking the lab down, the watcher does.
    lab.watcher = spawn(
      'sh',
      ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; exec bash ${JSON.stringify(script)} down`],
      {
        env: lab.env(),
        detached: true,
        stdio: 'ignore',
      },
    );
    lab.watcher.unref();
    try {
      await lab.run(['up'], { SG_LAB_HOSTS: String(o.hosts ?? 1), SG_LAB_LOG_LEVEL: o.logLevel ?? 'info' });
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${lab.logs()}`, { cause: e });
    }
    return lab;
  }

  private env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return { ...process.env, SG_LAB_NAME: this.name, SG_LAB_DIR: this.dir, ...extra };
  }

  /** lab.sh with these arguments; rejects with its output if it fails. */
  run(args: string[], extra: Record<string, string> = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('bash', [script, ...args], { env: this.env(extra), encoding: 'utf8', timeout: 300_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`lab.sh ${args.join(' ')}: ${stderr || stdout || err.message}`));
        else resolve(stdout);
      });
    });
  }

  ns(what: string): string {
    return `${this.name}-${what}`;
  }

  /** A command inside one of the lab's namespaces (without blocking the event loop). */
  exec(ns: string, cmd: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        'ip',
        ['netns', 'exec', ns, cmd, ...args],
        { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 << 20 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`${cmd} in ${ns}: ${stderr || err.message}`));
          else resolve(stdout);
        },
      );
    });
  }

  /** A request to machine m's admin API (its Unix socket), with a bound on the wait. */
  call(m: number, method: string, p: string, body?: unknown, timeoutMs = 5_000): Promise<Response> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        {
          socketPath: path.join(this.dir, `m${m}`, 'api.sock'),
          method,
          path: p,
          timeout: timeoutMs,
          headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as unknown) : null });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end(data);
    });
  }

  async health(m: number): Promise<Health> {
    return (await this.call(m, 'GET', '/healthz', undefined, 3_000)).body as Health;
  }

  /** The machine whose controller leads now (undefined: none says so). */
  async leader(among = [1, 2, 3]): Promise<number | undefined> {
    for (const m of among)
      if (
        await this.health(m).then(
          (h) => h.leader,
          () => false,
        )
      )
        return m;
    return undefined;
  }

  /** The broker's queues as a live node sees them (or why not), for a failed test's log. */
  queues(): Promise<string> {
    return this.run(['queues']).catch((e: Error) => e.message);
  }

  /** Waits for a controller among `among` to say it leads; if none does in time, the error carries
   *  what each said and the ends of their logs (the test's log is all that is left of a failed run). */
  async waitLeader(what: string, among = [1, 2, 3], ms = 60_000): Promise<number> {
    try {
      return await waitFor(what, () => this.leader(among), ms);
    } catch (e) {
      const said = await Promise.all(
        among.map((m) =>
          this.health(m).then(
            (h) => `machine ${m}: ${JSON.stringify(h)}`,
            (err: Error) => `machine ${m}: ${err.message}`,
          ),
        ),
      );
      throw new Error(`${(e as Error).message}\n${said.join('\n')}\n${this.logs(60)}`, { cause: e });
    }
  }

  /** Compute host k's agent: its status, through curl inside its namespace. */
  async agent(k: number): Promise<AgentStatus> {
    return JSON.parse(await this.exec(this.ns(`c${k}`), 'curl', ['-sf', '--max-time', '3', 'http://127.0.0.1:9100/status'])) as AgentStatus;
  }

  /** The members of compute host k's IPv4 set of a group, as the kernel holds them. */
  async kernelMembers(k: number, group: string): Promise<string[]> {
    const set = (await this.agent(k)).sets.find((s) => s.groupId === group && s.family === 4);
    if (!set) return [];
    const save = await this.exec(this.ns(`c${k}`), 'ipset', ['save', set.name]);
    return save
      .split('\n')
      .filter((l) => l.startsWith('add '))
      .map((l) => l.split(' ')[2]!)
      .sort();
  }

  /** Whether machine m can go down without taking the sync requests' quorum queue below its majority
   *  (a broker node started again has caught up): the precondition of "any one machine down". */
  quorumSafe(m: number): Promise<boolean> {
    return this.run(['quorum-safe', String(m)]).then(
      () => true,
      () => false,
    );
  }

  kill(m: number): Promise<string> {
    return this.run(['kill', String(m)]);
  }

  start(m: number): Promise<string> {
    return this.run(['start', String(m)]);
  }

  partition(m: number): Promise<string> {
    return this.run(['partition', String(m)]);
  }

  heal(m: number): Promise<string> {
    return this.run(['heal', String(m)]);
  }

  /** Records every message the broker routes for `groups` (a queue of its own on the given machines'
   *  nodes, read by a process in a namespace of the lab): what was published, however often. */
  async recorder(
    k: number,
    groups: string[],
  ): Promise<{ messages: { groupId: string; type: string; revision: number; body: string }[]; stop: () => void }> {
    const ns = this.ns(`c${k}`);
    await this.run(['attach', ns, String(10 + k)]);
    const code = `
      const amqp = require('amqplib');
      const [urls, exchange, keys] = [process.env.REC_URLS.split(','), process.env.REC_EXCHANGE, JSON.parse(process.env.REC_KEYS)];
      (async () => {
        for (const url of urls) {
          try {
            const c = await amqp.connect(url);
            c.on('error', () => undefined);
            const ch = await c.createChannel();
            const q = await ch.assertQueue('', { exclusive: true });
            for (const k of keys) await ch.bindQueue(q.queue, exchange, k);
            await ch.consume(q.queue, (m) => process.stdout.write(m.content.toString('base64') + '\\n'), { noAck: true });
            process.stdout.write('ready\\n');
          } catch (e) { process.stderr.write(String(e) + '\\n'); }
        }
      })();`;
    const urls = [1, 2, 3].map((m) => `amqp://guest:guest@10.77.0.${m}:5672/`).join(',');
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], {
      cwd: repo,
      env: { ...process.env, REC_URLS: urls, REC_EXCHANGE: GROUP_EXCHANGE, REC_KEYS: JSON.stringify(groups.map(groupKey)) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const messages: { groupId: string; type: string; revision: number; body: string }[] = [];
    let ready = 0;
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (line === 'ready') return void ready++;
      const m = JSON.parse(Buffer.from(line, 'base64').toString()) as { groupId: string; type: string; revision: number; sentAt?: number };
      const { sentAt: _sentAt, ...content } = m;
      messages.push({ groupId: m.groupId, type: m.type, revision: m.revision, body: JSON.stringify(content) });
    });
    await waitFor('the recorder bound on every node', () => ready >= 3, 60_000);
    return { messages, stop: () => child.kill('SIGKILL') };
  }

  /** The last lines of each controller's log and of the first compute host's agent. */
  logs(lines = 25): string {
    const out: string[] = [];
    for (const m of [1, 2, 3]) {
      const f = path.join(this.dir, `m${m}`, 'controller.log');
      if (fs.existsSync(f)) out.push(`-- controller ${m}:\n${fs.readFileSync(f, 'utf8').split('\n').slice(-lines).join('\n')}`);
    }
    const agent = path.join(this.dir, 'c1.log');
    if (fs.existsSync(agent))
      out.push(
        `-- agent 1:\n${fs
          .readFileSync(agent, 'utf8')
          .split('\n')
          .slice(-2 * lines)
          .join('\n')}`,
      );
    return out.join('\n');
  }

  async down(): Promise<void> {
    await this.run(['down']);
    this.watcher?.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
