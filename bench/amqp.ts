// Measurements behind two broker choices (docs/protocol.md):
//  - amqp.route.5000: one queue bound with 5,000 group keys; 20,000 messages to random bound keys.
//    ours = direct exchange, baseline = topic exchange (same keys, no wildcards).
//  - amqp.rebind.5000: what a reconnect costs in bindings. ours = durable queue with an expiry, whose
//    bindings survive (nothing to redo: only the idempotent re-declare of each binding the agent makes,
//    measured), baseline = an exclusive queue, which is deleted with the connection and must be re-bound.
import amqp from 'amqplib';
import { randomBytes } from 'node:crypto';
import { benchBroker } from './broker.js';

const KEYS = 5000;
const MESSAGES = 20_000;
const tag = randomBytes(3).toString('hex');
const vhost = `sgamqp-${tag}`;

async function route(kind: 'direct' | 'topic', url: string): Promise<number> {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  const ex = `bench.${kind}`;
  await ch.assertExchange(ex, kind, { durable: false });
  const q = await ch.assertQueue('', { exclusive: true });
  await Promise.all(Array.from({ length: KEYS }, (_, i) => ch.bindQueue(q.queue, ex, `g.${i}`)));
  let got = 0;
  const done = new Promise<void>((resolve) => {
    void ch.consume(
      q.queue,
      () => {
        if (++got === MESSAGES) resolve();
      },
      { noAck: true },
    );
  });
  const t = process.hrtime.bigint();
  for (let i = 0; i < MESSAGES; i++) ch.publish(ex, `g.${(i * 7919) % KEYS}`, Buffer.from('{}'));
  await ch.waitForConfirms();
  await done;
  const ns = Number(process.hrtime.bigint() - t);
  await conn.close();
  return ns;
}

async function rebind(durable: boolean, url: string): Promise<number> {
  const name = `bench.rebind.${durable ? 'durable' : 'exclusive'}.${tag}`;
  const setup = async () => {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.assertExchange('bench.direct', 'direct', { durable: false });
    await ch.assertQueue(name, durable ? { durable: true, arguments: { 'x-expires': 60_000 } } : { exclusive: true });
    return { conn, ch };
  };
  const first = await setup();
  await Promise.all(Array.from({ length: KEYS }, (_, i) => first.ch.bindQueue(name, 'bench.direct', `g.${i}`)));
  await first.conn.close();
  // Reconnect: the exclusive queue is gone with its bindings; the durable one kept them.
  const t = process.hrtime.bigint();
  const again = await setup();
  if (!durable) await Promise.all(Array.from({ length: KEYS }, (_, i) => again.ch.bindQueue(name, 'bench.direct', `g.${i}`)));
  const ns = Number(process.hrtime.bigint() - t);
  if (durable) await again.ch.deleteQueue(name);
  await again.conn.close();
  return ns;
}

(async () => {
  const broker = await benchBroker();
  const url = broker.vhost(vhost);
  try {
    const d: number[] = [];
    const tp: number[] = [];
    for (let i = 0; i < 3; i++) {
      d.push(await route('direct', url));
      tp.push(await route('topic', url));
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
    console.log(
      `amqp.route.${KEYS} ours=${(med(d) / 1e6).toFixed(1)}ms baseline=${(med(tp) / 1e6).toFixed(1)}ms ratio=${(med(tp) / med(d)).toFixed(2)} (direct vs topic, ${MESSAGES} messages)`,
    );
    const o = await rebind(true, url);
    const b = await rebind(false, url);
    console.log(
      `amqp.rebind.${KEYS} ours=${(o / 1e6).toFixed(1)}ms baseline=${(b / 1e6).toFixed(1)}ms ratio=${(b / o).toFixed(1)} (durable queue with expiry vs exclusive queue, reconnect)`,
    );
  } finally {
    broker.dropVhost(vhost);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
