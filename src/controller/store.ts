// The embedded store (the default): the controller's records in LMDB (the `lmdb` package, prebuilt
// binaries from the npm registry), so that a restart loses nothing. LMDB lets several controller
// processes on one host open the same store: writers are serialized across processes and every read
// sees one committed snapshot, so any of them can answer a sync request. Controllers on several
// machines share an etcd store instead (etcd-store.ts); the rules of a change are the same
// (records.ts).
//
// Every change is one transaction that also writes the messages announcing it to an outbox; the
// relay (relay.ts) publishes them and only then deletes them, so a crash or a lost broker connection
// between commit and publish delays an update but never loses it.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import type { UpdateMessage } from '../protocol/messages.js';
import { portHosts } from '../domain/placement.js';
import { ConfigError, describeFsError } from '../settings.js';
import type { StoreMetrics } from './metrics.js';
import {
  RecordStore,
  type ControllerStore,
  type OutboxEntry,
  type OutboxKey,
  type RecordKey,
  type RecordTx,
  type RecordView,
  type StoreHealth,
  type StoreSnapshot,
} from './records.js';

export type { GroupRecord, PortRecord, MemberChange, OutboxEntry, OutboxKey, ControllerStore } from './records.js';

// Keys are arrays (ordered by lmdb): ['g', group], ['p', port], ['l', log resource], ['h', host, port]
// (ports by host), ['m', group, address] → count, ['o', owner, seq] → outbox entry. Ids are arbitrary
// strings, so a range read also checks that each key's id is exactly the one asked for.
const O = 'o';
const KINDS = ['g', 'p', 'l', 'h', 'm', O];

export interface StoreOptions {
  /** fsync every commit (default true). Off, a crash of the OS may lose the last commits. */
  sync?: boolean;
  /** Commit latency goes here. */
  metrics?: StoreMetrics;
}

export class Store extends RecordStore implements ControllerStore {
  readonly kind = 'lmdb' as const;
  readonly owner = randomBytes(6).toString('hex');
  private seq = 0;
  protected readonly view: RecordView;
  private constructor(
    private readonly db: RootDatabase,
    private readonly metrics?: StoreMetrics,
  ) {
    super();
    this.view = { get: (key) => db.get(key as RecordKey & string[]) as unknown, idsUnder: (kind, id) => this.idsUnder(kind, id) };
  }

  static async open(dir: string, opts: StoreOptions = {}): Promise<Store> {
    // A data directory that cannot be made or opened is the operator's to fix: one line naming it.
    let db: RootDatabase;
    try {
      fs.mkdirSync(dir, { recursive: true });
      db = open({ path: path.join(dir, 'store.mdb'), encoding: 'json', noSync: opts.sync === false, compression: false });
    } catch (e) {
      throw new ConfigError(`data directory ${dir}: ${describeFsError(e)}`);
    }
    return new Store(db, opts.metrics);
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  health(): StoreHealth {
    return { store: 'lmdb', quorum: true };
  }

  protected *values(kind: 'g' | 'p' | 'l'): Iterable<unknown> {
    for (const e of this.db.getRange({ start: [kind], end: [kind + '\u0000'] })) yield e.value;
  }

  private idsUnder(kind: string, id: string): string[] {
    const out: string[] = [];
    for (const k of this.db.getKeys({ start: [kind, id], end: [kind, id + '\u0000'] })) {
      const key = k as string[];
      if (key[1] === id && typeof key[2] === 'string') out.push(key[2]);
    }
    return out;
  }

  /** Entries waiting in the outbox, of every controller sharing the store. */
  outboxDepth(): number {
    return this.db.getKeysCount({ start: [O], end: [O + '\u0000'] });
  }

  /** In commit order: by the time each was written; one writer's entries of one time by sequence,
   *  and ties between writers by revision, which keeps each group's revisions rising on the wire. */
  outbox(): OutboxEntry[] {
    const entries = [...this.db.getRange({ start: [O], end: [O + '\u0000'] })].map(({ key, value }) => {
      const k = key as [string, string, number];
      const v = value as { at: number; message: UpdateMessage };
      return { key: k, owner: k[1], at: v.at, message: v.message };
    });
    const seq = (e: OutboxEntry) => e.key[2] as number;
    return entries.sort((a, b) => a.at - b.at || (a.owner === b.owner ? seq(a) - seq(b) : revisionOf(a) - revisionOf(b)));
  }

  protected outboxMessages(): UpdateMessage[] {
    return this.outbox().map((e) => e.message);
  }

  /** Removes published outbox entries. */
  async ackOutbox(keys: OutboxKey[]): Promise<void> {
    if (keys.length === 0) return;
    await this.db.transaction(() => {
      for (const k of keys) this.db.removeSync(k as (string | number)[]);
    });
  }

  protected transact<R>(f: (tx: RecordTx) => R): Promise<R> {
    const db = this.db;
    const tx: RecordTx = {
      ...this.view,
      // One LMDB transaction holds any number of reads: the set is read as it is.
      memberIds: (groupId) => this.view.idsUnder('m', groupId),
      // Inside the transaction's callback the sync forms write in the transaction (lmdb-js).
      put: (key, value) => void db.putSync(key as RecordKey & string[], value),
      remove: (key) => void db.removeSync(key as RecordKey & string[]),
      enqueue: (message) => this.enqueue(message),
    };
    const started = process.hrtime.bigint();
    const done = db.transaction(() => f(tx));
    const metrics = this.metrics;
    // The caller handles the transaction's own outcome; this branch only times a commit.
    if (metrics) done.then(() => metrics.commit.observe(Number(process.hrtime.bigint() - started) / 1e9)).catch(() => undefined);
    return done;
  }

  private enqueue(message: UpdateMessage, at = Date.now()): void {
    this.db.putSync([O, this.owner, ++this.seq], { at, message });
  }

  /** One transaction: what was there goes, the snapshot comes (its outbox as this handle's entries). */
  async restore(snap: StoreSnapshot): Promise<void> {
    const now = Date.now();
    await this.db.transaction(() => {
      for (const kind of KINDS) for (const k of this.db.getKeys({ start: [kind], end: [kind + '\u0000'] })) this.db.removeSync(k);
      for (const g of snap.groups) this.db.putSync(['g', g.id], g);
      for (const p of snap.ports) {
        this.db.putSync(['p', p.id], p);
        for (const host of portHosts(p)) this.db.putSync(['h', host, p.id], 1);
      }
      for (const [g, counts] of Object.entries(snap.members)) for (const [a, n] of Object.entries(counts)) this.db.putSync(['m', g, a], n);
      for (const r of snap.logResources ?? []) this.db.putSync(['l', r.id], r);
      // Oldest first, a millisecond apart, all in the past: their order is kept, and none looks newer
      // than an entry a controller writes after the restore.
      snap.outbox.forEach((m, i) => this.enqueue(m, now - snap.outbox.length + i));
    });
  }
}

const revisionOf = (e: OutboxEntry) => ('revision' in e.message ? e.message.revision : 0);
