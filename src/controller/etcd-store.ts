// The replicated store: the controller's records in etcd (v3 API, 3.4 or later), for controllers on
// several machines (SG_STORE=etcd). The rules of a change are the embedded store's (records.ts); what
// differs is how a snapshot is read and how a transaction commits.
//
// Reads: every record under the prefix is mirrored in memory, loaded once and then kept current by
// one watch of the prefix, so reads stay synchronous and each synchronous run of them sees one
// revision of the store — what buildSync needs. A write returns only once the mirror holds it (a
// read after a write sees it). The watch is also how the publishing controller hears of the outbox
// entries its peers write: no polling.
//
// Writes: optimistic transactions. A change runs on the mirror; its writes commit in one etcd
// transaction that compares the modification revision of every key it read (0: absent), so a change
// based on a snapshot another controller has changed since commits nothing and runs again on the
// newer one. Changes waiting while one commits go together into the next transaction (as LMDB batches
// commits), each seeing the ones before it. A change and its outbox messages are one transaction.
//
// A watch on a member cut off from the majority stays open and silent: a probe asks a majority twice
// a second which keys changed after what the mirror holds, and a watch that has not delivered them
// within a second is made again (on another member). The same probe says whether etcd has quorum:
// without it, changes are refused at once (StoreUnavailableError: 503 at the API) instead of waiting.
import { randomBytes } from 'node:crypto';
import { ConsecutiveBreaker, circuitBreaker, handleWhen, retry } from 'cockatiel';
import {
  CompareResult,
  CompareTarget,
  Etcd3,
  GRPCDeadlineExceededError,
  SortOrder,
  SortTarget,
  isRecoverableError,
  type ICompare,
  type IDuplexStream,
  type IKeyValue,
  type IOptions,
  type IRequestOp,
  type IWatchRequest,
  type IWatchResponse,
} from 'etcd3';
import type { Logger } from 'pino';
import type { LogResource } from '../domain/model.js';
import type { UpdateMessage } from '../protocol/messages.js';
import { portHosts } from '../domain/placement.js';
import {
  ChangeTooLargeError,
  RecordStore,
  StoreUnavailableError,
  type ControllerStore,
  type GroupRecord,
  type OutboxEntry,
  type OutboxKey,
  type PortRecord,
  type RecordKey,
  type RecordTx,
  type RecordView,
  type StoreHealth,
  type StoreSnapshot,
} from './records.js';
import type { StoreMetrics } from './metrics.js';

export interface EtcdStoreOptions {
  /** Client URLs of the members (`http(s)://host:2379`). */
  endpoints: string[];
  /** Every key the controllers use lies under it (the role's permission: docs/agent.md). */
  prefix: string;
  /** TLS: the CA that signed the members' certificates, and this controller's client certificate. */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  /** etcd's own authentication (`etcdctl user add`). */
  auth?: { username: string; password: string };
  /** Longest wait for one request (default 2 s): a member cut off costs two requests this long. */
  requestTimeoutMs?: number;
  /** etcd's `--max-txn-ops` (default 128, etcd's own): a change needing more operations is refused. */
  maxTxnOps?: number;
  logger?: Logger;
  metrics?: StoreMetrics;
}

/** A probe of the majority this often: quorum for /healthz, and a silent watch found out. A range read
 *  of one key's name: negligible for etcd. */
const PROBE_MS = 500;
/** A watch that has not delivered, this long after a majority said so, a change that exists is made again. */
const WATCH_GRACE_MS = 1_000;
/** Without a successful probe for this long, etcd is taken to have no quorum (changes refused at once). */
const QUORUM_LOST_AFTER_MS = 3_000;
/** Longest wait for the mirror to show a write (the watch is made again well before). */
const APPLIED_WAIT_MS = 10_000;
/** A change that keeps conflicting (a hot group written by every controller at once) gives up. */
const MAX_ATTEMPTS = 100;

type Kind = 'g' | 'p' | 'l' | 'h' | 'm' | 'o';
const KINDS: readonly string[] = ['g', 'p', 'l', 'h', 'm', 'o'];

