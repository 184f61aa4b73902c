// Operators' settings: a JSON file, then SG_* environment variables over it, read strictly. Whatever
// is wrong stops start-up with one line naming the file or the variable and the key: a file that
// cannot be read or parsed, a key no setting has (with the closest known one), a value of the wrong
// type (`"coalesceMs": true`, `"host": 42`), a value a setting refuses. A typo is never a default.
import fs from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';

/** A fault of the operator's configuration or of what it names (a file, a port, a namespace): its
 *  message is the whole diagnosis, and the command lines print it alone, with no stack. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** How a value reads: from JSON in the file, from text in the environment. */
type Kind =
  | 'string'
  /** A file path: relative in the file means beside the file (a systemd credential beside its config). */
  | 'path'
  /** A non-negative number. */
  | 'number'
  /** A time in whole milliseconds, at most what a Node timer takes (a longer one fires at once). */
  | 'ms'
  | 'boolean'
  /** A list of strings in the file; comma-separated in the environment. */
  | 'strings'
  /** A list of paths, read as `strings` and resolved as `path`. */
  | 'paths';

export class Setting {
  constructor(
    readonly kind: Kind,
    /** The environment variable over the file's value. */
    readonly env?: string,
    /** Where the value goes in what `readSettings` returns; default: the key's own name. */
    readonly to?: string,
    /** Returns why a value is refused, or undefined. */
    readonly check?: (v: never) => string | undefined,
  ) {}
}

export interface Section {
  [key: string]: Setting | Section;
}

export function setting(kind: Kind, o: { env?: string; to?: string; check?: (v: never) => string | undefined } = {}): Setting {
  return new Setting(kind, o.env, o.to, o.check);
}

/** A string setting with a fixed set of values. */
export function oneOf(values: readonly string[], o: { env?: string; to?: string } = {}): Setting {
  return setting('string', {
    ...o,
    check: (v: string) =>
      values.includes(v) ? undefined : `must be ${values.slice(0, -1).join(', ')} or ${values.at(-1)}, not ${JSON.stringify(v)}`,
  });
}

/** pino's levels, checked before a logger is made of them (pino would throw its own stack). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface Settings {
  /** By target name (`to`): what the file and the environment set; absent where neither did. */
  values: Record<string, unknown>;
  /** Where each value came from, for a later check's message: `"firewall.mode" in FILE` or `SG_X`. */
  from: Record<string, string>;
}

export function readSettings(shape: Section, file: string | undefined, env: NodeJS.ProcessEnv): Settings {
  const out: Settings = { values: {}, from: {} };
  if (file !== undefined) walk(shape, shape, readJsonObject(file), [], file, out);
  for (const [target, s] of settingsOf(shape)) {
    const raw = s.env === undefined ? undefined : env[s.env];
    if (raw === undefined) continue;
    const v = fromEnv(s, raw);
    refuse(s, v, s.env!);
    out.values[target] = v;
    out.from[target] = s.env!;
  }
  refuseMisspeltEnv(shape, env);
  return out;
}

/** SG_* variables a program reads outside its settings' shape (the controller's Neutron source and
 *  its choice of source), registered by the module reading them so a typo check knows them. */
const READ_ELSEWHERE = new Set<string>();
export function readFromEnvElsewhere(...names: string[]): void {
  for (const n of names) READ_ELSEWHERE.add(n);
}

/** A misspelt variable would be silently ignored and the default used (`SG_DATAPLAN=nftables` running
 *  iptables): an SG_* variable one or two letters from a known one is refused, naming it. Variables
 *  far from every known name (other tools', the tests' own) are left alone. */
function refuseMisspeltEnv(shape: Section, env: NodeJS.ProcessEnv): void {
  const known = new Set([...READ_ELSEWHERE, ...[...settingsOf(shape)].flatMap(([, s]) => (s.env ? [s.env] : []))]);
  for (const name of Object.keys(env)) {
    if (!name.startsWith('SG_') || known.has(name)) continue;
    let best: { name: string; d: number } | undefined;
    for (const k of known) {
      const d = editDistance(name, k);
      if (!best || d < best.d) best = { name: k, d };
    }
    if (best && best.d <= 2) throw new ConfigError(`unknown environment variable ${name} (did you mean ${best.name}?)`);
  }
}

