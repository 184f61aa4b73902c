// A throwaway "compute host": one namespace with a Linux bridge (br_netfilter on, so bridged traffic
// meets iptables FORWARD) and "VM" namespaces attached by veth pairs, IPv4 and IPv6. Traffic checks
// (ping, TCP, UDP) run between the VMs only.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { Netns } from './netns.js';

/** A long connection's probe with no echo for this long is silent: the connection is taken as cut.
 *  Generous for a loaded machine (a live connection read as cut would fail a test that expects it
 *  alive); what it costs is this much per probe of a cut connection. */
const SILENT_AFTER_MS = 5_000;

export interface Vm {
  name: string;
  ns: Netns;
  /** The host-side interface: the port's device as the agent sees it. */
  device: string;
  mac: string;
  ip4: string;
  ip6: string;
}

let counter = 0;

export class Topology {
  readonly host: Netns;
  readonly vms: Vm[] = [];
  private readonly servers: ChildProcess[] = [];
  private readonly tag = `${process.pid % 1000}${counter++}`;

  /** A new host namespace with a Linux bridge; or, given `host`, the traffic helpers for VMs the caller
   *  attaches to a host of its own (test/helpers/compute-host.ts), which destroy() removes too. */
  constructor(host?: Netns) {
    if (host) {
      this.host = host;
      return;
    }
    this.host = Netns.create('sghost');
    this.host.exec('ip', ['link', 'add', 'br0', 'type', 'bridge']);
    this.host.exec('ip', ['link', 'set', 'br0', 'up']);
    this.host.exec('sysctl', ['-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    this.host.exec('sysctl', ['-qw', 'net.bridge.bridge-nf-call-ip6tables=1']);
  }

  /** Adds another bridge to the host (a second network, which may reuse the first one's addresses). */
  addBridge(name: string): void {
    this.host.exec('ip', ['link', 'add', name, 'type', 'bridge']);
    this.host.exec('ip', ['link', 'set', name, 'up']);
  }

  /** Adds a VM with the given host number n: 10.100.0.n and fd00:100::n, MAC 02:00:00:00:00:nn, on
   *  br0 or the given bridge (a VM on another bridge gets a device name of its own, its addresses
   *  may be another VM's). */
  addVm(n: number, bridge = 'br0'): Vm {
    const ns = Netns.create('sgvm');
    const device = this.vmDevice(n, bridge);
    const mac = `02:00:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
    this.host.exec('ip', ['link', 'add', device, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
    this.host.exec('ip', ['link', 'set', device, 'master', bridge, 'up']);
    ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    ns.exec('ip', ['link', 'set', 'eth0', 'address', mac]);
    const vm: Vm = {
      name: `${bridge === 'br0' ? '' : `${bridge}-`}vm${n}`,
      ns,
      device,
      mac,
      ip4: `10.100.0.${n}`,
      ip6: `fd00:100::${n.toString(16)}`,
    };
    ns.exec('ip', ['addr', 'add', `${vm.ip4}/24`, 'dev', 'eth0']);
    ns.exec('ip', ['addr', 'add', `${vm.ip6}/64`, 'dev', 'eth0', 'nodad']);
    ns.exec('ip', ['link', 'set', 'eth0', 'up']);
    this.vms.push(vm);
    return vm;
  }

  /** The host-side device name addVm(n, bridge) gives (a port may be bound before its VM is plugged). */
  vmDevice(n: number, bridge = 'br0'): string {
    return `t${this.tag}${bridge === 'br0' ? '' : bridge}v${n}`.slice(0, 15);
  }

  /** Adds an extra address to a VM (to impersonate another one, or use an allowed pair). */
  addAddress(vm: Vm, cidr: string): void {
    vm.ns.exec('ip', ['addr', 'add', cidr, 'dev', 'eth0', ...(cidr.includes(':') ? ['nodad'] : [])]);
  }

  ping(from: Vm, to: string, opts: { source?: string } = {}): boolean {
    const args = ['-c1', '-W2', ...(to.includes(':') ? ['-6'] : []), ...(opts.source ? ['-I', opts.source] : []), to];
    return from.ns.run('ping', args).status === 0;
  }

  /** Gives the bridge an address in the host namespace: traffic from a VM to it goes through INPUT. */
  hostAddress(cidr: string): string {
    this.host.exec('ip', ['addr', 'add', cidr, 'dev', 'br0', ...(cidr.includes(':') ? ['nodad'] : [])]);
    return cidr.split('/')[0]!;
  }

  /** Starts TCP and UDP echo servers on `port` in the VM; they live until destroy(). */
  serve(vm: Vm, port: number): void {
    this.serveIn(vm.ns, port, vm.name);
  }

  /** Echo servers in the host namespace itself (reached through INPUT). */
  serveOnHost(port: number): void {
    this.serveIn(this.host, port, 'host');
  }

  private serveIn(ns: Netns, port: number, name: string): void {
    const code = `
      const net = require('net'), dgram = require('dgram');
      net.createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); }).listen(${port}, '::');
      for (const t of ['udp4', 'udp6']) { const u = dgram.createSocket({ type: t, ipv6Only: t === 'udp6' }); u.on('message', (m, r) => u.send(m, r.port, r.address)); u.bind(${port}); }
      process.stdout.write('ready\\n');`;
    const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.servers.push(child);
    // Wait (synchronously) until it listens: poll with a connect from inside the namespace itself.
    for (let i = 0; i < 200; i++) {
      if (
        ns.run(process.execPath, [
          '-e',
          `require('net').connect(${port}, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))`,
        ]).status === 0
      )
        return;
      spawnSync('sleep', ['0.1']);
    }
    throw new Error(`echo server in ${name} did not start`);
  }

  /** Sends one ARP request from `from` for `target` claiming sender address `claim`; true if answered. */
  arping(from: Vm, target: string, claim: string): boolean {
    return from.ns.run('arping', ['-c', '1', '-w', '2', '-i', 'eth0', '-S', claim, target]).status === 0;
  }

  /** The MAC `vm` holds for `ip` in its neighbour table, if any. */
  neighbour(vm: Vm, ip: string): string | undefined {
    const out = vm.ns.run('ip', ['neigh', 'show', ip, 'dev', 'eth0']).stdout;
    return /lladdr ([0-9a-f:]{17})/.exec(out)?.[1];
  }

  /** Whether a TCP connection from `from` to ip:port is established within a second. */
  tcp(from: Vm, ip: string, port: number, source?: string): boolean {
    const code = `const s = require('net').connect({ host: '${ip}', port: ${port}${source ? `, localAddress: '${source}'` : ''} });
      const t = setTimeout(() => process.exit(1), 2000);
      s.on('connect', () => { clearTimeout(t); s.destroy(); process.exit(0); }); s.on('error', () => process.exit(1));`;
    return from.ns.run(process.execPath, ['-e', code]).status === 0;
  }

  /** Whether a UDP datagram from `from` to ip:port is echoed back within a second (from `sourcePort`
   *  when given). */
  udp(from: Vm, ip: string, port: number, sourcePort?: number): boolean {
    const code = `const u = require('dgram').createSocket('${ip.includes(':') ? 'udp6' : 'udp4'}');
      const t = setTimeout(() => process.exit(1), 2000);
      u.on('message', () => { clearTimeout(t); process.exit(0); });
      const go = () => u.send('x', ${port}, '${ip}');
      ${sourcePort ? `u.bind(${sourcePort}, go);` : 'go();'}`;
    return from.ns.run(process.execPath, ['-e', code]).status === 0;
  }

  /** Opens a TCP connection from `from` to an echo server (`serve`) and keeps it open; `alive()` says
   *  whether it still carries data. Each probe is numbered and answered only by its own echo (the
   *  bytes received reaching what was sent with it): a late echo of an earlier, silent probe is
   *  never taken for a later one's. */
  async longConnection(from: Vm, ip: string, port: number, source?: string): Promise<{ alive: () => Promise<boolean>; close: () => void }> {
    const code = `const s = require('net').connect({ host: '${ip}', port: ${port}${source ? `, localAddress: '${source}'` : ''} });
      s.on('connect', () => process.stdout.write('up\\n'));
      s.on('error', () => { process.stdout.write('dead\\n'); });
      s.on('close', () => { process.stdout.write('dead\\n'); });
      let probes = 0, sent = 0, got = 0; const waiting = [];
      s.on('data', (b) => { got += b.length;
        while (waiting.length && got >= waiting[0].need) { const w = waiting.shift(); clearTimeout(w.timer); process.stdout.write('pong ' + w.n + '\\n'); } });
      process.stdin.on('data', (b) => { for (let i = 0; i < b.length; i++) { const n = ++probes; sent += 4; s.write('ping');
        const w = { n, need: sent }; waiting.push(w);
        w.timer = setTimeout(() => { waiting.splice(waiting.indexOf(w), 1); process.stdout.write('silent ' + n + '\\n'); }, ${SILENT_AFTER_MS}); } });`;
    const child = spawn('ip', ['netns', 'exec', from.ns.name, process.execPath, '-e', code], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.servers.push(child);
    child.stdin.on('error', () => undefined);
    const lines: string[] = [];
    let wake: (() => void) | null = null;
    child.stdout.on('data', (b: Buffer) => {
      lines.push(...b.toString().split('\n').filter(Boolean));
      wake?.();
    });
    // Generous: on a loaded machine starting node inside a namespace alone can take many seconds (a
    // 15 s limit ran out once while a 40-agent benchmark shared the machine). A wait, not a timing.
    const next = (want: string[], ms = 60_000) =>
      new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('long connection: no answer')), ms);
        const check = () => {
          const i = lines.findIndex((l) => want.includes(l));
          if (i >= 0) {
            clearTimeout(t);
            wake = null;
            resolve(lines.splice(0, i + 1).pop()!);
          }
        };
        wake = check;
        check();
      });
    if ((await next(['up', 'dead'])) !== 'up') throw new Error('long connection did not come up');
    let probes = 0;
    return {
      alive: async () => {
        const n = ++probes;
        child.stdin.write('x');
        return (await next([`pong ${n}`, `silent ${n}`, 'dead'])) === `pong ${n}`;
      },
      close: () => child.kill(),
    };
  }

  destroy(): void {
    for (const s of this.servers) s.kill('SIGKILL');
    for (const vm of this.vms) vm.ns.destroy();
    this.host.destroy();
  }
}