/** A key element as it stands in an etcd key: what is not [A-Za-z0-9._:-] is %-escaped per UTF-8 byte,
 *  so no id can reach into another's key ('/' separates elements). */
function encode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9._:-]/.test(c) ? c : `%${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

function decode(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '%') {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(s.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

const recordPath = (key: RecordKey) => key.map((e, i) => (i === 0 ? e : encode(e))).join('/');

/** The end of the range of keys starting with `prefix` (etcd's prefix convention). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

const DELETED = Symbol('deleted');
/** A key's value as a transaction wrote it, or DELETED (`unknown` holds the symbol too; named for the reader). */
type Written = unknown;

interface Waiting {
  f: (tx: RecordTx) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class EtcdStore extends RecordStore implements ControllerStore {
  readonly kind = 'etcd' as const;
  readonly owner = randomBytes(6).toString('hex');
  readonly client: Etcd3;
  private readonly root: Buffer;
  // ---- the mirror ----
  private readonly entries = new Map<string, { value: unknown; mod: number }>();
  private readonly groupsById = new Map<string, GroupRecord>();
  private readonly portsById = new Map<string, PortRecord>();
  private readonly logResourcesById = new Map<string, LogResource>();
  private readonly children = new Map<string, Set<string>>();
  private readonly pending = new Map<string, OutboxEntry & { mod: number; seq: number }>();
  /** Every event up to this revision is in the mirror. */
  private revision = 0;
  private readonly revisionWaiters: { rev: number; resolve: () => void; at: number }[] = [];
  private readonly outboxListeners: (() => void)[] = [];
  // ---- the watch ----
  private stream?: IDuplexStream<IWatchRequest, IWatchResponse>;
  private watching: Promise<void> = Promise.resolve();
  private closed = false;
  private watchRestarts = 0;
  // ---- the probe ----
  private probeTimer?: NodeJS.Timeout;
  private lastQuorumAt = 0;
  private probeError?: string;
  /** A change the majority holds that the mirror did not yet: its revision and when it was seen. */
  private behind?: { rev: number; since: number };
  // ---- transactions ----
  private seq = 0;
  private readonly queue: Waiting[] = [];
  private committing = false;
  protected readonly view: RecordView = {
    get: (key) => this.entries.get(recordPath(key))?.value,
    idsUnder: (kind, id) => [...(this.children.get(`${kind}/${encode(id)}`) ?? [])],
  };

  private constructor(private readonly opts: EtcdStoreOptions) {
    super();
    this.root = Buffer.from(opts.prefix);
    const timeout = opts.requestTimeoutMs ?? 2_000;
    // A member cut off or gone shows as refused connections (recoverable) or requests that never come
    // back (deadline): either opens its circuit for a while, and the next request goes to another.
    const failed = handleWhen((e) => isRecoverableError(e) || e instanceof GRPCDeadlineExceededError);
    const options: IOptions = {
      hosts: opts.endpoints,
      ...(opts.tls
        ? {
            credentials: {
              rootCertificate: opts.tls.ca,
              ...(opts.tls.key ? { privateKey: opts.tls.key } : {}),
              ...(opts.tls.cert ? { certChain: opts.tls.cert } : {}),
            },
          }
        : {}),
      ...(opts.auth ? { auth: { ...opts.auth, callOptions: { deadline: Date.now() + timeout } } } : {}),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      dialTimeout: timeout,
      faultHandling: {
        host: () => circuitBreaker(failed, { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(2) }),
        global: retry(failed, { maxAttempts: opts.endpoints.length }),
      },
    };
    this.client = new Etcd3(options);
  }

  /** Connects, loads the mirror and starts following the store; throws a one-line error if etcd
   *  cannot be read (no member answers, wrong credentials). */
  static async open(opts: EtcdStoreOptions): Promise<EtcdStore> {
    const s = new EtcdStore(opts);
    try {
      await s.load();
    } catch (e) {
      s.client.close();
      throw new StoreUnavailableError(`etcd at ${opts.endpoints.join(',')}: ${(e as Error).message}`);
    }
    s.lastQuorumAt = Date.now();
    s.watching = s.watchLoop();
    s.probeTimer = setInterval(() => {
      s.probe().catch((e: unknown) => (s.probeError = String(e)));
    }, PROBE_MS);
    s.probeTimer.unref();
    return s;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.stream?.cancel();
    await this.watching.catch(() => undefined);
    for (const w of this.queue.splice(0)) w.reject(new StoreUnavailableError('the store is closed'));
    this.client.close();
  }

  /** A key outside the records, under the same prefix (the leadership's). */
  keyOf(name: string): Buffer {
    return Buffer.concat([this.root, Buffer.from(name)]);
  }

  get hasQuorum(): boolean {
    return Date.now() - this.lastQuorumAt < QUORUM_LOST_AFTER_MS;
  }

  health(): StoreHealth {
    return {
      store: 'etcd',
      quorum: this.hasQuorum,
      revision: this.revision,
      watchBehindMs: this.behind ? Date.now() - this.behind.since : 0,
      watchRestarts: this.watchRestarts,
      ...(this.probeError && !this.hasQuorum ? { error: this.probeError } : {}),
    };
  }

  onOutboxWrite(listener: () => void): void {
    this.outboxListeners.push(listener);
  }

  // ---- reads ----

  protected values(kind: 'g' | 'p' | 'l'): Iterable<unknown> {
    return this.byId(kind).values();
  }

  private byId(kind: 'g' | 'p' | 'l'): Map<string, unknown> {
    return kind === 'g' ? this.groupsById : kind === 'p' ? this.portsById : this.logResourcesById;
  }

  outboxDepth(): number {
    return this.pending.size;
  }

  outbox(): OutboxEntry[] {
    return sortOutbox([...this.pending.values()]).map(({ key, owner, at, message }) => ({ key, owner, at, message }));
  }

  protected outboxMessages(): UpdateMessage[] {
    return this.outbox().map((e) => e.message);
  }

  /** The outbox as a majority holds it now, read only if `guard` still holds (the leadership's fence:
   *  its key still the one it created); null if it does not. */
  async outboxIf(guard: ICompare[]): Promise<OutboxEntry[] | null> {
    const key = this.keyOf('o/');
    const res = await this.client.kv.txn({
      compare: guard,
      success: [{ request_range: { key, range_end: prefixEnd(key), sort_order: SortOrder.Ascend, sort_target: SortTarget.Mod } }],
    });
    if (!res.succeeded) return null;
    const kvs = res.responses[0]!.response_range.kvs;
    return sortOutbox(
      kvs.map((kv) => this.outboxEntry(kv.key.subarray(this.root.length).toString(), kv.value, Number(kv.mod_revision))),
    ).map(({ key: k, owner, at, message }) => ({ key: k, owner, at, message }));
  }

  async ackOutbox(keys: OutboxKey[]): Promise<void> {
    // etcd's limit on operations per transaction: in slices.
    const max = this.operationsPerTransaction();
    for (let i = 0; i < keys.length; i += max) {
      const ops: IRequestOp[] = keys.slice(i, i + max).map((k) => ({ request_delete_range: { key: this.keyOf(k[0] as string) } }));
      const res = await this.request(() => this.client.kv.txn({ success: ops }));
      await this.applied(Number(res.header.revision));
    }
  }

  // ---- the mirror: loaded once, then followed ----

  private async load(): Promise<void> {
    const res = await this.client.kv.range({ key: this.root, range_end: prefixEnd(this.root) });
    this.entries.clear();
    this.groupsById.clear();
    this.portsById.clear();
    this.logResourcesById.clear();
    this.children.clear();
    this.pending.clear();
    for (const kv of res.kvs) this.apply(kv, false);
    this.setRevision(Number(res.header.revision));
    this.notifyOutbox();
  }

  private outboxEntry(path: string, value: Buffer, mod: number): OutboxEntry & { mod: number; seq: number } {
    const [, owner, seq] = path.split('/');
    const v = JSON.parse(value.toString()) as { at: number; message: UpdateMessage };
    return { key: [path], owner: owner!, at: v.at, message: v.message, mod, seq: Number(seq) };
  }

  /** One key's new state (a put, or with `deleted` its deletion) into the mirror. */
  private apply(kv: IKeyValue, deleted: boolean): void {
    const path = kv.key.subarray(this.root.length).toString();
    const parts = path.split('/');
    const kind = parts[0] as Kind;
    if (!KINDS.includes(kind)) return;
    const mod = Number(kv.mod_revision);
    if (kind === 'o') {
      if (deleted) this.pending.delete(path);
      else this.pending.set(path, this.outboxEntry(path, kv.value, mod));
      return;
    }
    const value = deleted ? undefined : (JSON.parse(kv.value.toString()) as unknown);
    if (deleted) this.entries.delete(path);
    else this.entries.set(path, { value, mod });
    const id = decode(parts[1] ?? '');
    if (kind === 'g' || kind === 'p' || kind === 'l') {
      const map = this.byId(kind);
      if (deleted) map.delete(id);
      else map.set(id, value);
      return;
    }
    const parent = `${kind}/${parts[1]}`;
    const child = decode(parts[2] ?? '');
    let set = this.children.get(parent);
    if (deleted) {
      set?.delete(child);
      if (set?.size === 0) this.children.delete(parent);
    } else {
      if (!set) this.children.set(parent, (set = new Set()));
      set.add(child);
    }
  }

  private setRevision(rev: number): void {
    if (rev <= this.revision) return;
    this.revision = rev;
    if (this.behind && this.revision >= this.behind.rev) this.behind = undefined;
    for (let i = this.revisionWaiters.length - 1; i >= 0; i--) {
      const w = this.revisionWaiters[i]!;
      if (w.rev <= rev) {
        this.revisionWaiters.splice(i, 1);
        this.opts.metrics?.watchLag.observe((Date.now() - w.at) / 1000);
        w.resolve();
      }
    }
  }

  /** Resolves once the mirror holds revision `rev` (a revision under the prefix), or after a while
   *  regardless: what was written is written, and a silent watch is made again meanwhile (probe). */
  private applied(rev: number): Promise<void> {
    if (this.revision >= rev || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, APPLIED_WAIT_MS);
      timer.unref();
      this.revisionWaiters.push({ rev, at: Date.now(), resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  private notifyOutbox(): void {
    for (const l of this.outboxListeners) l();
  }

  /** One watch stream at a time, from the revision after the mirror's; made again when it fails, ends,
   *  or (the probe) stays silent about changes a majority holds. */
  private async watchLoop(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.watchOnce();
        attempt = 0;
      } catch (e) {
        if (this.closed) return;
        this.opts.logger?.warn({ err: (e as Error).message }, 'etcd watch failed; watching again');
      }
      if (this.closed) return;
      this.watchRestarts++;
      await new Promise((r) => setTimeout(r, Math.min(2_000, 50 * 2 ** Math.min(attempt, 6))));
    }
  }

  private async watchOnce(): Promise<void> {
    const stream = await this.client.watchClient.watch();
    this.stream = stream;
    // Closed while the stream was being opened: nobody would cancel it later.
    if (this.closed) return stream.cancel();
    await new Promise<void>((resolve, reject) => {
      let compacted = false;
      stream.on('data', (res: IWatchResponse) => {
        if (res.canceled) {
          // Compacted past the mirror: the events between are gone, so the mirror is read anew.
          if (Number(res.compact_revision) > 0) compacted = true;
          stream.cancel();
          return;
        }
        if (!res.events?.length) return;
        let outbox = false;
        for (const ev of res.events) {
          this.apply(ev.kv, ev.type === 'Delete');
          outbox ||= ev.kv.key.subarray(this.root.length, this.root.length + 2).toString() === 'o/' && ev.type !== 'Delete';
        }
        this.setRevision(Number(res.events.at(-1)!.kv.mod_revision));
        if (outbox) this.notifyOutbox();
      });
      const ended = (err?: Error) => {
        if (compacted && !this.closed) {
          compacted = false;
          this.opts.logger?.warn("etcd compacted past this controller's copy: reading the store anew");
          this.load().then(resolve, reject);
        } else if (err && !this.closed && !/cancel/i.test(err.message)) reject(err);
        else resolve();
      };
      stream.on('error', (e: Error) => ended(e));
      stream.on('end', () => ended());
      stream.write({ create_request: { key: this.root, range_end: prefixEnd(this.root), start_revision: this.revision + 1 } });
    });
    if (this.stream === stream) this.stream = undefined;
  }

  /** Asks a majority for the newest change under the prefix after the mirror's revision: quorum for
   *  /healthz, and a watch that stays silent about it (its member cut off) is made again. */
  private async probe(): Promise<void> {
    if (this.closed) return;
    try {
      const res = await this.client.kv.range({
        key: this.root,
        range_end: prefixEnd(this.root),
        min_mod_revision: this.revision + 1,
        sort_order: SortOrder.Descend,
        sort_target: SortTarget.Mod,
        limit: 1,
        keys_only: true,
      });
      this.lastQuorumAt = Date.now();
      this.probeError = undefined;
      const newest = Number(res.kvs[0]?.mod_revision ?? 0);
      if (newest > this.revision) {
        this.behind ??= { rev: newest, since: Date.now() };
        if (Date.now() - this.behind.since > WATCH_GRACE_MS) {
          this.opts.logger?.warn(
            { mirror: this.revision, majority: newest },
            'the etcd watch is silent about changes a majority holds; watching again',
          );
          this.behind = { rev: newest, since: Date.now() };
          this.stream?.cancel();
        }
      }
    } catch (e) {
      this.probeError = (e as Error).message;
    }
  }

  // ---- transactions ----

  protected override operationsPerTransaction(): number {
    return this.opts.maxTxnOps ?? 128;
  }

  protected transact<R>(f: (tx: RecordTx) => R): Promise<R> {
    if (!this.hasQuorum)
      return Promise.reject(new StoreUnavailableError(`etcd has no quorum (${this.probeError ?? 'no majority answered'}); retry`));
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ f, resolve: resolve as (v: unknown) => void, reject });
      // A batch's failure is answered to the callers of its changes (commitQueued); the catch is for
      // a defect in the loop itself, which must not end the process.
      this.commitQueued().catch((e: unknown) => this.opts.logger?.error({ err: e }, 'etcd store: the commit loop failed'));
    });
  }

  private async commitQueued(): Promise<void> {
    if (this.committing) return;
    this.committing = true;
    try {
      while (this.queue.length) {
        const batch = this.queue.splice(0);
        // commitBatch answers every change it takes. Should it fail otherwise (a defect), the changes
        // it took are refused rather than left waiting, and no rejection goes unhandled.
        await this.commitBatch(batch).catch((e: unknown) => {
          const err = new StoreUnavailableError(`etcd store: ${e instanceof Error ? e.message : String(e)}; retry`);
          for (const w of batch) if (!this.queue.includes(w)) w.reject(err);
        });
      }
    } finally {
      this.committing = false;
    }
  }

  /** Commits the changes of `batch` in one transaction, running them again on a newer snapshot after
   *  a conflict. Each change's result or error goes to its caller. */
  private async commitBatch(batch: Waiting[]): Promise<void> {
    const max = this.operationsPerTransaction();
    for (let attempt = 1; ; attempt++) {
      const tx = new MirrorTx(this.view, (key) => this.entries.get(key)?.mod ?? 0);
      const outcomes: ({ ok: unknown } | { err: unknown })[] = [];
      const taken: Waiting[] = [];
      for (const w of batch) {
        const layer = tx.layer();
        let outcome: { ok: unknown } | { err: unknown };
        try {
          outcome = { ok: w.f(layer) };
        } catch (err) {
          outcome = { err };
        }
        if ('ok' in outcome && tx.size(layer) > max) {
          if (taken.length > 0) break;
          outcome = {
            err: new ChangeTooLargeError(
              `this change needs more than etcd's ${max} operations per transaction (--max-txn-ops; store.etcd.maxTxnOps)`,
            ),
          };
        }
        if ('ok' in outcome) tx.merge(layer);
        outcomes.push(outcome);
        taken.push(w);
      }
      // What did not fit waits for the next transaction.
      if (taken.length < batch.length) this.queue.unshift(...batch.slice(taken.length));
      const settle = () =>
        taken.forEach((w, i) => ('ok' in outcomes[i]! ? w.resolve(outcomes[i].ok) : w.reject((outcomes[i] as { err: unknown }).err)));
      if (tx.empty()) return settle();
      let res;
      const started = process.hrtime.bigint();
      try {
        res = await this.request(() =>
          this.client.kv.txn({
            compare: tx.compares(this.root),
            success: tx.operations(this.root, () => this.outboxKey()),
            // Refused: the newest change under the prefix, which the mirror must hold before a new attempt.
            failure: [
              {
                request_range: {
                  key: this.root,
                  range_end: prefixEnd(this.root),
                  sort_order: SortOrder.Descend,
                  sort_target: SortTarget.Mod,
                  limit: 1,
                  keys_only: true,
                },
              },
            ],
          }),
        );
      } catch (e) {
        const err = e instanceof StoreUnavailableError ? e : new StoreUnavailableError(`etcd: ${(e as Error).message}; retry`);
        for (const w of taken) w.reject(err);
        return;
      }
      this.opts.metrics?.commit.observe(Number(process.hrtime.bigint() - started) / 1e9);
      const rev = res.succeeded ? Number(res.header.revision) : Number(res.responses[0]?.response_range.kvs[0]?.mod_revision ?? 0);
      await this.applied(rev);
      if (res.succeeded) return settle();
      this.opts.metrics?.conflicts.inc();
      if (attempt >= MAX_ATTEMPTS) {
        for (const w of taken) w.reject(new StoreUnavailableError("the change kept conflicting with other controllers' changes; retry"));
        return;
      }
      batch = taken;
    }
  }

  private outboxKey(): string {
    return `o/${this.owner}/${String(++this.seq).padStart(12, '0')}`;
  }

  private async request<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw new StoreUnavailableError(`etcd: ${(e as Error).message}; retry`);
    }
  }

  /** Writes what differs between the store and `snap`, in transactions of at most maxTxnOps
   *  operations; the snapshot's outbox replaces the store's. For a store no controller runs on. */
  async restore(snap: StoreSnapshot): Promise<void> {
    const want = new Map<string, unknown>();
    for (const g of snap.groups) want.set(recordPath(['g', g.id]), g);
    for (const p of snap.ports) {
      want.set(recordPath(['p', p.id]), p);
      for (const host of portHosts(p)) want.set(recordPath(['h', host, p.id]), 1);
    }
    for (const [g, counts] of Object.entries(snap.members))
      for (const [a, n] of Object.entries(counts)) want.set(recordPath(['m', g, a]), n);
    for (const r of snap.logResources ?? []) want.set(recordPath(['l', r.id]), r);
    const ops: IRequestOp[] = [];
    for (const [path, value] of want) {
      const have = this.entries.get(path);
      if (!have || JSON.stringify(have.value) !== JSON.stringify(value))
        ops.push({ request_put: { key: this.keyOf(path), value: Buffer.from(JSON.stringify(value)) } });
    }
    for (const path of this.entries.keys()) if (!want.has(path)) ops.push({ request_delete_range: { key: this.keyOf(path) } });
    for (const path of this.pending.keys()) ops.push({ request_delete_range: { key: this.keyOf(path) } });
    const now = Date.now();
    snap.outbox.forEach((message, i) =>
      ops.push({
        request_put: {
          key: this.keyOf(this.outboxKey()),
          value: Buffer.from(JSON.stringify({ at: now - snap.outbox.length + i, message })),
        },
      }),
    );
    const max = this.operationsPerTransaction();
    for (let i = 0; i < ops.length; i += max) {
      const res = await this.request(() => this.client.kv.txn({ success: ops.slice(i, i + max) }));
      await this.applied(Number(res.header.revision));
    }
  }
}

