// `sg-controller` configuration: a JSON file (`--config`, packaging/controller.example.json), then
// environment variables over it (docs/agent.md lists both), read strictly (src/settings.ts). Everything
// a deployment must decide about trust is checked here, at start-up: the signing key, the admin API's
// token and TLS.
import { isIP } from 'node:net';
import { BROKER_TLS_SETTINGS, brokerTlsFrom, checkBrokerOptions, parseBrokerUrls, type BrokerTls } from '../protocol/connection.js';
import { readSecretFile } from '../protocol/signing.js';
import { NEUTRON_ENV } from '../neutron/config.js';
import {
  ConfigError,
  LOG_LEVELS,
  oneOf,
  parseTcpListen,
  readConfiguredFile,
  readFromEnvElsewhere,
  readSettings,
  setting,
  TCP_LISTEN_FORM,
  type Section,
} from '../settings.js';

export interface ControllerConfig {
  /** The broker: one URL, or several (the nodes of a cluster) separated by commas, tried in turn. */
  amqpUrl: string;
  amqpTls: BrokerTls;
  dataDir: string;
  /** Ed25519 private key (PKCS#8 PEM, mode 0600) that signs every update and sync reply. */
  signingKeyFile: string;
  http: HttpConfig;
  store: StoreConfig;
  logLevel: string;
}

/** Where the controller's records live: LMDB in `dataDir` (one machine), or an etcd cluster. */
export type StoreConfig = { kind: 'lmdb' } | { kind: 'etcd'; etcd: EtcdConfig };

export interface EtcdConfig {
  endpoints: string[];
  prefix: string;
  /** PEM files: the CA of the members' certificates; this controller's client certificate and key. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
  leaseTtlS: number;
  requestTimeoutMs: number;
  maxTxnOps: number;
}

export interface HttpConfig {
  /** `host:port` (port 0 picks one), `unix:/path/to.sock`, or '' for no admin API. */
  listen: string;
  /** Bearer token every request but `GET /healthz` must carry; required on TCP. */
  token?: string;
  /** Server certificate and key (PEM): the API speaks HTTPS. Required on a non-loopback address. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** `Host:` header values accepted besides the listen address itself (a name clients use). */
  allowedHosts: string[];
  /** File mode of the Unix socket (default 0600: only the controller's user). */
  socketMode: number;
}

/** Shorter tokens are refused: the token is the API's only credential on TCP. */
export const MIN_TOKEN_LENGTH = 16;

const path = (env: string, to?: string) => setting('path', { env, ...(to ? { to } : {}) });

/** Every key the file may hold, and the variable over each (docs/agent.md lists them). */
const SHAPE: Section = {
  amqp: {
    // SG_AMQP_URL (one URL or a comma-separated list) wins over the file's url or urls.
    url: setting('string', { to: 'amqpUrl' }),
    urls: setting('strings', { to: 'amqpUrls' }),
    tls: BROKER_TLS_SETTINGS,
  },
  dataDir: path('SG_DATA_DIR'),
  signingKeyFile: path('SG_SIGNING_KEY_FILE'),
  http: {
    listen: setting('string', { env: 'SG_HTTP_LISTEN' }),
    tokenFile: path('SG_HTTP_TOKEN_FILE'),
    tls: { certFile: path('SG_HTTP_TLS_CERT_FILE', 'tlsCertFile'), keyFile: path('SG_HTTP_TLS_KEY_FILE', 'tlsKeyFile') },
    allowedHosts: setting('strings', { env: 'SG_HTTP_ALLOWED_HOSTS' }),
    socketMode: setting('string', {
      env: 'SG_HTTP_SOCKET_MODE',
      check: (v: string) => (/^0?[0-7]{3}$/.test(v) ? undefined : `must be an octal file mode such as "600", not ${JSON.stringify(v)}`),
    }),
  },
  log: { level: oneOf(LOG_LEVELS, { env: 'SG_LOG_LEVEL', to: 'logLevel' }) },
  store: {
    kind: oneOf(['lmdb', 'etcd'], { env: 'SG_STORE', to: 'storeKind' }),
    etcd: {
      endpoints: setting('strings', { env: 'SG_ETCD_ENDPOINTS', to: 'etcdEndpoints' }),
      prefix: setting('string', {
        env: 'SG_ETCD_PREFIX',
        to: 'etcdPrefix',
        check: (v: string) =>
          /^\/[\x21-\x7e]*\/$/.test(v) ? undefined : `must start and end with "/" (printable ASCII), not ${JSON.stringify(v)}`,
      }),
      tls: {
        caFile: path('SG_ETCD_CA_FILE', 'etcdCaFile'),
        certFile: path('SG_ETCD_CERT_FILE', 'etcdCertFile'),
        keyFile: path('SG_ETCD_KEY_FILE', 'etcdKeyFile'),
      },
      username: setting('string', { env: 'SG_ETCD_USERNAME', to: 'etcdUsername' }),
      passwordFile: path('SG_ETCD_PASSWORD_FILE', 'etcdPasswordFile'),
      leaseTtlS: setting('number', {
        env: 'SG_ETCD_LEASE_TTL_S',
        to: 'etcdLeaseTtlS',
        check: (v: number) => (Number.isInteger(v) && v >= 1 && v <= 60 ? undefined : `must be a whole number of seconds 1-60, not ${v}`),
      }),
      requestTimeoutMs: setting('ms', {
        env: 'SG_ETCD_REQUEST_TIMEOUT_MS',
        to: 'etcdRequestTimeoutMs',
        check: (v: number) => (v >= 100 ? undefined : `must be at least 100, not ${v}`),
      }),
      maxTxnOps: setting('number', {
        env: 'SG_ETCD_MAX_TXN_OPS',
        to: 'etcdMaxTxnOps',
        check: (v: number) =>
          Number.isInteger(v) && v >= 16 ? undefined : `must be a whole number of at least 16 (etcd's --max-txn-ops), not ${v}`,
      }),
    },
  },
};

