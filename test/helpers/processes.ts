// Agent and controller processes for tests: started from the sources with every unhandled promise
// rejection fatal (`--unhandled-rejections=strict`), their output kept (the last lines) so that a
// failing test can show it, and their exit observed.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const repo = path.resolve(__dirname, '../..');
const KEEP_LINES = 400;

export interface Running {
  child: ChildProcess;
  /** The last lines of stdout and stderr (pino logs are JSON lines on stdout). */
  lines: string[];
  exited: boolean;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Output so far, for a failure message. */
  dump(): string;
}

/** `env` goes over this process's environment; a variable set to undefined there is removed. */
export function startProcess(script: string, args: string[], env: Record<string, string | undefined>): Running {
  const full: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(full)) if (v === undefined) delete full[k];
  const child = spawn(process.execPath, ['--unhandled-rejections=strict', '--import', 'tsx', path.join(repo, script), ...args], {
    cwd: repo,
    env: full,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const collect = (b: Buffer) => {
    lines.push(...b.toString().split('\n').filter(Boolean));
    if (lines.length > KEEP_LINES) lines.splice(0, lines.length - KEEP_LINES);
  };
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

export async function stopProcess(r: Running | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!r || r.exited) return;
  r.child.kill(signal);
  await r.exit;
}
