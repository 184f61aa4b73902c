// A minimal OVSDB client (RFC 7047 JSON-RPC over a stream socket) for bench/ovn.ts: transactions and
// table monitors, as Neutron's OVN driver and ovn-controller speak to the databases, without a process
// per call (ovn-nbctl would cost the storm's driver more CPU than the daemons it measures).
import net from 'node:net';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
/** One monitored row's new contents (absent when it was deleted). */
export type RowUpdate = { old?: Record<string, Json>; new?: Record<string, Json> };
export type TableUpdates = Record<string, Record<string, RowUpdate>>;

/** Splits a byte stream into the JSON texts it carries back to back (OVSDB frames nothing else). */
class JsonSplitter {
  private buf = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private scanned = 0;

  push(chunk: string, out: (text: string) => void): void {
    this.buf += chunk;
    for (let i = this.scanned; i < this.buf.length; i++) {
      const c = this.buf[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
      } else if (c === '"') this.inString = true;
      else if (c === '{' || c === '[') this.depth++;
      else if ((c === '}' || c === ']') && --this.depth === 0) {
        out(this.buf.slice(0, i + 1));
        this.buf = this.buf.slice(i + 1);
        i = -1;
      }
    }
    this.scanned = this.buf.length;
  }
}

export class OvsdbClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Json) => void; reject: (e: Error) => void }>();
  private readonly monitors = new Map<string, (u: TableUpdates) => void>();

  private constructor(private readonly socket: net.Socket) {
    const splitter = new JsonSplitter();
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => splitter.push(d, (t) => this.receive(JSON.parse(t) as Record<string, Json>)));
    socket.on('error', (e) => this.failAll(e));
    socket.on('close', () => this.failAll(new Error('ovsdb: connection closed')));
  }

  /** `target`: a unix socket path. */
  static connect(target: string): Promise<OvsdbClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(target, () => resolve(new OvsdbClient(s)));
      s.once('error', reject);
    });
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private receive(m: Record<string, Json>): void {
    if (m.method === 'echo') {
      this.socket.write(JSON.stringify({ result: m.params, error: null, id: m.id }));
    } else if (m.method === 'update') {
      const [id, updates] = m.params as [string, TableUpdates];
      this.monitors.get(id)?.(updates);
    } else if (typeof m.id === 'number') {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new Error(`ovsdb: ${JSON.stringify(m.error)}`));
      else p?.resolve(m.result ?? null);
    }
  }

  private call(method: string, params: Json[]): Promise<Json> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.write(JSON.stringify({ method, params, id }));
    });
  }

  /** One transaction; its operations' results, or an error naming the first that failed. */
  async transact(db: string, ops: Json[]): Promise<Record<string, Json>[]> {
    const results = (await this.call('transact', [db, ...ops])) as Record<string, Json>[];
    const failed = results.find((r) => r && r.error);
    if (failed || results.length < ops.length) throw new Error(`ovsdb transact on ${db}: ${JSON.stringify(failed ?? results)}`);
    return results;
  }

  /** Monitors `columns` of `table`; `onUpdate` gets the initial rows, then every change. */
  async monitor(db: string, table: string, columns: string[], onUpdate: (rows: Record<string, RowUpdate>) => void): Promise<void> {
    const id = `${table}-${this.nextId}`;
    const deliver = (u: TableUpdates) => onUpdate(u[table] ?? {});
    this.monitors.set(id, deliver);
    deliver((await this.call('monitor', [db, id, { [table]: { columns } }])) as TableUpdates);
  }

  close(): void {
    this.socket.destroy();
  }
}
