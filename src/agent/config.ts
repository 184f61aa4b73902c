// Agent configuration: a JSON file, then environment variables over it (documented in docs/agent.md).
import fs from 'node:fs';
import { parseBrokerUrls, type BrokerTls } from '../protocol/connection.js';
import type { DataplaneSetting } from '../firewall/select.js';

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
  /** host:port for /metrics and /status; '' turns the listener off. Loopback by default. */
  metricsListen: string;
  syncTimeoutMs: number;
  /** No longer used: the agent's queue is exclusive to its connection (docs/protocol.md). Still
   *  accepted so that existing configurations load. */
  queueExpiresMs: number;
  /** A full sync this often bounds the effect of any update lost on the way (0 = off). */
  fullSyncIntervalMs: number;
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
  metricsListen: '127.0.0.1:9464',
  syncTimeoutMs: 5_000,
  queueExpiresMs: 10 * 60_000,
  fullSyncIntervalMs: 5 * 60_000,
  logLevel: 'info',
};

const ENV: Record<string, keyof AgentConfig> = {
  SG_AGENT_HOST: 'host',
  SG_AMQP_URL: 'amqpUrl',
  SG_NETNS: 'netns',
  SG_PREFIX: 'prefix',
  SG_FIREWALL_MODE: 'mode',
  SG_DROP_UNKNOWN_DEVICES: 'dropUnknownDevices',
  SG_DATAPLANE: 'dataplane',
  SG_COALESCE_MS: 'coalesceMs',
  SG_STRUCTURE_INTERVAL_MS: 'structureIntervalMs',
  SG_STRUCTURE_INTERVAL_MAX_MS: 'structureIntervalMaxMs',
  SG_RECONCILE_INTERVAL_MS: 'reconcileIntervalMs',
  SG_METRICS_LISTEN: 'metricsListen',
  SG_SYNC_TIMEOUT_MS: 'syncTimeoutMs',
  SG_QUEUE_EXPIRES_MS: 'queueExpiresMs',
  SG_FULL_SYNC_INTERVAL_MS: 'fullSyncIntervalMs',
  SG_LOG_LEVEL: 'logLevel',
  SG_TRUSTED_KEYS: 'trustedKeys',
};
const TLS_ENV: Record<string, keyof BrokerTls> = {
  SG_AMQP_CA_FILE: 'caFile',
  SG_AMQP_CERT_FILE: 'certFile',
  SG_AMQP_KEY_FILE: 'keyFile',
  SG_AMQP_EXTERNAL_AUTH: 'external',
};
const NUMERIC = new Set<keyof AgentConfig>(['coalesceMs', 'structureIntervalMs', 'structureIntervalMaxMs', 'reconcileIntervalMs', 'syncTimeoutMs', 'queueExpiresMs', 'fullSyncIntervalMs']);

export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const fromFile = file ? (JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
  // The example config nests some keys; flatten the ones we know.
  const nested = {
    ...(fromFile.firewall as object | undefined),
    ...(fromFile.amqp ? { amqpUrl: (fromFile.amqp as { url?: string }).url, amqpUrls: (fromFile.amqp as { urls?: string[] }).urls, amqpTls: (fromFile.amqp as { tls?: BrokerTls }).tls ?? {} } : {}),
    ...(fromFile.metrics ? { metricsListen: (fromFile.metrics as { listen?: string }).listen } : {}),
    ...(fromFile.log ? { logLevel: (fromFile.log as { level?: string }).level } : {}),
  };
  const cfg: Record<string, unknown> = { ...DEFAULTS, ...fromFile, ...nested };
  for (const [k, key] of Object.entries(ENV)) if (env[k] !== undefined) cfg[key] = env[k];
  // The environment's URL (one or a comma-separated list) wins over the file's, list included.
  cfg.amqpUrls = parseBrokerUrls(env.SG_AMQP_URL ?? cfg.amqpUrls ?? cfg.amqpUrl);
  if (!cfg.amqpUrl) cfg.amqpUrl = (cfg.amqpUrls as string[]).join(',');
  const tls: Record<string, unknown> = { ...(cfg.amqpTls as object) };
  for (const [k, key] of Object.entries(TLS_ENV)) if (env[k] !== undefined) tls[key] = key === 'external' ? /^(1|true|yes)$/i.test(env[k]!) : env[k];
  cfg.amqpTls = tls;
  // A list in the file; comma-separated in the environment.
  if (typeof cfg.trustedKeys === 'string') cfg.trustedKeys = cfg.trustedKeys.split(',').map((p) => p.trim()).filter(Boolean);
  if (!Array.isArray(cfg.trustedKeys) || !cfg.trustedKeys.every((p) => typeof p === 'string')) throw new Error('config: trustedKeys must be a list of paths');
  for (const k of NUMERIC) {
    if (cfg[k] === undefined) continue;
    const n = Number(cfg[k]);
    if (!Number.isFinite(n) || n < 0) throw new Error(`config: ${k} must be a non-negative number`);
    cfg[k] = n;
  }
  if (typeof cfg.host !== 'string' || !cfg.host) throw new Error('config: host is required (or SG_AGENT_HOST)');
  if (typeof cfg.amqpUrl !== 'string' || (cfg.amqpUrls as string[]).length === 0) throw new Error('config: amqp url (or urls) is required (or SG_AMQP_URL)');
  if (cfg.mode !== 'bridged' && cfg.mode !== 'routed') throw new Error('config: mode must be bridged or routed');
  const drop = typeof cfg.dropUnknownDevices === 'string' ? cfg.dropUnknownDevices.split(',').filter(Boolean) : cfg.dropUnknownDevices;
  if (!Array.isArray(drop) || !drop.every((p) => typeof p === 'string' && /^[A-Za-z0-9_.-]{1,14}$/.test(p))) throw new Error('config: dropUnknownDevices must be interface-name prefixes (letters, digits, _ . -)');
  cfg.dropUnknownDevices = drop;
  if (!['iptables', 'nftables', 'auto'].includes(cfg.dataplane as string)) throw new Error('config: dataplane must be iptables, nftables or auto');
  return cfg as unknown as AgentConfig;
}
