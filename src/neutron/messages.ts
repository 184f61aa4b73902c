// What neutron-server publishes for its agents, read as hints: which objects changed. Two families,
// both sent by a stock ML2/openvswitch server with no agent needing to ask for them:
// - the versioned-object pushes (neutron/api/rpc/handlers/resources_rpc.py): a fanout per object type
//   and version, `neutron-vo-<Type>-<version>_fanout`, method `push`, args {resource_list, event_type};
//   each object an oslo.versionedobjects primitive whose data holds at least its `id`;
// - the legacy casts: `port_update` / `port_delete` (q-agent-notifier-port-update / -delete) and
//   `security_groups_rule_updated` / `security_groups_member_updated`
//   (q-agent-notifier-security_group-update), with ids only.
// On RabbitMQ every one is an oslo.messaging envelope 2.0: {"oslo.version": "2.0", "oslo.message":
// "<JSON text of {method, args, version, _context_*...}>"}.
//
// Nothing of a message's content is trusted: every object is re-read from Neutron's API, so a forged
// or stale message can at most cause a read (or, for a Port push saying nothing changed, spare one).
// What cannot be read is a NeutronMessageError with a stable reason, counted by the caller.

import type { NeutronPort } from './translate.js';

/** The object types whose pushes matter to security groups, with the version this code was written
 *  against (Neutron 29); pushes are bound for these and a few versions around them. */
export const KNOWN_VERSIONS = { Port: '1.11', SecurityGroup: '1.6', SecurityGroupRule: '1.3', AddressGroup: '1.2', Log: '1.0' } as const;
export type ObjectType = keyof typeof KNOWN_VERSIONS;
const OBJECT_TYPES = Object.keys(KNOWN_VERSIONS) as ObjectType[];

/** Exchanges of the legacy casts (neutron_lib topics: 'q-agent-notifier' + resource + action). */
export const LEGACY_EXCHANGES = [
  'q-agent-notifier-port-update_fanout',
  'q-agent-notifier-port-delete_fanout',
  'q-agent-notifier-security_group-update_fanout',
] as const;

export function pushExchange(type: ObjectType, version: string): string {
  return `neutron-vo-${type}-${version}_fanout`;
}

/** The push exchanges to bind: for each type, the known version's major with minors from `below`
 *  under to `above` over it. A server's pushes go to its own (latest) version and to the versions its
 *  agents report, so a server a few releases older or newer is still heard; a message of a version
 *  other than the known one is flagged (`known: false`) for the caller to count. */
export function pushExchanges(below = 4, above = 4): string[] {
  const out: string[] = [];
  for (const type of OBJECT_TYPES) {
    const [major, minor] = KNOWN_VERSIONS[type].split('.').map(Number) as [number, number];
    for (let m = Math.max(0, minor - below); m <= minor + above; m++) out.push(pushExchange(type, `${major}.${m}`));
  }
  return out;
}

export type NeutronEvent =
  | { kind: 'push'; type: ObjectType; event: string; version: string; known: boolean; objects: PushedObject[] }
  | { kind: 'port'; method: 'port_update' | 'port_delete'; portId: string }
  | { kind: 'groups'; method: 'security_groups_rule_updated' | 'security_groups_member_updated'; groupIds: string[] }
  /** A method (or object type) on these exchanges that says nothing about security groups. */
  | { kind: 'ignored'; what: string };

export interface PushedObject {
  id: string;
  /** Neutron's revision of the object when pushed (absent in a deletion). */
  revision?: number;
  /** Rules: their group (absent in a deletion, which carries the id alone). */
  securityGroupId?: string;
  /** Ports of the known version: what the push says of the fields the model uses, in the REST API's
   *  shape. Never stored: it can only tell that nothing the model uses changed, which saves a read
   *  (a port's creation pushes twice, the second time once bound, with nothing new for us). */
  port?: NeutronPort;
}

export type NeutronMessageReason =
  'too_large' | 'not_json' | 'not_oslo_envelope' | 'unsupported_envelope_version' | 'bad_payload' | 'missing_field';

