// A read-only client of Neutron's REST API (v2.0): the lists the Neutron source needs, paginated,
// restricted to the fields it reads, and by id in chunks for targeted re-reads. Authentication is
// Keystone v3 password auth (a token, renewed before it expires or when refused, and the network
// endpoint from the catalog unless one is given) or none (`auth_strategy = noauth`, tests).
import type { NeutronAddressGroup, NeutronGroup, NeutronLog, NeutronPort, NeutronRule } from './translate.js';
import { FIELDS } from './translate.js';

export type NeutronAuth =
  | { kind: 'noauth' }
  | {
      kind: 'keystone';
      /** Keystone's URL, with or without the trailing /v3. */
      authUrl: string;
      username: string;
      password: string;
      userDomainName?: string;
      projectName?: string;
      projectDomainName?: string;
      /** Catalog filters when no endpoint is given. */
      region?: string;
      interface?: 'public' | 'internal' | 'admin';
    };

export interface NeutronApiOptions {
  /** Neutron's endpoint (e.g. http://controller:9696); with Keystone, found in the catalog if absent. */
  url?: string;
  auth: NeutronAuth;
  timeoutMs?: number;
  /** Items per page (Neutron's `limit`). */
  pageSize?: number;
}

export class NeutronApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'NeutronApiError';
  }
}

/** What a port must show for it to be placed. A field Neutron leaves out is one the account may not
 *  see (Neutron's policy hides `binding:host_id` from non-admins) or an extension that is off: read as
 *  empty it would unbind or empty every port, so the read fails instead and what is stored stays. */
const PORT_REQUIRED = ['mac_address', 'fixed_ips', 'security_groups', 'binding:host_id', 'device_owner'];

function required<T extends { id: string }>(items: T[], what: string, fields: string[]): T[] {
  for (const item of items) {
    const missing = fields.filter((f) => !(f in item));
    if (missing.length)
      throw new NeutronApiError(
        `Neutron shows ${what} ${item.id} without ${missing.join(', ')}: does the account have the admin role (docs/neutron.md)?`,
      );
  }
  return items;
}

/** Ids per targeted request: 40 UUIDs keep the URL near 2 KB, under every proxy's header limit. */
const IDS_PER_REQUEST = 40;

export class NeutronApi {
  /** Requests made (each page counts), for the source's statistics. */
  requests = 0;
  private token?: { value: string; expiresAt: number; endpoint?: string };
  private tokenPending?: Promise<{ value: string; endpoint?: string }>;

  constructor(private readonly opts: NeutronApiOptions) {}

  async securityGroups(ids?: string[], withRules = false): Promise<NeutronGroup[]> {
    return required(
      await this.list<NeutronGroup>('security-groups', 'security_groups', withRules ? FIELDS.groupWithRules : FIELDS.group, ids),
      'security group',
      withRules ? ['security_group_rules'] : [],
    );
  }

  async securityGroupRules(): Promise<NeutronRule[]> {
    return required(await this.list<NeutronRule>('security-group-rules', 'security_group_rules', FIELDS.rule), 'rule', [
      'security_group_id',
      'direction',
      'ethertype',
    ]);
  }

  async ports(ids?: string[]): Promise<NeutronPort[]> {
    return required(await this.list<NeutronPort>('ports', 'ports', FIELDS.port, ids), 'port', PORT_REQUIRED);
  }

  /** Id and revision of every port in a group (a cheap listing to find which ports changed). */
  async portRevisionsInGroup(groupId: string): Promise<{ id: string; revision_number?: number }[]> {
    return this.list('ports', 'ports', ['id', 'revision_number'], undefined, [['security_groups', groupId]]);
  }

  async addressGroups(ids?: string[]): Promise<NeutronAddressGroup[]> {
    return required(await this.list<NeutronAddressGroup>('address-groups', 'address_groups', FIELDS.addressGroup, ids), 'address group', [
      'addresses',
    ]);
  }

  /** Every log resource (the `log` service plugin's). A server without the plugin has no such
   *  collection (404): no logs. */
  async logs(): Promise<NeutronLog[]> {
    try {
      return await this.list<NeutronLog>('log/logs', 'logs', FIELDS.log);
    } catch (e) {
      if (e instanceof NeutronApiError && e.status === 404) return [];
      throw e;
    }
  }

  /** Every item of a collection (or those with the given ids), page by page. */
  private async list<T extends { id: string }>(
    path: string,
    key: string,
    fields: readonly string[],
    ids?: string[],
    filters: [string, string][] = [],
  ): Promise<T[]> {
    const base: [string, string][] = [...fields.map((f): [string, string] => ['fields', f]), ...filters];
    if (ids) {
      const out: T[] = [];
      for (let i = 0; i < ids.length; i += IDS_PER_REQUEST) {
        out.push(
          ...(await this.pages<T>(path, key, [...base, ...ids.slice(i, i + IDS_PER_REQUEST).map((id): [string, string] => ['id', id])])),
        );
      }
      return out;
    }
    return this.pages<T>(path, key, base);
  }

