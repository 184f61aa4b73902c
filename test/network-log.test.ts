// Security-group logging on a host, with real packets on both backends: the logging rules of a logged
// group's ports send the first packet of each admitted connection and what the filter drops to an
// NFLOG group, the agent's reader writes Neutron's lines, and nothing else is logged.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import pino from 'pino';
import type { LogPacket } from '../src/addon/nflog.js';
import { NetworkLog, neutronLogLine } from '../src/agent/network-log.js';
import { firewallHost, onBothBackends, vmPort, egressAll } from './helpers/firewall.js';
import type { Vm } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';

const LOG = { group: 1913, rateLimit: 100, burstLimit: 25 };

test("a line reads as Neutron's log driver writes it (unit)", (t) => {
  const p: LogPacket = {
    prefix: 'sg:A:0123456789abcdef',
    hook: 2,
    at: 0,
    ether: { dst: '02:00:00:00:00:02', src: '02:00:00:00:00:01', ethertype: 2048 },
    packet: { family: 4, src: '10.0.0.1', dst: '10.0.0.2', proto: 6, length: 60, sport: 40000, dport: 80, tcpFlags: 2 },
  };
  const logs = [
    { id: 'l1', projectId: 'p1', event: 'ALL' as const, targetId: null },
    { id: 'l2', projectId: 'p2', event: 'ACCEPT' as const, targetId: 'port-1' },
  ];
  t.is(
    neutronLogLine('ACCEPT', logs, 'port-1', p),
    "action=ACCEPT project_id=p1 log_resource_ids=['l1', 'l2'] vm_port=port-1 " +
      "pkt=ethernet(dst='02:00:00:00:00:02',ethertype=2048,src='02:00:00:00:00:01'), " +
      "ipv4(dst='10.0.0.2',proto=6,src='10.0.0.1'), tcp(bits=2,dst_port=80,src_port=40000)",
  );
});

/** The lines of the log file, parsed enough to assert on. */
function lines(file: string): { action: string; port: string; ids: string; project: string; text: string }[] {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const m = /action=(\S+) project_id=(\S*) log_resource_ids=(\[[^\]]*\]) vm_port=(\S+) pkt=/.exec(l);
      return { action: m?.[1] ?? '', project: m?.[2] ?? '', ids: m?.[3] ?? '', port: m?.[4] ?? '', text: l };
    });
}

/** UDP datagrams from `vm` to ip:port as fast as it sends them; the seconds it took. */
function flood(vm: Vm, ip: string, port: number, count: number): number {
  const code = `const u = require('dgram').createSocket('udp4'); let n = 0; const t0 = process.hrtime.bigint();
    (function go() { for (let i = 0; i < 50 && n < ${count}; i++, n++) u.send('x', ${port}, '${ip}');
      if (n < ${count}) setImmediate(go);
      else u.close(() => process.stdout.write(String(Number(process.hrtime.bigint() - t0) / 1e9))); })();`;
  return Number(vm.ns.exec(process.execPath, ['-e', code]));
}

