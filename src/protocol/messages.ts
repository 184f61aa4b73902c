// Wire messages (version 1): their TypeScript types for control-plane integrators, and `decode`, the
// one gate every received message passes. Anything that does not validate is a MalformedMessage.
import Ajv, { type ValidateFunction } from 'ajv';
import type { Port, SecurityGroupRule } from '../model.js';
import { isCidr, LIMITS, messageSchemas, PROTOCOL_VERSION, type MessageType } from './schema.js';
import { isIP } from 'node:net';

export { PROTOCOL_VERSION, LIMITS };
export type { MessageType };

interface Base {
  v: 1;
  /** Publisher's clock (ms since epoch) when sent: used only to measure convergence lag. */
  sentAt?: number;
}
export interface GroupMembersMessage extends Base {
  type: 'group.members';
  groupId: string;
  /** The member revision this delta applies on top of; a receiver holding another one resyncs. */
  baseRevision: number;
  revision: number;
  added: string[];
  removed: string[];
  /** The change was too large for one delta: fetch the group's members with a sync. */
  resync?: boolean;
}
export interface GroupRulesMessage extends Base {
  type: 'group.rules';
  groupId: string;
  revision: number;
  stateful: boolean;
  rules: SecurityGroupRule[];
}
export interface GroupDeletedMessage extends Base {
  type: 'group.deleted';
  groupId: string;
  revision: number;
}
export interface PortMessage extends Base {
  type: 'port.bound' | 'port.updated';
  host: string;
  port: WirePort;
  revision: number;
}
export interface PortUnboundMessage extends Base {
  type: 'port.unbound';
  host: string;
  portId: string;
  revision: number;
}
export interface SyncRequest {
  v: 1;
  type: 'sync.request';
  host: string;
  /** Only these groups (rules and members), and no ports; absent: the whole host. */
  groupIds?: string[];
}
export interface GroupSnapshot {
  id: string;
  revision: number;
  stateful: boolean;
  rules: SecurityGroupRule[];
}
export interface MembersSnapshot {
  groupId: string;
  revision: number;
  ips: string[];
}
export interface SyncReply {
  v: 1;
  type: 'sync.reply';
  part: number;
  parts: number;
  ports?: WirePort[];
  groups: GroupSnapshot[];
  members: MembersSnapshot[];
  error?: string;
}

/** A port as it travels: like the model's Port, with optional fields defaulted on receipt. */
export type WirePort = Omit<Port, 'allowedAddressPairs' | 'portSecurityEnabled'> & Partial<Pick<Port, 'allowedAddressPairs' | 'portSecurityEnabled'>>;

export type UpdateMessage = GroupMembersMessage | GroupRulesMessage | GroupDeletedMessage | PortMessage | PortUnboundMessage;
export type AnyMessage = UpdateMessage | SyncRequest | SyncReply;

export class MalformedMessage extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedMessage';
  }
}

/** Bodies above this are refused before JSON parsing (a sync reply part is well under it). */
export const MAX_MESSAGE_BYTES = 4 << 20;

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });
ajv.addFormat('cidr', isCidr);
ajv.addFormat('ip', (s: string) => isIP(s) !== 0);
const validators = new Map<string, ValidateFunction>(Object.entries(messageSchemas).map(([t, s]) => [t, ajv.compile(s)]));

export function toPort(w: WirePort): Port {
  return { ...w, allowedAddressPairs: w.allowedAddressPairs ?? [], portSecurityEnabled: w.portSecurityEnabled ?? true };
}

/** Parses and validates a message body; `expect` limits which types are acceptable here. */
export function decode<T extends AnyMessage = AnyMessage>(body: Buffer | string, expect?: readonly MessageType[]): T {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  if (size > MAX_MESSAGE_BYTES) throw new MalformedMessage(`message of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (e) {
    throw new MalformedMessage(`not JSON: ${(e as Error).message.slice(0, 100)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new MalformedMessage('not a JSON object');
  const { v, type } = value as { v?: unknown; type?: unknown };
  if (v !== PROTOCOL_VERSION) throw new MalformedMessage(`unsupported protocol version ${JSON.stringify(v)?.slice(0, 20)}`);
  if (typeof type !== 'string' || !validators.has(type)) throw new MalformedMessage(`unknown message type ${JSON.stringify(type)?.slice(0, 40)}`);
  if (expect && !expect.includes(type as MessageType)) throw new MalformedMessage(`message type ${type} not expected here`);
  const validate = validators.get(type)!;
  if (!validate(value)) {
    const e = validate.errors?.[0];
    throw new MalformedMessage(`invalid ${type}: ${e?.instancePath || '/'} ${e?.message ?? ''}`.slice(0, 300));
  }
  const m = value as AnyMessage;
  if (m.type === 'group.members' && m.revision <= m.baseRevision) throw new MalformedMessage('group.members: revision must exceed baseRevision');
  if (m.type === 'group.rules') {
    for (const r of m.rules) if (r.remoteIpPrefix && r.remoteGroupId) throw new MalformedMessage(`rule ${r.id}: remote_ip_prefix and remote_group_id are exclusive`);
  }
  return m as T;
}

export function encode(m: AnyMessage): Buffer {
  return Buffer.from(JSON.stringify(m));
}
