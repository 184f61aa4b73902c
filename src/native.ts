// The one place that loads the compiled addon, so every other module imports typed bindings from here.
import path from 'node:path';
import fs from 'node:fs';

function packageRoot(): string {
  // Works both from src/ (tsx, tests) and from dist/src/ (compiled, installed package).
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`sg-agent: cannot locate the package root from ${__dirname}`);
    dir = parent;
  }
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const native: typeof import('../native/index.js') = require(path.join(packageRoot(), 'native', 'index.js'));
