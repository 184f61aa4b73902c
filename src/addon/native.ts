// The one place that loads the compiled addon, so every other module imports typed bindings from here.
// napi-rs's generated loader (native/index.js) looks for a locally built binary, then for the platform
// package; when neither exists we replace its list of raw "cannot find module" errors with one message
// that names the platform and what to install.
import path from 'node:path';
import fs from 'node:fs';
import { missingBinaryMessage, platformKey } from './platform.js';

type Native = typeof import('../../native/index.js');

function packageRoot(): string {
  // Works both from src/ (tsx, tests) and from dist/src/ (compiled, installed package).
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native', 'index.js'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`sg-agent: cannot locate the package root from ${__dirname}`);
    dir = parent;
  }
}

export class NativeBindingError extends Error {
  readonly code = 'NATIVE_BINDING_MISSING';
  readonly platform: string;
  constructor(platform: string, cause: unknown) {
    super(missingBinaryMessage(platform), { cause });
    this.name = 'NativeBindingError';
    this.platform = platform;
  }
}

function load(): Native {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(path.join(packageRoot(), 'native', 'index.js')) as Native;
  } catch (e) {
    throw new NativeBindingError(platformKey(), e);
  }
}

export const native: Native = load();
