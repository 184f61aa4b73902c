// Agent configuration: a JSON file, then environment variables over it (documented in docs/agent.md),
// read strictly (src/settings.ts): an unknown key or a value of the wrong type stops start-up.
import { BROKER_TLS_SETTINGS, brokerTlsFrom, parseBrokerUrls, type BrokerTls } from '../protocol/connection.js';
import type { DataplaneSetting } from '../firewall/select.js';
import { validatePrefix } from '../firewall/iptables/names.js';
import { DEFAULT_MARK_BIT, MARK_BITS } from '../firewall/iptables/render.js';
import {
  ConfigError,
  LOG_LEVELS,
  oneOf,
  parseTcpListen,
  readFromEnvElsewhere,
  readSettings,
  setting,
  TCP_LISTEN_FORM,
  type Section,
} from '../settings.js';

export interface AgentConfig {
  /** This host's name as the control plane binds ports to it. */
  host: string;
  /** The broker: one URL, or several (the nodes of a cluster) separated by commas, tried in turn. */
  amqpUrl: string;
  /** The brokers as a list (file: `amqp.urls`); when set, it is used instead of `amqpUrl`. */
  amqpUrls?: string[];
  /** TLS towards the broker (amqps:// URLs): CA, client certificate and key files, EXTERNAL auth. */
  amqpTls: BrokerTls;
  /** Public keys (PEM files, or directories of `*.pub`/`*.pem`) whose signatures the agent accepts:
   *  the controllers'. Updates and sync replies signed by no key here are refused. */
  trustedKeys: string[];
  /** Network namespace to enforce in (path); default: the agent's own. */
  netns?: string;
  prefix: string;
  mode: 'bridged' | 'routed';
  /** Interface-name prefixes of VM ports (Neutron: `tap`) whose devices the agent does not know are
   *  dropped rather than passed; empty: none. */
  dropUnknownDevices: string[];
  /** The firewall backend: iptables (with ipsets), nftables, or auto (nftables where the kernel can
   *  do all it needs, else iptables; the choice and why are logged at start). */
  dataplane: DataplaneSetting;
  coalesceMs: number;
  /** Least time between two chain rewrites; bindings in a burst share one (see docs/firewall.md).
   *  Unset: the backend's own (iptables 500 ms, nftables 0). */
  structureIntervalMs?: number;
  /** In a sustained burst the gap doubles per rewrite up to this; a quiet spell resets it. */
  structureIntervalMaxMs: number;
  reconcileIntervalMs: number;
  /** Name prefixes of the bridges whose traffic conntrack tracks in a zone of each bridge's own
   *  (bridged mode); empty: none, every bridge shares the host's table. */
  conntrackZoneBridges: string[];
  /** The iptables backend's bit of the packet mark (0-15): frames to a stateless port, from ebtables
   *  to raw PREROUTING (bridged mode). */
  iptablesMarkBit: number;
  /** host:port for /metrics and /status; '' turns the listener off. Loopback by default. */
  metricsListen: string;
  /** Export each port's per-rule packet and byte counts on /metrics (a series per rule and port). */
  ruleCounters: boolean;
  syncTimeoutMs: number;
  /** No longer used: the agent's queue is exclusive to its connection (docs/protocol.md). Still
   *  accepted so that existing configurations load. */
  queueExpiresMs: number;
  /** A full sync this often bounds the effect of any update lost on the way (0 = off). */
  fullSyncIntervalMs: number;
  /** Security-group logging (Neutron's logging API) on this host: the logging rules and the reader. */
  networkLog: boolean;
  /** The NFLOG group the logging rules send to (the agent binds it in its namespace). */
  networkLogGroup: number;
  /** Neutron's [network_log] rate_limit and burst_limit: lines a second, and at once, at most. */
  networkLogRateLimit: number;
  networkLogBurstLimit: number;
  /** Neutron's [network_log] local_output_log_base: the file the lines go to (unset: the agent's log). */
  networkLogFile?: string;
  logLevel: string;
}

