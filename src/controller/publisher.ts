// The publishing half of the control plane, usable as a library by another control plane: group
// updates to the group exchange (one routing key per group), port bindings to the host exchange,
// all signed (signing.ts) and with publisher confirms. Member deltas of one group within `coalesceMs`
// go out as one message.
import type { Channel, ConfirmChannel } from 'amqplib';
import {
  encode,
  LIMITS,
  type UpdateMessage,
  type GroupMembersMessage,
  type GroupRulesMessage,
  type WirePort,
} from '../protocol/messages.js';
import {
  DEAD_LETTER_EXCHANGE,
  DEAD_LETTER_QUEUE,
  DEAD_LETTER_QUEUE_ARGS,
  GROUP_EXCHANGE,
  HOST_EXCHANGE,
  SYNC_EXCHANGE,
  SYNC_QUEUE,
  SYNC_QUEUE_ARGS,
  SYNC_ROUTING_KEY,
  groupKey,
  hostKey,
} from '../protocol/routing.js';
import { UPDATE_CONTEXT, type MessageSigner } from '../protocol/signing.js';
import type { SecurityGroupRuleInput } from '../domain/model.js';
import { validatePort, validateRules } from '../domain/validate.js';

export interface PublisherStats {
  published: number;
  bytes: number;
  coalesced: number;
}

/** Declares every exchange and shared queue (the controller's job: agents only check they exist, and
 *  their broker users may not declare them). Idempotent; a declaration with other arguments than an
 *  existing one is refused by the broker (PRECONDITION_FAILED) and closes the channel. */
export async function declareTopology(ch: Channel): Promise<void> {
  await ch.assertExchange(GROUP_EXCHANGE, 'direct', { durable: true });
  await ch.assertExchange(HOST_EXCHANGE, 'direct', { durable: true });
  await ch.assertExchange(SYNC_EXCHANGE, 'direct', { durable: true });
  // Durable, shared by the controllers, and replicated: a cluster node lost does not take it along.
  await ch.assertQueue(SYNC_QUEUE, { durable: true, arguments: SYNC_QUEUE_ARGS });
  await ch.bindQueue(SYNC_QUEUE, SYNC_EXCHANGE, SYNC_ROUTING_KEY);
  await ch.assertExchange(DEAD_LETTER_EXCHANGE, 'fanout', { durable: true });
}

/** The dead-letter queue: evidence for an operator, not part of the flow, so a classic queue on one
 *  node. While that node is down it cannot be declared (404 "home node … is down"); that must not
 *  keep a controller from serving, so it is declared on a channel of its own and a refusal is only
 *  reported (the channel closes, the connection does not). */
export async function declareDeadLetterQueue(ch: Channel): Promise<void> {
  await ch.assertQueue(DEAD_LETTER_QUEUE, { durable: true, arguments: DEAD_LETTER_QUEUE_ARGS });
  await ch.bindQueue(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, '');
}

