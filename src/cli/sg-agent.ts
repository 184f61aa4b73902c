#!/usr/bin/env node
// `sg-agent` command line. Subcommands are dispatched from this table; each loads only what it needs,
// so `--version` works even where the agent's other dependencies are not configured.
import { checkArgs, runCommandLine, UsageError, wantsHelp, type CommandSpec } from './command-line.js';
import { PROBE_FLAGS, PROBE_OPTIONS } from '../agent/probe.js';

const USAGE = `usage: sg-agent <command>

commands:
  run [--config FILE]      run the agent daemon (config file + SG_* environment variables)
  status [--config FILE] [--counters]
                           local ports, groups, sets and sizes of the running agent; with
                           --counters, the packets and bytes each rule of each port counted
  explain --port ID (--ingress --src A [--dst B] | --egress --dst B [--src A]) [--proto P]
          [--dport N] [--sport N] [--icmp-type T] [--icmp-code C] [--src-mac M] [--state S]
          [--nd-target ADDR] [--nd-lladdr M] [--config FILE]
                           what the port's filter does with such a packet, rule by rule, from the
                           running agent's desired state (no packet is sent)
  trace --port ID --ingress|--egress --src A|--dst B [--proto P] [--dport N] [--icmp-type T]
        [--seconds S] [--config FILE]
                           mark the port's matching packets for tracing for S seconds (default 10)
                           and print every rule each one meets, named as sg-agent names them
  cleanup [--config FILE]  remove every chain, table and set the agent owns (both backends)
  version, --version, -V   package, native binary and kernel ipset protocol versions
  check [--config FILE]    capabilities this process lacks, what the kernel supports (nf_tables
                           families, nf_conntrack_bridge, br_netfilter), what dataplane auto chooses
  help, --help, -h         this text (also after any command: sg-agent run --help)
`;

const config = { valued: ['--config'] };

const commands: Record<string, CommandSpec> = {
  run: { ...config, run: async (args) => (await import('../agent/commands.js')).run(args) },
  status: { ...config, flags: ['--counters'], run: async (args) => (await import('../agent/commands.js')).status(args) },
  cleanup: { ...config, run: async (args) => (await import('../agent/commands.js')).cleanup(args) },
  explain: {
    valued: ['--config', ...PROBE_OPTIONS],
    flags: [...PROBE_FLAGS],
    run: async (args) => (await import('../agent/inspect.js')).explain(args),
  },
  trace: {
    valued: ['--config', '--seconds', ...PROBE_OPTIONS],
    flags: [...PROBE_FLAGS],
    run: async (args) => (await import('../agent/inspect.js')).trace(args),
  },
  version: {
    async run() {
      const { versionReport, formatVersion } = await import('../version.js');
      console.log(formatVersion(await versionReport()));
      return 0;
    },
  },
  check: { ...config, run: async (args) => (await import('../agent/commands.js')).check(args) },
  help: {
    async run() {
      process.stdout.write(USAGE);
      return 0;
    },
  },
};
const aliases: Record<string, string> = { '--version': 'version', '-V': 'version', '--help': 'help', '-h': 'help' };

async function main(argv: string[]): Promise<number> {
  const [first = 'help', ...rest] = argv;
  const cmd = commands[aliases[first] ?? first];
  if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(first)}`);
  // `run --help` must never start the daemon.
  if (wantsHelp(rest)) return commands.help!.run([]);
  checkArgs(cmd, rest);
  return cmd.run(rest);
}

runCommandLine('sg-agent', USAGE, () => main(process.argv.slice(2)));
