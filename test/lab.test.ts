// The control plane on three machines (scripts/lab.sh: three network namespaces, each with an etcd
// member, a RabbitMQ node and an sg-controller on the shared etcd store; a compute host whose agent
// lists the three brokers and enforces in the real kernel of its namespace). A whole machine killed
// during a burst of changes, the leader's machine cut off, etcd without quorum: every change answered
// 2xx reaches the agent, nothing goes backwards or is published twice with different contents, and
// everything converges with zero drift. Recovery times are logged, never asserted (bench:store
// measures them).
import test, { type ExecutionContext } from 'ava';
import { Lab } from './helpers/lab.js';
import { labTest } from './helpers/store-gates.js';
import { waitFor } from './helpers/wait.js';

let lab: Lab | undefined;
/** Set at the end: a burst still retrying (its test failed) gives up, so the file can end. */
let closing = false;
test.before(async () => {
  if (labTest.runs) lab = await Lab.up({ hosts: 1 });
});
test.after.always(async () => {
  closing = true;
  await lab?.down();
});

const HOST = 'lab-host-1';
const port = (i: number, round: number) => ({
  host: 'elsewhere',
  device: `q${i}`,
  mac: '02:00:00:00:bb:01',
  fixedIps: [`10.110.${round}.${i}`],
  securityGroups: ['web'],
});

