// Security-group logging on the host, as Neutron's logging API means it (`openstack network log
// create --resource-type security_group --event ACCEPT|DROP|ALL`): the logging rules of the ports'
// chains (the backends write them: docs/firewall.md) send the first packet of each connection a
// logged group's rule admits, and what a logged port's filter drops, to an NFLOG group; this reads
// that group over netlink (the addon's nfnetlink_log reader: no ulogd, no process) and writes one
// line per packet in the format of Neutron's own log driver:
//
//   action=ACCEPT project_id=<log's project> log_resource_ids=['<log id>', …] vm_port=<port id> pkt=…
//
// with Neutron's `[network_log]` meanings: `rate_limit` packets a second at most, `burst_limit` at
// once (the kernel limits each logging rule to the same, so a flood costs the agent no more), and
// `local_output_log_base` the file the lines go to (reopened when rotated away, as Python's
// WatchedFileHandler does; without it the lines go to the agent's own log).
import fs from 'node:fs';
import type { Logger } from 'pino';
import { NflogListener, type LogPacket } from '../addon/nflog.js';
import type { Port, SecurityGroupLog } from '../domain/model.js';
import { idHash, readLogPrefix } from '../firewall/iptables/names.js';
import type { HostState } from '../firewall/state.js';

export interface NetworkLogOptions {
  netns?: string;
  /** The firewall prefix (logging rules' prefixes carry it). */
  prefix: string;
  /** The NFLOG group the logging rules send to. */
  group: number;
  /** Lines a second at most, and at once (Neutron's rate_limit, burst_limit). */
  rateLimit: number;
  burstLimit: number;
  /** The file lines go to; none: the agent's log. */
  file?: string;
  logger: Logger;
}

export interface NetworkLogStats {
  /** Packets the kernel logged to our group. */
  packets: number;
  lines: number;
  /** Packets over the rate limit: not written. */
  limited: number;
  /** Packets of no port, or of a port no log applies to any more (a rule being removed). */
  unmatched: number;
}

/** Bytes of each packet the kernel copies: its headers are all a line shows. */
const COPY_RANGE = 128;

/** The logs of the port that record `action`, each once, in the port's group order. */
export function logsFor(state: Pick<HostState, 'groupLogs'>, port: Port, action: 'ACCEPT' | 'DROP'): SecurityGroupLog[] {
  const out = new Map<string, SecurityGroupLog>();
  for (const g of port.securityGroups) {
    for (const l of state.groupLogs(g)?.logs ?? []) {
      if (l.targetId !== null && l.targetId !== port.id) continue;
      if (l.event === 'ALL' || l.event === action) out.set(l.id, l);
    }
  }
  return [...out.values()];
}

const q = (s: string) => `'${s}'`;

/** The packet as Neutron's line shows it: its headers in os_ken's notation (fields by name). */
export function packetText(p: LogPacket): string {
  const parts: string[] = [];
  if (p.ether) parts.push(`ethernet(dst=${q(p.ether.dst)},ethertype=${p.ether.ethertype},src=${q(p.ether.src)})`);
  const i = p.packet;
  if (i) {
    parts.push(
      i.family === 4 ? `ipv4(dst=${q(i.dst)},proto=${i.proto},src=${q(i.src)})` : `ipv6(dst=${q(i.dst)},nxt=${i.proto},src=${q(i.src)})`,
    );
    const ports = i.sport !== undefined && i.dport !== undefined ? `dst_port=${i.dport},src_port=${i.sport}` : undefined;
    if (i.proto === 6 && ports) parts.push(`tcp(bits=${i.tcpFlags ?? 0},${ports})`);
    else if (i.proto === 17 && ports) parts.push(`udp(${ports})`);
    else if (i.proto === 132 && ports) parts.push(`sctp(${ports})`);
    else if (i.proto === 1 && i.icmpType !== undefined) parts.push(`icmp(code=${i.icmpCode ?? 0},type=${i.icmpType})`);
    else if (i.proto === 58 && i.icmpType !== undefined) parts.push(`icmpv6(code=${i.icmpCode ?? 0},type_=${i.icmpType})`);
  }
  return parts.join(', ');
}

/** One line, as Neutron's OVS log driver writes it (log ids as a Python list prints). */
export function neutronLogLine(action: 'ACCEPT' | 'DROP', logs: SecurityGroupLog[], portId: string, p: LogPacket): string {
  const ids = logs.map((l) => q(l.id)).join(', ');
  return `action=${action} project_id=${logs[0]?.projectId ?? ''} log_resource_ids=[${ids}] vm_port=${portId} pkt=${packetText(p)}`;
}

