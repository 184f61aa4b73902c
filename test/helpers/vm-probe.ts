// Continuous traffic from a VM while its host changes under it (vm-probe.cjs does the work inside the
// VM's namespace): long-lived flows that must keep carrying data, attempts that must keep failing.
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import type { Vm } from './topology.js';
import { waitFor } from './wait.js';

export interface Flow {
  id: string;
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
  /** true: an established flow that must keep working; false: attempts that must never pass. */
  open: boolean;
}

export interface OpenFlowReport {
  sent: number;
  echoed: number;
  /** UDP messages unanswered after five seconds. */
  lost: number;
  /** Why the connection ended ('' while it lives). */
  broken: string;
  /** The longest time without an echo. */
  maxGapMs: number;
}

export interface ClosedFlowReport {
  attempts: number;
  passed: number;
  /** When each passed (ms since the epoch), to set beside what the host did then. */
  passedAt: number[];
}

export type ProbeReport = Record<string, OpenFlowReport | ClosedFlowReport>;

export interface Probe {
  report(): Promise<ProbeReport>;
  /** Open flows that broke or lost messages, closed ones that let something through: [] when all held. */
  violations(): Promise<string[]>;
  /** Waits until every open flow has carried new data since the call. */
  carrying(): Promise<void>;
  stop(): void;
}

export async function startProbe(vm: Vm, flows: Flow[], intervalMs = 50): Promise<Probe> {
  const child = spawn(
    'ip',
    ['netns', 'exec', vm.ns.name, process.execPath, path.join(__dirname, 'vm-probe.cjs'), JSON.stringify({ intervalMs, flows })],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  child.on('error', () => undefined);
  child.stdin.on('error', () => undefined);
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    wake?.();
  });
  const next = () =>
    new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`probe from ${vm.name}: no answer`)), 60_000);
      const check = () => {
        const l = lines.shift();
        if (l === undefined) return;
        clearTimeout(t);
        wake = undefined;
        resolve(l);
      };
      wake = check;
      check();
    });
  const first = await next();
  if (first !== 'up') {
    child.kill('SIGKILL');
    throw new Error(`probe from ${vm.name}: ${first}`);
  }
  const report = async () => {
    child.stdin.write('r\n');
    return JSON.parse(await next()) as ProbeReport;
  };
  return {
    report,
    violations: async () => {
      const r = await report();
      const out: string[] = [];
      for (const f of flows) {
        const x = r[f.id]!;
        if (f.open) {
          const o = x as OpenFlowReport;
          if (o.broken) out.push(`${vm.name} ${f.id}: broken (${o.broken})`);
          if (o.lost) out.push(`${vm.name} ${f.id}: ${o.lost} lost`);
        } else {
          const c = x as ClosedFlowReport;
          if (c.passed)
            out.push(
              `${vm.name} ${f.id}: ${c.passed} of ${c.attempts} disallowed attempts passed, at ${c.passedAt.map((at) => new Date(at).toISOString()).join(', ')}`,
            );
        }
      }
      return out;
    },
    carrying: async () => {
      const open = flows.filter((f) => f.open);
      const before = await report();
      await waitFor(
        `${vm.name}'s flows carrying data`,
        async () => {
          const now = await report();
          return open.every((f) => (now[f.id] as OpenFlowReport).echoed > (before[f.id] as OpenFlowReport).echoed);
        },
        60_000,
      );
    },
    stop: () => child.kill('SIGKILL'),
  };
}
