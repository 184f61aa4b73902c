// Answers full-sync requests: the compact shape (ports → group ids; group → rules; group → member
// addresses), each with its revision, split into parts when large. Never per-port expanded rules.
import type { Channel, ConsumeMessage } from 'amqplib';
import {
  decode,
  encode,
  LIMITS,
  MalformedMessage,
  type SyncReply,
  type SyncRequest,
  type MembersSnapshot,
  type GroupSnapshot,
} from '../protocol/messages.js';
import { closeUnawaited } from '../protocol/connection.js';
import { SYNC_QUEUE } from '../protocol/routing.js';
import type { MessageSigner } from '../protocol/signing.js';
import type { GroupRecord, MemberChange, PortRecord } from './store.js';

/** What a sync reply is built from: the reference store, or an integrator's own database. Reads made
 *  in one synchronous run must come from one consistent snapshot. */
export interface SyncSource {
  portsOnHost(host: string): PortRecord[];
  group(id: string): GroupRecord | undefined;
  groupRevisions(id: string): { revision: number; membersRevision: number };
  membersOf(groupId: string): string[];
  /** Member changes committed that will all be published after this call (none of them already on
   *  its way), if the source knows them: a reply then gives a group's members as they were before them
   *  (`membersAsPublished`). The reference controller's relay says (relay.ts, `laterMemberChanges`).
   *  A change listed that was published before the asker bound its queue would be missed by it. */
  unpublishedMemberChanges?(): MemberChange[];
}

/** `store` answering sync requests with members as published: `later` says which member changes a
 *  later drain will send (the reference relay's `laterMemberChanges`). */
export function withLaterChanges(store: Omit<SyncSource, 'unpublishedMemberChanges'>, later: () => MemberChange[]): SyncSource {
  return {
    portsOnHost: (host) => store.portsOnHost(host),
    group: (id) => store.group(id),
    groupRevisions: (id) => store.groupRevisions(id),
    membersOf: (id) => store.membersOf(id),
    unpublishedMemberChanges: later,
  };
}

/**
 * A group's members for a reply, and their revision: as of the revision the group's next published
 * delta starts from, when the source knows what will be published later. An agent syncs a group
 * right after binding its queue to it, so it receives every delta published from then on and applies
 * one only if it starts at the revision held. Answered with the store's newest revision instead,
 * during a storm it held a revision that the relay's next coalesced delta (made of changes committed
 * before and after the sync) starts before: the delta did not chain, the agent synced again, and so
 * on at every drain while the storm lasted. The changes still to be published are undone here (each
 * is an exact transition of its addresses, see `count` in records.ts), newest first; they reach the
 * agent in the next drain, as they reach every other agent of the group. Only a run of them that
 * ends at the group's revision is undone, each starting where the one before ended: anything else
 * (another controller's change among them) leaves the reply with the newest members, as before.
 */
export function membersAsPublished(
  store: SyncSource,
  groupId: string,
  later: readonly MemberChange[] = [],
): { ips: string[]; revision: number } {
  const ips = store.membersOf(groupId);
  const revision = store.groupRevisions(groupId).membersRevision;
  const run = later.filter((c) => c.groupId === groupId).sort((a, b) => a.revision - b.revision);
  if (run.length === 0) return { ips, revision };
  const chained = run.every((c, i) => i === 0 || c.baseRevision === run[i - 1]!.revision) && run.at(-1)!.revision === revision;
  if (!chained) return { ips, revision };
  const members = new Set(ips);
  for (let i = run.length - 1; i >= 0; i--) {
    for (const a of run[i]!.added) members.delete(a);
    for (const a of run[i]!.removed) members.add(a);
  }
  return { ips: [...members], revision: run[0]!.baseRevision };
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
    memberGroups = [
      ...new Set(
        ruleGroups.flatMap(
          (g) =>
            store
              .group(g)
              ?.rules.map((r) => r.remoteGroupId)
              .filter((x): x is string => !!x) ?? [],
        ),
      ),
    ];
  }
  const groups: GroupSnapshot[] = ruleGroups.map((id) => {
    const g = store.group(id);
    // Security-group logs only where a group has had some: a reply without them reads as before.
    const logs = g?.logsRevision ? { logs: g.logs ?? [], logsRevision: g.logsRevision } : {};
    return { id, revision: store.groupRevisions(id).revision, stateful: g?.stateful ?? true, rules: g?.rules ?? [], ...logs };
  });
  // Ports, groups and members go in parts small enough for one message each: at most PART_BYTES of
  // them, PORTS_PER_PART ports, LIMITS.groupsPerReply groups and LIMITS.syncIps addresses per part.
  // A large group's members span several parts, and many groups with many rules do too: rules in one
  // part alone made a host whose groups hold a few megabytes of rules unable to sync at all (the
  // agent refuses a message over MAX_MESSAGE_BYTES, and asked again forever).
  const parts = new ReplyParts();
  for (const p of ports ?? []) parts.addPort(p);
  for (const g of groups) parts.addGroup(g);
  // Each group's changes still to be published (one read of them for the whole reply).
  const later = new Map<string, MemberChange[]>();
  for (const c of memberGroups.length ? (store.unpublishedMemberChanges?.() ?? []) : []) {
    const run = later.get(c.groupId);
    if (run) run.push(c);
    else later.set(c.groupId, [c]);
  }
  for (const gid of memberGroups) {
    const { ips, revision } = membersAsPublished(store, gid, later.get(gid));
    parts.addMembers(gid, revision, ips);
  }
  return parts.done(ports !== undefined);
}

/** Bytes of ports, groups and addresses one reply part holds at most: with the JSON around them, well
 *  under MAX_MESSAGE_BYTES (4 MiB). */