  /** Follows pages by marker (the last id of a page) while Neutron says there is a next one: the
   *  `next` link itself names the server as it sees itself, which behind a proxy may not be ours. */
  private async pages<T extends { id: string }>(path: string, key: string, query: [string, string][]): Promise<T[]> {
    const limit = this.opts.pageSize ?? 500;
    const out: T[] = [];
    let marker: string | undefined;
    for (;;) {
      const q = new URLSearchParams([...query, ['limit', String(limit)], ...(marker ? [['marker', marker] as [string, string]] : [])]);
      const body = await this.get(`${path}?${q}`);
      const items = body[key];
      if (!Array.isArray(items)) throw new NeutronApiError(`GET ${path}: no ${key} in the answer`);
      for (const item of items) {
        if (typeof item !== 'object' || item === null || typeof (item as { id?: unknown }).id !== 'string')
          throw new NeutronApiError(`GET ${path}: an item without an id`);
        out.push(item as T);
      }
      const links = body[`${key}_links`];
      const hasNext = Array.isArray(links) && links.some((l) => (l as { rel?: string }).rel === 'next');
      if (!hasNext || items.length === 0) return out;
      marker = (items[items.length - 1] as T).id;
    }
  }

  private async get(pathAndQuery: string): Promise<Record<string, unknown>> {
    for (let attempt = 0; ; attempt++) {
      const { token, endpoint } = await this.credentials();
      this.requests++;
      let r: Response;
      try {
        r = await fetch(`${neutronBase(endpoint)}/v2.0/${pathAndQuery}`, {
          headers: { accept: 'application/json', ...(token ? { 'x-auth-token': token } : {}) },
          signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
        });
      } catch (e) {
        throw new NeutronApiError(`GET ${pathAndQuery.split('?')[0]}: ${(e as Error).message}`);
      }
      // A token revoked or expired early: one fresh one, then give up.
      if (r.status === 401 && this.opts.auth.kind === 'keystone' && attempt === 0) {
        this.token = undefined;
        continue;
      }
      // A 404 for a whole collection is an endpoint that is not Neutron's (or a path prefix missing).
      const hint = r.status === 404 ? ` (asked ${neutronBase(endpoint)}/v2.0/: is that Neutron's endpoint?)` : '';
      if (!r.ok)
        throw new NeutronApiError(`GET ${pathAndQuery.split('?')[0]}: HTTP ${r.status}${hint} ${(await r.text()).slice(0, 200)}`, r.status);
      const body = (await r.json()) as unknown;
      if (typeof body !== 'object' || body === null) throw new NeutronApiError(`GET ${pathAndQuery.split('?')[0]}: not a JSON object`);
      return body as Record<string, unknown>;
    }
  }

  private async credentials(): Promise<{ token?: string; endpoint: string }> {
    const auth = this.opts.auth;
    if (auth.kind === 'noauth') {
      if (!this.opts.url) throw new NeutronApiError("noauth needs Neutron's URL");
      return { endpoint: this.opts.url };
    }
    // Renewed a minute before it expires, so a long paginated read does not straddle the expiry.
    if (!this.token || this.token.expiresAt - 60_000 < Date.now()) {
      this.tokenPending ??= issueToken(auth, this.opts.timeoutMs ?? 30_000)
        .then((t) => {
          this.token = t;
          return t;
        })
        .finally(() => {
          this.tokenPending = undefined;
        });
      await this.tokenPending;
    }
    const endpoint = this.opts.url ?? this.token!.endpoint;
    if (!endpoint)
      throw new NeutronApiError(
        `no network endpoint in the Keystone catalog (interface ${auth.interface ?? 'internal'}${auth.region ? `, region ${auth.region}` : ''})`,
      );
    return { token: this.token!.value, endpoint };
  }
}

/** Neutron's endpoint without its API version: given as `…/v2.0` (as some catalogs and copied URLs
 *  have it) it would be asked for `…/v2.0/v2.0/…`, a 404 on every read. */
function neutronBase(endpoint: string): string {
  return endpoint.replace(/\/+$/, '').replace(/\/v2\.0$/, '');
}

interface CatalogEntry {
  type?: string;
  endpoints?: { interface?: string; region?: string; region_id?: string; url?: string }[];
}

/** POST /v3/auth/tokens with a password, scoped to a project. */
export async function issueToken(
  auth: Extract<NeutronAuth, { kind: 'keystone' }>,
  timeoutMs: number,
): Promise<{ value: string; expiresAt: number; endpoint?: string }> {
  const url = `${auth.authUrl.replace(/\/+$/, '').replace(/\/v3$/, '')}/v3/auth/tokens`;
  const body = {
    auth: {
      identity: {
        methods: ['password'],
        password: { user: { name: auth.username, password: auth.password, domain: { name: auth.userDomainName ?? 'Default' } } },
      },
      ...(auth.projectName
        ? { scope: { project: { name: auth.projectName, domain: { name: auth.projectDomainName ?? 'Default' } } } }
        : {}),
    },
  };
  let r: Response;
  try {
    r = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new NeutronApiError(`Keystone: ${(e as Error).message}`);
  }
  // Never the body of a refusal in full: it may echo what was sent.
  if (r.status !== 201 && r.status !== 200) throw new NeutronApiError(`Keystone refused the credentials: HTTP ${r.status}`, r.status);
  const value = r.headers.get('x-subject-token');
  if (!value) throw new NeutronApiError('Keystone gave no token (no X-Subject-Token header)');
  const token = ((await r.json()) as { token?: { expires_at?: string; catalog?: CatalogEntry[] } }).token;
  const expiresAt = Date.parse(token?.expires_at ?? '') || Date.now() + 3_600_000;
  const wanted = auth.interface ?? 'internal';
  const endpoint = token?.catalog
    ?.find((c) => c.type === 'network')
    ?.endpoints?.find((e) => e.interface === wanted && (!auth.region || e.region === auth.region || e.region_id === auth.region))?.url;
  return { value, expiresAt, ...(endpoint ? { endpoint } : {}) };
}
