// The baseline for bench/storm.ts: an agent the way Neutron's worked before per-group fanout and
// ipsets. It hears every "members updated" notification (fanout to all agents), and in its polling
// loop (2 s, Neutron's default) asks the server for `security_group_rules_for_devices` of all its
// ports — each remote-group rule expanded into one rule per member address — and applies them the way
// Neutron's IptablesManager did: read the table (iptables-save), then write the whole filter table back
// (iptables-restore), for IPv4 and IPv6, with per-port ingress, egress and anti-spoofing chains.
// It leaves out what made Neutron's agent costlier still (Python, rootwrap per command, per-rule
// string processing), so it is a lower bound of the baseline's CPU. Used only by the benchmark.
import amqp from 'amqplib';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';

const host = process.env.BASE_HOST!;
const url = process.env.BASE_AMQP_URL!;
const netns = process.env.BASE_NETNS!;
const POLL_MS = 2000;

interface DeviceRules {
  device: string;
  mac_address: string;
  fixed_ips: string[];
  security_group_rules: {
    direction: string;
    ethertype: string;
    source_ip_prefix?: string;
    dest_ip_prefix?: string;
    protocol?: string | null;
  }[];
}

/** The filter table Neutron's iptables firewall driver wrote for these devices, for one family. */
function filterTable(devices: DeviceRules[], v6: boolean): { text: string; members: number } {
  const ethertype = v6 ? 'IPv6' : 'IPv4';
  const chains = [
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':nb-sg-chain - [0:0]',
    ':nb-sg-fallback - [0:0]',
  ];
  const rules = ['-A FORWARD -m physdev --physdev-is-bridged -j nb-sg-chain', '-A nb-sg-fallback -j DROP'];
  let members = 0;
  for (const d of devices) {
    const [i, o, sp] = [`nb-i${d.device}`, `nb-o${d.device}`, `nb-s${d.device}`];
    chains.push(`:${i} - [0:0]`, `:${o} - [0:0]`, `:${sp} - [0:0]`);
    rules.push(`-A nb-sg-chain -m physdev --physdev-out ${d.device} --physdev-is-bridged -j ${i}`);
    rules.push(`-A nb-sg-chain -m physdev --physdev-in ${d.device} --physdev-is-bridged -j ${o}`);
    rules.push(`-A ${i} -m state --state RELATED,ESTABLISHED -j RETURN`);
    for (const r of d.security_group_rules) {
      if (r.direction !== 'ingress' || r.ethertype !== ethertype) continue;
      rules.push(`-A ${i}${r.source_ip_prefix ? ` -s ${r.source_ip_prefix}` : ''} -j RETURN`);
      if (!v6) members++;
    }
    rules.push(`-A ${i} -m state --state INVALID -j DROP`, `-A ${i} -j nb-sg-fallback`);
    for (const ip of d.fixed_ips.filter((a) => a.includes(':') === v6))
      rules.push(`-A ${sp} -s ${ip} -m mac --mac-source ${d.mac_address} -j RETURN`);
    rules.push(`-A ${sp} -j DROP`, `-A ${o} -j ${sp}`, `-A ${o} -m state --state RELATED,ESTABLISHED -j RETURN`);
    for (const r of d.security_group_rules) {
      if (r.direction !== 'egress' || r.ethertype !== ethertype) continue;
      rules.push(`-A ${o}${r.dest_ip_prefix ? ` -d ${r.dest_ip_prefix}` : ''} -j RETURN`);
    }
    rules.push(`-A ${o} -m state --state INVALID -j DROP`, `-A ${o} -j nb-sg-fallback`);
  }
  return { text: ['*filter', ...chains, ...rules, 'COMMIT', ''].join('\n'), members };
}

(async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await ch.assertExchange('base.fanout', 'fanout', { durable: false });
  const q = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(q.queue, 'base.fanout', '');
  let dirty = true;
  let bytes = 0;
  await ch.consume(
    q.queue,
    (m) => {
      if (!m) return;
      bytes += m.content.length;
      dirty = true;
    },
    { noAck: true },
  );
  const replies = new Map<string, (b: Buffer) => void>();
  await ch.consume(
    'amq.rabbitmq.reply-to',
    (m) => {
      if (!m) return;
      bytes += m.content.length;
      replies.get(m.properties.correlationId as string)?.(m.content);
    },
    { noAck: true },
  );
  const rpc = (body: unknown) =>
    new Promise<Buffer>((resolve) => {
      const id = randomUUID();
      replies.set(id, (b) => {
        replies.delete(id);
        resolve(b);
      });
      ch.sendToQueue('base.rpc', Buffer.from(JSON.stringify(body)), { replyTo: 'amq.rabbitmq.reply-to', correlationId: id });
    });
  const loop = async () => {
    if (dirty) {
      dirty = false;
      const reply = JSON.parse((await rpc({ method: 'security_group_rules_for_devices', host })).toString()) as { devices: DeviceRules[] };
      let members = 0;
      for (const v6 of [false, true]) {
        // IptablesManager: read what is there, then write the whole table back.
        spawnSync('ip', ['netns', 'exec', netns, v6 ? 'ip6tables-save' : 'iptables-save', '-c'], { maxBuffer: 1 << 28 });
        const table = filterTable(reply.devices, v6);
        members += table.members;
        const r = spawnSync('ip', ['netns', 'exec', netns, v6 ? 'ip6tables-restore' : 'iptables-restore', '-c'], { input: table.text });
        if (r.status !== 0) throw new Error(`baseline restore failed: ${r.stderr.toString()}`);
      }
      const perDevice = reply.devices.length ? Math.round(members / reply.devices.length) : 0;
      process.stdout.write(`${JSON.stringify({ applied: perDevice, bytes, at: Date.now() })}\n`);
    }
    setTimeout(() => void loop(), POLL_MS);
  };
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  void loop();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
