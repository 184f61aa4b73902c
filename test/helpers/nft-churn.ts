// A child process for test/firewall-nftables.test.ts, killed with SIGKILL while it works:
//   churn NETNS   — transactions that swing one table between two whole states, forever;
//   open NETNS    — one large transaction sent without its end (the kernel checks it and aborts),
//                   then it waits to be killed.
// Each state: a set of 20,000 addresses and a chain of 300 rules, all under 10.<state>.
import { NftClient, type Op, type Stmt } from '../../src/addon/nftables.js';

export const TABLE = 'churn';
const at = { family: 'inet', table: TABLE } as const;

export function stateOps(v: number): Op[] {
  const add = Array.from({ length: 20_000 }, (_, i) => `10.${v}.${i >> 8}.${i & 255}`);
  const rules: Op[] = Array.from({ length: 300 }, (_, i) => ({
    op: 'rule',
    ...at,
    chain: 'c',
    stmts: [
      { m: 'nfproto', v: 4 },
      { m: 'addr', family: 4, dir: 'saddr', cidr: `10.${v}.${i >> 8}.${i & 255}` },
      { m: 'verdict', v: 'return' },
    ] as Stmt[],
  }));
  return [{ op: 'flushSet', ...at, set: 's' }, { op: 'members', ...at, set: 's', add }, { op: 'flushChain', ...at, chain: 'c' }, ...rules];
}

export const setupOps: Op[] = [
  { op: 'table', ...at },
  { op: 'set', ...at, set: 's', key: 'ipv4' },
  { op: 'chain', ...at, chain: 'c' },
];

async function main(): Promise<void> {
  const [mode, netns] = process.argv.slice(2);
  const c = await NftClient.open(netns);
  if (mode === 'open') {
    // What a killed process leaves at worst: the whole table deleted and remade, never committed.
    const r = await c.check([{ op: 'delTable', ...at }, ...setupOps, ...stateOps(9)]);
    process.stdout.write(`sent ${JSON.stringify(r.failures)}\n`);
    setInterval(() => undefined, 60_000);
    return;
  }
  const r = await c.transact([...setupOps, ...stateOps(1)]);
  if (!r.committed) throw new Error(JSON.stringify(r.failures));
  process.stdout.write('ready\n');
  for (let v = 2; ; v = v === 1 ? 2 : 1) await c.transact(stateOps(v));
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`${String(e)}\n`);
    process.exit(1);
  });
}
