#!/usr/bin/env node
// `sg-controller`: the control plane (publisher, sync RPC), fed by its own admin API (the reference
// mode) or by an OpenStack Neutron (SG_SOURCE=neutron: Neutron's API and broker, docs/neutron.md), and
// the tools a deployment needs around it: a signing key pair, and broker users with the permissions of
// their role. Configuration: a JSON file (`--config`) and SG_* environment variables (docs/agent.md);
// Neutron mode's own SG_NEUTRON_* and OS_* variables in src/neutron/config.ts.
import { checkArgs, option, runCommandLine, UsageError, wantsHelp, type CommandSpec } from './command-line.js';

const USAGE = `usage: sg-controller [command]

commands:
  run [--config FILE]          run the controller (the default command); SG_SOURCE=neutron: Neutron mode
  keygen --out DIR             write a new Ed25519 signing key pair into DIR: signing-key.pem (0600,
                               for the controller) and <key id>.pub (for every agent's trustedKeys)
  broker-user ROLE USER [--host HOST] [--vhost VHOST] [--node NODE] [--password-stdin | --no-password] [--print]
                               create (if missing) the RabbitMQ user USER with the permissions of ROLE
                               (controller, or agent of HOST) on VHOST (default /), with rabbitmqctl
                               (on NODE if given); --no-password: certificate (EXTERNAL) login only;
                               --print: only print the permissions (configure, write, read)
  store export|import [--config FILE] [--file FILE] [--force]
                               write the whole store (the configured one: LMDB or etcd) as JSON to
                               FILE or standard output, or make the store equal to such an export
                               (backup, restore, moving from LMDB to etcd: docs/agent.md); import is
                               refused while a controller leads on an etcd store, unless --force
  version, --version, -V       the package's version
  help, --help, -h             this text (also after any command: sg-controller run --help)
`;

