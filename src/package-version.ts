// This package's version, from its package.json: what both command lines report. Apart from
// src/version.ts so that sg-controller, which needs no native binary, can say it without loading one.
import fs from 'node:fs';
import path from 'node:path';

export function packageVersion(): string {
  let dir = __dirname;
  for (;;) {
    const p = path.join(dir, 'package.json');
    if (fs.existsSync(p)) {
      const pkg = JSON.parse(fs.readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'sg-agent' && pkg.version) return pkg.version;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}