onBothBackends(
  'security-group logging: one ACCEPT line per connection, DROP lines for drops, none without a log, none once disabled, a flood capped',
  async (t, backend) => {
    const h = await firewallHost(t, backend, { log: LOG });
    const { topo, fw } = h;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-netlog-'));
    const file = path.join(dir, 'sg-network.log');
    const log = await NetworkLog.start(
      { netns: topo.host.path, prefix: 'sg', ...LOG, file, logger: pino({ level: 'silent' }) },
      () => fw.state,
    );
    t.teardown(async () => {
      await log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const [a, b, c] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
    const web = (id: string) => ({
      id,
      rules: [
        {
          id: `${id}-tcp`,
          direction: 'ingress' as const,
          ethertype: 'IPv4' as const,
          protocol: 'tcp',
          portRangeMin: 7000,
          portRangeMax: 7000,
        },
        ...egressAll,
      ],
    });
    fw.setGroup(web('web'));
    fw.setGroup(web('plain'));
    fw.setGroup({ id: 'client', rules: egressAll });
    fw.setPort(vmPort(a, ['client']));
    fw.setPort(vmPort(b, ['web']));
    fw.setPort(vmPort(c, ['plain']));
    fw.setGroupLogs('web', [{ id: 'log-web', projectId: 'project-1', event: 'ALL', targetId: null }]);
    topo.serve(b, 7000);
    topo.serve(c, 7000);
    await fw.flush();
    for (const p of ['port-vm1', 'port-vm2', 'port-vm3']) t.true(fw.portInKernel(p), p);
    t.deepEqual(await fw.reconcile(), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 }, 'the logging rules read back as written');
    const of = (port: string, action?: string) => lines(file).filter((l) => l.port === port && (!action || l.action === action));
    const shown = () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').slice(-2000) : '(no file)');
    /** Waits for the line of a dropped UDP probe to `dport` (the VMs' own IPv6 chatter is logged too). */
    const probeLine = (what: string, port: string, dport: number) =>
      waitFor(
        what,
        () => of(port, 'DROP').find((l) => l.text.includes(`udp(dst_port=${dport},`)),
        20_000,
        () => `${JSON.stringify(log.stats)}\n${shown()}`,
      );

    // An allowed connection to the logged port: one ACCEPT line (its first packet), with the log's ids.
    t.true(topo.tcp(a, b.ip4, 7000), 'the rule admits tcp 7000');
    t.false(topo.udp(a, b.ip4, 7001), 'udp 7001 is dropped');
    await probeLine('a DROP line for the probe', 'port-vm2', 7001);
    // The probe's line came after every line of the connection before it (one socket, in order).
    const accepted = of('port-vm2', 'ACCEPT');
    t.is(accepted.length, 1, `exactly one ACCEPT line for the connection:\n${accepted.map((l) => l.text).join('\n')}`);
    t.like(accepted[0], { project: 'project-1', ids: "['log-web']" });
    t.regex(accepted[0]!.text, new RegExp(`ipv4\\(dst='${b.ip4}',proto=6,src='${a.ip4}'\\), tcp\\(bits=2,dst_port=7000,src_port=\\d+\\)`));
    t.regex(
      (await probeLine('the probe', 'port-vm2', 7001)).text,
      new RegExp(`ipv4\\(dst='${b.ip4}',proto=17,src='${a.ip4}'\\), udp\\(dst_port=7001,src_port=\\d+\\)`),
    );

    // The port of a group without a log: nothing, however it is reached.
    t.true(topo.tcp(a, c.ip4, 7000));
    t.false(topo.udp(a, c.ip4, 7001));
    t.false(topo.udp(a, b.ip4, 7002));
    await probeLine('the next DROP line of the logged port', 'port-vm2', 7002);
    t.is(of('port-vm3').length, 0, 'a group without a log gives no line');

    // The log disabled (and another group's, DROP only, enabled): the logged port is silent from the
    // apply on, and the other port's line shows the reader heard everything before it.
    const before = of('port-vm2').length;
    fw.setGroupLogs('web', []);
    fw.setGroupLogs('plain', [{ id: 'log-plain', projectId: 'project-2', event: 'DROP', targetId: null }]);
    await fw.flush();
    t.true(fw.portInKernel('port-vm2') && fw.portInKernel('port-vm3'));
    t.true(topo.tcp(a, b.ip4, 7000));
    t.false(topo.udp(a, b.ip4, 7001));
    t.true(topo.tcp(a, c.ip4, 7000));
    t.false(topo.udp(a, c.ip4, 7001));
    t.like(await probeLine('a DROP line of the port whose log was enabled', 'port-vm3', 7001), {
      project: 'project-2',
      ids: "['log-plain']",
    });
    t.is(of('port-vm2').length, before, 'no line of the port whose log was disabled');
    t.is(of('port-vm3', 'ACCEPT').length, 0, 'a DROP log records no ACCEPT');

    // Rotated away: the next line goes to a new file of the same name.
    fs.renameSync(file, `${file}.1`);
    t.false(topo.udp(a, c.ip4, 7002));
    await probeLine('a line in the new file', 'port-vm3', 7002);

    // A flood of drops: the kernel's limit of the logging rule, then the agent's, cap the lines.
    fw.setGroupLogs('web', [{ id: 'log-web', projectId: 'project-1', event: 'DROP', targetId: 'port-vm2' }]);
    await fw.flush();
    t.true(fw.portInKernel('port-vm2'));
    const heard = log.stats.packets;
    const written = of('port-vm2', 'DROP').length;
    const sent = 2000;
    const seconds = flood(a, b.ip4, 7001, sent);
    t.false(topo.udp(a, c.ip4, 7003), 'a probe of the other logged port after the flood');
    await probeLine('the probe after the flood', 'port-vm3', 7003);
    const flooded = of('port-vm2', 'DROP').length - written;
    const cap = LOG.burstLimit + LOG.rateLimit * (seconds + 1);
    const reached = log.stats.packets - heard;
    t.log(`${backend}: ${sent} dropped datagrams in ${seconds.toFixed(3)} s: ${reached} packets reached the agent, ${flooded} lines`);
    t.true(flooded >= 1, 'the flood is logged');
    t.true(flooded <= cap, `at most ${cap.toFixed(0)} lines (burst + rate × time), not ${flooded}`);
    t.true(log.stats.packets - heard <= cap + 1, 'the kernel let no more packets through to the agent than its limit');
  },
);