/** A file the configuration names, read; its absence or a refused read is one line naming it. */
export function readConfiguredFile(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new ConfigError(`${what} ${file}: ${describeFsError(e)}`);
  }
}

export function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return `permission denied (this process runs as uid ${process.getuid?.()})`;
  if (code === 'EISDIR') return 'is a directory';
  if (code === 'ENOTDIR') return 'a part of the path is not a directory';
  return (e as Error).message;
}

/** A TCP address to listen on, as operators write it: `host:port`, `[IPv6]:port`, or `:port`
 *  (loopback). Read the same way when the configuration loads, when the listener opens and when a
 *  command dials it. */
export interface TcpListen {
  host: string;
  port: number;
}

export function parseTcpListen(v: string): TcpListen | undefined {
  const i = v.lastIndexOf(':');
  if (i < 0) return undefined;
  const [h, p] = [v.slice(0, i), v.slice(i + 1)];
  if (!/^\d{1,5}$/.test(p) || Number(p) > 65535) return undefined;
  const port = Number(p);
  if (h === '') return { host: '127.0.0.1', port };
  if (h.startsWith('[') && h.endsWith(']')) return isIP(h.slice(1, -1)) === 6 ? { host: h.slice(1, -1), port } : undefined;
  // A bare IPv6 address (`::1:9464`) is ambiguous: it must be written in brackets.
  return /^[A-Za-z0-9.-]+$/.test(h) ? { host: h, port } : undefined;
}

/** What `parseTcpListen` refuses, said once for every listener. */
export const TCP_LISTEN_FORM = 'host:port, [IPv6]:port or :port';

/** An address as a URL's host and port (IPv6 in brackets). */
export function urlAuthority(a: TcpListen): string {
  return `${isIP(a.host) === 6 ? `[${a.host}]` : a.host}:${a.port}`;
}

/** Why a configured listener could not be opened, as one line naming the setting. */
export function listenError(settingName: string, address: string, e: unknown): ConfigError {
  const code = (e as NodeJS.ErrnoException).code;
  const why =
    code === 'EADDRINUSE'
      ? 'address already in use'
      : code === 'EADDRNOTAVAIL'
        ? 'no such local address'
        : code === 'EACCES'
          ? `permission denied (this process runs as uid ${process.getuid?.()})`
          : (e as Error).message;
  return new ConfigError(`${settingName} ${address}: ${why}`);
}

