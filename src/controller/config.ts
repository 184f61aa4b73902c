// `sg-controller` configuration: a JSON file (`--config`, packaging/controller.example.json), then
// environment variables over it (docs/agent.md lists both). Everything a deployment must decide about
// trust is checked here, at start-up: the signing key, the admin API's token and TLS.
import fs from 'node:fs';
import { isIP } from 'node:net';
import { checkBrokerOptions, parseBrokerUrls, type BrokerTls } from '../protocol/connection.js';
import { readSecretFile } from '../protocol/signing.js';

export interface ControllerConfig {
  /** The broker: one URL, or several (the nodes of a cluster) separated by commas, tried in turn. */
  amqpUrl: string;
  amqpTls: BrokerTls;
  dataDir: string;
  /** Ed25519 private key (PKCS#8 PEM, mode 0600) that signs every update and sync reply. */
  signingKeyFile: string;
  http: HttpConfig;
  logLevel: string;
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

interface FileShape {
  amqp?: { url?: string; urls?: string[]; tls?: BrokerTls };
  dataDir?: string;
  signingKeyFile?: string;
  http?: { listen?: string; tokenFile?: string; tls?: { certFile?: string; keyFile?: string }; allowedHosts?: string[]; socketMode?: string | number };
  log?: { level?: string };
}

const truthy = (s: string) => /^(1|true|yes)$/i.test(s);

export function loadControllerConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): ControllerConfig {
  const f = (file ? JSON.parse(fs.readFileSync(file, 'utf8')) : {}) as FileShape;
  const tls: BrokerTls = { ...f.amqp?.tls };
  if (env.SG_AMQP_CA_FILE !== undefined) tls.caFile = env.SG_AMQP_CA_FILE;
  if (env.SG_AMQP_CERT_FILE !== undefined) tls.certFile = env.SG_AMQP_CERT_FILE;
  if (env.SG_AMQP_KEY_FILE !== undefined) tls.keyFile = env.SG_AMQP_KEY_FILE;
  if (env.SG_AMQP_EXTERNAL_AUTH !== undefined) tls.external = truthy(env.SG_AMQP_EXTERNAL_AUTH);
  const tokenFile = env.SG_HTTP_TOKEN_FILE ?? f.http?.tokenFile;
  const mode = env.SG_HTTP_SOCKET_MODE ?? f.http?.socketMode ?? '600';
  const cfg: ControllerConfig = {
    amqpUrl: env.SG_AMQP_URL ?? (f.amqp?.urls ? parseBrokerUrls(f.amqp.urls).join(',') : undefined) ?? f.amqp?.url ?? 'amqp://guest:guest@127.0.0.1:5672',
    amqpTls: tls,
    dataDir: env.SG_DATA_DIR ?? f.dataDir ?? 'sg-controller-data',
    signingKeyFile: env.SG_SIGNING_KEY_FILE ?? f.signingKeyFile ?? '',
    http: {
      listen: env.SG_HTTP_LISTEN ?? f.http?.listen ?? '127.0.0.1:9696',
      // A token in the environment wins over a file; a file keeps it out of `ps e` and /proc/PID/environ.
      token: env.SG_HTTP_TOKEN ?? (tokenFile ? readSecretFile(tokenFile, 'token file').toString('utf8').trim() : undefined),
      tlsCertFile: env.SG_HTTP_TLS_CERT_FILE ?? f.http?.tls?.certFile,
      tlsKeyFile: env.SG_HTTP_TLS_KEY_FILE ?? f.http?.tls?.keyFile,
      allowedHosts: env.SG_HTTP_ALLOWED_HOSTS !== undefined ? env.SG_HTTP_ALLOWED_HOSTS.split(',').map((h) => h.trim()).filter(Boolean) : (f.http?.allowedHosts ?? []),
      socketMode: typeof mode === 'number' ? mode : parseInt(mode, 8),
    },
    logLevel: env.SG_LOG_LEVEL ?? f.log?.level ?? 'info',
  };
  checkControllerConfig(cfg);
  return cfg;
}

function checkControllerConfig(cfg: ControllerConfig): void {
  checkBrokerOptions({ urls: parseBrokerUrls(cfg.amqpUrl), tls: cfg.amqpTls });
  if (!cfg.signingKeyFile) throw new Error('config: signingKeyFile (SG_SIGNING_KEY_FILE) is required; make one with `sg-controller keygen --out DIR`');
  const h = cfg.http;
  if (!h.listen) return;
  if (!!h.tlsCertFile !== !!h.tlsKeyFile) throw new Error('config: HTTPS needs both http.tls.certFile and http.tls.keyFile');
  if (h.token !== undefined && h.token.length < MIN_TOKEN_LENGTH) throw new Error(`config: the API token must be at least ${MIN_TOKEN_LENGTH} characters`);
  // What a bearer token may hold on the wire (RFC 6750 allows less; this is what the check accepts).
  if (h.token !== undefined && !/^[\x21-\x7e]+$/.test(h.token)) throw new Error('config: the API token must be printable ASCII without spaces');
  if (!Number.isInteger(h.socketMode) || h.socketMode < 0 || h.socketMode > 0o777) throw new Error('config: http.socketMode must be an octal file mode such as 600');
  if (h.listen.startsWith('unix:')) return;
  if (!h.token) throw new Error('config: an admin API on TCP requires a token (SG_HTTP_TOKEN_FILE or SG_HTTP_TOKEN); or listen on unix:/path');
  // As the admin API reads it: no host means loopback.
  const host = h.listen.slice(0, h.listen.lastIndexOf(':')).replace(/^\[|\]$/g, '') || '127.0.0.1';
  if (!h.tlsCertFile && !isLoopback(host)) throw new Error(`config: the admin API on ${host} (not loopback) requires TLS (http.tls.certFile, http.tls.keyFile): the token would travel in clear`);
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
