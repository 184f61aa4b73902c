// AMQP over TLS with client certificates, on a RabbitMQ node of the test's own (TLS listener only,
// peer verification required): the controller logs in with a password over TLS, the agent with its
// certificate alone (EXTERNAL), each as its role's broker user; the firewall converges. A client with
// no certificate, or one from another CA, is refused; TLS files with an amqp:// URL stop start-up.
import test from 'ava';
import amqp from 'amqplib';
import fs from 'node:fs';
import { brokerTest, kernelTest } from './helpers/gate.js';
import { testKey, removeKeys } from './helpers/keys.js';
import { brokerUser, rabbitmqctl } from './helpers/broker.js';
import { startTlsNode, type TlsNode } from './helpers/rabbit-tls.js';
import { startController, startAgent, agentConnected, testBed } from './helpers/sg.js';
import { startProcess, stopProcess } from './helpers/processes.js';
import { waitFor } from './helpers/wait.js';

let node: TlsNode | undefined;
test.before(async () => {
  if (brokerTest.runs) node = await startTlsNode();
});
test.after.always(() => node?.stop());
function started(): TlsNode {
  if (!node) throw new Error('the TLS node was not started');
  return node;
}

kernelTest.serial('controller and agent over TLS with client certificates; the agent logs in with its certificate', async (t) => {
  const node = started();
  const tls = { node: node.node, port: node.port };
  const { vhost, key, token, dataDir, topo, track } = await testBed(t, { prefix: 'sgtls', topology: true, tls });
  const host = `tls-${vhost.name}`;
  const v1 = topo.addVm(1);
  const controllerUser = brokerUser(vhost, 'controller');
  const controllerCert = node.client('sg-controller-tls');
  // The agent's broker user is named by its certificate's CN and has no password.
  const agentUser = `sg-agent-${vhost.name}`;
  brokerUser(vhost, 'agent', host, { user: agentUser, noPassword: true });
  const agentCert = node.client(agentUser);

  const ctl = track(
    await startController({
      amqpUrl: controllerUser.url,
      key,
      token,
      dataDir,
      env: { SG_AMQP_CA_FILE: node.ca, SG_AMQP_CERT_FILE: controllerCert.cert, SG_AMQP_KEY_FILE: controllerCert.key },
    }),
  );
  const agent = track(
    await startAgent({
      host,
      amqpUrl: `amqps://localhost:${node.port}/${vhost.name}`,
      trustedKeys: key.publicKeyFile,
      netns: topo.host.path,
      env: { SG_AMQP_CA_FILE: node.ca, SG_AMQP_CERT_FILE: agentCert.cert, SG_AMQP_KEY_FILE: agentCert.key, SG_AMQP_EXTERNAL_AUTH: 'true' },
    }),
  );
  await agentConnected(agent);
  await ctl.call('PUT', '/groups/web', { rules: [{ id: 'w-out', direction: 'egress', ethertype: 'IPv4' }] });
  await ctl.call('PUT', '/ports/p1', { host, device: v1.device, mac: v1.mac, fixedIps: [v1.ip4], securityGroups: ['web'] });
  await waitFor("the port's chains in the kernel", () =>
    topo.host.exec('iptables-save', ['-t', 'filter']).includes(`--physdev-out ${v1.device} `),
  );
  const conns = JSON.parse(
    rabbitmqctl(node.node, ['list_connections', 'user', 'ssl', 'peer_cert_subject', 'auth_mechanism', '--formatter', 'json']),
  ) as { user: string; ssl: boolean; auth_mechanism: string }[];
  t.like(
    conns.find((c) => c.user === agentUser),
    { ssl: true, auth_mechanism: 'EXTERNAL' },
    'the agent: TLS, logged in by certificate',
  );
  t.like(
    conns.find((c) => c.user === controllerUser.user),
    { ssl: true, auth_mechanism: 'PLAIN' },
    'the controller: TLS, password',
  );
});

brokerTest.serial('no certificate, or one from another CA, is refused; TLS files need an amqps:// URL', async (t) => {
  const node = started();
  const ca = fs.readFileSync(node.ca);
  const url = `amqps://guest:guest@localhost:${node.port}/`;
  await t.throwsAsync(amqp.connect(url, { ca: [ca] }), undefined, 'no client certificate');
  await t.throwsAsync(
    amqp.connect(url, { ca: [ca], cert: fs.readFileSync(node.stranger.cert), key: fs.readFileSync(node.stranger.key) }),
    undefined,
    'a certificate of another CA',
  );
  await t.throwsAsync(amqp.connect(`amqp://guest:guest@localhost:${node.port}/`), undefined, 'plain AMQP on the TLS port');
  const ok = node.client('guest');
  const conn = await amqp.connect(url, { ca: [ca], cert: fs.readFileSync(ok.cert), key: fs.readFileSync(ok.key) });
  await conn.close();
  const key = testKey();
  t.teardown(() => removeKeys(key));
  const agent = startProcess('src/cli/sg-agent.ts', ['run'], {
    SG_AGENT_HOST: 'x',
    SG_AMQP_URL: `amqp://127.0.0.1:${node.port}/`,
    SG_AMQP_CA_FILE: node.ca,
    SG_TRUSTED_KEYS: key.publicKeyFile,
    SG_METRICS_LISTEN: '',
  });
  t.teardown(() => stopProcess(agent));
  t.is((await agent.exit).code, 1);
  t.regex(agent.dump(), /not amqps/);
});
