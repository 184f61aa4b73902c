// `sg-agent run | status | cleanup | check`.
import pino from 'pino';
import { loadConfig } from './config.js';
import { Agent } from './agent.js';
import { checkOwnCapabilities } from '../capabilities.js';
import { cleanupBackend, decide, kernelSupport } from '../firewall/select.js';
import { option } from '../cli/command-line.js';
import type { PortCounters } from '../firewall/engine.js';
import { parseTcpListen, urlAuthority } from '../settings.js';

export async function run(args: string[]): Promise<number> {
  const cfg = loadConfig(option(args, '--config'));
  const log = pino({ level: cfg.logLevel, base: { host: cfg.host } });
  const caps = checkOwnCapabilities();
  if (caps.message) {
    log.fatal({ missing: caps.missing }, caps.message);
    return 1;
  }
  const agent = new Agent(cfg, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping; the firewall stays in place');
    // A stop that fails still ends the process (non-zero), never as an unhandled rejection.
    agent.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: e }, 'stopping failed; the firewall stays in place');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await agent.start();
  return new Promise<number>(() => undefined);
}

export async function status(args: string[]): Promise<number> {
  const cfg = loadConfig(option(args, '--config'), { SG_AGENT_HOST: '-', SG_AMQP_URL: '-', ...process.env });
  if (!cfg.metricsListen) {
    console.error('sg-agent status: the metrics listener is off (metricsListen is empty)');
    return 1;
  }
  const withCounters = args.includes('--counters');
  const res = await fetch(`http://${urlAuthority(parseTcpListen(cfg.metricsListen)!)}/status${withCounters ? '?counters' : ''}`).catch(
    () => undefined,
  );
  if (!res?.ok) {
    console.error(`sg-agent status: no agent answering on ${cfg.metricsListen}`);
    return 1;
  }
  const s = (await res.json()) as {
    host: string;
    connected: boolean;
    ports: { id: string; device: string; groups: string[] }[];
    groups: { id: string; members: number; rulesRevision: number | null; membersRevision: number | null }[];
    sets: { name: string; groupId: string; family: 4 | 6; size: number; pending?: true }[];
    quarantined?: { kind: string; id: string; reason: string; since: number }[];
    conntrackZones?: { bridge: string; zone: number }[];
    counters?: PortCounters[];
  };
  console.log(`host ${s.host} (${s.connected ? 'connected' : 'disconnected'})`);
  console.log(`ports (${s.ports.length}):`);
  for (const p of s.ports) console.log(`  ${p.id}  ${p.device}  groups=${p.groups.join(',')}`);
  console.log(`groups (${s.groups.length}):`);
  for (const g of s.groups)
    console.log(`  ${g.id}  members=${g.members}  rules@${g.rulesRevision ?? '-'} members@${g.membersRevision ?? '-'}`);
  console.log(`sets (${s.sets.length}):`);
  for (const set of s.sets) {
    // Pending: the agent holds members the kernel does not have yet (their apply waits or runs).
    const pending = set.pending ? '  (pending)' : '';
    console.log(`  ${set.name}  ${set.family === 4 ? 'inet' : 'inet6'}  size=${set.size}  group=${set.groupId}${pending}`);
  }
  const q = s.quarantined ?? [];
  if (q.length) {
    console.log(`quarantined (${q.length}):`);
    for (const e of q) console.log(`  ${e.kind} ${e.id}  since ${new Date(e.since).toISOString()}  ${e.reason}`);
  }
  if (s.conntrackZones) {
    console.log(`conntrack zones (${s.conntrackZones.length} bridges):`);
    for (const z of s.conntrackZones) console.log(`  ${z.bridge}  zone=${z.zone}`);
  }
  if (withCounters) printCounters(s.counters ?? []);
  return 0;
}

/** Per port: each security-group rule's and fixed rule's packets and bytes, by chain. */
function printCounters(ports: PortCounters[]): void {
  console.log(`counters (${ports.length} ports):`);
  for (const p of ports) {
    console.log(`  port ${p.portId}`);
    for (const r of p.rules) console.log(`    ${r.chain.padEnd(13)} rule ${r.ruleId}  packets=${r.packets} bytes=${r.bytes}`);
    for (const f of p.fixed) console.log(`    ${f.chain.padEnd(13)} ${f.name}  packets=${f.packets} bytes=${f.bytes}`);
  }
}

export async function cleanup(args: string[]): Promise<number> {
  const cfg = loadConfig(option(args, '--config'), { SG_AGENT_HOST: '-', SG_AMQP_URL: '-', ...process.env });
  // Both backends: a host may have run either (or been switched from one to the other).
  let removed = 0;
  const left: string[] = [];
  for (const kind of ['iptables', 'nftables'] as const) {
    try {
      const r = await cleanupBackend(kind, { ...(cfg.netns ? { netns: cfg.netns } : {}), prefix: cfg.prefix, mode: cfg.mode });
      removed += r.removed;
      left.push(...r.left);
    } catch (e) {
      left.push(`${kind}: could not be cleaned up (${(e as Error).message})`);
    }
  }
  console.log(`removed ${removed} chains, tables and sets of prefix ${cfg.prefix}`);
  if (left.length === 0) return 0;
  // Only objects this agent made are touched: one another program refers to is emptied and left.
  for (const l of left) console.error(`left in place: ${l}`);
  return 1;
}

/** What this process may do and what the kernel supports; what `dataplane: auto` would choose. */
export async function check(args: string[]): Promise<number> {
  const caps = checkOwnCapabilities();
  if (caps.message) console.error(caps.message);
  else console.log('capabilities: CAP_NET_ADMIN and CAP_NET_RAW present');
  if (caps.missing.includes('CAP_NET_ADMIN')) return 1;
  const cfg = loadConfig(option(args, '--config'), { SG_AGENT_HOST: '-', SG_AMQP_URL: '-', ...process.env });
  const k = await kernelSupport(cfg.netns);
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  if ('error' in k.nftables) console.log(`nf_tables: unavailable (${k.nftables.error})`);
  else {
    const n = k.nftables;
    console.log(`nf_tables inet family (the nftables backend): ${yes(n.inet)}`);
    console.log(`nf_tables bridge family (bridged ports without physdev): ${yes(n.bridge)}`);
    console.log(`nf_conntrack_bridge (conntrack in the bridge family): ${yes(n.conntrackBridge)}`);
    console.log(`nft bridge meta (ibrname…): ${yes(n.bridgeMeta)}`);
    console.log(`conntrack zones set by a rule (firewall.conntrackZoneBridges): ${yes(n.conntrackZones)}`);
    for (const note of n.notes) console.log(`  ${note}`);
  }
  console.log(`br_netfilter: ${k.brNetfilter ? 'loaded' : 'not loaded (bridged ports are not filtered by either backend without it)'}`);
  const d = decide(k, cfg.mode);
  console.log(`dataplane: ${cfg.dataplane}${cfg.dataplane === 'auto' ? ` → ${d.kind}` : ''} (auto would choose ${d.kind}: ${d.reason})`);
  return caps.message ? 1 : 0;
}