/** A local time as oslo.log prints it: `2024-05-01 10:00:00.123`. */
function stamp(d: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const date = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
  return `${date} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** A file appended to, reopened when it was moved or removed (logrotate's rename, then a new file). */
class LogFile {
  /** The open file, or undefined once closed (or when reopening it failed): a number kept after its
   *  close could name whatever the process opens next, and the lines would be written there. */
  private fd: number | undefined;
  constructor(private readonly path: string) {
    this.fd = fs.openSync(path, 'a', 0o640);
  }
  write(text: string): void {
    let moved: boolean;
    try {
      const now = fs.statSync(this.path);
      moved = this.fd === undefined || this.moved(now, fs.fstatSync(this.fd));
    } catch {
      moved = true;
    }
    if (moved) {
      this.close();
      this.fd = fs.openSync(this.path, 'a', 0o640);
    }
    fs.writeSync(this.fd!, text);
  }
  close(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) fs.closeSync(fd);
  }
  private moved(now: fs.Stats, held: fs.Stats): boolean {
    return now.ino !== held.ino || now.dev !== held.dev;
  }
}

/** A token bucket: `rate` a second, `burst` at most, by the times packets were received. */
class Bucket {
  private tokens: number;
  private at = 0;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }
  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, now - this.at) * this.rate) / 1000);
    this.at = Math.max(this.at, now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export class NetworkLog {
  readonly stats: NetworkLogStats = { packets: 0, lines: 0, limited: 0, unmatched: 0 };
  private readonly bucket: Bucket;
  private readonly file?: LogFile;
  /** Port id by the hash the logging rules' prefixes carry. */
  private byHash = new Map<string, string>();

  private constructor(
    private readonly o: NetworkLogOptions,
    private readonly state: () => HostState | undefined,
    private readonly listener: { stop(): Promise<void> } | undefined,
    file?: LogFile,
  ) {
    this.bucket = new Bucket(o.rateLimit, o.burstLimit);
    if (file) this.file = file;
  }

  /** Binds the log group (a group another program holds stops start-up, named) and opens the file. */
  static async start(o: NetworkLogOptions, state: () => HostState | undefined): Promise<NetworkLog> {
    const file = o.file ? new LogFile(o.file) : undefined;
    let log: NetworkLog | undefined;
    const listener = await NflogListener.start(
      o.netns,
      o.group,
      COPY_RANGE,
      (p) => log?.heard(p),
      (m) => o.logger.warn({ group: o.group }, `network log: ${m}`),
    ).catch((e: unknown) => {
      file?.close();
      throw e;
    });
    log = new NetworkLog(o, state, listener, file);
    return log;
  }

  private portOf(hash: string, state: HostState): Port | undefined {
    let id = this.byHash.get(hash);
    if (id === undefined) {
      // A port new since the map was made: make it again (once per unknown hash in a batch).
      this.byHash = new Map([...state.allPorts()].map((p) => [idHash(p.id), p.id]));
      id = this.byHash.get(hash);
    }
    return id === undefined ? undefined : state.port(id);
  }

  /** Packets the kernel logged: a line for each one a log still applies to, within the rate limit. */
  heard(packets: LogPacket[]): void {
    const state = this.state();
    const out: string[] = [];
    for (const p of packets) {
      this.stats.packets++;
      const tag = readLogPrefix(this.o.prefix, p.prefix);
      const port = tag && state ? this.portOf(tag.portHash, state) : undefined;
      const logs = port && state ? logsFor(state, port, tag!.event) : [];
      if (!port || logs.length === 0) {
        this.stats.unmatched++;
        continue;
      }
      if (!this.bucket.take(p.at)) {
        this.stats.limited++;
        continue;
      }
      out.push(neutronLogLine(tag!.event, logs, port.id, p));
    }
    if (out.length === 0) return;
    this.stats.lines += out.length;
    if (!this.file) {
      for (const line of out) this.o.logger.info({ networkLog: true }, line);
      return;
    }
    const head = `${process.pid} INFO sg_agent.network_log [-]`;
    const now = stamp(new Date());
    try {
      this.file.write(out.map((l) => `${now} ${head} ${l}\n`).join(''));
    } catch (e) {
      this.o.logger.error({ err: e, file: this.o.file }, 'network log: the lines could not be written');
    }
  }

  async close(): Promise<void> {
    await this.listener?.stop();
    this.file?.close();
  }
}
