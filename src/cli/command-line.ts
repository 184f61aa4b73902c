// What both command lines (sg-agent, sg-controller) share: arguments read strictly, `--help` on every
// command, and how a run ends. An error the operator has to fix (a configuration, a file, a port, a
// namespace: ConfigError; a missing native binary) is one line and a non-zero exit; only a fault of
// the program itself prints its stack.
import { ConfigError, editDistance } from '../settings.js';

/** A command line that cannot be run as written (exit 2, with the usage). */
export class UsageError extends Error {}

export interface CommandSpec {
  run: (args: string[]) => Promise<number>;
  /** Options taking a value (`--config FILE` or `--config=FILE`). */
  valued?: string[];
  /** Options without a value. */
  flags?: string[];
  /** Words that are not options this command takes (broker-user ROLE USER). */
  positional?: number;
}

/** `--name VALUE` or `--name=VALUE`. */
export function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
}

export const wantsHelp = (args: string[]) => args.includes('--help') || args.includes('-h');

/** Refuses what the command does not take: a misspelt `--confg` would otherwise be a default. */
export function checkArgs(spec: CommandSpec, args: string[]): void {
  const valued = spec.valued ?? [];
  const known = [...valued, ...(spec.flags ?? [])];
  let words = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const name = a.startsWith('--') && a.includes('=') ? a.slice(0, a.indexOf('=')) : a;
    if (valued.includes(name)) {
      if (name === a && (i + 1 >= args.length || args[i + 1]!.startsWith('--'))) throw new UsageError(`${name} needs a value`);
      if (name === a) i++;
    } else if (spec.flags?.includes(a)) {
      continue;
    } else if (a.startsWith('-')) {
      const near = known.find((k) => editDistance(k, name) <= 2);
      throw new UsageError(`unknown option ${JSON.stringify(a)}${near ? ` (did you mean ${near}?)` : ''}`);
    } else if (++words > (spec.positional ?? 0)) {
      throw new UsageError(`unexpected argument ${JSON.stringify(a)}`);
    }
  }
}

/** Runs a command line's `main` and ends the process with its outcome. */
export function runCommandLine(prog: string, usage: string, main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      if (e instanceof UsageError) {
        process.stderr.write(`${prog}: ${e.message}\n${usage}`);
        process.exit(2);
      }
      if (e instanceof ConfigError) process.stderr.write(`${prog}: ${e.message}\n`);
      // The loader's NativeBindingError already reads as a diagnosis (its own lines, named).
      else if ((e as { code?: string })?.code === 'NATIVE_BINDING_MISSING') process.stderr.write(`${(e as Error).message}\n`);
      else process.stderr.write(`${prog}: ${e instanceof Error ? e.stack : String(e)}\n`);
      // Exits at once: a listener or a timer opened before the failure must not keep the process up.
      process.exit(1);
    },
  );
}
