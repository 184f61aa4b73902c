#!/usr/bin/env node
// `sg-agent` command line. Subcommands are dispatched from this table; each loads only what it needs,
// so `--version` works even where the agent's other dependencies are not configured.

const USAGE = `usage: sg-agent <command>

commands:
  run [--config FILE]      run the agent daemon (config file + SG_* environment variables)
  status [--config FILE]   local ports, groups, sets and sizes of the running agent
  cleanup [--config FILE]  remove every chain, table and set the agent owns (both backends)
  version, --version, -V   package, native binary and kernel ipset protocol versions
  check [--config FILE]    capabilities this process lacks, what the kernel supports (nf_tables
                           families, nf_conntrack_bridge, br_netfilter), what dataplane auto chooses
  help, --help, -h         this text
`;

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  async run(args) {
    return (await import('../agent/commands.js')).run(args);
  },
  async status(args) {
    return (await import('../agent/commands.js')).status(args);
  },
  async cleanup(args) {
    return (await import('../agent/commands.js')).cleanup(args);
  },
  async version() {
    const { versionReport, formatVersion } = await import('../version.js');
    console.log(formatVersion(await versionReport()));
    return 0;
  },
  async check(args) {
    return (await import('../agent/commands.js')).check(args);
  },
  async help() {
    process.stdout.write(USAGE);
    return 0;
  },
};
const aliases: Record<string, string> = { '--version': 'version', '-V': 'version', '--help': 'help', '-h': 'help' };

async function main(argv: string[]): Promise<number> {
  const [first = 'help', ...rest] = argv;
  const cmd = commands[aliases[first] ?? first];
  if (!cmd) {
    process.stderr.write(`sg-agent: unknown command ${JSON.stringify(first)}\n${USAGE}`);
    return 2;
  }
  return cmd(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    // The loader's NativeBindingError already reads as a diagnosis; print it without a stack.
    const err = e as { code?: string; message?: string };
    console.error(err?.code === 'NATIVE_BINDING_MISSING' ? err.message : e);
    process.exitCode = 1;
  },
);
