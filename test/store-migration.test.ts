// Moving a running deployment from the embedded store (LMDB) to etcd with `sg-controller store
// export|import`, as docs/agent.md tells an operator to, while a client keeps making changes and an
// agent keeps enforcing: a first import while the old controller serves, the old controller stopped,
// a second import (the last changes), the new controller started on etcd. Every change answered 2xx
// reaches the new store and the kernel; the agent never restarts and its revisions never go back.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { EtcdCluster } from './helpers/etcd.js';
import { kernelEtcdTest } from './helpers/store-gates.js';
import { testBed } from './helpers/sg.js';
import { startAgent, agentConnected, startController, type ControllerProc } from './helpers/sg.js';
import { stopProcess } from './helpers/processes.js';
import { waitFor } from './helpers/wait.js';

const repo = path.resolve(__dirname, '..');

function sgController(args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(repo, 'src/cli/sg-controller.ts'), ...args],
      { cwd: repo, env: { ...process.env, ...env }, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`sg-controller ${args.join(' ')}: ${stderr || err.message}`));
        else resolve(stderr.trim());
      },
    );
  });
}

kernelEtcdTest.serial(
  'LMDB to etcd under live changes: export and import twice around the switch, no answered change lost, the agent never goes back',
  async (t) => {
    const b = await testBed(t, { topology: true, prefix: 'sgmig' });
    const etcd = await EtcdCluster.start(3);
    t.teardown(() => etcd.stop());
    const etcdEnv = { SG_STORE: 'etcd', SG_ETCD_ENDPOINTS: etcd.endpoints.join(','), SG_ETCD_PREFIX: '/sg-migration/' };
    const vm = b.topo.addVm(1);
    const host = `mig-${b.vhost.name}`;
    let api: ControllerProc = b.track(await startController({ amqpUrl: b.vhost.url(), key: b.key, token: b.token, dataDir: b.dataDir }));
    await api.call('PUT', '/groups/web', { rules: [{ id: 'w-in', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' }] });
    await api.call('PUT', '/ports/own', { host, device: vm.device, mac: vm.mac, fixedIps: [vm.ip4], securityGroups: ['web'] });
    const agent = b.track(
      await startAgent({
        host,
        amqpUrl: b.vhost.url(),
        trustedKeys: b.key.publicKeyFile,
        netns: b.topo.host.path,
        env: { SG_FULL_SYNC_INTERVAL_MS: '0' },
      }),
    );
    await agentConnected(agent);
    const revision = async () => (await agent.status()).groups.find((g) => g.id === 'web')?.membersRevision ?? 0;
    await waitFor('the agent holds web', async () => (await revision()) > 0, 60_000);

    // The client: one change after another, each retried until answered 2xx by whichever API serves.
    const answered: string[] = [];
    const seen: number[] = [];
    let going = true;
    const client = (async () => {
      for (let i = 0; going; i++) {
        const ip = `10.130.${i >> 8}.${i & 255}`;
        for (;;) {
          const ok = await api
            .call('PUT', `/ports/m${i}`, {
              host: 'elsewhere',
              device: `m${i}`,
              mac: '02:00:00:00:cc:01',
              fixedIps: [ip],
              securityGroups: ['web'],
            })
            .then(
              () => true,
              () => false,
            );
          if (ok) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        answered.push(ip);
        seen.push(await revision().catch(() => seen.at(-1) ?? 0));
      }
    })();
    await waitFor('changes flowing', () => answered.length >= 10, 60_000);
    const lmdbEnv = { SG_DATA_DIR: b.dataDir };
    const file = path.join(b.dataDir, 'export.json');
    t.log(await sgController(['store', 'export', '--file', file], lmdbEnv));
    t.log(await sgController(['store', 'import', '--file', file], etcdEnv));
    await waitFor('more changes on the old store after the first import', () => answered.length >= 25, 60_000);
    // The switch: the old controller stops (what it stored is published or still in its outbox), the
    // last changes are imported, the new one starts. The client retries meanwhile.
    await stopProcess(api, 'SIGTERM');
    t.log(await sgController(['store', 'export', '--file', file], lmdbEnv));
    t.log(await sgController(['store', 'import', '--file', file], etcdEnv));
    const before = answered.length;
    api = b.track(await startController({ amqpUrl: b.vhost.url(), key: b.key, token: b.token, env: etcdEnv }));
    await waitFor('changes answered by the controller on etcd', () => answered.length >= before + 10, 60_000);
    going = false;
    await client;

    const web = (await (await api.call('GET', '/groups/web')).json()) as { members: string[]; membersRevision: number };
    t.deepEqual(
      answered.filter((ip) => !web.members.includes(ip)),
      [],
      'every answered change is in the etcd store',
    );
    await waitFor('the agent at the store revision', async () => (await revision()) === web.membersRevision, 60_000).catch(() => undefined);
    t.is(await revision(), web.membersRevision, 'the agent holds the store revision');
    // The agent takes a revision before its kernel change is applied (coalesced): wait for the set.
    const set = (await agent.status()).sets.find((s) => s.name.startsWith('sg4-'))!;
    const notInKernel = () => {
      const kernel = b.topo.host
        .exec('ipset', ['save', set.name])
        .split('\n')
        .filter((l) => l.startsWith('add '))
        .map((l) => l.split(' ')[2]);
      return answered.filter((ip) => !kernel.includes(ip));
    };
    await waitFor('every answered change in the kernel', () => notInKernel().length === 0, 30_000).catch(() => undefined);
    t.deepEqual(notInKernel(), [], 'and in the kernel');
    t.false(agent.exited, 'the agent ran throughout');
    const drops = seen.flatMap((r, i) => (i > 0 && r < seen[i - 1]! ? [`${seen[i - 1]} → ${r}`] : []));
    t.deepEqual(drops, [], 'the revision the agent holds never went back');
  },
);
