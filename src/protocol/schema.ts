// JSON Schemas of every message on the wire (version 1), checked with ajv at the boundary. The same
// schemas are published in docs/asyncapi.yaml. Limits are part of the contract: an oversize array is
// a malformed message, not a bigger allocation.
import { isIP } from 'node:net';

export const PROTOCOL_VERSION = 1;
export const LIMITS = {
  id: 255,
  rulesPerGroup: 1000,
  /** Addresses in one member delta; larger changes go as several deltas or a sync. */
  deltaIps: 10_000,
  /** Addresses per group in one sync reply part. */
  syncIps: 50_000,
  portsPerReply: 5_000,
  groupsPerReply: 5_000,
  groupsPerPort: 64,
  ipsPerPort: 256,
} as const;

export function isCidr(s: string): boolean {
  if (s.length > 64) return false;
  const [a, p, extra] = s.split('/');
  const fam = isIP(a ?? '');
  if (!fam || extra !== undefined) return false;
  if (p === undefined) return true;
  return /^\d{1,3}$/.test(p) && Number(p) <= (fam === 4 ? 32 : 128);
}

const id = { type: 'string', minLength: 1, maxLength: LIMITS.id } as const;
const revision = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;
const cidr = { type: 'string', format: 'cidr', maxLength: 64 } as const;
const ip = { type: 'string', format: 'ip', maxLength: 45 } as const;
const sentAt = { type: 'number', minimum: 0 } as const;

export const ruleSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'direction', 'ethertype'],
  properties: {
    id,
    direction: { enum: ['ingress', 'egress'] },
    ethertype: { enum: ['IPv4', 'IPv6'] },
    protocol: { anyOf: [{ enum: ['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', null] }, { type: 'integer', minimum: 0, maximum: 255 }] },
    portRangeMin: { anyOf: [{ type: 'integer', minimum: 0, maximum: 65535 }, { type: 'null' }] },
    portRangeMax: { anyOf: [{ type: 'integer', minimum: 0, maximum: 65535 }, { type: 'null' }] },
    remoteIpPrefix: { anyOf: [cidr, { type: 'null' }] },
    remoteGroupId: { anyOf: [id, { type: 'null' }] },
  },
} as const;

export const portSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'host', 'device', 'mac', 'fixedIps', 'securityGroups'],
  properties: {
    id,
    host: id,
    device: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$' },
    mac: { type: 'string', pattern: '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$' },
    fixedIps: { type: 'array', maxItems: LIMITS.ipsPerPort, items: ip },
    allowedAddressPairs: {
      type: 'array',
      maxItems: LIMITS.ipsPerPort,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['ipAddress'],
        properties: { ipAddress: cidr, macAddress: { type: 'string', pattern: '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$' } },
      },
    },
    securityGroups: { type: 'array', maxItems: LIMITS.groupsPerPort, items: id },
    portSecurityEnabled: { type: 'boolean' },
    revision,
  },
} as const;

const groupBody = {
  id,
  revision,
  stateful: { type: 'boolean' },
  rules: { type: 'array', maxItems: LIMITS.rulesPerGroup, items: ruleSchema },
} as const;

export const groupSnapshotSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'revision', 'stateful', 'rules'],
  properties: groupBody,
} as const;

export const messageSchemas = {
  'group.members': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'groupId', 'baseRevision', 'revision', 'added', 'removed'],
    properties: {
      v: { const: PROTOCOL_VERSION },
      type: { const: 'group.members' },
      groupId: id,
      baseRevision: revision,
      revision,
      added: { type: 'array', maxItems: LIMITS.deltaIps, items: cidr },
      removed: { type: 'array', maxItems: LIMITS.deltaIps, items: cidr },
      /** The change was too large for one delta: fetch the group's members with a sync. */
      resync: { type: 'boolean' },
      sentAt,
    },
  },
  'group.rules': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'groupId', 'revision', 'stateful', 'rules'],
    properties: {
      v: { const: PROTOCOL_VERSION },
      type: { const: 'group.rules' },
      groupId: id,
      revision,
      stateful: { type: 'boolean' },
      rules: groupBody.rules,
      sentAt,
    },
  },
  'group.deleted': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'groupId', 'revision'],
    properties: { v: { const: PROTOCOL_VERSION }, type: { const: 'group.deleted' }, groupId: id, revision, sentAt },
  },
  'port.bound': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'host', 'port', 'revision'],
    properties: { v: { const: PROTOCOL_VERSION }, type: { enum: ['port.bound'] }, host: id, port: portSchema, revision, sentAt },
  },
  'port.updated': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'host', 'port', 'revision'],
    properties: { v: { const: PROTOCOL_VERSION }, type: { enum: ['port.updated'] }, host: id, port: portSchema, revision, sentAt },
  },
  'port.unbound': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'host', 'portId', 'revision'],
    properties: { v: { const: PROTOCOL_VERSION }, type: { const: 'port.unbound' }, host: id, portId: id, revision, sentAt },
  },
  'sync.request': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'host'],
    properties: {
      v: { const: PROTOCOL_VERSION },
      type: { const: 'sync.request' },
      host: id,
      groupIds: { type: 'array', maxItems: LIMITS.groupsPerReply, items: id },
    },
  },
  'sync.reply': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'part', 'parts', 'groups', 'members'],
    properties: {
      v: { const: PROTOCOL_VERSION },
      type: { const: 'sync.reply' },
      part: { type: 'integer', minimum: 0 },
      parts: { type: 'integer', minimum: 1, maximum: 10_000 },
      /** Present only in part 0 of a host sync: every port bound to the host. */
      ports: { type: 'array', maxItems: LIMITS.portsPerReply, items: portSchema },
      groups: { type: 'array', maxItems: LIMITS.groupsPerReply, items: groupSnapshotSchema },
      members: {
        type: 'array',
        maxItems: LIMITS.groupsPerReply,
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['groupId', 'revision', 'ips'],
          properties: { groupId: id, revision, ips: { type: 'array', maxItems: LIMITS.syncIps, items: cidr } },
        },
      },
      error: { type: 'string', maxLength: 1000 },
    },
  },
} as const;

export type MessageType = keyof typeof messageSchemas;