export class Publisher {
  readonly stats: PublisherStats = { published: 0, bytes: 0, coalesced: 0 };
  private readonly pending = new Map<string, { base: number; revision: number; added: Set<string>; removed: Set<string> }>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly ch: ConfirmChannel,
    private readonly signer: MessageSigner,
    private readonly coalesceMs = 20,
  ) {}

  private async publish(exchange: string, key: string, m: UpdateMessage): Promise<void> {
    const body = encode({ ...m, sentAt: Date.now() });
    this.stats.published++;
    this.stats.bytes += body.length;
    const headers = this.signer.headers(body, UPDATE_CONTEXT);
    await new Promise<void>((resolve, reject) => {
      this.ch.publish(exchange, key, body, { contentType: 'application/json', type: m.type, headers }, (err: unknown) =>
        err ? reject(err instanceof Error ? err : new Error('the broker refused the publish')) : resolve(),
      );
    });
  }

  /** Publishes one update to where it belongs: group messages by group key, port messages by host key. */
  send(m: UpdateMessage): Promise<void> {
    return 'groupId' in m ? this.publish(GROUP_EXCHANGE, groupKey(m.groupId), m) : this.publish(HOST_EXCHANGE, hostKey(m.host), m);
  }

  groupRules(groupId: string, revision: number, stateful: boolean, rules: SecurityGroupRuleInput[]): Promise<void> {
    const m: GroupRulesMessage = { v: 1, type: 'group.rules', groupId, revision, stateful, rules: validateRules(rules, groupId) };
    return this.send(m);
  }

  groupDeleted(groupId: string, revision: number): Promise<void> {
    return this.send({ v: 1, type: 'group.deleted', groupId, revision });
  }

  portBound(host: string, port: WirePort, revision: number, updated = false): Promise<void> {
    return this.send({ v: 1, type: updated ? 'port.updated' : 'port.bound', host, port: validatePort(port), revision });
  }

  portUnbound(host: string, portId: string, revision: number): Promise<void> {
    return this.send({ v: 1, type: 'port.unbound', host, portId, revision });
  }

  /** Queues a member change; changes of one group in the window merge into one delta. */
  memberChange(groupId: string, baseRevision: number, revision: number, added: string[], removed: string[]): void {
    let p = this.pending.get(groupId);
    // Only a delta that starts where the queued one ends can be merged into it (another writer may own
    // the revisions between): otherwise the queued one goes out first.
    if (p && p.revision !== baseRevision) {
      void this.flush().catch(() => undefined);
      p = undefined;
    }
    if (p) {
      this.stats.coalesced++;
      p.revision = revision;
      for (const a of removed) if (!p.added.delete(a)) p.removed.add(a);
      for (const a of added) if (!p.removed.delete(a)) p.added.add(a);
    } else {
      this.pending.set(groupId, { base: baseRevision, revision, added: new Set(added), removed: new Set(removed) });
    }
    this.timer ??= setTimeout(() => {
      this.timer = null;
      void this.flush().catch(() => undefined);
    }, this.coalesceMs);
  }

  /** Publishes every queued delta now; resolves when the broker confirmed them. */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = [...this.pending.entries()];
    this.pending.clear();
    // A failed flush must not poison the ones after it.
    this.flushing = this.flushing
      .catch(() => undefined)
      .then(async () => {
        for (const [groupId, d] of batch) await this.send(membersMessage(groupId, d.base, d.revision, d.added, d.removed));
      });
    return this.flushing;
  }
}

/** A member delta message; past the protocol's limit a delta would be refused, so receivers are told
 *  to sync the group instead. */
function membersMessage(
  groupId: string,
  base: number,
  revision: number,
  added: Set<string>,
  removed: Set<string>,
  resync = false,
): GroupMembersMessage {
  const tooBig = resync || added.size > LIMITS.deltaIps || removed.size > LIMITS.deltaIps;
  return {
    v: 1,
    type: 'group.members',
    groupId,
    baseRevision: base,
    revision,
    added: tooBig ? [] : [...added],
    removed: tooBig ? [] : [...removed],
    ...(tooBig ? { resync: true } : {}),
  };
}

/**
 * Merges consecutive member deltas of a group (each starting at the revision the previous one ended)
 * into one, keeping every other message and the order of first appearance. Deltas that do not chain
 * are kept apart: a receiver holding the base revision of each can still apply it, or resync.
 */
export function coalesceUpdates(messages: UpdateMessage[]): UpdateMessage[] {
  type Merged = { groupId: string; base: number; revision: number; added: Set<string>; removed: Set<string>; resync: boolean };
  const out: (UpdateMessage | Merged)[] = [];
  const open = new Map<string, Merged>();
  for (const m of messages) {
    if (m.type !== 'group.members') {
      out.push(m);
      continue;
    }
    const cur = open.get(m.groupId);
    if (cur && cur.revision === m.baseRevision) {
      cur.revision = m.revision;
      cur.resync ||= !!m.resync;
      for (const a of m.removed) if (!cur.added.delete(a)) cur.removed.add(a);
      for (const a of m.added) if (!cur.removed.delete(a)) cur.added.add(a);
      continue;
    }
    const next: Merged = {
      groupId: m.groupId,
      base: m.baseRevision,
      revision: m.revision,
      added: new Set(m.added),
      removed: new Set(m.removed),
      resync: !!m.resync,
    };
    open.set(m.groupId, next);
    out.push(next);
  }
  return out.map((m) => ('type' in m ? m : membersMessage(m.groupId, m.base, m.revision, m.added, m.removed, m.resync)));
}
