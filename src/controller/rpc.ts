// Answers full-sync requests: the compact shape (ports → group ids; group → rules; group → member
// addresses), each with its revision, split into parts when large. Never per-port expanded rules.
import type { Channel, ConsumeMessage } from 'amqplib';
import { decode, encode, LIMITS, MalformedMessage, type SyncReply, type SyncRequest, type MembersSnapshot, type GroupSnapshot } from '../protocol/messages.js';
import { SYNC_QUEUE } from '../protocol/routing.js';
import type { GroupRecord, PortRecord } from './store.js';

/** What a sync reply is built from: the reference store, or an integrator's own database. Reads made
 *  in one synchronous run must come from one consistent snapshot. */
export interface SyncSource {
  portsOnHost(host: string): PortRecord[];
  group(id: string): GroupRecord | undefined;
  groupRevisions(id: string): { revision: number; membersRevision: number };
  membersOf(groupId: string): string[];
}

/** The reply parts; synchronous, so every read comes from one committed snapshot of the store. */
export function buildSync(store: SyncSource, req: SyncRequest): SyncReply[] {
  let ruleGroups: string[];
  let memberGroups: string[];
  let ports: SyncReply['ports'];
  if (req.groupIds) {
    ruleGroups = memberGroups = req.groupIds;
  } else {
    const local = store.portsOnHost(req.host);
    ports = local;
    ruleGroups = [...new Set(local.flatMap((p) => p.securityGroups))];
    memberGroups = [...new Set(ruleGroups.flatMap((g) => store.group(g)?.rules.map((r) => r.remoteGroupId).filter((x): x is string => !!x) ?? []))];
  }
  const groups: GroupSnapshot[] = ruleGroups.map((id) => {
    const g = store.group(id);
    return { id, revision: store.groupRevisions(id).revision, stateful: g?.stateful ?? true, rules: g?.rules ?? [] };
  });
  // Ports and members go in parts small enough for one message each: at most PORTS_PER_PART ports
  // and LIMITS.syncIps addresses per part; a large group spans several parts.
  const portChunks: NonNullable<SyncReply['ports']>[] = [];
  for (let i = 0; ports && i < ports.length; i += PORTS_PER_PART) portChunks.push(ports.slice(i, i + PORTS_PER_PART));
  const chunks: MembersSnapshot[][] = [[]];
  let inPart = 0;
  for (const gid of memberGroups) {
    const ips = store.membersOf(gid);
    const revision = store.groupRevisions(gid).membersRevision;
    for (let i = 0; i === 0 || i < ips.length; i += LIMITS.syncIps) {
      const slice = ips.slice(i, i + LIMITS.syncIps);
      if (inPart + slice.length > LIMITS.syncIps && inPart > 0) {
        chunks.push([]);
        inPart = 0;
      }
      chunks.at(-1)!.push({ groupId: gid, revision, ips: slice });
      inPart += slice.length;
    }
  }
  const parts = Math.max(chunks.length, portChunks.length);
  return Array.from({ length: parts }, (_, part) => ({
    v: 1 as const,
    type: 'sync.reply' as const,
    part,
    parts,
    ...(ports ? { ports: portChunks[part] ?? [] } : {}),
    groups: part === 0 ? groups : [],
    members: chunks[part] ?? [],
  }));
}

/** Ports per sync reply part (a port is a few hundred bytes; parts stay well under the size limit). */
const PORTS_PER_PART = 2000;

export async function serveSync(ch: Channel, store: SyncSource, onError: (e: unknown) => void): Promise<void> {
  // Durable and shared: RabbitMQ 4 refuses transient non-exclusive queues, and several controllers
  // may consume it.
  await ch.assertQueue(SYNC_QUEUE, { durable: true });
  await ch.prefetch(16);
  await ch.consume(SYNC_QUEUE, (msg: ConsumeMessage | null) => {
    if (!msg) return;
    try {
      const req = decode<SyncRequest>(msg.content, ['sync.request']);
      if (msg.properties.replyTo) {
        for (const part of buildSync(store, req)) {
          ch.sendToQueue(msg.properties.replyTo, encode(part), { correlationId: msg.properties.correlationId, contentType: 'application/json' });
        }
      }
    } catch (e) {
      if (!(e instanceof MalformedMessage)) onError(e);
      else if (msg.properties.replyTo) {
        const reply: SyncReply = { v: 1, type: 'sync.reply', part: 0, parts: 1, groups: [], members: [], error: e.message };
        ch.sendToQueue(msg.properties.replyTo, encode(reply), { correlationId: msg.properties.correlationId });
      }
    }
    ch.ack(msg);
  });
}
