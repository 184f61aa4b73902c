// Throwaway network namespaces for tests that touch ipsets, iptables, conntrack or interfaces.
// Nothing here ever touches the machine's own namespace: every command runs inside a namespace we made.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** True when we can create namespaces (root with CAP_SYS_ADMIN). Tests that need them are declared
 *  through test/helpers/gate.ts (kernelTest), which skips or fails them where this is false. */
export function canUseNetns(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status === 0;
}

export class Netns {
  readonly name: string;
  readonly path: string;
  private constructor(name: string) {
    this.name = name;
    this.path = `/var/run/netns/${name}`;
  }

  /** Creates a fresh namespace with loopback up. Prefix keeps leftovers recognisable. */
  static create(prefix = 'sgt'): Netns {
    const name = `${prefix}-${randomBytes(4).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', name]);
    const ns = new Netns(name);
    ns.exec('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Runs a command inside the namespace and returns stdout. Throws on non-zero exit. */
  exec(cmd: string, args: string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', this.name, cmd, ...args], {
      encoding: 'utf8',
      input,
      maxBuffer: 256 * 1024 * 1024,
    });
  }

  /** The index of device `dev` here (what the kernel numbers a bridge's conntrack zone by). */
  ifindex(dev: string): number {
    return Number(/^(\d+):/.exec(this.exec('ip', ['-o', 'link', 'show', dev]))![1]);
  }

  /** Like exec, but returns status and output instead of throwing. */
  run(cmd: string, args: string[], input?: string): { status: number; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', this.name, cmd, ...args], {
      encoding: 'utf8',
      input,
      maxBuffer: 256 * 1024 * 1024,
    });
    return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  destroy(): void {
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
  }
}
