// The publishing half of the control plane, usable as a library by another control plane: group
// updates to the group exchange (one routing key per group), port bindings to the host exchange,
// all with publisher confirms. Member deltas of one group within `coalesceMs` go out as one message.
import type { ConfirmChannel } from 'amqplib';
import { encode, LIMITS, type UpdateMessage, type GroupRulesMessage, type WirePort } from '../protocol/messages.js';
import { GROUP_EXCHANGE, HOST_EXCHANGE, groupKey, hostKey } from '../protocol/routing.js';
import type { SecurityGroupRule } from '../model.js';

export interface PublisherStats {
  published: number;
  bytes: number;
  coalesced: number;
}

export async function declareExchanges(ch: ConfirmChannel): Promise<void> {
  await ch.assertExchange(GROUP_EXCHANGE, 'direct', { durable: true });
  await ch.assertExchange(HOST_EXCHANGE, 'direct', { durable: true });
}

export class Publisher {
  readonly stats: PublisherStats = { published: 0, bytes: 0, coalesced: 0 };
  private readonly pending = new Map<string, { base: number; revision: number; added: Set<string>; removed: Set<string> }>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly ch: ConfirmChannel, private readonly coalesceMs = 20) {}

  private async publish(exchange: string, key: string, m: UpdateMessage): Promise<void> {
    const body = encode({ ...m, sentAt: Date.now() });
    this.stats.published++;
    this.stats.bytes += body.length;
    await new Promise<void>((resolve, reject) => {
      this.ch.publish(exchange, key, body, { contentType: 'application/json', type: m.type }, (err) => (err ? reject(err) : resolve()));
    });
  }

  groupRules(groupId: string, revision: number, stateful: boolean, rules: SecurityGroupRule[]): Promise<void> {
    const m: GroupRulesMessage = { v: 1, type: 'group.rules', groupId, revision, stateful, rules };
    return this.publish(GROUP_EXCHANGE, groupKey(groupId), m);
  }

  groupDeleted(groupId: string, revision: number): Promise<void> {
    return this.publish(GROUP_EXCHANGE, groupKey(groupId), { v: 1, type: 'group.deleted', groupId, revision });
  }

  portBound(host: string, port: WirePort, revision: number, updated = false): Promise<void> {
    return this.publish(HOST_EXCHANGE, hostKey(host), { v: 1, type: updated ? 'port.updated' : 'port.bound', host, port, revision });
  }

  portUnbound(host: string, portId: string, revision: number): Promise<void> {
    return this.publish(HOST_EXCHANGE, hostKey(host), { v: 1, type: 'port.unbound', host, portId, revision });
  }

  /** Queues a member change; changes of one group in the window merge into one delta. */
  memberChange(groupId: string, baseRevision: number, revision: number, added: string[], removed: string[]): void {
    const p = this.pending.get(groupId);
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

  /** Hands over queued deltas (to a publisher on a new channel after a reconnect). */
  takePending(): Map<string, { base: number; revision: number; added: Set<string>; removed: Set<string> }> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const p = new Map(this.pending);
    this.pending.clear();
    return p;
  }

  restorePending(p: ReturnType<Publisher['takePending']>): void {
    for (const [g, d] of p) this.memberChange(g, d.base, d.revision, [...d.added], [...d.removed]);
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
    this.flushing = this.flushing.catch(() => undefined).then(async () => {
      for (const [groupId, d] of batch) {
        const added = [...d.added];
        const removed = [...d.removed];
        // Past the protocol's limit a delta would be refused: tell receivers to sync the group instead.
        const tooBig = added.length > LIMITS.deltaIps || removed.length > LIMITS.deltaIps;
        await this.publish(GROUP_EXCHANGE, groupKey(groupId), {
          v: 1, type: 'group.members', groupId, baseRevision: d.base, revision: d.revision,
          added: tooBig ? [] : added, removed: tooBig ? [] : removed, ...(tooBig ? { resync: true } : {}),
        });
      }
    });
    return this.flushing;
  }
}
