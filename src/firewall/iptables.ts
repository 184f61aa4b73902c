// Writing and reading the agent's chains with iptables-restore / iptables-save, inside the target
// namespace (nsenter) when one is given. These tools are how rules are written; ipsets never go
// through a child process.
import { spawn } from 'node:child_process';

export type IpVersion = 4 | 6;

export class IptablesError extends Error {
  constructor(message: string, readonly stderr: string) {
    super(message);
    this.name = 'IptablesError';
  }
}

function command(netns: string | undefined, tool: string, args: string[]): [string, string[]] {
  return netns ? ['nsenter', [`--net=${netns}`, tool, ...args]] : [tool, args];
}

function run(netns: string | undefined, tool: string, args: string[], input?: string): Promise<string> {
  const [cmd, argv] = command(netns, tool, args);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new IptablesError(`${tool}: ${e.message}`, '')));
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new IptablesError(`${tool} ${args.join(' ')} exited ${code}: ${stderr.trim()}`, stderr));
    });
    // A tool that exits without reading stdin (iptables-save) closes the pipe: not an error of ours.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

const RESTORE: Record<IpVersion, string> = { 4: 'iptables-restore', 6: 'ip6tables-restore' };
const SAVE: Record<IpVersion, string> = { 4: 'iptables-save', 6: 'ip6tables-save' };

export class Iptables {
  restores = 0;
  constructor(readonly netns?: string) {}

  /** One atomic iptables-restore --noflush: touches only the chains the script names. */
  async restore(version: IpVersion, script: string): Promise<void> {
    this.restores++;
    await run(this.netns, RESTORE[version], ['--noflush', '-w', '10'], script);
  }

  async saveFilter(version: IpVersion): Promise<string> {
    return run(this.netns, SAVE[version], ['-t', 'filter']);
  }
}

/** The rules of each chain in iptables-save output whose name `keep` accepts, in order. */
export function parseChains(saved: string, keep: (chain: string) => boolean): Map<string, string[]> {
  const chains = new Map<string, string[]>();
  for (const line of saved.split('\n')) {
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0]!;
      if (keep(name)) chains.set(name, []);
    } else if (line.startsWith('-A ')) {
      const rest = line.slice(3);
      const sp = rest.indexOf(' ');
      const name = sp < 0 ? rest : rest.slice(0, sp);
      if (keep(name)) chains.get(name)?.push(sp < 0 ? '' : rest.slice(sp + 1));
    }
  }
  return chains;
}
