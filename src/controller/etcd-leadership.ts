// The leadership of controllers sharing an etcd store (leadership.ts says what it is for): a key under
// the store's prefix, created only if absent and bound to an etcd lease of this controller's. Its
// holder publishes; etcd deletes it when the lease expires, and then another controller creates it.
//
// Fenced, so that a controller cut off from etcd's majority stops publishing before another starts:
// - Time: the lease is kept alive every TTL/4; each renewal the majority grants runs, on etcd's clock,
//   at least TTL from when etcd received it, so at least TTL from when it was sent. This controller
//   publishes only until (time it sent the last granted renewal) + TTL − margin, on its own clock: cut
//   off, it stops before etcd can expire the lease, let alone give the key to another. This needs no
//   synchronized clocks, only clocks that run at about the same rate (the margin covers a message in
//   flight and the difference), as etcd's own leases do; a new etcd leader extends every lease by an
//   election timeout, never shortens one.
// - Revision: the key's creation revision is this leadership's token. Every drain of the outbox is a
//   transaction that reads it only if the key still has that creation revision, so a controller that
//   lost the key (expired, deleted by an operator) reads nothing and publishes nothing, even within
//   its deadline.
// What a deposed leader had sent stays harmless: every message carries the revision its transaction
// gave it, one revision has one content whoever publishes it, and agents drop what they hold already.
import os from 'node:os';
import type { ChannelModel } from 'amqplib';
import { CompareResult, CompareTarget, type ILeaseKeepAliveResponse } from 'etcd3';
import type { Logger } from 'pino';
import type { EtcdStore } from './etcd-store.js';
import type { Leadership } from './leadership.js';
import type { OutboxEntry } from './records.js';

export interface EtcdLeadershipOptions {
  /** The lease's time to live (default 2 s; etcd raises what is below its minimum, 1.5 × its election
   *  timeout). A dead leader's machine is replaced after about this long. */
  ttlS?: number;
  logger?: Logger;
}

/** Publishing stops this long before the lease could expire at etcd. */
const MARGIN_MS = 500;
/** Between two attempts to take the key while another holds it (with jitter). */
const CAMPAIGN_RETRY_MS = 250;

export class EtcdLeadership implements Leadership {
  onTaken?: () => void;
  private leaseId?: string;
  /** Until when (this process's clock) the lease surely lives at etcd. */
  private deadline = 0;
  /** The creation revision of the key this controller holds. */
  private token?: string;
  private keeper?: NodeJS.Timeout;
  private closed = false;
  private readonly ttlS: number;
  private readonly key: Buffer;
  private lastError?: string;

  constructor(
    private readonly store: EtcdStore,
    opts: EtcdLeadershipOptions = {},
  ) {
    this.ttlS = opts.ttlS ?? 2;
    this.key = store.keyOf('leader');
    this.logger = opts.logger;
  }

  private readonly logger?: Logger;

  get leads(): boolean {
    return this.token !== undefined && Date.now() < this.deadline - MARGIN_MS;
  }

  mayPublish(): boolean {
    return this.leads;
  }

  /** The outbox as etcd's majority holds it, read only while the key is still this leadership's. */
  readonly fencedOutbox = async (): Promise<OutboxEntry[] | null> => {
    const token = this.token;
    if (token === undefined || !this.leads) return null;
    const entries = await this.store.outboxIf([
      { key: this.key, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: token },
    ]);
    if (entries === null && this.token === token) this.lose("the leadership key is no longer this controller's");
    return entries;
  };

