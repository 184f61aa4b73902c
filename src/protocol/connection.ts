// Opening a broker connection, the same way for agent and controller: heartbeats, a connect timeout,
// a name the broker shows (and `rabbitmqctl close_connection` can target), and TLS with a client
// certificate when configured (amqps:// only: a certificate over a plain connection would be a
// configuration mistake that leaks nothing but protects nothing either). A deployment may list several
// brokers (the nodes of one cluster): each connection attempt goes through them in turn.
import amqp, { type ChannelModel } from 'amqplib';
import fs from 'node:fs';
import { ConfigError, describeFsError, setting, type Section } from '../settings.js';

export interface BrokerTls {
  /** CA bundle the broker's certificate must chain to (PEM); default: the system's CAs. */
  caFile?: string;
  /** This client's certificate and key (PEM), for brokers that require peer verification. */
  certFile?: string;
  keyFile?: string;
  /** Authenticate with the certificate itself (SASL EXTERNAL, RabbitMQ's rabbitmq_auth_mechanism_ssl)
   *  instead of the URL's user and password. */
  external?: boolean;
}

export interface BrokerConnectOptions {
  url: string;
  tls?: BrokerTls;
  /** Shown by the broker as the connection's name. */
  name: string;
  /** Seconds; the URL may set its own (`?heartbeat=`). */
  heartbeat?: number;
}

const CONNECT_TIMEOUT_MS = 10_000;

/** The broker URLs of a setting: a list, or one string with URLs separated by commas (how the
 *  environment gives them). Empty entries are ignored. */
export function parseBrokerUrls(v: unknown): string[] {
  const list = typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v : [];
  if (!list.every((u) => typeof u === 'string')) throw new ConfigError('config: broker URLs must be strings');
  return list.map((u) => u.trim()).filter(Boolean);
}

/** `amqp.tls` in a configuration file and its variables, the same for agent and controller. */
export const BROKER_TLS_SETTINGS: Section = {
  caFile: setting('path', { env: 'SG_AMQP_CA_FILE', to: 'amqpTls.caFile' }),
  certFile: setting('path', { env: 'SG_AMQP_CERT_FILE', to: 'amqpTls.certFile' }),
  keyFile: setting('path', { env: 'SG_AMQP_KEY_FILE', to: 'amqpTls.keyFile' }),
  external: setting('boolean', { env: 'SG_AMQP_EXTERNAL_AUTH', to: 'amqpTls.external' }),
};

/** The broker TLS options among what `BROKER_TLS_SETTINGS` read (src/settings.ts). */
export function brokerTlsFrom(values: Record<string, unknown>): BrokerTls {
  const tls: Record<string, unknown> = {};
  for (const k of ['caFile', 'certFile', 'keyFile', 'external']) if (values[`amqpTls.${k}`] !== undefined) tls[k] = values[`amqpTls.${k}`];
  return tls;
}

/** Checks the options once, at configuration time, so that a mistake stops start-up, not each retry. */
export function checkBrokerOptions(o: { urls: string[]; tls?: BrokerTls }): void {
  if (o.urls.length === 0) throw new ConfigError('config: no broker URL');
  const t = o.tls ?? {};
  const anyTls = t.caFile || t.certFile || t.keyFile || t.external;
  for (const url of o.urls) {
    let protocol: string;
    try {
      protocol = new URL(url).protocol;
    } catch {
      throw new ConfigError('config: a broker URL is not a URL');
    }
    if (protocol !== 'amqp:' && protocol !== 'amqps:') throw new ConfigError('config: the broker URL must be amqp:// or amqps://');
    if (anyTls && protocol !== 'amqps:') throw new ConfigError('config: TLS files are set but the broker URL is not amqps://');
  }
  if (!!t.certFile !== !!t.keyFile) throw new ConfigError('config: a client certificate needs both its cert and key file');
  if (t.external && !t.certFile) throw new ConfigError('config: EXTERNAL authentication needs a client certificate');
  for (const [what, f] of [
    ['CA file', t.caFile],
    ['certificate file', t.certFile],
    ['key file', t.keyFile],
  ] as const) {
    if (!f) continue;
    try {
      fs.accessSync(f, fs.constants.R_OK);
    } catch (e) {
      throw new ConfigError(`config: the broker TLS ${what} ${f}: ${describeFsError(e)}`);
    }
  }
}