/** The admin API's address unless configured: no OpenStack service's port (Neutron's is 9696). */
const DEFAULT_HTTP_LISTEN = '127.0.0.1:9797';

export function loadControllerConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): ControllerConfig {
  // Read by the command (which source) and by Neutron mode, beside this shape; and here, where the
  // environment wins over the file (the broker URL, and secrets that may come from a file instead).
  readFromEnvElsewhere('SG_SOURCE', ...NEUTRON_ENV, 'SG_AMQP_URL', 'SG_HTTP_TOKEN', 'SG_ETCD_PASSWORD');
  const { values: v } = readSettings(SHAPE, file, env);
  const str = (k: string) => v[k] as string | undefined;
  const tokenFile = str('tokenFile');
  const cfg: ControllerConfig = {
    amqpUrl:
      env.SG_AMQP_URL ??
      (v.amqpUrls ? parseBrokerUrls(v.amqpUrls).join(',') : undefined) ??
      str('amqpUrl') ??
      'amqp://guest:guest@127.0.0.1:5672',
    amqpTls: brokerTlsFrom(v),
    dataDir: str('dataDir') ?? 'sg-controller-data',
    signingKeyFile: str('signingKeyFile') ?? '',
    http: {
      listen: str('listen') ?? DEFAULT_HTTP_LISTEN,
      // A token in the environment wins over a file; a file keeps it out of `ps e` and /proc/PID/environ.
      token: env.SG_HTTP_TOKEN ?? (tokenFile ? readSecretFile(tokenFile, 'token file').toString('utf8').trim() : undefined),
      tlsCertFile: str('tlsCertFile'),
      tlsKeyFile: str('tlsKeyFile'),
      allowedHosts: ((v.allowedHosts as string[] | undefined) ?? []).map((h) => h.trim()).filter(Boolean),
      socketMode: parseInt(str('socketMode') ?? '600', 8),
    },
    store: storeConfig(v, env),
    logLevel: str('logLevel') ?? 'info',
  };
  checkControllerConfig(cfg);
  return cfg;
}