export class NeutronMessageError extends Error {
  constructor(
    readonly reason: NeutronMessageReason,
    message: string,
  ) {
    super(message);
    this.name = 'NeutronMessageError';
  }
}

/** A push of a security group with 1,000 rules is a few hundred KiB; anything far past it is not one. */
export const MAX_NEUTRON_MESSAGE_BYTES = 16 << 20;

const ID = /^[0-9A-Za-z_.:-]{1,255}$/;

function fail(reason: NeutronMessageReason, message: string): never {
  throw new NeutronMessageError(reason, message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function id(v: unknown, what: string): string {
  if (typeof v !== 'string' || !ID.test(v)) fail('missing_field', `${what}: no valid id`);
  return v;
}

/** The RPC message inside an oslo.messaging 2.0 envelope. */
export function unwrapOslo(body: Buffer): Record<string, unknown> {
  if (body.length > MAX_NEUTRON_MESSAGE_BYTES) fail('too_large', `message of ${body.length} bytes`);
  let outer: unknown;
  try {
    outer = JSON.parse(body.toString('utf8'));
  } catch {
    fail('not_json', 'body is not JSON');
  }
  if (!isObject(outer) || !('oslo.version' in outer)) fail('not_oslo_envelope', 'no oslo.messaging envelope');
  if (outer['oslo.version'] !== '2.0')
    fail('unsupported_envelope_version', `envelope version ${JSON.stringify(outer['oslo.version'])?.slice(0, 20)}`);
  if (typeof outer['oslo.message'] !== 'string') fail('not_oslo_envelope', 'envelope without a message');
  let inner: unknown;
  try {
    inner = JSON.parse(outer['oslo.message']);
  } catch {
    fail('not_json', 'envelope message is not JSON');
  }
  if (!isObject(inner)) fail('bad_payload', 'message is not an object');
  return inner;
}

/** Reads one message from one of Neutron's exchanges. Throws NeutronMessageError. */
export function decodeNeutronMessage(body: Buffer): NeutronEvent {
  const msg = unwrapOslo(body);
  const method = msg.method;
  const args = msg.args;
  if (typeof method !== 'string') fail('missing_field', 'no method');
  if (!isObject(args)) fail('missing_field', `${method.slice(0, 40)}: no args`);
  switch (method) {
    case 'push':
      return decodePush(args);
    case 'port_update': {
      if (!isObject(args.port)) fail('missing_field', 'port_update: no port');
      return { kind: 'port', method, portId: id(args.port.id, 'port_update') };
    }
    case 'port_delete':
      return { kind: 'port', method, portId: id(args.port_id, 'port_delete') };
    case 'security_groups_rule_updated':
    case 'security_groups_member_updated': {
      const groups = args.security_groups;
      if (!Array.isArray(groups)) fail('missing_field', `${method}: no security_groups`);
      return { kind: 'groups', method, groupIds: groups.map((g) => id(g, method)) };
    }
    default:
      return { kind: 'ignored', what: method.slice(0, 60) };
  }
}

function decodePush(args: Record<string, unknown>): NeutronEvent {
  const list = args.resource_list;
  const event = args.event_type;
  if (!Array.isArray(list) || list.length === 0) fail('missing_field', 'push: no resource_list');
  if (typeof event !== 'string') fail('missing_field', 'push: no event_type');
  let type: string | undefined;
  let version: string | undefined;
  const objects: PushedObject[] = [];
  for (const o of list) {
    if (!isObject(o)) fail('bad_payload', 'push: an object that is not one');
    const name = o['versioned_object.name'];
    const v = o['versioned_object.version'];
    const data = o['versioned_object.data'];
    if (typeof name !== 'string' || typeof v !== 'string' || !isObject(data)) fail('missing_field', 'push: not a versioned object');
    // One push carries one type (ResourcesPushRpcApi batches per type).
    if ((type ?? name) !== name || (version ?? v) !== v) fail('bad_payload', 'push: mixed object types');
    type = name;
    version = v;
    const pushed: PushedObject = { id: id(data.id, `${name} push`) };
    if (typeof data.revision_number === 'number' && Number.isSafeInteger(data.revision_number)) pushed.revision = data.revision_number;
    if (data.security_group_id !== undefined && data.security_group_id !== null)
      pushed.securityGroupId = id(data.security_group_id, `${name} push`);
    if (name === 'Port' && v === KNOWN_VERSIONS.Port) {
      const port = pushedPort(pushed.id, data);
      if (port) pushed.port = port;
    }
    objects.push(pushed);
  }
  if (!OBJECT_TYPES.includes(type as ObjectType)) return { kind: 'ignored', what: `push of ${type!.slice(0, 40)}` };
  const t = type as ObjectType;
  return { kind: 'push', type: t, event: event.slice(0, 40), version: version!, known: version === KNOWN_VERSIONS[t], objects };
}

/** Port 1.11's primitive (neutron/objects/ports.py) in the REST API's shape, or undefined when any
 *  field is not what that version has: then the port is simply read. */
function pushedPort(portId: string, d: Record<string, unknown>): NeutronPort | undefined {
  const data = (o: unknown): Record<string, unknown> | undefined =>
    isObject(o) && isObject(o['versioned_object.data']) ? o['versioned_object.data'] : undefined;
  const strings = (xs: unknown): string[] | undefined => (Array.isArray(xs) && xs.every((x) => typeof x === 'string') ? xs : undefined);
  if (
    typeof d.mac_address !== 'string' ||
    !Array.isArray(d.fixed_ips) ||
    !Array.isArray(d.allowed_address_pairs) ||
    !Array.isArray(d.bindings)
  )
    return undefined;
  const groups = strings(d.security_group_ids);
  const security = data(d.security);
  if (!groups || !security || typeof security.port_security_enabled !== 'boolean') return undefined;
  if (d.device_owner !== null && typeof d.device_owner !== 'string') return undefined;
  const fixed = d.fixed_ips.map(data);
  const pairs = d.allowed_address_pairs.map(data);
  const bindings = d.bindings.map(data);
  if (
    fixed.some((f) => typeof f?.ip_address !== 'string') ||
    pairs.some((a) => typeof a?.ip_address !== 'string') ||
    bindings.some((b) => typeof b?.host !== 'string')
  )
    return undefined;
  // The host the API shows as binding:host_id: the active binding's (a migration adds an inactive one).
  const active = bindings.filter((b) => b!.status === 'ACTIVE');
  if (active.length > 1) return undefined;
  // And its profile, which may name a migration's destination: a push that does not show it is read.
  let profile: Record<string, unknown> | undefined;
  if (active[0]) {
    profile = bindingProfile(active[0].profile);
    if (!profile) return undefined;
  }
  return {
    id: portId,
    mac_address: d.mac_address,
    fixed_ips: fixed.map((f) => ({ ip_address: f!.ip_address as string })),
    allowed_address_pairs: pairs.map((a) => ({
      ip_address: a!.ip_address as string,
      ...(typeof a!.mac_address === 'string' ? { mac_address: a!.mac_address } : {}),
    })),
    security_groups: groups,
    port_security_enabled: security.port_security_enabled,
    'binding:host_id': (active[0]?.host as string | undefined) ?? '',
    ...(profile ? { 'binding:profile': profile } : {}),
    device_owner: d.device_owner,
  };
}

/** A binding's profile as pushed: the JSON text of an object (neutron_lib's DictOfMiscValues), or
 *  undefined when it is anything else. */
function bindingProfile(v: unknown): Record<string, unknown> | undefined {
  if (isObject(v)) return v;
  if (typeof v !== 'string') return undefined;
  if (v === '') return {};
  try {
    const o: unknown = JSON.parse(v);
    return isObject(o) ? o : undefined;
  } catch {
    return undefined;
  }
}
