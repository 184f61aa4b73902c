// What a test environment leaves if its process is killed before its own teardown runs (ava ends a
// worker that outlives its timeout; Ctrl-C ends them all): a watcher process of its own waits for the
// environment's process to go and then ends the process groups, deletes the namespaces, broker objects
// and directories named in a script the environment keeps up to date. A clean teardown removes the
// script and ends the watcher, so it then does nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export class Reaper {
  private readonly script = path.join(os.tmpdir(), `sg-reaper-${process.pid}-${randomBytes(3).toString('hex')}.sh`);
  private readonly watcher: ChildProcess;
  private readonly groups = new Set<number>();
  private readonly pids = new Set<number>();
  private readonly namespaces = new Set<string>();
  private readonly dirs = new Set<string>();
  private readonly commands: string[] = [];

  constructor() {
    this.write();
    const s = quote(this.script);
    this.watcher = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; [ -f ${s} ] && sh ${s}; rm -f ${s}`], {
      detached: true,
      stdio: 'ignore',
    });
    this.watcher.on('error', () => undefined);
    this.watcher.unref();
  }

  /** Process groups (their leaders' pids), processes, network namespaces, directories, and commands. */
  add(what: { groups?: number[]; pids?: number[]; namespaces?: string[]; dirs?: string[]; commands?: string[] }): void {
    for (const g of what.groups ?? []) if (g > 1) this.groups.add(g);
    for (const p of what.pids ?? []) if (p > 1) this.pids.add(p);
    for (const n of what.namespaces ?? []) this.namespaces.add(n);
    for (const d of what.dirs ?? []) this.dirs.add(d);
    this.commands.push(...(what.commands ?? []));
    this.write();
  }

  /** Processes (and groups) that ended: their ids may be reused by others, which must not be killed. */
  remove(what: { groups?: number[]; pids?: number[] }): void {
    for (const g of what.groups ?? []) this.groups.delete(g);
    for (const p of what.pids ?? []) this.pids.delete(p);
    this.write();
  }

  private write(): void {
    const lines = [
      ...[...this.groups].map((g) => `kill -9 -${g} 2>/dev/null`),
      ...[...this.pids].map((p) => `kill -9 ${p} 2>/dev/null`),
      ...[...this.namespaces].map(
        (n) => `for p in $(ip netns pids ${quote(n)} 2>/dev/null); do kill -9 "$p"; done; ip netns del ${quote(n)} 2>/dev/null`,
      ),
      ...this.commands.map((c) => `${c} >/dev/null 2>&1`),
      ...[...this.dirs].map((d) => `rm -rf ${quote(d)}`),
    ];
    fs.writeFileSync(this.script, `${lines.join('\n')}\n`);
  }

  /** The environment went down by itself: nothing to do any more. */
  stop(): void {
    fs.rmSync(this.script, { force: true });
    this.watcher.kill('SIGKILL');
  }
}
