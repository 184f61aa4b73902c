// Cases every controller store must pass alike (LMDB in protocol.test.ts, etcd in etcd-store.test.ts).
import type { ExecutionContext } from 'ava';
import type { ControllerStore } from '../../src/controller/records.js';
import { buildSync } from '../../src/controller/rpc.js';
import type { UpdateMessage } from '../../src/protocol/messages.js';

/** The messages the store has queued since the last call, acked so the next call sees only its own. */
async function taken(s: ControllerStore): Promise<string[]> {
  const entries = s.outbox();
  await s.ackOutbox(entries.map((e) => e.key));
  return entries.map(({ message: m }) => describe(m)).sort();
}

/** A port message as `<type> to <host>: port host <host>`, or the message's type alone. */
function describe(m: UpdateMessage): string {
  if (m.type === 'port.bound' || m.type === 'port.updated')
    return `${m.type} to ${m.host}: port host ${m.port.host}${m.port.migratingTo ? ` migratingTo ${m.port.migratingTo}` : ''}`;
  if (m.type === 'port.unbound') return `${m.type} to ${m.host}`;
  return m.type;
}

/** A live migration as Neutron shows it to sg-controller: the port gains a destination, is filtered on
 *  both hosts, each told of it as its own; then its binding moves (or the migration is rolled back). */
export async function liveMigrationPlacement(t: ExecutionContext, s: ControllerStore): Promise<void> {
  const port = {
    id: 'pmig',
    host: 'src',
    device: 'tapmig',
    mac: '02:00:00:00:00:09',
    fixedIps: ['10.9.0.1'],
    allowedAddressPairs: [],
    securityGroups: ['gmig'],
    portSecurityEnabled: true,
  };
  const onHost = (host: string) => s.portsOnHost(host).map((p) => `${p.id} ${p.host}${p.migratingTo ? ` ${p.migratingTo}` : ''}`);
  const synced = (host: string) =>
    buildSync(s, { v: 1, type: 'sync.request', host })
      .flatMap((r) => r.ports ?? [])
      .map((p) => p.host);
  await s.putPort('pmig', port);
  await taken(s);

  await s.putPort('pmig', { ...port, migratingTo: 'dst' });
  t.is(s.port('pmig')?.migratingTo, 'dst', 'the store keeps the destination');
  t.deepEqual(
    await taken(s),
    ['port.bound to dst: port host dst', 'port.updated to src: port host src'],
    'both hosts told, each of its own port',
  );
  t.deepEqual(onHost('dst'), ['pmig dst']);
  t.deepEqual(onHost('src'), ['pmig src']);
  t.deepEqual(synced('dst'), ['dst'], "the destination's sync has it as its own");
  t.deepEqual(s.membersOf('gmig'), ['10.9.0.1'], 'a member once');

  // The destination's binding activated before the profile is cleared: one host.
  await s.putPort('pmig', { ...port, host: 'dst', migratingTo: 'dst' });
  t.is(s.port('pmig')?.migratingTo, undefined);
  t.deepEqual(await taken(s), ['port.unbound to src', 'port.updated to dst: port host dst']);
  t.deepEqual(onHost('src'), []);
  t.deepEqual(synced('src'), []);
  t.deepEqual(onHost('dst'), ['pmig dst']);

  // A migration back to src, rolled back: src, its destination, forgets the port again.
  await s.putPort('pmig', { ...port, host: 'dst', migratingTo: 'src' });
  t.deepEqual(await taken(s), ['port.bound to src: port host src', 'port.updated to dst: port host dst']);
  await s.putPort('pmig', { ...port, host: 'dst' });
  t.deepEqual(await taken(s), ['port.unbound to src', 'port.updated to dst: port host dst']);

  // Deleted during a migration: both hosts forget it.
  await s.putPort('pmig', { ...port, migratingTo: 'dst' });
  await taken(s);
  await s.putPort('pmig', undefined);
  t.deepEqual(await taken(s), ['group.members', 'port.unbound to dst', 'port.unbound to src']);
  t.deepEqual([...onHost('src'), ...onHost('dst')], []);
}