export function connectBroker(o: BrokerConnectOptions): Promise<ChannelModel> {
  const url = /[?&]heartbeat=/.test(o.url) ? o.url : `${o.url}${o.url.includes('?') ? '&' : '?'}heartbeat=${o.heartbeat ?? 5}`;
  const t = o.tls ?? {};
  // Files are read at each connect, so a renewed certificate is used from the next reconnect on.
  const socket: Record<string, unknown> = {
    timeout: CONNECT_TIMEOUT_MS,
    clientProperties: { connection_name: o.name },
    ...(t.caFile ? { ca: [fs.readFileSync(t.caFile)] } : {}),
    ...(t.certFile ? { cert: fs.readFileSync(t.certFile) } : {}),
    ...(t.keyFile ? { key: fs.readFileSync(t.keyFile) } : {}),
    ...(t.external ? { credentials: amqp.credentials.external() } : {}),
  };
  return amqp.connect(url, socket);
}

/**
 * Several brokers (the nodes of a cluster), tried in turn: each attempt goes to the next URL after the
 * one that failed or whose connection was lost, so a node that is down costs one refused connection
 * per round, not a whole backoff. The first URL tried is picked at random, which spreads a fleet of
 * clients over the nodes instead of piling them all on the first one listed.
 */
export class BrokerUrls {
  readonly urls: string[];
  /** Index of the URL of the latest successful connection (-1: none yet). */
  current = -1;
  private next: number;

  /** `urls`: a list, or URLs separated by commas. */
  constructor(urls: string | string[]) {
    this.urls = parseBrokerUrls(urls);
    if (this.urls.length === 0) throw new ConfigError('config: no broker URL');
    this.next = Math.floor(Math.random() * this.urls.length);
  }

  /** One round: connects to the first URL, in turn from the next one, that accepts; throws the last
   *  error when none does. */
  async connect(o: Omit<BrokerConnectOptions, 'url'>): Promise<ChannelModel> {
    let last: unknown;
    for (let i = 0; i < this.urls.length; i++) {
      const index = this.next;
      this.next = (index + 1) % this.urls.length;
      try {
        const conn = await connectBroker({ ...o, url: this.urls[index]! });
        this.current = index;
        return conn;
      } catch (e) {
        last = e;
      }
    }
    throw last;
  }

  /** The URL connected to, without its credentials (for logs). */
  shown(): string {
    const u = this.urls[this.current];
    if (!u) return '';
    const p = new URL(u);
    return `${p.protocol}//${p.host}${p.pathname}`;
  }
}

/** Exponential backoff with jitter (×0.5–1.5): the delay before retry number `attempt` (from 0). The
 *  jitter keeps a fleet of agents that lost the broker together from coming back in lockstep. */
export function retryDelay(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30)) * (0.5 + Math.random());
}

/**
 * Closes a channel or connection without waiting for it. amqplib settles a close only when the broker
 * answers it: a connection lost while a close is under way (the broker dropping it for missed
 * heartbeats) leaves that close unsettled forever, and whatever awaited it (a session start, a
 * reconnect loop) would never go on, disconnected for good. Used wherever nothing needs the close
 * done: the channels of a connection end with it, and a probe channel's close needs no answer
 * before the next step.
 */
export function closeUnawaited(x: { close(): Promise<void> }): void {
  x.close().catch(() => undefined);
}

/** Closes and waits for the broker's answer, at most `ms` (see `closeUnawaited`): a stop that lets a
 *  close finish when it can (buffered publishes written, consumers cancelled) and still ends when the
 *  broker is gone. */
export async function closeWithin(x: { close(): Promise<void> }, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    x.close().catch(() => undefined),
    new Promise<void>((r) => {
      timer = setTimeout(r, ms);
    }),
  ]);
  clearTimeout(timer);
}
