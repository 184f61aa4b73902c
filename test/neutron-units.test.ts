// The Neutron source's pure logic: reading Neutron's messages, translating its JSON, the store's
// extensions it uses, the reconciler's scheduling against a stand-in API, and Keystone's token flow
// against a stand-in Keystone. The same paths run for real against neutron-server in neutron.test.ts.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../src/controller/store.js';
import { NeutronApi, type NeutronApiOptions } from '../src/neutron/api.js';
import { neutronAuth, neutronSourceOptions, ConfigError } from '../src/neutron/config.js';
import { brokerUrls } from '../src/neutron/listener.js';
import { decodeNeutronMessage, NeutronMessageError, pushExchanges, KNOWN_VERSIONS } from '../src/neutron/messages.js';
import { NeutronReconciler } from '../src/neutron/reconciler.js';
import { waitFor } from './helpers/wait.js';
import {
  addressGroupKey,
  deviceName,
  toAddressGroupMembers,
  samePort,
  toPort,
  toRule,
  toRules,
  type NeutronAddressGroup,
  type NeutronGroup,
  type NeutronLog,
  type NeutronPort,
  type NeutronRule,
} from '../src/neutron/translate.js';

const oslo = (msg: unknown) =>
  Buffer.from(
    JSON.stringify({
      'oslo.version': '2.0',
      'oslo.message': JSON.stringify({ ...(msg as object), _context_auth_token: 'secret', _unique_id: 'u' }),
    }),
  );
const vo = (name: string, version: string, data: Record<string, unknown>) => ({
  'versioned_object.name': name,
  'versioned_object.namespace': 'versionedobjects',
  'versioned_object.version': version,
  'versioned_object.data': data,
});
const PORT = 'f4a7c9a2-1b3c-4d5e-8f90-123456789abc';
const SG = '6c0f0d2e-9a1b-4c3d-8e5f-00112233aabb';

test('messages: pushes and legacy casts become the ids they name', (t) => {
  t.deepEqual(
    decodeNeutronMessage(
      oslo({
        method: 'push',
        version: '1.1',
        args: { event_type: 'updated', resource_list: [vo('Port', '1.11', { id: PORT, revision_number: 4, security_group_ids: [SG] })] },
      }),
    ),
    { kind: 'push', type: 'Port', event: 'updated', version: '1.11', known: true, objects: [{ id: PORT, revision: 4 }] },
  );
  t.deepEqual(
    decodeNeutronMessage(
      oslo({
        method: 'push',
        args: { event_type: 'updated', resource_list: [vo('SecurityGroupRule', '1.3', { id: 'r1', security_group_id: SG })] },
      }),
    ),
    {
      kind: 'push',
      type: 'SecurityGroupRule',
      event: 'updated',
      version: '1.3',
      known: true,
      objects: [{ id: 'r1', securityGroupId: SG }],
    },
  );
  t.like(
    decodeNeutronMessage(oslo({ method: 'push', args: { event_type: 'deleted', resource_list: [vo('Port', '1.12', { id: PORT })] } })),
    { kind: 'push', known: false, version: '1.12' },
  );
  t.deepEqual(
    decodeNeutronMessage(oslo({ method: 'push', args: { event_type: 'updated', resource_list: [vo('Network', '1.1', { id: 'n' })] } })),
    { kind: 'ignored', what: 'push of Network' },
  );
  t.deepEqual(decodeNeutronMessage(oslo({ method: 'port_update', args: { port: { id: PORT, name: 'x' }, network_type: 'flat' } })), {
    kind: 'port',
    method: 'port_update',
    portId: PORT,
  });
  t.deepEqual(decodeNeutronMessage(oslo({ method: 'port_delete', args: { port_id: PORT } })), {
    kind: 'port',
    method: 'port_delete',
    portId: PORT,
  });
  t.deepEqual(decodeNeutronMessage(oslo({ method: 'security_groups_member_updated', args: { security_groups: [SG] } })), {
    kind: 'groups',
    method: 'security_groups_member_updated',
    groupIds: [SG],
  });
  t.deepEqual(decodeNeutronMessage(oslo({ method: 'network_update', args: { network: {} } })), { kind: 'ignored', what: 'network_update' });
});

/** A Port as neutron-server 29 pushes it (the fields the model uses, nested as oslo.versionedobjects). */
const portPrimitive = (host: string, groups: string[], profile?: string) =>
  vo('Port', '1.11', {
    id: PORT,
    mac_address: 'fa:16:3e:00:00:01',
    device_owner: 'compute:nova',
    revision_number: 3,
    security_group_ids: groups,
    fixed_ips: [
      vo('IPAllocation', '1.0', { port_id: PORT, ip_address: '10.0.0.5' }),
      vo('IPAllocation', '1.0', { port_id: PORT, ip_address: 'fd00::5' }),
    ],
    allowed_address_pairs: [vo('AllowedAddressPair', '1.0', { ip_address: '10.0.9.0/24', mac_address: 'fa:16:3e:00:00:01' })],
    bindings: [
      vo('PortBinding', '1.0', { port_id: PORT, host, status: 'ACTIVE', vif_type: 'ovs', profile: profile ?? '{}' }),
      vo('PortBinding', '1.0', { port_id: PORT, host: 'elsewhere', status: 'INACTIVE' }),
    ],
    security: vo('PortSecurity', '1.0', { id: PORT, port_security_enabled: true }),
  });