const DEFAULTS: Omit<AgentConfig, 'host' | 'amqpUrl'> = {
  amqpTls: {},
  trustedKeys: [],
  prefix: 'sg',
  mode: 'bridged',
  dropUnknownDevices: [],
  dataplane: 'iptables',
  coalesceMs: 20,
  structureIntervalMaxMs: 2_000,
  reconcileIntervalMs: 5_000,
  iptablesMarkBit: DEFAULT_MARK_BIT,
  conntrackZoneBridges: [],
  metricsListen: '127.0.0.1:9464',
  ruleCounters: false,
  syncTimeoutMs: 5_000,
  queueExpiresMs: 10 * 60_000,
  fullSyncIntervalMs: 5 * 60_000,
  networkLog: false,
  networkLogGroup: 1913,
  networkLogRateLimit: 100,
  networkLogBurstLimit: 25,
  logLevel: 'info',
};

const ms = (env: string, check?: (v: number) => string | undefined) => setting('ms', { env, ...(check ? { check } : {}) });
const dataplane = oneOf(['iptables', 'nftables', 'auto'], { env: 'SG_DATAPLANE' });

/** Every key the file may hold, and the variable over each (docs/agent.md lists them). */
/** The most iptables' limit match takes, as a rate a second and as a burst: refused at start-up, not
 *  by iptables-restore at the first apply (on both backends, so that switching backends keeps a
 *  configuration that works). */
const LIMIT_MATCH_MAX = 10_000;

const SHAPE: Section = {
  host: setting('string', { env: 'SG_AGENT_HOST' }),
  // SG_AMQP_URL (one URL or a comma-separated list) wins over the file's url or urls: loadConfig.
  amqpUrl: setting('string'),
  amqp: {
    url: setting('string', { to: 'amqpUrl' }),
    urls: setting('strings', { to: 'amqpUrls' }),
    tls: BROKER_TLS_SETTINGS,
  },
  trustedKeys: setting('paths', { env: 'SG_TRUSTED_KEYS' }),
  netns: setting('string', { env: 'SG_NETNS' }),
  dataplane,
  dropUnknownDevices: setting('strings', { env: 'SG_DROP_UNKNOWN_DEVICES', check: checkIfnamePrefixes }),
  firewall: {
    prefix: setting('string', { env: 'SG_PREFIX', check: (v: string) => checked(() => validatePrefix(v)) }),
    mode: oneOf(['bridged', 'routed'], { env: 'SG_FIREWALL_MODE' }),
    dataplane,
    coalesceMs: ms('SG_COALESCE_MS'),
    structureIntervalMs: ms('SG_STRUCTURE_INTERVAL_MS'),
    structureIntervalMaxMs: ms('SG_STRUCTURE_INTERVAL_MAX_MS'),
    reconcileIntervalMs: ms('SG_RECONCILE_INTERVAL_MS'),
    iptablesMarkBit: setting('number', { env: 'SG_IPTABLES_MARK_BIT', check: between(MARK_BITS.min, MARK_BITS.max) }),
    conntrackZoneBridges: setting('strings', { env: 'SG_CONNTRACK_ZONE_BRIDGES', check: checkIfnamePrefixes }),
  },
  metrics: {
    listen: setting('string', { env: 'SG_METRICS_LISTEN', to: 'metricsListen', check: checkListen }),
    ruleCounters: setting('boolean', { env: 'SG_METRICS_RULE_COUNTERS', to: 'ruleCounters' }),
  },
  // A sync request expires in the broker after this: 0 would expire every one at once.
  syncTimeoutMs: ms('SG_SYNC_TIMEOUT_MS', (v) => (v >= 100 ? undefined : `must be at least 100, not ${v}`)),
  queueExpiresMs: ms('SG_QUEUE_EXPIRES_MS'),
  fullSyncIntervalMs: ms('SG_FULL_SYNC_INTERVAL_MS'),
  log: { level: oneOf(LOG_LEVELS, { env: 'SG_LOG_LEVEL', to: 'logLevel' }) },
  // Neutron's [network_log] options, with its minimums.
  networkLog: {
    enabled: setting('boolean', { env: 'SG_NETWORK_LOG', to: 'networkLog' }),
    group: setting('number', { env: 'SG_NETWORK_LOG_GROUP', to: 'networkLogGroup', check: between(0, 65535) }),
    rateLimit: setting('number', { env: 'SG_NETWORK_LOG_RATE_LIMIT', to: 'networkLogRateLimit', check: between(100, LIMIT_MATCH_MAX) }),
    burstLimit: setting('number', { env: 'SG_NETWORK_LOG_BURST_LIMIT', to: 'networkLogBurstLimit', check: between(25, LIMIT_MATCH_MAX) }),
    localOutputLogBase: setting('path', { env: 'SG_NETWORK_LOG_FILE', to: 'networkLogFile' }),
  },
};