/** By commit: the revision each was written at, then (one transaction) its writer's sequence. */
function sortOutbox<E extends { mod: number; seq: number }>(entries: E[]): E[] {
  return entries.sort((a, b) => a.mod - b.mod || a.seq - b.seq);
}

/** A transaction on the mirror: reads fall through to it (each remembered with its modification
 *  revision, to be compared at commit), writes and messages are kept. Layers let one change of a batch
 *  be dropped (it threw) without the others. */
class MirrorTx {
  readonly reads = new Map<string, number>();
  readonly writes = new Map<string, Written>();
  readonly messages: UpdateMessage[] = [];

  constructor(
    private readonly base: RecordView,
    private readonly modOf: (path: string) => number,
  ) {}

  layer(): RecordTx & { writes: Map<string, Written>; messages: UpdateMessage[] } {
    const writes = new Map<string, Written>();
    const messages: UpdateMessage[] = [];
    const lookup = (path: string, key: RecordKey): unknown => {
      if (writes.has(path)) return writes.get(path);
      if (this.writes.has(path)) return this.writes.get(path);
      if (!this.reads.has(path)) this.reads.set(path, this.modOf(path));
      return this.base.get(key);
    };
    const value = (v: unknown) => (v === DELETED ? undefined : v);
    // The base's children of [kind, id], then this transaction's own.
    const children = (kind: 'h' | 'm', id: string): string[] => {
      const ids = new Set(this.base.idsUnder(kind, id));
      const parent = `${kind}/${encode(id)}/`;
      for (const w of [this.writes, writes]) {
        for (const [path, v] of w) {
          if (!path.startsWith(parent)) continue;
          const child = decode(path.slice(parent.length));
          if (v === DELETED) ids.delete(child);
          else ids.add(child);
        }
      }
      return [...ids];
    };
    return {
      writes,
      messages,
      get: (key) => value(lookup(recordPath(key), key)),
      idsUnder: (kind, id) => {
        // Each child read: a changed count is a conflict; a child added or removed is one too,
        // through the group record every such change writes (records.ts).
        const ids = children(kind, id);
        for (const child of ids) lookup(`${kind}/${encode(id)}/${encode(child)}`, [kind, id, child] as RecordKey);
        return ids;
      },
      memberIds: (groupId) => {
        // The group's record read in place of each member (see RecordTx.memberIds).
        lookup(recordPath(['g', groupId]), ['g', groupId]);
        return children('m', groupId);
      },
      put: (key, v) => void writes.set(recordPath(key), v),
      remove: (key) => void writes.set(recordPath(key), DELETED),
      enqueue: (m) => void messages.push(m),
    };
  }