test('messages: a Port push of the known version shows the fields the model uses', (t) => {
  const e = decodeNeutronMessage(
    oslo({ method: 'push', args: { event_type: 'updated', resource_list: [portPrimitive('compute-1', [SG])] } }),
  );
  t.like(e, { kind: 'push', known: true });
  const pushed = (e as { objects: { port?: NeutronPort }[] }).objects[0]!.port!;
  t.deepEqual(toPort(pushed), toPort(nport({})), 'the same port as the API shows');
  const other = { ...portPrimitive('compute-1', [SG]), 'versioned_object.version': '1.12' };
  t.is(
    (
      decodeNeutronMessage(oslo({ method: 'push', args: { event_type: 'updated', resource_list: [other] } })) as {
        objects: { port?: unknown }[];
      }
    ).objects[0]!.port,
    undefined,
    'another version: read, never interpreted',
  );
});

test("messages: a Port push shows a live migration's destination from the active binding's profile, or is read", (t) => {
  const pushed = (profile?: string) =>
    (
      decodeNeutronMessage(
        oslo({ method: 'push', args: { event_type: 'updated', resource_list: [portPrimitive('compute-1', [SG], profile)] } }),
      ) as { objects: { port?: NeutronPort }[] }
    ).objects[0]!.port;
  // Neutron pushes a profile as JSON text (neutron_lib's DictOfMiscValues.to_primitive).
  t.is(toPort(pushed(JSON.stringify({ migrating_to: 'compute-2' }))!).migratingTo, 'compute-2');
  t.is(toPort(pushed('{}')!).migratingTo, undefined);
  t.is(toPort(pushed('')!).migratingTo, undefined, "a binding's empty profile");
  t.is(pushed('{"migrating_to": '), undefined, 'a profile that is not JSON: the port is read');
  t.is(pushed('[]'), undefined, 'nor one that is not an object');
});

