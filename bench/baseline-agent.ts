// The baseline for bench/storm.ts: an agent the way Neutron's worked before per-group fanout and
// ipsets. It hears every "members updated" notification (fanout to all agents), and in its polling
// loop (2 s, Neutron's default) asks the server for `security_group_rules_for_devices` of all its
// ports — each remote-group rule expanded into one rule per member address — and rewrites its ports'
// chains with one iptables-restore. Used only by the benchmark.
import amqp from 'amqplib';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';

const host = process.env.BASE_HOST!;
const url = process.env.BASE_AMQP_URL!;
const netns = process.env.BASE_NETNS!;
const POLL_MS = 2000;

interface DeviceRules {
  device: string;
  security_group_rules: { direction: string; ethertype: string; source_ip_prefix?: string; protocol?: string | null }[];
}

(async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await ch.assertExchange('base.fanout', 'fanout', { durable: false });
  const q = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(q.queue, 'base.fanout', '');
  let dirty = true;
  let bytes = 0;
  await ch.consume(q.queue, (m) => {
    if (!m) return;
    bytes += m.content.length;
    dirty = true;
  }, { noAck: true });
  const replies = new Map<string, (b: Buffer) => void>();
  await ch.consume('amq.rabbitmq.reply-to', (m) => {
    if (!m) return;
    bytes += m.content.length;
    replies.get(m.properties.correlationId as string)?.(m.content);
  }, { noAck: true });
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
      const lines = ['*filter'];
      for (const d of reply.devices) lines.push(`:nb-i-${d.device} - [0:0]`);
      let members = 0;
      for (const d of reply.devices) {
        lines.push(`-A nb-i-${d.device} -m state --state RELATED,ESTABLISHED -j RETURN`);
        for (const r of d.security_group_rules) {
          if (r.direction !== 'ingress' || r.ethertype !== 'IPv4') continue;
          lines.push(`-A nb-i-${d.device} ${r.source_ip_prefix ? `-s ${r.source_ip_prefix}` : ''} -j RETURN`);
          members++;
        }
        lines.push(`-A nb-i-${d.device} -j DROP`);
      }
      lines.push('COMMIT', '');
      spawnSync('ip', ['netns', 'exec', netns, 'iptables-restore', '--noflush'], { input: lines.join('\n') });
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
