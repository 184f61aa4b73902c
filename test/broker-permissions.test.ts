// Broker permissions per role, as `sg-controller broker-user` grants them on a real RabbitMQ: an agent's
// user can do what the agent needs and nothing that reaches another host — no publishing into another
// host's queue, the group, host or default exchange, no touching another queue or the shared ones.
// Then a controller and an agent run with nothing but those users: the agent waits for the controller
// to declare the exchanges, and the firewall converges.
import amqp, { type Channel } from 'amqplib';
import { randomBytes } from 'node:crypto';
import { brokerTest, kernelTest } from './helpers/gate.js';
import { brokerUser } from './helpers/broker.js';
import { startController, startAgent, agentConnected, testBed } from './helpers/sg.js';
import { waitFor } from './helpers/wait.js';
import {
  agentQueue,
  DEAD_LETTER_EXCHANGE,
  DEAD_LETTER_QUEUE,
  GROUP_EXCHANGE,
  groupKey,
  HOST_EXCHANGE,
  hostKey,
  SYNC_EXCHANGE,
  SYNC_QUEUE,
  SYNC_ROUTING_KEY,
} from '../src/protocol/routing.js';
import { agentPermissions } from '../src/protocol/permissions.js';

/** Runs one operation on a fresh channel of `url`; whether the broker allowed it (a refusal closes the
 *  channel with 403 ACCESS_REFUSED, which is what is checked). */