  /** Seeks the key while `over` has not resolved, and again whenever it is lost. */
  async campaign(_conn: ChannelModel, over: Promise<void>): Promise<void> {
    let ended = false;
    over.then(
      () => (ended = true),
      () => (ended = true),
    );
    while (!ended && !this.closed) {
      if (this.token === undefined) {
        try {
          await this.tryTake();
        } catch (e) {
          this.warnOnce((e as Error).message);
        }
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([over, new Promise((r) => (timer = setTimeout(r, CAMPAIGN_RETRY_MS * (0.5 + Math.random()))))]);
      clearTimeout(timer);
    }
  }

  private async tryTake(): Promise<void> {
    await this.ensureLease();
    const leaseId = this.leaseId!;
    const value = Buffer.from(
      JSON.stringify({ controller: this.store.owner, host: os.hostname(), pid: process.pid, since: new Date().toISOString() }),
    );
    const res = await this.store.client.kv.txn({
      compare: [{ key: this.key, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 }],
      success: [{ request_put: { key: this.key, value, lease: leaseId } }],
      failure: [{ request_range: { key: this.key } }],
    });
    const held = res.succeeded ? res.header.revision : undefined;
    // The key of an earlier campaign on this very lease (its answer was lost) is this one's too.
    const existing = res.succeeded ? undefined : res.responses[0]?.response_range.kvs[0];
    const token = held ?? (existing && existing.lease === leaseId ? existing.create_revision : undefined);
    if (token === undefined || this.leaseId !== leaseId) return;
    this.token = token;
    this.lastError = undefined;
    this.logger?.info({ token }, 'etcd leadership taken: this controller publishes');
    this.onTaken?.();
  }

  /** A lease of this controller's, kept alive every TTL/4 from now on. */
  private async ensureLease(): Promise<void> {
    if (this.leaseId !== undefined) return;
    const sent = Date.now();
    const res = await this.store.client.leaseClient.leaseGrant({ TTL: this.ttlS });
    this.leaseId = res.ID;
    this.deadline = sent + Number(res.TTL) * 1000;
    const every = (Number(res.TTL) * 1000) / 4;
    this.keeper ??= setInterval(() => {
      this.renew().catch((e: unknown) => this.warnOnce(`lease renewal: ${String(e)}`));
    }, every);
    this.keeper.unref();
  }

  private async renew(): Promise<void> {
    const id = this.leaseId;
    if (id === undefined) return;
    const sent = Date.now();
    try {
      const res = await this.keepAliveOnce(id, Math.max(250, (this.ttlS * 1000) / 2));
      if (this.leaseId !== id) return;
      if (Number(res.TTL) <= 0) return this.lose('the etcd lease expired');
      this.deadline = Math.max(this.deadline, sent + Number(res.TTL) * 1000);
    } catch (e) {
      this.warnOnce(`lease renewal failed: ${(e as Error).message}`);
      // Past its deadline the lease may be gone at etcd already: a new one is needed.
      if (Date.now() >= this.deadline && this.leaseId === id) this.lose('the etcd lease could not be renewed in time');
    }
  }

  /** One renewal on a stream of its own, given up after `ms` (a member cut off never answers). */
  private async keepAliveOnce(id: string, ms: number): Promise<ILeaseKeepAliveResponse> {
    const stream = await this.store.client.leaseClient.leaseKeepAlive();
    try {
      return await new Promise<ILeaseKeepAliveResponse>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer')), ms);
        stream.on('data', (r: ILeaseKeepAliveResponse) => (clearTimeout(timer), resolve(r)));
        stream.on('error', (e: Error) => (clearTimeout(timer), reject(e)));
        stream.write({ ID: id });
      });
    } finally {
      stream.cancel();
    }
  }

  private lose(why: string): void {
    if (this.token !== undefined) this.logger?.warn({ why }, 'etcd leadership lost: this controller stops publishing');
    this.token = undefined;
    this.leaseId = undefined;
    this.deadline = 0;
  }

  private warnOnce(msg: string): void {
    if (msg !== this.lastError) this.logger?.warn({ err: msg }, 'etcd leadership: request failed');
    this.lastError = msg;
  }

  /** Revokes the lease (etcd deletes the key: another controller takes it at once); if etcd cannot be
   *  asked, the lease expires by itself. */
  async resign(): Promise<void> {
    const id = this.leaseId;
    const held = this.token !== undefined;
    this.token = undefined;
    this.leaseId = undefined;
    this.deadline = 0;
    if (held) this.logger?.info('etcd leadership given up');
    if (id !== undefined) await this.store.client.leaseClient.leaseRevoke({ ID: id }).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.keeper) clearInterval(this.keeper);
    await this.resign();
  }
}
