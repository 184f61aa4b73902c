// The Neutron source of the control plane: Neutron stays the source of truth and is not changed;
// sg-controller reads it through its REST API and hears of changes on its RabbitMQ, and everything
// goes on through the controller's usual path (store → outbox → relay → publisher → agents).
//
// Messages are hints, never data: a message names what changed, the reconciler re-reads it from the
// API (batched). So a stale, reordered, duplicated or forged message can cause a read, never a wrong
// firewall, and a server whose object versions differ from ours is still understood. What cannot be
// read at all — or a gap (broker connection lost, consumer cancelled) — leads to a full resync.
import type { Logger } from 'pino';
import type { ControllerStore } from '../controller/records.js';
import { NeutronApi, type NeutronApiOptions } from './api.js';
import { NeutronListener } from './listener.js';
import { pushExchanges, type NeutronEvent, type NeutronMessageError } from './messages.js';
import { NeutronReconciler } from './reconciler.js';
import type { DeviceNaming } from './translate.js';

export interface NeutronSourceOptions {
  api: NeutronApiOptions;
  /** Neutron's transport URL (its `[DEFAULT] transport_url`), for a broker user of sg-controller's. */
  brokerUrl: string;
  naming?: DeviceNaming;
  /** Full resync period (default 10 minutes; 0: none). */
  resyncIntervalMs?: number;
  /** Least time between two full resyncs caused by unreadable messages (default 10 s). */
  minResyncGapMs?: number;
  /** Push versions bound around the known ones (default 4 minor versions each way). */
  versionsAround?: { below: number; above: number };
  logger?: Logger;
}

/** Without a Port push for this long, a legacy member cast is acted on by itself (see onEvent). */
const PUSH_LIVENESS_MS = 60_000;

export interface SourceStats {
  /** Messages read, by kind (push type, cast method). */
  messages: Record<string, number>;
  /** Messages that could not be read, by reason. */
  unreadable: Record<string, number>;
  /** Pushes of a version other than the one this code knows, by `Type version`: read all the same. */
  unknownVersions: Record<string, number>;
  /** Legacy member casts left to the Port pushes that cover them. */
  memberCastsCovered: number;
  lastMessageAt?: string;
}

export class NeutronSource {
  readonly api: NeutronApi;
  readonly reconciler: NeutronReconciler;
  readonly listener: NeutronListener;
  readonly stats: SourceStats = { messages: {}, unreadable: {}, unknownVersions: {}, memberCastsCovered: 0 };
  private lastPortPushAt = 0;
  private periodic?: NodeJS.Timeout;
  private readonly logged = new Set<string>();

  constructor(
    store: ControllerStore,
    written: () => void,
    private readonly opts: NeutronSourceOptions,
  ) {
    this.api = new NeutronApi(opts.api);
    this.reconciler = new NeutronReconciler({
      store,
      api: this.api,
      written,
      logger: opts.logger,
      ...(opts.naming ? { naming: opts.naming } : {}),
      ...(opts.minResyncGapMs !== undefined ? { minResyncGapMs: opts.minResyncGapMs } : {}),
    });
    this.listener = new NeutronListener({
      url: opts.brokerUrl,
      exchanges: pushExchanges(opts.versionsAround?.below, opts.versionsAround?.above),
      logger: opts.logger,
      onEvent: (e) => this.onEvent(e),
      onUnreadable: (e) => this.onUnreadable(e),
      // Bound first, then read: a change made during the read is heard and read again after it.
      onBound: (reconnected) => this.reconciler.resync(reconnected ? 'reconnect' : 'start'),
      onLost: () => undefined,
    });
  }

  /** Binds to Neutron's exchanges and starts the first full resync. On a first start (empty store) it
   *  resolves only once that resync is done, so agents are never told an empty state; otherwise at
   *  once, even with Neutron's broker or API down: the stored state is what agents already enforce,
   *  and the resync corrects it when it can run. */
  async start(): Promise<void> {
    const wasEmpty = this.reconciler.storeEmpty;
    const done = this.reconciler.fullResyncDone();
    // Retries until bound; the first full resync starts once it is (onBound).
    const bound = this.listener.start();
    const every = this.opts.resyncIntervalMs ?? 600_000;
    if (every > 0) {
      this.periodic = setInterval(() => this.reconciler.resync('periodic'), every);
      this.periodic.unref();
    }
    if (wasEmpty) {
      await bound;
      await done;
    }
  }