function readJsonObject(file: string): Record<string, unknown> {
  const text = readConfiguredFile(file, 'config file').toString('utf8');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${file}: not JSON (${(e as Error).message})`);
  }
  if (!isObject(v)) throw new ConfigError(`config file ${file}: must hold a JSON object`);
  return v;
}

/** The longest a Node timer waits (2^31 - 1 ms, about 24.8 days): a longer delay fires after 1 ms,
 *  so a setting above it would turn an interval into a busy loop. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
const MS = `a whole number of milliseconds (0 to ${MAX_TIMER_MS})`;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function walk(root: Section, section: Section, obj: Record<string, unknown>, at: string[], file: string, out: Settings): void {
  for (const [key, v] of Object.entries(obj)) {
    const keyPath = [...at, key];
    const name = keyPath.join('.');
    const known = Object.hasOwn(section, key) ? section[key] : undefined;
    if (!known) throw new ConfigError(`config file ${file}: unknown key ${JSON.stringify(name)}${suggestion(keyPath, root, section, at)}`);
    if (!(known instanceof Setting)) {
      if (!isObject(v))
        throw new ConfigError(`config file ${file}: ${name} must be an object (${Object.keys(known).join(', ')}), not ${describe(v)}`);
      walk(root, known, v, keyPath, file, out);
      continue;
    }
    const value = fromFile(known, v, path.dirname(file), () => `config file ${file}: ${name}`);
    refuse(known, value, `config file ${file}: ${name}`);
    const target = known.to ?? key;
    if (target in out.values)
      throw new ConfigError(`config file ${file}: ${name} and ${out.from[target]!.split(' ')[0]} set the same thing; keep one`);
    out.values[target] = value;
    out.from[target] = `${name} in ${file}`;
  }
}

function fromFile(s: Setting, v: unknown, dir: string, where: () => string): unknown {
  const wrong = (what: string) => new ConfigError(`${where()} must be ${what}, not ${describe(v)}`);
  switch (s.kind) {
    case 'string':
      if (typeof v !== 'string') throw wrong('a string');
      return v;
    case 'path':
      if (typeof v !== 'string' || v === '') throw wrong('a file path (a string)');
      return path.resolve(dir, v);
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw wrong('a non-negative number');
      return v;
    case 'ms':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_TIMER_MS) throw wrong(MS);
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') throw wrong('true or false');
      return v;
    case 'strings':
    case 'paths':
      if (!Array.isArray(v) || !v.every((e) => typeof e === 'string')) throw wrong('a list of strings');
      return s.kind === 'paths' ? v.map((p: string) => path.resolve(dir, p)) : v;
  }
}

function fromEnv(s: Setting, raw: string): unknown {
  switch (s.kind) {
    case 'string':
      return raw;
    case 'path':
      // As in the file: an empty path names nothing (it would stand for the working directory).
      if (raw === '') throw new ConfigError(`${s.env} must be a file path, not ""`);
      return raw;
    case 'number': {
      const n = Number(raw);
      if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !Number.isFinite(n))
        throw new ConfigError(`${s.env} must be a non-negative number, not ${JSON.stringify(raw)}`);
      return n;
    }
    case 'ms': {
      const n = Number(raw);
      if (!/^\d+$/.test(raw.trim()) || n > MAX_TIMER_MS) throw new ConfigError(`${s.env} must be ${MS}, not ${JSON.stringify(raw)}`);
      return n;
    }
    case 'boolean':
      if (/^(1|true|yes)$/i.test(raw)) return true;
      if (/^(0|false|no)?$/i.test(raw)) return false;
      throw new ConfigError(`${s.env} must be true or false (1/0, yes/no), not ${JSON.stringify(raw)}`);
    case 'strings':
    case 'paths':
      return raw
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean);
  }
}

function refuse(s: Setting, v: unknown, where: string): void {
  const why = s.check?.(v as never);
  if (why) throw new ConfigError(`${where} ${why}`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return JSON.stringify(v);
}

function* settingsOf(section: Section): Generator<[string, Setting]> {
  for (const [key, v] of Object.entries(section)) {
    if (v instanceof Setting) yield [v.to ?? key, v];
    else yield* settingsOf(v);
  }
}

function* keyPaths(section: Section, at: string[] = []): Generator<string[]> {
  for (const [key, v] of Object.entries(section)) {
    yield [...at, key];
    if (!(v instanceof Setting)) yield* keyPaths(v, [...at, key]);
  }
}

/** The known key closest to an unknown one, by edit distance (case aside) on its name or its whole
 *  path: `dataPlane` → `dataplane`, a top-level `prefix` → `firewall.prefix`. Far from any: the keys
 *  known where it stands. */
function suggestion(unknown: string[], root: Section, here: Section, at: string[]): string {
  const name = unknown.at(-1)!.toLowerCase();
  const whole = unknown.join('.').toLowerCase();
  let best: { path: string; d: number } | undefined;
  for (const p of keyPaths(root)) {
    const d = Math.min(editDistance(name, p.at(-1)!.toLowerCase()), editDistance(whole, p.join('.').toLowerCase()));
    if (!best || d < best.d) best = { path: p.join('.'), d };
  }
  if (best && best.d <= Math.max(2, Math.floor(name.length / 3))) return ` (did you mean ${JSON.stringify(best.path)}?)`;
  return ` (known${at.length ? ` in ${at.join('.')}` : ''}: ${Object.keys(here).join(', ')})`;
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}