async function allowed(url: string, op: (ch: Channel) => Promise<unknown>): Promise<boolean | string> {
  const conn = await amqp.connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createConfirmChannel();
    let refusal = '';
    ch.on('error', (e: Error) => (refusal = e.message));
    try {
      await op(ch);
      await ch.waitForConfirms();
      await ch.close();
      return true;
    } catch (e) {
      const why = refusal || (e as Error).message;
      return /ACCESS[-_]REFUSED|403/.test(why) ? false : why;
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
}

const body = Buffer.from('{"v":1,"type":"port.updated"}');

brokerTest.serial("an agent's broker user reaches its own queue and the sync exchange, nothing of another host", async (t) => {
  const { vhost, key, token, dataDir, track } = await testBed(t, { prefix: 'sgperm' });
  const [hostA, hostB] = [`a-${randomBytes(3).toString('hex')}`, `b-${randomBytes(3).toString('hex')}`];
  const controller = brokerUser(vhost, 'controller');
  const a = brokerUser(vhost, 'agent', hostA);
  const b = brokerUser(vhost, 'agent', hostB);
  track(await startController({ amqpUrl: controller.url, key, token, dataDir }));
  const [qa, qb] = [agentQueue(hostA), agentQueue(hostB)];
  const queueArgs = { durable: true, arguments: { 'x-expires': 60_000, 'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE } };

  // What an agent does, each with its own user.
  for (const [user, q, host] of [
    [a, qa, hostA],
    [b, qb, hostB],
  ] as const) {
    t.true(await allowed(user.url, (ch) => ch.checkExchange(GROUP_EXCHANGE)), 'check an exchange exists');
    t.true(await allowed(user.url, (ch) => ch.assertQueue(q, queueArgs)), 'declare its queue (dead-lettered)');
    t.true(await allowed(user.url, (ch) => ch.bindQueue(q, HOST_EXCHANGE, hostKey(host))), 'bind its host key');
    t.true(await allowed(user.url, (ch) => ch.bindQueue(q, GROUP_EXCHANGE, groupKey('web'))), 'bind a group key');
    t.true(await allowed(user.url, (ch) => ch.consume(q, () => undefined).then((c) => ch.cancel(c.consumerTag))), 'consume its queue');
    t.true(
      await allowed(user.url, (ch) =>
        ch
          .consume('amq.rabbitmq.reply-to', () => undefined, { noAck: true })
          .then(() => ch.publish(SYNC_EXCHANGE, SYNC_ROUTING_KEY, body, { replyTo: 'amq.rabbitmq.reply-to' })),
      ),
      'ask for a sync',
    );
  }

  const depth = async (q: string) => {
    const conn = await amqp.connect(vhost.url());
    const n = (await (await conn.createChannel()).checkQueue(q)).messageCount;
    await conn.close();
    return n;
  };
  const before = await depth(qb);
  const refused: [string, (ch: Channel) => unknown][] = [
    ["publish into another host's queue (default exchange)", (ch) => ch.sendToQueue(qb, body)],
    ['publish into its own queue (default exchange)', (ch) => ch.sendToQueue(qa, body)],
    ['publish through amq.default by name', (ch) => ch.publish('amq.default', qb, body)],
    ['publish to the group exchange', (ch) => ch.publish(GROUP_EXCHANGE, groupKey('web'), body)],
    ["publish to the host exchange, another host's key", (ch) => ch.publish(HOST_EXCHANGE, hostKey(hostB), body)],
    ['publish to the host exchange, its own key', (ch) => ch.publish(HOST_EXCHANGE, hostKey(hostA), body)],
    ['publish into the sync queue directly', (ch) => ch.sendToQueue(SYNC_QUEUE, body)],
    ['publish to another exchange (amq.direct)', (ch) => ch.publish('amq.direct', qb, body)],
    ["bind another host's queue", (ch) => ch.bindQueue(qb, GROUP_EXCHANGE, groupKey('web'))],
    ["consume another host's queue", (ch) => ch.consume(qb, () => undefined)],
    ["delete another host's queue", (ch) => ch.deleteQueue(qb)],
    ["purge another host's queue", (ch) => ch.purgeQueue(qb)],
    ['consume the sync requests', (ch) => ch.consume(SYNC_QUEUE, () => undefined)],
    ['bind its queue to the sync exchange (read requests)', (ch) => ch.bindQueue(qa, SYNC_EXCHANGE, SYNC_ROUTING_KEY)],
    ['bind its queue to the dead-letter exchange', (ch) => ch.bindQueue(qa, DEAD_LETTER_EXCHANGE, '')],
    ['consume the dead letters', (ch) => ch.consume(DEAD_LETTER_QUEUE, () => undefined)],
    ['declare the group exchange', (ch) => ch.assertExchange(GROUP_EXCHANGE, 'direct', { durable: true })],
    ['declare an exchange of its own', (ch) => ch.assertExchange('sg.mine', 'fanout')],
    ['delete the group exchange', (ch) => ch.deleteExchange(GROUP_EXCHANGE)],
    ['declare a queue of another name', (ch) => ch.assertQueue(`${qa}x`)],
    ['bind the sync queue to the group exchange', (ch) => ch.bindQueue(SYNC_QUEUE, GROUP_EXCHANGE, groupKey('web'))],
  ];
  for (const [what, op] of refused) t.false(await allowed(a.url, async (ch) => op(ch)), what);
  t.is(await depth(qb), before, "nothing reached the other host's queue");
  await t.throwsAsync(
    allowed(vhost.url(a.user, 'wrong'), (ch) => ch.checkExchange(GROUP_EXCHANGE)),
    undefined,
    'a wrong password is refused',
  );
  t.regex(agentPermissions(hostA).write, /^\^\(/, 'anchored expressions');
});

kernelTest.serial('a controller and an agent run with their role users alone; the agent waits for the exchanges', async (t) => {
  const { vhost, key, token, dataDir, topo, track } = await testBed(t, { prefix: 'sgperm', topology: true });
  const host = `perm-${vhost.name}`;
  const v1 = topo.addVm(1);
  // The agent first, on a vhost where nothing is declared: it may not declare the exchanges itself.
  const agent = track(
    await startAgent({ host, amqpUrl: brokerUser(vhost, 'agent', host).url, trustedKeys: key.publicKeyFile, netns: topo.host.path }),
  );
  await waitFor('the agent waits for the exchanges', () => agent.lines.some((l) => l.includes('exchange sg.groups is not declared yet')));
  t.false((await agent.status()).connected);
  const ctl = track(await startController({ amqpUrl: brokerUser(vhost, 'controller').url, key, token, dataDir }));
  await agentConnected(agent);
  await ctl.call('PUT', '/groups/web', { rules: [{ id: 'w-out', direction: 'egress', ethertype: 'IPv4' }] });
  await ctl.call('PUT', '/ports/p1', { host, device: v1.device, mac: v1.mac, fixedIps: [v1.ip4], securityGroups: ['web'] });
  await waitFor("the port's chains in the kernel", () =>
    topo.host.exec('iptables-save', ['-t', 'filter']).includes(`--physdev-out ${v1.device} `),
  );
  t.false(agent.exited);
  t.false(
    agent.lines.some((l) => /ACCESS_REFUSED|access to .* refused/.test(l)),
    'the agent never needed more than its permissions',
  );
  t.false(
    ctl.lines.some((l) => /ACCESS_REFUSED|access to .* refused/.test(l)),
    'nor the controller',
  );
});