  async stop(): Promise<void> {
    if (this.periodic) clearInterval(this.periodic);
    await this.listener.stop();
    await this.reconciler.close();
  }

  status(): Record<string, unknown> {
    return { brokerConnected: this.listener.connected, apiRequests: this.api.requests, ...this.stats, reconciler: this.reconciler.stats };
  }

  private count(kind: string): void {
    this.stats.messages[kind] = (this.stats.messages[kind] ?? 0) + 1;
    this.stats.lastMessageAt = new Date().toISOString();
  }

  /** Logs the first occurrence of each kind of oddity (message bodies never: they carry request
   *  contexts, tokens included); the counters hold the rest. */
  private logOnce(key: string, msg: string, fields: Record<string, unknown>): void {
    if (this.logged.has(key) || this.logged.size > 1000) return;
    this.logged.add(key);
    this.opts.logger?.warn(fields, msg);
  }

  private onEvent(e: NeutronEvent): void {
    const r = this.reconciler;
    switch (e.kind) {
      case 'push': {
        this.count(`push ${e.type}`);
        if (!e.known) {
          const k = `${e.type} ${e.version}`;
          this.stats.unknownVersions[k] = (this.stats.unknownVersions[k] ?? 0) + 1;
          this.logOnce(
            `version ${k}`,
            'Neutron pushes an object version this sg-controller does not know; reading the objects from the API all the same',
            { type: e.type, version: e.version },
          );
        }
        const deleted = e.event === 'deleted';
        if (e.type === 'Port') {
          this.lastPortPushAt = Date.now();
          r.hint({
            ports: new Map(
              e.objects.map((o) => [
                o.id,
                deleted
                  ? undefined
                  : { ...(o.revision !== undefined ? { revision: o.revision } : {}), ...(o.port ? { pushed: o.port } : {}) },
              ]),
            ),
          });
        } else if (e.type === 'SecurityGroup') {
          r.hint({ groups: e.objects.map((o) => o.id) });
        } else if (e.type === 'AddressGroup') {
          r.hint({ addressGroups: e.objects.map((o) => o.id) });
        } else if (e.type === 'Log') {
          // The logging plugin pushes every change of a log (neutron/services/logapi/rpc/server.py).
          r.hint({ logs: true });
        } else {
          // A rule: its group, which a deletion leaves out (the push carries the rule's id alone).
          for (const o of e.objects) {
            const group = o.securityGroupId ?? r.groupOfRule(o.id);
            if (group) r.hint({ groups: [group] });
            else {
              this.unreadable('rule_without_group');
              r.resync('rule of an unknown group', true);
            }
          }
        }
        return;
      }
      case 'port':
        this.count(e.method);
        r.hint({ ports: new Map([[e.portId, undefined]]) });
        return;
      case 'groups':
        this.count(e.method);
        if (e.method === 'security_groups_rule_updated') r.hint({ groups: e.groupIds });
        // A member cast names groups, not ports. On a stock server the same port change also pushes
        // the Port, which is cheaper to act on; only when Port pushes are not heard (a server whose
        // Port version is outside those bound) does the cast lead to reading the group's ports.
        else if (Date.now() - this.lastPortPushAt > PUSH_LIVENESS_MS) r.hint({ groupMembers: e.groupIds });
        else this.stats.memberCastsCovered++;
        return;
      case 'ignored':
        this.count(`ignored ${e.what}`);
        return;
    }
  }

  private unreadable(reason: string): void {
    this.stats.unreadable[reason] = (this.stats.unreadable[reason] ?? 0) + 1;
  }

  private onUnreadable(e: NeutronMessageError): void {
    this.unreadable(e.reason);
    this.logOnce(`unreadable ${e.reason}`, 'unreadable message on a Neutron exchange: counted, and a full resync scheduled', {
      reason: e.reason,
      detail: e.message,
    });
    this.reconciler.resync(`unreadable message (${e.reason})`, true);
  }
}
