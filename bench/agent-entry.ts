// How bench/agent-cpu.ts starts `sg-agent`: as it is installed (the package's bin, `dist/cli/sg-agent.js`
// from `npm run build`), or from the sources through tsx (`SG_BENCH_AGENT=tsx`), as bench:storm does.
// Under tsx the agent also runs tsx's module-loader thread, whose full garbage collections show in a
// profile of the agent (a quarter of one storm's samples in one `perf record`); over whole storms the
// two did not differ measurably (bench/RESULTS.md, Storm).
import fs from 'node:fs';
import path from 'node:path';

const repo = path.resolve(__dirname, '..');

/** The newest (or oldest) modification time of the `.ts`/`.js` files under `dir` (ms). */
function mtime(dir: string, pick: (a: number, b: number) => number, start: number): number {
  let t = start;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) t = pick(t, mtime(p, pick, start));
    else if (/\.(ts|js)$/.test(e.name) && !e.name.endsWith('.d.ts')) t = pick(t, fs.statSync(p).mtimeMs);
  }
  return t;
}

/** Node arguments (before the command) that run the agent. Throws when the build is missing or older
 *  than the sources: a stale build would measure other code than the tree's. */
export function agentEntry(): string[] {
  if (process.env.SG_BENCH_AGENT === 'tsx') return ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts')];
  const built = path.join(repo, 'dist/cli/sg-agent.js');
  // tsc writes every output on each build: its oldest output is newer than any source it was built from.
  const builtAt = fs.existsSync(built) ? mtime(path.join(repo, 'dist'), Math.min, Infinity) : 0;
  if (builtAt < mtime(path.join(repo, 'src'), Math.max, 0)) {
    throw new Error('bench: dist/ is missing or older than src/: run `npm run build` (or SG_BENCH_AGENT=tsx)');
  }
  return [built];
}