  /** Operations the transaction would have with this layer merged. */
  size(layer: { writes: Map<string, Written>; messages: UpdateMessage[] }): number {
    let writes = this.writes.size + this.messages.length + layer.messages.length;
    for (const k of layer.writes.keys()) if (!this.writes.has(k)) writes++;
    return Math.max(writes, this.reads.size);
  }

  merge(layer: { writes: Map<string, Written>; messages: UpdateMessage[] }): void {
    for (const [k, v] of layer.writes) this.writes.set(k, v);
    this.messages.push(...layer.messages);
  }

  empty(): boolean {
    return this.writes.size === 0 && this.messages.length === 0;
  }

  compares(root: Buffer): ICompare[] {
    return [...this.reads].map(([path, mod]) => ({
      key: Buffer.concat([root, Buffer.from(path)]),
      target: CompareTarget.Mod,
      result: CompareResult.Equal,
      mod_revision: mod,
    }));
  }

  operations(root: Buffer, outboxKey: () => string): IRequestOp[] {
    const key = (path: string) => Buffer.concat([root, Buffer.from(path)]);
    const ops: IRequestOp[] = [...this.writes].map(([path, v]) =>
      v === DELETED
        ? { request_delete_range: { key: key(path) } }
        : { request_put: { key: key(path), value: Buffer.from(JSON.stringify(v)) } },
    );
    const at = Date.now();
    for (const message of this.messages)
      ops.push({ request_put: { key: key(outboxKey()), value: Buffer.from(JSON.stringify({ at, message })) } });
    return ops;
  }
}