function storeConfig(v: Record<string, unknown>, env: NodeJS.ProcessEnv): StoreConfig {
  const str = (k: string) => v[k] as string | undefined;
  const etcdKeys = Object.keys(v).filter((k) => k.startsWith('etcd'));
  if ((str('storeKind') ?? 'lmdb') === 'lmdb') {
    if (etcdKeys.length) {
      const keys = etcdKeys.join(', ');
      throw new ConfigError(`config: etcd settings (${keys}) are given but the store is lmdb; set store.kind (SG_STORE) to etcd`);
    }
    return { kind: 'lmdb' };
  }
  const endpoints = (v.etcdEndpoints as string[] | undefined) ?? [];
  if (endpoints.length === 0) {
    throw new ConfigError("config: the etcd store needs its members' client URLs: store.etcd.endpoints (SG_ETCD_ENDPOINTS)");
  }
  for (const e of endpoints) {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      throw new ConfigError(`config: etcd endpoint ${JSON.stringify(e)} is not a URL (http://host:2379 or https://host:2379)`);
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.port || u.pathname !== '/' || u.username || u.password) {
      throw new ConfigError(`config: etcd endpoint ${JSON.stringify(e)} must be http(s)://host:port`);
    }
  }
  const https = endpoints.filter((e) => e.startsWith('https:')).length;
  if (https && https < endpoints.length) throw new ConfigError('config: the etcd endpoints must all be https:// or all http://');
  const tls = { caFile: str('etcdCaFile'), certFile: str('etcdCertFile'), keyFile: str('etcdKeyFile') };
  if (https && !tls.caFile) {
    throw new ConfigError("config: https etcd endpoints need the CA of the members' certificates: store.etcd.tls.caFile (SG_ETCD_CA_FILE)");
  }
  if (!https && (tls.caFile || tls.certFile || tls.keyFile)) {
    throw new ConfigError('config: etcd TLS files are given but the endpoints are http://; use https://');
  }
  if (!!tls.certFile !== !!tls.keyFile) {
    throw new ConfigError('config: an etcd client certificate needs both store.etcd.tls.certFile and store.etcd.tls.keyFile');
  }
  const passwordFile = str('etcdPasswordFile');
  const fromFile = () =>
    readSecretFile(passwordFile!, 'etcd password file')
      .toString('utf8')
      .replace(/\r?\n$/, '');
  const password = env.SG_ETCD_PASSWORD ?? (passwordFile ? fromFile() : undefined);
  const username = str('etcdUsername');
  if (!!username !== (password !== undefined)) {
    throw new ConfigError(
      'config: etcd authentication needs both store.etcd.username (SG_ETCD_USERNAME) and a password ' +
        '(SG_ETCD_PASSWORD_FILE or SG_ETCD_PASSWORD)',
    );
  }
  if (username && !https && endpoints.some((e) => !isLoopback(new URL(e).hostname.replace(/^\[|\]$/g, '')))) {
    throw new ConfigError('config: an etcd password would travel in clear to a member not on loopback: use https:// endpoints');
  }
  return {
    kind: 'etcd',
    etcd: {
      endpoints,
      prefix: str('etcdPrefix') ?? '/sg-controller/',
      ...(tls.caFile ? { caFile: tls.caFile } : {}),
      ...(tls.certFile ? { certFile: tls.certFile, keyFile: tls.keyFile! } : {}),
      ...(username ? { username, password: password! } : {}),
      leaseTtlS: (v.etcdLeaseTtlS as number | undefined) ?? 2,
      requestTimeoutMs: (v.etcdRequestTimeoutMs as number | undefined) ?? 2_000,
      maxTxnOps: (v.etcdMaxTxnOps as number | undefined) ?? 128,
    },
  };
}

function clientCertificate(c: EtcdConfig): { cert?: Buffer; key?: Buffer } {
  if (!c.certFile) return {};
  return { cert: readConfiguredFile(c.certFile, 'store.etcd.tls.certFile'), key: readSecretFile(c.keyFile!, 'store.etcd.tls.keyFile') };
}

/** The controller's store options from the configuration (files read here: a missing one is one line). */
export function etcdStoreOptions(c: EtcdConfig): NonNullable<import('./controller.js').ControllerOptions['etcd']> {
  return {
    endpoints: c.endpoints,
    prefix: c.prefix,
    ...(c.caFile ? { tls: { ca: readConfiguredFile(c.caFile, 'store.etcd.tls.caFile'), ...clientCertificate(c) } } : {}),
    ...(c.username ? { auth: { username: c.username, password: c.password! } } : {}),
    leaseTtlS: c.leaseTtlS,
    requestTimeoutMs: c.requestTimeoutMs,
    maxTxnOps: c.maxTxnOps,
  };
}

function checkControllerConfig(cfg: ControllerConfig): void {
  checkBrokerOptions({ urls: parseBrokerUrls(cfg.amqpUrl), tls: cfg.amqpTls });
  if (!cfg.signingKeyFile)
    throw new ConfigError('config: signingKeyFile (SG_SIGNING_KEY_FILE) is required; make one with `sg-controller keygen --out DIR`');
  const h = cfg.http;
  if (!h.listen) return;
  if (!!h.tlsCertFile !== !!h.tlsKeyFile) throw new ConfigError('config: HTTPS needs both http.tls.certFile and http.tls.keyFile');
  if (h.token !== undefined && h.token.length < MIN_TOKEN_LENGTH)
    throw new ConfigError(`config: the API token must be at least ${MIN_TOKEN_LENGTH} characters`);
  // What a bearer token may hold on the wire (RFC 6750 allows less; this is what the check accepts).
  if (h.token !== undefined && !/^[\x21-\x7e]+$/.test(h.token))
    throw new ConfigError('config: the API token must be printable ASCII without spaces');
  if (h.listen.startsWith('unix:')) {
    if (h.listen.length === 'unix:'.length) throw new ConfigError('config: http.listen unix: names no socket path (unix:/path)');
    return;
  }
  const at = parseTcpListen(h.listen);
  if (!at) throw new ConfigError(`config: http.listen must be ${TCP_LISTEN_FORM} or unix:/path, not ${JSON.stringify(h.listen)}`);
  if (!h.token)
    throw new ConfigError('config: an admin API on TCP requires a token (SG_HTTP_TOKEN_FILE or SG_HTTP_TOKEN); or listen on unix:/path');
  const host = at.host;
  if (!h.tlsCertFile && !isLoopback(host))
    throw new ConfigError(
      `config: the admin API on ${host} (not loopback) requires TLS (http.tls.certFile, http.tls.keyFile): the token would travel in clear`,
    );
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