const PART_BYTES = 3 << 20;

/** Reply parts filled in order, a new one begun when the next item would not fit the current one. */
class ReplyParts {
  private readonly parts: { ports: NonNullable<SyncReply['ports']>; groups: GroupSnapshot[]; members: MembersSnapshot[] }[] = [];
  /** Bytes and addresses in the last part. */
  private bytes = 0;
  private ips = 0;

  addPort(p: NonNullable<SyncReply['ports']>[number]): void {
    const b = jsonBytes(p);
    this.room(b, (c) => c.ports.length < PORTS_PER_PART).ports.push(p);
    this.bytes += b;
  }

  addGroup(g: GroupSnapshot): void {
    const b = jsonBytes(g);
    this.room(b, (c) => c.groups.length < LIMITS.groupsPerReply).groups.push(g);
    this.bytes += b;
  }

  /** A group's members, in as many slices as the parts need (one, empty, for a group with none). */
  addMembers(groupId: string, revision: number, ips: readonly string[]): void {
    const entry = jsonBytes({ groupId, revision, ips: [] });
    let i = 0;
    do {
      // The entry with its first address must fit, or a new part is begun.
      const first = entry + (i < ips.length ? ipBytes(ips[i]!) : 0);
      const c = this.room(first, (c) => c.members.length < LIMITS.groupsPerReply && (i === ips.length || this.ips < LIMITS.syncIps));
      let bytes = entry;
      let end = i;
      while (end < ips.length && this.ips + (end - i) < LIMITS.syncIps) {
        const b = ipBytes(ips[end]!);
        if (end > i && this.bytes + bytes + b > PART_BYTES) break;
        bytes += b;
        end++;
      }
      c.members.push({ groupId, revision, ips: ips.slice(i, end) });
      this.bytes += bytes;
      this.ips += end - i;
      i = end;
    } while (i < ips.length);
  }

  done(withPorts: boolean): SyncReply[] {
    if (this.parts.length === 0) this.next();
    return this.parts.map((c, part) => ({
      v: 1 as const,
      type: 'sync.reply' as const,
      part,
      parts: this.parts.length,
      ...(withPorts ? { ports: c.ports } : {}),
      groups: c.groups,
      members: c.members,
    }));
  }

  /** The last part if `bytes` more fit it and `fits` says its counts allow one more item, else a
   *  new part. */
  private room(bytes: number, fits: (c: ReplyParts['parts'][number]) => boolean): ReplyParts['parts'][number] {
    const c = this.parts.at(-1);
    if (c && fits(c) && (this.bytes === 0 || this.bytes + bytes <= PART_BYTES)) return c;
    return this.next();
  }

  private next(): ReplyParts['parts'][number] {
    const c = { ports: [], groups: [], members: [] };
    this.parts.push(c);
    this.bytes = 0;
    this.ips = 0;
    return c;
  }
}

/** An item's bytes in a part's JSON, with the comma after it. */
const jsonBytes = (x: unknown): number => Buffer.byteLength(JSON.stringify(x)) + 1;
/** An address's bytes in a part's JSON: ASCII, quoted, a comma after it. */
const ipBytes = (ip: string): number => ip.length + 3;

/** Ports per sync reply part (a port is a few hundred bytes; parts stay well under the size limit). */
const PORTS_PER_PART = 2000;

/** Sync requests delivered to a controller before it acknowledged the earlier ones. Each is answered
 *  at once (buildSync is synchronous), so this bounds no work of ours, only how long the queue waits
 *  for acks: at 16, a bulk boot of 1,000 hosts (one request per newly needed group) left hundreds of
 *  requests waiting in the quorum queue, a second or more on every member set; 64 and 256 gave the
 *  same boot (bench:scale), and the smaller keeps the replies to a thousand hosts syncing a large
 *  group at once from going out in one burst. Several controllers share the queue; any answers. */
const SYNC_PREFETCH = 64;

/** Answers sync requests from the shared queue (declared by `declareTopology`), each reply part signed
 *  for the request's correlation id. Requests with no reply address or correlation id get no answer
 *  (nobody could match it). If the broker cancels the consumer (the queue deleted, or lost with the
 *  node it lived on), nothing would be served on this channel again: `onCancelled` is told, and the
 *  channel is closed, so that its owner opens the session again and consumes anew. */
export async function serveSync(
  ch: Channel,
  store: SyncSource,
  signer: MessageSigner,
  onError: (e: unknown) => void,
  onCancelled?: () => void,
): Promise<void> {
  await ch.prefetch(SYNC_PREFETCH);
  await ch.consume(SYNC_QUEUE, (msg: ConsumeMessage | null) => {
    if (!msg) {
      onCancelled?.();
      closeUnawaited(ch);
      return;
    }
    const { replyTo, correlationId } = msg.properties as { replyTo?: unknown; correlationId?: unknown };
    if (typeof replyTo !== 'string' || typeof correlationId !== 'string') return ch.ack(msg);
    const reply = (part: SyncReply) => {
      const body = encode(part);
      ch.sendToQueue(replyTo, body, {
        correlationId,
        contentType: 'application/json',
        headers: signer.headers(body, { kind: 'reply', correlationId }),
      });
    };
    try {
      const req = decode<SyncRequest>(msg.content, ['sync.request']);
      for (const part of buildSync(store, req)) reply(part);
    } catch (e) {
      if (!(e instanceof MalformedMessage)) onError(e);
      else reply({ v: 1, type: 'sync.reply', part: 0, parts: 1, groups: [], members: [], error: e.message });
    }
    ch.ack(msg);
  });
}