function checkIfnamePrefixes(v: string[]): string | undefined {
  return v.every((p) => /^[A-Za-z0-9_.-]{1,14}$/.test(p)) ? undefined : 'must be interface-name prefixes (letters, digits, _ . -)';
}

/** A whole number from `min` (Neutron's minimum of the same option) to `max`. */
function between(min: number, max: number): (v: number) => string | undefined {
  return (v) => (Number.isInteger(v) && v >= min && v <= max ? undefined : `must be a whole number from ${min} to ${max}`);
}

function checked(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return `is refused: ${(e as Error).message}`;
  }
}

/** A TCP address, or empty for no listener. */
function checkListen(v: string): string | undefined {
  if (v === '' || parseTcpListen(v)) return undefined;
  return `must be ${TCP_LISTEN_FORM} (or empty: no listener), not ${JSON.stringify(v)}`;
}

export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  // Read here, beside the shape (it may hold a list): the typo check must know it.
  readFromEnvElsewhere('SG_AMQP_URL');
  const { values: v, from } = readSettings(SHAPE, file, env);
  if (v.amqpUrl !== undefined && v.amqpUrls !== undefined)
    throw new ConfigError(`config: ${from.amqpUrl} and ${from.amqpUrls} both name the brokers; keep one`);
  const [min, max] = [v.structureIntervalMs as number | undefined, v.structureIntervalMaxMs as number | undefined];
  if (min !== undefined && max !== undefined && max < min)
    throw new ConfigError(`config: ${from.structureIntervalMaxMs} (${max}) is below ${from.structureIntervalMs} (${min})`);
  // The environment's URL (one or a comma-separated list) wins over the file's, list included.
  const amqpUrls = parseBrokerUrls(env.SG_AMQP_URL ?? v.amqpUrls ?? v.amqpUrl);
  const cfg = {
    ...DEFAULTS,
    ...Object.fromEntries(Object.entries(v).filter(([k]) => !k.startsWith('amqpTls.'))),
    amqpTls: brokerTlsFrom(v),
    amqpUrls,
  } as Record<string, unknown>;
  cfg.amqpUrl = env.SG_AMQP_URL ?? (typeof v.amqpUrl === 'string' ? v.amqpUrl : amqpUrls.join(','));
  if ((cfg.conntrackZoneBridges as string[]).length && cfg.mode !== 'bridged')
    throw new ConfigError(`config: ${from.conntrackZoneBridges} needs bridged mode (a routed port has no bridge)`);
  if (!cfg.host) throw new ConfigError('config: host is required (or SG_AGENT_HOST)');
  if (amqpUrls.length === 0) throw new ConfigError('config: amqp url (or urls) is required (or SG_AMQP_URL)');
  return cfg as unknown as AgentConfig;
}