test('messages: what cannot be read is refused with a stable reason', (t) => {
  const reason = (b: Buffer) => {
    try {
      decodeNeutronMessage(b);
      return 'accepted';
    } catch (e) {
      return e instanceof NeutronMessageError ? e.reason : `threw ${String(e)}`;
    }
  };
  const good = oslo({ method: 'port_delete', args: { port_id: PORT } });
  t.is(reason(Buffer.from('garbage')), 'not_json');
  t.is(reason(good.subarray(0, good.length - 5)), 'not_json');
  t.is(reason(Buffer.from('[1,2]')), 'not_oslo_envelope');
  t.is(reason(Buffer.from(JSON.stringify({ 'oslo.version': '1.0', 'oslo.message': '{}' }))), 'unsupported_envelope_version');
  t.is(reason(Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': '{"method": "push", "args": {' }))), 'not_json');
  t.is(reason(oslo({ args: {} })), 'missing_field');
  t.is(reason(oslo({ method: 'port_delete', args: {} })), 'missing_field');
  t.is(reason(oslo({ method: 'port_delete', args: { port_id: 'a b' } })), 'missing_field');
  t.is(reason(oslo({ method: 'security_groups_rule_updated', args: { security_groups: 'all' } })), 'missing_field');
  t.is(reason(oslo({ method: 'push', args: { event_type: 'updated', resource_list: [] } })), 'missing_field');
  t.is(reason(oslo({ method: 'push', args: { event_type: 'updated', resource_list: [vo('Port', '1.11', {})] } })), 'missing_field');
  t.is(
    reason(
      oslo({
        method: 'push',
        args: { event_type: 'updated', resource_list: [vo('Port', '1.11', { id: PORT }), vo('SecurityGroup', '1.6', { id: SG })] },
      }),
    ),
    'bad_payload',
  );
  t.is(reason(Buffer.alloc(17 << 20, 32)), 'too_large');
});

test('messages: the push exchanges bound cover the known versions and a few around them', (t) => {
  const ex = pushExchanges(2, 3);
  t.true(ex.includes(`neutron-vo-Port-${KNOWN_VERSIONS.Port}_fanout`));
  t.true(ex.includes('neutron-vo-Port-1.14_fanout') && ex.includes('neutron-vo-Port-1.9_fanout'));
  t.false(ex.includes('neutron-vo-Port-1.15_fanout') || ex.includes('neutron-vo-Port-1.8_fanout'));
  t.is(ex.length, 4 * 6 + 4, "and Log 1.0's: no minor version below 0");
});

const rule = (r: Partial<NeutronRule>): NeutronRule => ({ id: 'r', security_group_id: SG, direction: 'ingress', ethertype: 'IPv4', ...r });

test("translate: rules keep Neutron's meaning (the domain validator decides it)", (t) => {
  t.like(toRule(rule({ protocol: 'tcp', port_range_min: 80, port_range_max: 81 })), { protocol: 6, portRangeMin: 80, portRangeMax: 81 });
  t.like(toRule(rule({ protocol: '132', port_range_min: 9, port_range_max: 9 })), { protocol: 132, portRangeMin: 9 });
  t.like(toRule(rule({ ethertype: 'IPv6', protocol: 'icmp', port_range_min: 128, port_range_max: 0 })), {
    protocol: 58,
    portRangeMin: 128,
    portRangeMax: 0,
  });
  t.like(toRule(rule({ remote_ip_prefix: '10.1.2.3/16' })), { remoteIpPrefix: '10.1.0.0/16' });
  t.like(toRule(rule({ protocol: 'vrrp' })), { protocol: 112 });
  t.like(toRule(rule({ remote_address_group_id: 'ag1' })), { remoteGroupId: addressGroupKey('ag1') });
  t.like(toRule(rule({ remote_group_id: SG })), { remoteGroupId: SG });
  const { rules, rejected } = toRules([
    rule({ id: 'b', protocol: 'tcp' }),
    rule({ id: 'a', protocol: 'no-such-protocol' }),
    rule({ id: 'c', remote_group_id: SG, remote_address_group_id: 'ag1' }),
  ]);
  t.deepEqual(
    rules.map((r) => r.id),
    ['b'],
    'what the model cannot hold is left out: fewer allowed flows',
  );
  t.deepEqual(
    rejected.map((r) => r.id),
    ['a', 'c'],
  );
});

const nport = (p: Partial<NeutronPort>): NeutronPort => ({
  id: PORT,
  mac_address: 'FA:16:3E:00:00:01',
  fixed_ips: [{ ip_address: '10.0.0.5' }, { ip_address: 'fd00::0005' }],
  allowed_address_pairs: [{ ip_address: '10.0.9.0/24', mac_address: 'fa:16:3e:00:00:01' }],
  security_groups: [SG],
  port_security_enabled: true,
  'binding:host_id': 'compute-1',
  device_owner: 'compute:nova',
  revision_number: 3,
  ...p,
});

test('translate: ports, their host and device', (t) => {
  t.deepEqual(toPort(nport({})), {
    id: PORT,
    host: 'compute-1',
    device: 'tapf4a7c9a2-1b',
    mac: 'fa:16:3e:00:00:01',
    fixedIps: ['10.0.0.5', 'fd00::5'],
    allowedAddressPairs: [{ ipAddress: '10.0.9.0/24', macAddress: 'fa:16:3e:00:00:01' }],
    securityGroups: [SG],
    portSecurityEnabled: true,
  });
  t.is(toPort(nport({ 'binding:host_id': '' })).host, '', 'unbound: a member, filtered nowhere');
  t.is(toPort(nport({ device_owner: 'network:dhcp' })).host, '', 'network ports are never hybrid-plugged taps');
  t.true(toPort(nport({ port_security_enabled: undefined })).portSecurityEnabled, 'without the extension every port is secured');
  t.is(toPort(nport({}), { prefix: 'vnet', length: 15 }).device, 'vnetf4a7c9a2-1b');
  t.is(deviceName(PORT), `tap${PORT.slice(0, 11)}`);
});

test("translate: a live migration's destination is the active binding's profile's migrating_to", (t) => {
  const migrating = (profile: Record<string, unknown> | null, p: Partial<NeutronPort> = {}) =>
    toPort(nport({ 'binding:profile': profile, ...p })).migratingTo;
  t.is(migrating({ migrating_to: 'compute-2' }), 'compute-2');
  t.is(migrating({ migrating_to: 'compute-1' }), undefined, 'the binding activated, the profile not yet cleared: one host');
  t.is(migrating({}), undefined);
  t.is(migrating(null), undefined);
  t.is(migrating({ migrating_to: 'h'.repeat(300) }), undefined, 'not a host name the model takes: no migration, the port kept');
  t.is(migrating({ migrating_to: 7 }), undefined);
  t.is(migrating({ migrating_to: 'compute-2' }, { 'binding:host_id': '' }), undefined, 'an unbound port migrates nowhere');
  t.is(migrating({ migrating_to: 'compute-2' }, { device_owner: 'network:dhcp' }), undefined);
  t.false(samePort(toPort(nport({})), toPort(nport({ 'binding:profile': { migrating_to: 'compute-2' } }))), 'a change to write');
});

test('translate: address groups as members, a catch-all as its two halves', (t) => {
  const ag = (addresses: string[]): NeutronAddressGroup => ({ id: 'ag1', addresses });
  t.deepEqual(toAddressGroupMembers(ag(['10.0.0.0/8', '192.168.1.7/32', '2001:db8::/32'])).members, [
    '10.0.0.0/8',
    '192.168.1.7',
    '2001:db8::/32',
  ]);
  t.deepEqual(toAddressGroupMembers(ag(['0.0.0.0/0', '::/0'])).members, ['0.0.0.0/1', '128.0.0.0/1', '8000::/1', '::/1']);
  const bad = toAddressGroupMembers(ag(['10.0.0.1', 'nonsense']));
  t.deepEqual(bad.members, ['10.0.0.1']);
  t.is(bad.rejected.length, 1);
});

async function tempStore(t: import('ava').ExecutionContext): Promise<Store> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-neutron-store-'));
  const s = await Store.open(dir, { sync: false });
  t.teardown(async () => {
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return s;
}

test('store: explicit members (address groups) and unbound ports', async (t) => {
  const s = await tempStore(t);
  const c1 = await s.setGroupMembers('ag:1', ['10.0.0.0/24', '10.0.1.1']);
  t.like(c1, { groupId: 'ag:1', baseRevision: 0, revision: 1 });
  t.deepEqual(c1!.added.sort(), ['10.0.0.0/24', '10.0.1.1']);
  t.is(await s.setGroupMembers('ag:1', ['10.0.1.1', '10.0.0.0/24']), undefined, 'no change, no revision');
  t.like(await s.setGroupMembers('ag:1', ['10.0.1.1', '10.0.2.0/24']), {
    baseRevision: 1,
    revision: 2,
    added: ['10.0.2.0/24'],
    removed: ['10.0.0.0/24'],
  });
  t.deepEqual(s.membersOf('ag:1').sort(), ['10.0.1.1', '10.0.2.0/24']);
  await t.throwsAsync(s.setGroupMembers('ag:1', ['0.0.0.0/0']), { code: 'INVALID_INPUT' });

  const outbox = () => s.outbox().map((e) => e.message.type);
  await s.ackOutbox(s.outbox().map((e) => e.key));
  const p = { id: 'p', host: '', device: 'tapp', mac: '02:00:00:00:00:01', fixedIps: ['10.9.0.1'], securityGroups: ['g'] };
  await s.putPort('p', p);
  t.deepEqual(outbox(), ['group.members'], 'an unbound port is a member and nothing else');
  t.deepEqual(s.membersOf('g'), ['10.9.0.1']);
  t.deepEqual(s.portsOnHost(''), []);
  await s.ackOutbox(s.outbox().map((e) => e.key));
  await s.putPort('p', { ...p, host: 'h1' });
  t.deepEqual(outbox(), ['port.bound'], 'bound when a host appears');
  await s.ackOutbox(s.outbox().map((e) => e.key));
  await s.putPort('p', { ...p, host: '' });
  t.deepEqual(outbox(), ['port.unbound']);
  t.deepEqual(s.portsOnHost('h1'), []);
});

/** A stand-in for Neutron's API: state in memory, every request counted, failures on demand. */
class FakeNeutron {
  groups = new Map<string, NeutronGroup>();
  rules: NeutronRule[] = [];
  ports = new Map<string, NeutronPort>();
  addressGroups = new Map<string, NeutronAddressGroup>();
  logs: NeutronLog[] = [];
  calls: string[] = [];
  failures = 0;
  private step(what: string): void {
    this.calls.push(what);
    if (this.failures > 0) {
      this.failures--;
      throw new Error('HTTP 503');
    }
  }
  api(): NeutronApi {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the API's methods are arrow functions of this fake's state
    const f = this;
    const pick = <T extends { id: string }>(m: Map<string, T>, ids?: string[]) =>
      ids ? ids.map((i) => m.get(i)).filter((x): x is T => !!x) : [...m.values()];
    return {
      securityGroups: async (ids?: string[], withRules = false) => {
        f.step(`groups${ids ? ` ${ids.join(',')}` : ''}`);
        return pick(f.groups, ids).map((g) => ({
          ...g,
          ...(withRules ? { security_group_rules: f.rules.filter((r) => r.security_group_id === g.id) } : {}),
        }));
      },
      securityGroupRules: async () => (f.step('rules'), f.rules),
      ports: async (ids?: string[]) => (f.step(`ports${ids ? ` ${ids.join(',')}` : ''}`), pick(f.ports, ids)),
      portRevisionsInGroup: async (g: string) => (
        f.step(`members ${g}`),
        [...f.ports.values()].filter((p) => p.security_groups?.includes(g)).map((p) => ({ id: p.id, revision_number: p.revision_number }))
      ),
      addressGroups: async (ids?: string[]) => (f.step('address groups'), pick(f.addressGroups, ids)),
      logs: async () => (f.step('logs'), f.logs),
    } as unknown as NeutronApi;
  }
}

test('reconciler: a full resync writes only differences, hints are batched, a push of a revision held is not read', async (t) => {
  const s = await tempStore(t);
  const n = new FakeNeutron();
  n.groups.set('g', { id: 'g', stateful: true });
  n.rules.push(rule({ id: 'r1', security_group_id: 'g', remote_group_id: 'g' }));
  n.ports.set('p1', nport({ id: 'p1', security_groups: ['g'], revision_number: 5 }));
  let written = 0;
  const r = new NeutronReconciler({ store: s, api: n.api(), written: () => written++, minResyncGapMs: 60_000 });
  t.teardown(() => r.close());
  r.resync('start');
  await r.idle();
  t.is(r.stats.writes, 2);
  t.deepEqual(s.membersOf('g').sort(), ['10.0.0.5', '10.0.9.0/24', 'fd00::5']);
  r.resync('periodic');
  await r.idle();
  t.is(r.stats.writes, 2, 'nothing differed: nothing written');
  t.is(r.stats.driftRepaired, 0);

  n.calls = [];
  n.ports.set('p2', nport({ id: 'p2', security_groups: ['g'], fixed_ips: [{ ip_address: '10.0.0.6' }], revision_number: 1 }));
  r.hint({ ports: new Map([['p2', { revision: 1 }]]) });
  r.hint({ ports: new Map([['p1', { revision: 5 }]]) });
  r.hint({ groups: ['g'] });
  await r.idle();
  t.deepEqual(n.calls, ['groups g', 'ports p2'], 'one batch; p1 at revision 5 is held already');
  t.is(r.stats.skippedByRevision, 1);
  t.true(s.membersOf('g').includes('10.0.0.6'));

  // A port deleted in Neutron behind our back: the periodic resync repairs it and counts it as drift.
  n.ports.delete('p2');
  r.resync('periodic');
  await r.idle();
  t.false(s.membersOf('g').includes('10.0.0.6'));
  t.is(r.stats.driftRepaired, 1);
  t.true(written > 0);
});

test('reconciler: a push showing nothing new for the model spares the read; one showing a change is read', async (t) => {
  const s = await tempStore(t);
  const n = new FakeNeutron();
  n.groups.set(SG, { id: SG });
  n.ports.set(PORT, nport({ revision_number: 1 }));
  const r = new NeutronReconciler({ store: s, api: n.api(), written: () => undefined });
  t.teardown(() => r.close());
  r.resync('start');
  await r.idle();
  const pushed = (host: string, groups: string[]) =>
    (
      decodeNeutronMessage(oslo({ method: 'push', args: { event_type: 'updated', resource_list: [portPrimitive(host, groups)] } })) as {
        objects: { port?: NeutronPort }[];
      }
    ).objects[0]!.port!;
  n.calls = [];
  r.hint({ ports: new Map([[PORT, { revision: 3, pushed: pushed('compute-1', [SG]) }]]) });
  await r.idle();
  t.deepEqual(n.calls, [], 'bound now, nothing else new: no read');
  t.is(r.stats.skippedByContent, 1);
  // A push claiming another host is read, and what the API says is stored (not what the push said).
  r.hint({ ports: new Map([[PORT, { revision: 4, pushed: pushed('compute-9', [SG]) }]]) });
  await r.idle();
  t.deepEqual(n.calls, [`ports ${PORT}`]);
  t.is(s.port(PORT)!.host, 'compute-1');
});

test('reconciler: a failed read loses nothing; resyncs caused by messages are rate-limited', async (t) => {
  const s = await tempStore(t);
  const n = new FakeNeutron();
  n.groups.set('g', { id: 'g', stateful: true });
  const r = new NeutronReconciler({ store: s, api: n.api(), written: () => undefined, minResyncGapMs: 60_000 });
  t.teardown(() => r.close());
  r.resync('start');
  await r.idle();
  n.ports.set('p1', nport({ id: 'p1', security_groups: ['g'] }));
  n.failures = 2;
  r.hint({ ports: new Map([['p1', undefined]]) });
  await r.idle();
  t.is(r.stats.apiErrors, 2);
  t.truthy(s.port('p1'), 'read again until it worked');

  const before = r.stats.fullResyncs;
  const readsBefore = r.stats.targetedReads;
  r.resync('unreadable message', true);
  r.resync('unreadable message', true);
  r.hint({ ports: new Map([['p1', undefined]]) });
  // The hint's read, asked after the resyncs, has run: had they not been refused, they would have too.
  // (Not `idle()`: it would wait out the minute the refused resyncs are held for.)
  await waitFor('the targeted read', () => r.stats.targetedReads > readsBefore, 30_000);
  t.is(r.stats.fullResyncs, before, 'not within a minute of the last full resync; targeted reads still run meanwhile');
  r.resync('reconnect');
  await waitFor('the reconnect resync', () => r.stats.fullResyncs > before, 30_000);
  t.is(r.stats.fullResyncs, before + 1, 'a lost connection is not rate-limited; the held resyncs go with it');
});

test("reconciler: Neutron's security-group logs become the logs of the groups concerned, and follow their ports", async (t) => {
  const s = await tempStore(t);
  const n = new FakeNeutron();
  n.groups.set('g1', { id: 'g1', project_id: 'proj' });
  n.groups.set('g2', { id: 'g2', project_id: 'proj' });
  n.groups.set('g3', { id: 'g3', project_id: 'other' });
  n.ports.set('p1', nport({ id: 'p1', security_groups: ['g1'], revision_number: 1 }));
  const sgLog = { project_id: 'proj', resource_type: 'security_group', enabled: true };
  n.logs = [
    { ...sgLog, id: 'by-port', resource_id: null, target_id: 'p1', event: 'DROP' },
    { id: 'fw', project_id: 'proj', resource_type: 'firewall_group', resource_id: 'x', target_id: null, event: 'ALL', enabled: true },
    { id: 'bad', project_id: 'proj', resource_type: 'security_group', resource_id: 'g1', event: 'SOMETIMES', enabled: true },
  ];
  const r = new NeutronReconciler({ store: s, api: n.api(), written: () => undefined });
  t.teardown(() => r.close());
  r.resync('start');
  await r.idle();
  const carried = (g: string) => s.group(g)?.logs?.map((l) => `${l.id}:${l.targetId ?? '*'}:${l.event}`) ?? [];
  t.deepEqual(carried('g1'), ['by-port:p1:DROP'], 'a log of a port: carried by its group, for that port');
  t.deepEqual(
    s.logResources().map((l) => l.id),
    ['by-port'],
    'another resource type is not ours; a log the model refuses is left out',
  );
  t.is(r.stats.rejectedObjects, 1);

  // The port moves to another group (a port push): the log follows it.
  n.ports.set('p1', nport({ id: 'p1', security_groups: ['g2'], revision_number: 2 }));
  r.hint({ ports: new Map([['p1', { revision: 2 }]]) });
  await r.idle();
  t.deepEqual([carried('g1'), carried('g2')], [[], ['by-port:p1:DROP']]);

  // A log pushed (created, disabled): all logs read again; one of a project logs its groups.
  n.calls = [];
  n.logs = [
    { ...sgLog, id: 'project', event: 'ACCEPT' },
    { ...n.logs[0]!, enabled: false },
  ];
  r.hint({ logs: true });
  await r.idle();
  t.deepEqual(n.calls, ['logs'], 'a log push reads the logs alone');
  t.deepEqual([carried('g1'), carried('g2'), carried('g3')], [['project:*:ACCEPT'], ['project:*:ACCEPT'], []]);

  // Deleted in Neutron behind our back: the periodic resync repairs it.
  n.logs = [];
  r.resync('periodic');
  await r.idle();
  t.deepEqual([carried('g1'), carried('g2'), s.logResources()], [[], [], []]);
  t.true(r.stats.driftRepaired > 0);
});

test('reconciler: a deleted group takes the rules naming it out of other groups; address groups come and go', async (t) => {
  const s = await tempStore(t);
  const n = new FakeNeutron();
  n.groups.set('a', { id: 'a', stateful: true });
  n.groups.set('b', { id: 'b', stateful: false });
  n.rules.push(
    rule({ id: 'ra', security_group_id: 'a', remote_group_id: 'b' }),
    rule({ id: 'rb', security_group_id: 'a', remote_address_group_id: 'x' }),
  );
  n.addressGroups.set('x', { id: 'x', addresses: ['192.0.2.0/24'] });
  const r = new NeutronReconciler({ store: s, api: n.api(), written: () => undefined });
  t.teardown(() => r.close());
  r.resync('start');
  await r.idle();
  t.deepEqual(
    s.group('a')!.rules.map((x) => x.id),
    ['ra', 'rb'],
  );
  t.is(s.group('b')!.stateful, false);
  t.deepEqual(s.membersOf(addressGroupKey('x')), ['192.0.2.0/24']);
  t.is(r.groupOfRule('ra'), 'a');
  // Neutron deletes b and, with it, rule ra of a; it announces b alone.
  n.groups.delete('b');
  n.rules = n.rules.filter((x) => x.id !== 'ra');
  r.hint({ groups: ['b'] });
  await r.idle();
  t.is(s.group('b'), undefined);
  t.deepEqual(
    s.group('a')!.rules.map((x) => x.id),
    ['rb'],
    'a was read again',
  );
  n.addressGroups.delete('x');
  r.hint({ addressGroups: ['x'] });
  await r.idle();
  t.deepEqual(s.membersOf(addressGroupKey('x')), []);
  t.is(s.group(addressGroupKey('x')), undefined);
});

test('reconciler: a full read that would delete most ports is held until a second one confirms it', async (t) => {
  const s = await tempStore(t);
  const n = new FakeNeutron();
  n.groups.set('g', { id: 'g' });
  for (let i = 0; i < 30; i++)
    n.ports.set(
      `p${i}`,
      nport({ id: `p${i}`, security_groups: ['g'], fixed_ips: [{ ip_address: `10.0.1.${i}` }], allowed_address_pairs: [] }),
    );
  const r = new NeutronReconciler({ store: s, api: n.api(), written: () => undefined, massDeletionConfirmMs: 300 });
  t.teardown(() => r.close());
  r.resync('start');
  await r.idle();
  t.is(s.ports().length, 30);
  const kept = new Map(n.ports);
  n.ports.clear();
  r.resync('periodic');
  await r.idle();
  t.is(s.ports().length, 30, 'held back');
  t.is(r.stats.deletionsHeld, 1);
  // The API lists them again: nothing was lost, and nothing stays held.
  for (const [id, p] of kept) n.ports.set(id, p);
  r.resync('periodic');
  await r.idle();
  t.is(s.ports().length, 30);
  // Really gone: a second read 300 ms after the first confirms it.
  n.ports.clear();
  r.resync('periodic');
  await r.idle();
  t.is(s.ports().length, 30);
  await waitFor('confirmed and applied', () => s.ports().length === 0, 5_000);
  t.is(r.stats.deletionsHeld, 2);
  t.deepEqual(s.membersOf('g'), []);
});

test("reconciler: a legacy member cast reads the group's ports whose revision differs", async (t) => {
  const s = await tempStore(t);
  const n = new FakeNeutron();
  n.groups.set('g', { id: 'g' });
  n.ports.set('p1', nport({ id: 'p1', security_groups: ['g'], revision_number: 1 }));
  n.ports.set('p2', nport({ id: 'p2', security_groups: ['g'], fixed_ips: [{ ip_address: '10.0.0.7' }], revision_number: 1 }));
  const r = new NeutronReconciler({ store: s, api: n.api(), written: () => undefined });
  t.teardown(() => r.close());
  r.resync('start');
  await r.idle();
  n.ports.set('p2', { ...n.ports.get('p2')!, fixed_ips: [{ ip_address: '10.0.0.8' }], revision_number: 2 });
  n.ports.delete('p1');
  n.calls = [];
  r.hint({ groupMembers: ['g'] });
  await r.idle();
  t.deepEqual(n.calls, ['members g', 'ports p2,p1']);
  t.deepEqual(s.membersOf('g').sort(), ['10.0.0.8', '10.0.9.0/24']);
});

/** A stand-in Keystone and Neutron on one loopback server. */
async function stubCloud(t: import('ava').ExecutionContext): Promise<{
  url: string;
  tokens: string[];
  seen: { token: string | undefined; url: string }[];
  revoke: () => void;
  hideBinding: () => void;
}> {
  let hideBinding = false;
  const tokens: string[] = [];
  const seen: { token: string | undefined; url: string }[] = [];
  let valid = new Set<string>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const u = new URL(req.url!, 'http://x');
      if (req.method === 'POST' && u.pathname === '/identity/v3/auth/tokens') {
        const { auth } = JSON.parse(body) as { auth: { identity: { password: { user: { password: string } } } } };
        if (auth.identity.password.user.password !== 'right')
          return res.writeHead(401).end('{"error": {"message": "The request you have made requires authentication."}}');
        const tok = `tok${tokens.length}`;
        tokens.push(tok);
        valid.add(tok);
        res.writeHead(201, { 'x-subject-token': tok, 'content-type': 'application/json' });
        const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
        return res.end(
          JSON.stringify({
            token: {
              expires_at: new Date(Date.now() + 3_600_000).toISOString(),
              catalog: [
                { type: 'identity', endpoints: [{ interface: 'internal', url: `${base}/identity` }] },
                {
                  type: 'network',
                  endpoints: [
                    { interface: 'public', region: 'R1', url: `${base}/public-net` },
                    { interface: 'internal', region: 'R1', url: `${base}/net` },
                  ],
                },
              ],
            },
          }),
        );
      }
      const token = req.headers['x-auth-token'] as string | undefined;
      seen.push({ token, url: req.url! });
      if (!token || !valid.has(token)) return res.writeHead(401).end('{}');
      if (u.pathname !== '/net/v2.0/ports') return res.writeHead(404).end('{}');
      // Pages of 2 by marker, over ids p0..p4.
      const all = ['p0', 'p1', 'p2', 'p3', 'p4'];
      const limit = Number(u.searchParams.get('limit'));
      const from = u.searchParams.get('marker') ? all.indexOf(u.searchParams.get('marker')!) + 1 : 0;
      // As Neutron's default policy shows a port to an account without the admin role: no binding.
      const page = all.slice(from, from + limit).map((id) => ({
        id,
        mac_address: 'fa:16:3e:00:00:01',
        fixed_ips: [],
        security_groups: [],
        device_owner: '',
        ...(hideBinding ? {} : { 'binding:host_id': '' }),
      }));
      const more = from + limit < all.length;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ ports: page, ...(more ? { ports_links: [{ rel: 'next', href: 'http://elsewhere/v2.0/ports?marker=x' }] } : {}) }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    tokens,
    seen,
    revoke: () => (valid = new Set()),
    hideBinding: () => (hideBinding = true),
  };
}

test('api: Keystone v3 password auth, the endpoint from the catalog, a refused token renewed, pages by marker, hidden fields refused', async (t) => {
  const cloud = await stubCloud(t);
  const opts: NeutronApiOptions = {
    auth: {
      kind: 'keystone',
      authUrl: `${cloud.url}/identity/v3`,
      username: 'sg',
      password: 'right',
      projectName: 'service',
      region: 'R1',
    },
    pageSize: 2,
  };
  const api = new NeutronApi(opts);
  t.deepEqual(
    (await api.ports()).map((p) => p.id),
    ['p0', 'p1', 'p2', 'p3', 'p4'],
  );
  t.is(cloud.tokens.length, 1, 'one token for every page');
  t.true(
    cloud.seen.every((s) => s.url.startsWith('/net/v2.0/ports?') && s.token === 'tok0'),
    'internal endpoint of the catalog',
  );
  t.is(cloud.seen.length, 3);
  cloud.revoke();
  t.is((await api.ports()).length, 5);
  t.is(cloud.tokens.length, 2, 'a refused token is replaced once');
  const wrong = new NeutronApi({ ...opts, auth: { ...opts.auth, password: 'wrong' } as NeutronApiOptions['auth'] });
  const e = await t.throwsAsync(wrong.ports());
  t.regex(e.message, /Keystone refused the credentials: HTTP 401/);
  t.notRegex(e.message, /wrong/, 'the password is never in an error');
  // An account that may not see bindings: an error, never ports read as unbound.
  cloud.hideBinding();
  await t.throwsAsync(api.ports(), { message: /without binding:host_id/ });
});

test("api: an endpoint given with its /v2.0 is Neutron's all the same; one that is not Neutron's says so", async (t) => {
  const cloud = await stubCloud(t);
  const auth: NeutronApiOptions['auth'] = {
    kind: 'keystone',
    authUrl: `${cloud.url}/identity/v3`,
    username: 'sg',
    password: 'right',
    projectName: 'service',
  };
  for (const url of [`${cloud.url}/net/v2.0`, `${cloud.url}/net/v2.0/`, `${cloud.url}/net/`]) {
    t.is((await new NeutronApi({ auth, url }).ports()).length, 5, url);
  }
  t.true(
    cloud.seen.every((s) => s.url.startsWith('/net/v2.0/ports?')),
    'never /v2.0/v2.0',
  );
  await t.throwsAsync(new NeutronApi({ auth, url: `${cloud.url}/elsewhere` }).ports(), {
    message: /HTTP 404 \(asked http:\S+\/elsewhere\/v2\.0\/: is that Neutron's endpoint\?\)/,
  });
});

test('config: Neutron mode from the environment', (t) => {
  t.deepEqual(neutronAuth({}), { kind: 'noauth' });
  t.like(
    neutronAuth({ OS_AUTH_URL: 'http://k/v3', OS_USERNAME: 'u', OS_PASSWORD: 'p', OS_PROJECT_NAME: 'service', OS_INTERFACE: 'public' }),
    { kind: 'keystone', userDomainName: 'Default', interface: 'public' },
  );
  t.throws(() => neutronAuth({ OS_AUTH_URL: 'http://k/v3', OS_USERNAME: 'u' }), { instanceOf: ConfigError, message: /OS_PASSWORD/ });
  const o = neutronSourceOptions({
    SG_NEUTRON_URL: 'http://n:9696',
    SG_NEUTRON_TRANSPORT_URL: 'rabbit://u:p@r1:5672,u:p@r2:5672/neutron',
    SG_NEUTRON_DEVICE_PREFIX: 'vnet',
    SG_NEUTRON_DEVICE_LENGTH: '15',
  });
  t.deepEqual(o.naming, { prefix: 'vnet', length: 15 });
  t.throws(
    () => neutronSourceOptions({ SG_NEUTRON_URL: 'http://n', SG_NEUTRON_TRANSPORT_URL: 'rabbit://r', SG_NEUTRON_DEVICE_LENGTH: '16' }),
    { instanceOf: ConfigError },
  );
  t.throws(() => neutronSourceOptions({ SG_NEUTRON_URL: 'http://n' }), { instanceOf: ConfigError, message: /TRANSPORT_URL/ });
  t.deepEqual(brokerUrls('rabbit://u:p@r1:5672,u:p@r2:5672/neutron?ssl=0'), ['amqp://u:p@r1:5672/neutron', 'amqp://u:p@r2:5672/neutron']);
  t.deepEqual(brokerUrls('rabbit://guest:guest@127.0.0.1:5672/'), ['amqp://guest:guest@127.0.0.1:5672/']);
  // Numbers as every other setting reads them; the API's URL a URL.
  for (const [k, v] of [
    ['SG_NEUTRON_TIMEOUT_MS', '0x2710'],
    ['SG_NEUTRON_TIMEOUT_MS', '1e4'],
    ['SG_NEUTRON_RESYNC_INTERVAL_MS', ' '],
  ] as const)
    t.throws(() => neutronSourceOptions({ SG_NEUTRON_URL: 'http://n', SG_NEUTRON_TRANSPORT_URL: 'rabbit://r', [k]: v }), {
      instanceOf: ConfigError,
      message: new RegExp(`${k} must be a whole number .*, not ${JSON.stringify(JSON.stringify(v)).slice(1, -1)}`),
    });
  for (const url of ['neutron:9696', 'not a url', 'ftp://n/'])
    t.throws(() => neutronSourceOptions({ SG_NEUTRON_URL: url, SG_NEUTRON_TRANSPORT_URL: 'rabbit://r' }), {
      instanceOf: ConfigError,
      message: /SG_NEUTRON_URL must be an http:\/\/ or https:\/\/ URL/,
    });
  // oslo.messaging's TLS switch is not read: refused at start-up, not dropped (which would go without TLS).
  t.deepEqual(brokerUrls('amqps://u:p@r1:5671/'), ['amqps://u:p@r1:5671/']);
  t.throws(() => neutronSourceOptions({ SG_NEUTRON_URL: 'http://n', SG_NEUTRON_TRANSPORT_URL: 'rabbit://u:p@r1:5671/?ssl=1' }), {
    instanceOf: ConfigError,
    message: "SG_NEUTRON_TRANSPORT_URL: ?ssl=1 (oslo.messaging's TLS option) is not read: write the URL as amqps://",
  });
  t.throws(() => neutronSourceOptions({ SG_NEUTRON_URL: 'http://n', SG_NEUTRON_TRANSPORT_URL: 'http://r1/' }), {
    instanceOf: ConfigError,
    message: /SG_NEUTRON_TRANSPORT_URL: the Neutron broker URL must be/,
  });
});
