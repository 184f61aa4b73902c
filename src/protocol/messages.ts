// Wire messages (version 1): their TypeScript types for control-plane integrators, and `decode`, the
// one gate every received message passes: the envelope against its JSON Schema, then every rule, port
// and address in it through the one model validator (src/domain/validate.ts), which also puts them in
// canonical form. A message that does not validate is a MalformedMessage — except the objects of a
// sync reply, which are judged one by one: an object the validator refuses is left out and reported
// in `quarantined`, so one bad group cannot stop a host from syncing the rest.
import Ajv, { type ValidateFunction } from 'ajv';
import type { Port, PortInput, SecurityGroupLog, SecurityGroupRule } from '../domain/model.js';
import { validateLogs, validateMember, validatePort, validateRules, ValidationError } from '../domain/validate.js';
import { LIMITS, messageSchemas, PROTOCOL_VERSION, type MessageType } from './schema.js';

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
/** The security-group logs a group carries to its ports' hosts (all of them: it replaces the last). */
export interface GroupLogsMessage extends Base {
  type: 'group.logs';
  groupId: string;
  revision: number;
  logs: SecurityGroupLog[];
}
export interface GroupDeletedMessage extends Base {
  type: 'group.deleted';
  groupId: string;
  revision: number;
}
export interface PortMessage extends Base {
  type: 'port.bound' | 'port.updated';
  host: string;
  port: Port;
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
  /** The group's security-group logs and their revision; absent: none (revision 0). */
  logs?: SecurityGroupLog[];
  logsRevision?: number;
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
  ports?: Port[];
  groups: GroupSnapshot[];
  members: MembersSnapshot[];
  error?: string;
  /** Set by `decode` only, never sent: objects of this part the model validator refused, left out. */
  quarantined?: Quarantined[];
}

/** An object of a sync reply that the model validator refused. */
export interface Quarantined {
  kind: 'port' | 'group' | 'members';
  id: string;
  reason: string;
}

/** A port as a publisher may send it (optional fields default on receipt). */
export type WirePort = PortInput;

export type UpdateMessage =
  GroupMembersMessage | GroupRulesMessage | GroupLogsMessage | GroupDeletedMessage | PortMessage | PortUnboundMessage;
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
const validators = new Map<string, ValidateFunction>(Object.entries(messageSchemas).map(([t, s]) => [t, ajv.compile(s)]));

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
  if (typeof type !== 'string' || !validators.has(type))
    throw new MalformedMessage(`unknown message type ${JSON.stringify(type)?.slice(0, 40)}`);
  if (expect && !expect.includes(type as MessageType)) throw new MalformedMessage(`message type ${type} not expected here`);
  const validate = validators.get(type)!;
  if (!validate(value)) {
    const e = validate.errors?.[0];
    throw new MalformedMessage(`invalid ${type}: ${e?.instancePath || '/'} ${e?.message ?? ''}`.slice(0, 300));
  }
  const m = value as AnyMessage;
  try {
    checkContent(m);
  } catch (e) {
    if (e instanceof ValidationError) throw new MalformedMessage(`invalid ${type}: ${e.message}`.slice(0, 300));
    throw e;
  }
  return m as T;
}

/** The model validator over what an envelope carries, replacing each object by its canonical form. */
function checkContent(m: AnyMessage): void {
  switch (m.type) {
    case 'group.members':
      if (m.revision <= m.baseRevision) throw new ValidationError('group.members: revision must exceed baseRevision');
      m.added = m.added.map((ip) => validateMember(ip, 'added'));
      m.removed = m.removed.map((ip) => validateMember(ip, 'removed'));
      return;
    case 'group.rules':
      m.rules = validateRules(m.rules, m.groupId);
      return;
    case 'group.logs':
      m.logs = validateLogs(m.logs, m.groupId);
      return;
    case 'port.bound':
    case 'port.updated':
      m.port = validatePort(m.port);
      if (m.port.host !== m.host) throw new ValidationError(`port ${m.port.id}: host differs from the message's host`);
      return;
    case 'sync.reply':
      checkSyncReply(m);
      return;
    default:
      return;
  }
}

/** Judges a sync reply's objects one by one (see the module comment). */
/** An object's id as a quarantine entry names it: its text if it has one. */
function idText(id: unknown): string {
  return typeof id === 'string' ? id : typeof id === 'number' ? String(id) : '?';
}

function checkSyncReply(m: SyncReply): void {
  const quarantined: Quarantined[] = [];
  const keep = <T>(kind: Quarantined['kind'], id: string, f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      quarantined.push({ kind, id, reason: e.message });
      return undefined;
    }
  };
  if (m.ports)
    m.ports = m.ports.flatMap((p) => keep('port', idText((p as { id?: unknown }).id).slice(0, LIMITS.id), () => [validatePort(p)]) ?? []);
  const group = (g: GroupSnapshot): GroupSnapshot => ({
    ...g,
    rules: validateRules(g.rules, g.id),
    ...(g.logs ? { logs: validateLogs(g.logs, g.id) } : {}),
  });
  m.groups = m.groups.flatMap((g) => keep('group', g.id, () => [group(g)]) ?? []);
  m.members = m.members.map((s) => {
    const ips: string[] = [];
    for (const ip of s.ips) {
      const ok = keep('members', s.groupId, () => validateMember(ip));
      if (ok !== undefined) ips.push(ok);
    }
    return { ...s, ips };
  });
  if (quarantined.length) m.quarantined = quarantined;
}

export function encode(m: AnyMessage): Buffer {
  return Buffer.from(JSON.stringify(m));
}