/** web admits its own members; a port of web on the compute host: its agent needs web's members. */
async function topology(l: Lab, via: number): Promise<void> {
  const ok = (r: { status: number; body: unknown }) =>
    r.status === 200 ? r : Promise.reject(new Error(`${r.status} ${JSON.stringify(r.body)}`));
  await waitFor(
    'the group stored',
    async () =>
      ok(
        await l.call(via, 'PUT', '/groups/web', { rules: [{ id: 'w-in', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' }] }),
      ),
    30_000,
  );
  await waitFor(
    'the port stored',
    async () =>
      ok(
        await l.call(via, 'PUT', '/ports/own', {
          host: HOST,
          device: 'tap-own',
          mac: '02:00:00:00:aa:01',
          fixedIps: ['10.120.0.1'],
          securityGroups: ['web'],
        }),
      ),
    30_000,
  );
  await waitFor('the agent holds web', async () => (await l.kernelMembers(1, 'web')).includes('10.120.0.1'), 60_000);
}

/** Sends changes one after another through machine `via` for as long as `going()`, retrying each
 *  until answered 2xx (a refusal or a lost answer is not a change that was made): the ports answered,
 *  with their address. */
async function burst(l: Lab, via: () => number, round: number, n: number, answered: Map<string, string>): Promise<void> {
  for (let i = 0; i < n && !closing; i++) {
    const body = port(i, round);
    await waitFor(
      `change ${round}.${i} answered`,
      async () => {
        if (closing) return true;
        const r = await l.call(via(), 'PUT', `/ports/q${round}-${i}`, body, 3_000).catch(() => undefined);
        if (r?.status === 200) answered.set(`q${round}-${i}`, body.fixedIps[0]!);
        return r?.status === 200;
      },
      120_000,
    );
  }
}

/** Every revision of web the agent holds, sampled until stopped: it may only rise. */
function sampler(l: Lab): { stop: () => Promise<number[]> } {
  const seen: number[] = [];
  let going = true;
  const loop = (async () => {
    while (going) {
      // A group is listed while bound: between a reconnect that lost the agent's queue and the
      // rebinding, web is absent from the status (not a revision the agent holds), so no sample.
      const r = await l.agent(1).then(
        (s) => s.groups.find((g) => g.id === 'web')?.membersRevision ?? undefined,
        () => undefined,
      );
      if (typeof r === 'number') seen.push(r);
      await new Promise((res) => setTimeout(res, 50));
    }
  })();
  return { stop: async () => ((going = false), await loop, seen) };
}

/** Zero drift on the compute host: its agent holds the store's revision of web, its kernel set holds
 *  exactly the store's members, and every answered change is among them. */
async function assertConverged(t: ExecutionContext, l: Lab, via: number, answered: Map<string, string>): Promise<void> {
  // A controller's copy of the store follows the others' writes through its watch: read once it shows
  // the last answered change (a copy that never does fails below).
  const read = async () => (await l.call(via, 'GET', '/groups/web')).body as { membersRevision: number; members: string[] };
  const last = [...answered.values()].at(-1);
  const want = await waitFor(
    `machine ${via}'s copy showing the last change`,
    async () => {
      const g = await read();
      return (!last || g.members.includes(last)) && g;
    },
    30_000,
  ).catch(read);
  await waitFor(
    'the agent at the store revision',
    async () => (await l.agent(1)).groups.find((g) => g.id === 'web')?.membersRevision === want.membersRevision,
    90_000,
  ).catch(() => undefined);
  const held = (await l.agent(1)).groups.find((g) => g.id === 'web')?.membersRevision;
  if (held !== want.membersRevision) t.log(`${l.logs(60)}\n-- queues:\n${await l.queues()}`);
  t.is(held, want.membersRevision, 'the agent holds the store revision of web');
  const members = [...want.members].sort();
  await waitFor(
    'the kernel set equals the store',
    async () => JSON.stringify(await l.kernelMembers(1, 'web')) === JSON.stringify(members),
    30_000,
  ).catch(() => undefined);
  t.deepEqual(await l.kernelMembers(1, 'web'), members, 'the kernel set equals the store');
  const missing = [...answered].filter(([, ip]) => !members.includes(ip));
  t.deepEqual(missing, [], 'every change answered 2xx is in the store and the kernel');
}

const dropsIn = (seen: number[]) => seen.flatMap((r, i) => (i > 0 && r < seen[i - 1]! ? [`${seen[i - 1]} → ${r}`] : []));

labTest.serial(
  "the leader's whole machine killed during a burst through another machine: nothing answered is lost, nothing goes back, zero drift",
  async (t) => {
    const l = lab!;
    const leader = await l.waitLeader('a leader');
    const via = leader === 1 ? 2 : 1;
    await topology(l, via);
    // The machine started again last has caught up: any one machine may go down.
    await waitFor("the leader's machine not quorum-critical", () => l.quorumSafe(leader), 120_000);
    const revisions = sampler(l);
    t.teardown(() => revisions.stop().then(() => undefined));
    const answered = new Map<string, string>();
    const running = burst(l, () => via, 1, 60, answered);
    await waitFor('the burst under way', () => answered.size >= 15, 60_000);
    const killedAt = Date.now();
    const before = answered.size;
    await l.kill(leader);
    t.teardown(() => l.start(leader).then(() => undefined));
    await waitFor('a change answered after the kill', () => answered.size > before, 60_000);
    t.log(`machine ${leader} (the leader) killed: a change was answered again ${Date.now() - killedAt} ms later`);
    const next = await l.waitLeader(
      'another leader',
      [1, 2, 3].filter((m) => m !== leader),
    );
    t.log(`machine ${next} leads ${Date.now() - killedAt} ms after the kill`);
    await running;
    await assertConverged(t, l, via, answered);
    t.deepEqual(dropsIn(await revisions.stop()), [], 'the revision the agent holds never went back');
    await l.start(leader);
    await assertConverged(t, l, leader, answered);
  },
);

labTest.serial(
  'the leader cut off from the others stops publishing, another takes over, and after the link returns ' +
    'nothing was published twice with different contents',
  async (t) => {
    const l = lab!;
    const leader = await l.waitLeader('a leader');
    const via = leader === 1 ? 2 : 1;
    await topology(l, via);
    const recorder = await l.recorder(9, ['web']);
    t.teardown(() => recorder.stop());
    const revisions = sampler(l);
    t.teardown(() => revisions.stop().then(() => undefined));
    const answered = new Map<string, string>();
    const running = burst(l, () => via, 2, 40, answered);
    await waitFor('the burst under way', () => answered.size >= 10, 60_000);
    const cutAt = Date.now();
    await l.partition(leader);
    t.teardown(() => l.heal(leader).then(() => undefined));
    // Its own API still answers (a Unix socket): it says when it stopped leading, and publishes no more.
    const stopped = await waitFor(
      'the cut-off leader stops leading',
      async () => {
        const h = await l.health(leader);
        return !h.leader && h;
      },
      30_000,
    );
    t.log(`the cut-off leader stopped leading ${Date.now() - cutAt} ms after the cut`);
    const next = await l.waitLeader(
      'another leader',
      [1, 2, 3].filter((m) => m !== leader),
    );
    t.log(`machine ${next} leads ${Date.now() - cutAt} ms after the cut`);
    await running;
    t.is((await l.health(leader)).published, stopped.published, 'the cut-off controller published nothing once it stopped leading');
    await l.heal(leader);
    await burst(l, () => leader, 3, 5, answered);
    await assertConverged(t, l, via, answered);
    t.deepEqual(dropsIn(await revisions.stop()), [], 'the revision the agent holds never went back');
    const contents = new Map<string, Set<string>>();
    for (const m of recorder.messages) {
      const k = `${m.type} ${m.groupId} ${m.revision}`;
      contents.set(k, (contents.get(k) ?? new Set()).add(m.body));
    }
    t.true(recorder.messages.length > 0, 'the recorder saw the updates');
    t.deepEqual(
      [...contents].filter(([, bodies]) => bodies.size > 1).map(([k]) => k),
      [],
      'one content per revision, whoever published it',
    );
  },
);

labTest.serial(
  'etcd without quorum: changes refused with 503 and a clear message, the agent keeps its firewall, ' +
    'everything converges when quorum returns',
  async (t) => {
    const l = lab!;
    await l.waitLeader('a leader');
    await topology(l, 1);
    const kept = await l.kernelMembers(1, 'web');
    await l.run(['stop-etcd', '2']);
    await l.run(['stop-etcd', '3']);
    t.teardown(async () => {
      await l.run(['start-etcd', '2']);
      await l.run(['start-etcd', '3']);
    });
    await waitFor('/healthz saying the store has no quorum', async () => !(await l.health(1)).store.quorum, 30_000);
    const refused = await l.call(1, 'PUT', '/ports/nq', port(1, 9));
    t.is(refused.status, 503, 'the change is refused at once');
    t.regex((refused.body as { error: string }).error, /no quorum/, `the refusal says why: ${JSON.stringify(refused.body)}`);
    t.deepEqual(await l.kernelMembers(1, 'web'), kept, 'the agent keeps its firewall');
    await l.run(['start-etcd', '2']);
    await l.run(['start-etcd', '3']);
    const answered = new Map<string, string>();
    await burst(l, () => 1, 9, 3, answered);
    await assertConverged(t, l, 2, answered);
  },
);
