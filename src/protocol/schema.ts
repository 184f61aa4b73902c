// JSON Schemas of every message envelope on the wire (version 1), checked with ajv at the boundary;
// the objects they carry (rules, ports, addresses) are then checked by the one model validator
// (src/domain/validate.ts), so no rule of the model is written twice. docs/asyncapi.yaml publishes
// both. Limits are part of the contract: an oversize array is a malformed message, not a bigger
// allocation.
import { LIMITS } from '../domain/limits.js';
import { MAX_ADDRESS_TEXT } from '../domain/address.js';

export const PROTOCOL_VERSION = 1;
export { LIMITS };

const revision = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;
const id = { type: 'string', minLength: 1, maxLength: LIMITS.id } as const;
/** An address or network; its syntax and meaning are checked by the model validator. */
const cidr = { type: 'string', maxLength: MAX_ADDRESS_TEXT } as const;
const sentAt = { type: 'number', minimum: 0 } as const;
/** A rule or a port: an object whose fields the model validator checks. */
const modelObject = { type: 'object' } as const;

const groupBody = {
  id,
  revision,
  stateful: { type: 'boolean' },
  rules: { type: 'array', maxItems: LIMITS.rulesPerGroup, items: modelObject },
} as const;

/** A group's security-group logs: objects the model validator checks. */
const logs = { type: 'array', maxItems: LIMITS.logsPerGroup, items: modelObject } as const;

export const groupSnapshotSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'revision', 'stateful', 'rules'],
  // A group with security-group logs carries them and their revision; one without, neither.
  properties: { ...groupBody, logs, logsRevision: revision },
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
  'group.logs': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'groupId', 'revision', 'logs'],
    properties: { v: { const: PROTOCOL_VERSION }, type: { const: 'group.logs' }, groupId: id, revision, logs, sentAt },
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
    properties: { v: { const: PROTOCOL_VERSION }, type: { enum: ['port.bound'] }, host: id, port: modelObject, revision, sentAt },
  },
  'port.updated': {
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', 'host', 'port', 'revision'],
    properties: { v: { const: PROTOCOL_VERSION }, type: { enum: ['port.updated'] }, host: id, port: modelObject, revision, sentAt },
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
      ports: { type: 'array', maxItems: LIMITS.portsPerReply, items: modelObject },
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