async function run(args: string[]): Promise<number> {
  const [{ default: pino }, { Controller }, config, { MessageSigner }, { ConfigError, readConfiguredFile }] = await Promise.all([
    import('pino'),
    import('../controller/controller.js'),
    import('../controller/config.js'),
    import('../protocol/signing.js'),
    import('../settings.js'),
  ]);
  const { loadControllerConfig, etcdStoreOptions } = config;
  const cfg = loadControllerConfig(option(args, '--config'));
  const log = pino({ level: cfg.logLevel, base: { role: 'controller' } });
  const h = cfg.http;
  const common = {
    amqpUrl: cfg.amqpUrl,
    amqpTls: cfg.amqpTls,
    dataDir: cfg.dataDir,
    ...(cfg.store.kind === 'etcd' ? { etcd: etcdStoreOptions(cfg.store.etcd) } : {}),
    signer: MessageSigner.fromFile(cfg.signingKeyFile),
    ...(h.listen
      ? {
          api: {
            listen: h.listen,
            ...(h.token ? { token: h.token } : {}),
            ...(h.tlsCertFile && h.tlsKeyFile
              ? {
                  tls: {
                    cert: readConfiguredFile(h.tlsCertFile, 'http.tls.certFile'),
                    key: readConfiguredFile(h.tlsKeyFile, 'http.tls.keyFile'),
                  },
                }
              : {}),
            allowedHosts: h.allowedHosts,
            socketMode: h.socketMode,
          },
        }
      : {}),
    logger: log,
  };
  const source = process.env.SG_SOURCE ?? 'api';
  if (source !== 'api' && source !== 'neutron') throw new ConfigError('config: SG_SOURCE must be api or neutron');
  if (source === 'api') {
    // Neutron's settings without its source would be ignored, and an empty store served.
    const { NEUTRON_ENV } = await import('../neutron/config.js');
    const set = NEUTRON_ENV.filter((n) => process.env[n] !== undefined);
    if (set.length) throw new ConfigError(`config: ${set.join(', ')} set but SG_SOURCE is not neutron`);
  }
  let stop: () => Promise<void>;
  if (source === 'neutron') {
    const [{ neutronSourceOptions }, { startNeutronMode }] = await Promise.all([
      import('../neutron/config.js'),
      import('../neutron/mode.js'),
    ]);
    const neutron = neutronSourceOptions(process.env);
    const mode = await startNeutronMode({ ...common, source: neutron });
    log.info({ http: mode.controller.httpAddress, source }, 'controller ready');
    stop = () => mode.stop();
  } else {
    const ctl = await Controller.start(common);
    log.info({ http: ctl.httpAddress, source }, 'controller ready');
    stop = () => ctl.stop();
  }
  const onSignal = () => {
    stop()
      .then(() => process.exit(0))
      .catch((e: unknown) => {
        log.error({ err: e }, 'stopping failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return new Promise<number>(() => undefined);
}

async function keygen(args: string[]): Promise<number> {
  const out = option(args, '--out');
  if (!out) {
    process.stderr.write('sg-controller keygen: --out DIR is required\n');
    return 2;
  }
  const { generateSigningKey } = await import('../protocol/signing.js');
  const k = generateSigningKey(out);
  console.log(
    `key id ${k.keyId}\nprivate key (controller only): ${k.privateKeyFile}\npublic key (agents' trustedKeys): ${k.publicKeyFile}`,
  );
  return 0;
}

async function brokerUser(args: string[]): Promise<number> {
  const [role, user] = args.filter((a, i) => !a.startsWith('--') && !['--host', '--vhost', '--node'].includes(args[i - 1] ?? ''));
  const node = option(args, '--node');
  const host = option(args, '--host');
  const vhost = option(args, '--vhost') ?? '/';
  if ((role !== 'controller' && role !== 'agent') || !user || (role === 'agent' && !host)) {
    process.stderr.write(`sg-controller broker-user: ROLE (controller | agent --host HOST) and USER are required\n${USAGE}`);
    return 2;
  }
  const { agentPermissions, controllerPermissions } = await import('../protocol/permissions.js');
  const p = role === 'agent' ? agentPermissions(host!) : controllerPermissions();
  if (args.includes('--print')) {
    console.log(`configure\t${p.configure}\nwrite\t${p.write}\nread\t${p.read}`);
    return 0;
  }
  const noPassword = args.includes('--no-password');
  if (!noPassword && !args.includes('--password-stdin')) {
    process.stderr.write(
      'sg-controller broker-user: give --password-stdin (the password on standard input) or --no-password (certificate login)\n',
    );
    return 2;
  }
  const { spawnSync } = await import('node:child_process');
  const ctl = (cmdArgs: string[], input?: string) => {
    const r = spawnSync('rabbitmqctl', [...(node ? ['-n', node] : []), ...cmdArgs], {
      encoding: 'utf8',
      ...(input !== undefined ? { input } : {}),
    });
    if (r.status !== 0) throw new Error(`rabbitmqctl ${cmdArgs[0]}: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
    return r.stdout;
  };
  const exists = ctl(['list_users', '--quiet', '--no-table-headers'])
    .split('\n')
    .some((l) => l.split('\t')[0] === user);
  if (!exists) {
    if (noPassword) {
      ctl(['add_user', user, '']);
    } else {
      // The password goes through rabbitmqctl's standard input, never its command line (visible in ps).
      const password = (
        await new Promise<string>((resolve, reject) => {
          let s = '';
          process.stdin
            .setEncoding('utf8')
            .on('data', (c: string) => (s += c))
            .on('end', () => resolve(s))
            .on('error', reject);
        })
      ).replace(/\r?\n$/, '');
      if (!password) throw new Error('empty password on standard input');
      ctl(['add_user', user], `${password}\n`);
    }
  }
  ctl(['set_permissions', '-p', vhost, user, p.configure, p.write, p.read]);
  console.log(
    `${exists ? 'kept' : 'created'} user ${user}; ${role} permissions on vhost ${vhost}:\n  configure ${p.configure}\n  write     ${p.write}\n  read      ${p.read}`,
  );
  return 0;
}

async function storeCommand(args: string[]): Promise<number> {
  const what = args.find((a, i) => !a.startsWith('--') && !['--config', '--file'].includes(args[i - 1] ?? ''));
  if (what !== 'export' && what !== 'import') throw new UsageError('store: export or import');
  const [{ loadControllerConfig }, { exportStore, importStore }] = await Promise.all([
    import('../controller/config.js'),
    import('../controller/store-transfer.js'),
  ]);
  // Neither the signing key nor the admin API is needed to move records.
  const env = { ...process.env, SG_SIGNING_KEY_FILE: process.env.SG_SIGNING_KEY_FILE || '-', SG_HTTP_LISTEN: '' };
  const cfg = loadControllerConfig(option(args, '--config'), env);
  const file = option(args, '--file');
  const said = what === 'export' ? await exportStore(cfg, file) : await importStore(cfg, file, args.includes('--force'));
  process.stderr.write(`sg-controller store ${what}: ${said}\n`);
  return 0;
}

const commands: Record<string, CommandSpec> = {
  run: { run, valued: ['--config'] },
  keygen: { run: keygen, valued: ['--out'] },
  store: { run: storeCommand, valued: ['--config', '--file'], flags: ['--force'], positional: 1 },
  'broker-user': {
    run: brokerUser,
    valued: ['--host', '--vhost', '--node'],
    flags: ['--password-stdin', '--no-password', '--print'],
    positional: 2,
  },
  version: {
    async run() {
      const { packageVersion } = await import('../package-version.js');
      console.log(`sg-controller ${packageVersion()}`);
      return 0;
    },
  },
  help: {
    async run() {
      process.stdout.write(USAGE);
      return 0;
    },
  },
};
const aliases: Record<string, string> = { '--version': 'version', '-V': 'version', '--help': 'help', '-h': 'help' };

async function main(argv: string[]): Promise<number> {
  // No command, or options only: run (as before subcommands existed).
  const [first, ...rest] = argv;
  const runsByDefault = first === undefined || (first.startsWith('--') && !(first in aliases));
  const cmd = runsByDefault ? commands.run! : commands[aliases[first] ?? first];
  if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(first)}`);
  const args = runsByDefault ? argv : rest;
  // `run --help` must never start the controller.
  if (wantsHelp(args)) return commands.help!.run([]);
  checkArgs(cmd, args);
  return cmd.run(args);
}

runCommandLine('sg-controller', USAGE, () => main(process.argv.slice(2)));
