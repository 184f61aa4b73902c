// The daemons a test environment starts (databases, API servers, Open vSwitch, agents): each in a
// process group of its own, so that ending it ends what it forked (uWSGI workers, privileged helpers),
// its output kept in `<dir>/<name>.out`, and all of them ended, with SIGKILL, when the environment goes.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Reaper } from './reaper.js';

export class Daemons {
  private readonly procs = new Map<string, ChildProcess>();

  /** `reaper`: told of each process group, in case this process is killed before killAll. */
  constructor(
    private readonly dir: string,
    private readonly reaper?: Reaper,
  ) {}

  /** Starts `name`; `env` goes over this process's environment. With `pipeStdout`, its stdout is the
   *  caller's to read (a daemon that says when it is ready) and only stderr goes to the file. */
  start(name: string, cmd: string, args: string[], env: Record<string, string> = {}, opts: { pipeStdout?: boolean } = {}): ChildProcess {
    const log = fs.openSync(path.join(this.dir, `${name}.out`), 'a');
    const child = spawn(cmd, args, {
      cwd: this.dir,
      env: { ...process.env, ...env },
      stdio: ['ignore', opts.pipeStdout ? 'pipe' : log, log],
      detached: true,
    });
    fs.closeSync(log);
    child.on('error', () => undefined);
    const pid = child.pid;
    if (pid) {
      this.reaper?.add({ groups: [pid] });
      // Once it is gone its id may be reused by another process: the reaper must not kill that.
      child.once('exit', () => this.reaper?.remove({ groups: [pid] }));
    }
    this.procs.set(name, child);
    return child;
  }

  /** Ends `name` and its process group (SIGKILL); resolves once it has exited. */
  async kill(name: string): Promise<void> {
    const child = this.procs.get(name);
    this.procs.delete(name);
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      return;
    }
    await exited;
  }

  async killAll(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((n) => this.kill(n)));
  }
}
