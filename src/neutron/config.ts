// sg-controller's Neutron mode, configured by environment (docs/neutron.md): where Neutron's API and
// broker are, how to authenticate, how devices are named on the hosts.
import type { NeutronAuth } from './api.js';
import type { NeutronSourceOptions } from './source.js';
import { NEUTRON_DEVICE_NAMING } from './translate.js';
import { brokerUrls } from './listener.js';
import { ConfigError } from '../settings.js';

export { ConfigError };

/** The variables Neutron mode reads (below), for the controller's check of misspelt ones. */
export const NEUTRON_ENV = [
  'SG_NEUTRON_AUTH',
  'SG_NEUTRON_URL',
  'SG_NEUTRON_TRANSPORT_URL',
  'SG_NEUTRON_DEVICE_PREFIX',
  'SG_NEUTRON_DEVICE_LENGTH',
  'SG_NEUTRON_TIMEOUT_MS',
  'SG_NEUTRON_RESYNC_INTERVAL_MS',
] as const;

function int(env: NodeJS.ProcessEnv, name: string, dflt: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  // Digits only, as every other number setting reads them: not `0x10`, `1e4` or a blank (which
  // Number() takes for 16, 10000 and 0).
  const n = /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= min && n <= max)) throw new ConfigError(`${name} must be a whole number ${min}-${max}, not ${JSON.stringify(raw)}`);
  return n;
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** Keystone v3 password auth from the variables the OpenStack clients use (OS_AUTH_URL, ...), or
 *  noauth for a server run with `auth_strategy = noauth` (SG_NEUTRON_AUTH=noauth). */
export function neutronAuth(env: NodeJS.ProcessEnv): NeutronAuth {
  const kind = env.SG_NEUTRON_AUTH ?? (env.OS_AUTH_URL ? 'keystone' : 'noauth');
  if (kind === 'noauth') return { kind: 'noauth' };
  if (kind !== 'keystone') throw new ConfigError('SG_NEUTRON_AUTH must be keystone or noauth');
  const need = (n: string) => {
    const v = env[n];
    if (!v) throw new ConfigError(`Keystone auth needs ${n}`);
    return v;
  };
  const iface = env.OS_INTERFACE ?? env.OS_ENDPOINT_TYPE?.replace(/URL$/, '');
  if (iface !== undefined && !['public', 'internal', 'admin'].includes(iface))
    throw new ConfigError('OS_INTERFACE must be public, internal or admin');
  return {
    kind: 'keystone',
    authUrl: need('OS_AUTH_URL'),
    username: need('OS_USERNAME'),
    password: need('OS_PASSWORD'),
    userDomainName: env.OS_USER_DOMAIN_NAME ?? 'Default',
    projectName: need('OS_PROJECT_NAME'),
    projectDomainName: env.OS_PROJECT_DOMAIN_NAME ?? 'Default',
    ...(env.OS_REGION_NAME ? { region: env.OS_REGION_NAME } : {}),
    ...(iface ? { interface: iface as 'public' | 'internal' | 'admin' } : {}),
  };
}

export function neutronSourceOptions(env: NodeJS.ProcessEnv = process.env): NeutronSourceOptions {
  const auth = neutronAuth(env);
  const url = env.SG_NEUTRON_URL;
  if (!url && auth.kind === 'noauth') throw new ConfigError('SG_NEUTRON_URL is required with noauth');
  if (url !== undefined && !isHttpUrl(url))
    throw new ConfigError(`SG_NEUTRON_URL must be an http:// or https:// URL, not ${JSON.stringify(url)}`);
  const brokerUrl = env.SG_NEUTRON_TRANSPORT_URL;
  if (!brokerUrl)
    throw new ConfigError("SG_NEUTRON_TRANSPORT_URL (Neutron's transport_url, for a broker user of sg-controller) is required");
  try {
    brokerUrls(brokerUrl);
  } catch (e) {
    throw new ConfigError(`SG_NEUTRON_TRANSPORT_URL: ${(e as Error).message}`);
  }
  const prefix = env.SG_NEUTRON_DEVICE_PREFIX ?? NEUTRON_DEVICE_NAMING.prefix;
  if (!/^[A-Za-z][A-Za-z0-9_.-]{0,9}$/.test(prefix))
    throw new ConfigError('SG_NEUTRON_DEVICE_PREFIX must be 1-10 characters of an interface name');
  const length = int(env, 'SG_NEUTRON_DEVICE_LENGTH', NEUTRON_DEVICE_NAMING.length, prefix.length + 8, 15);
  return {
    api: { ...(url ? { url } : {}), auth, timeoutMs: int(env, 'SG_NEUTRON_TIMEOUT_MS', 30_000, 1_000, 600_000) },
    brokerUrl,
    naming: { prefix, length },
    resyncIntervalMs: int(env, 'SG_NEUTRON_RESYNC_INTERVAL_MS', 600_000, 0, 86_400_000),
  };
}
