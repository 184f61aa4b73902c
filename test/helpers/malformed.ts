// A corpus of malformed and hostile messages: bad JSON, wrong types, invalid addresses, huge
// arrays, unknown versions and types, injection strings. Every one must be rejected.
export function malformedCorpus(host: string): Buffer[] {
  const port = { id: 'p-x', host, device: 'tapx', mac: '02:00:00:00:aa:01', fixedIps: ['10.0.0.9'], securityGroups: ['g'] };
  const ok = { v: 1, type: 'port.bound', host, port, revision: 1 };
  const members = { v: 1, type: 'group.members', groupId: 'g', baseRevision: 0, revision: 1, added: ['10.0.0.1'], removed: [] };
  const list: unknown[] = [
    '{', '', 'null', '[]', '"string"', '42', 'true', '{"v":1}', '\u0000\u0001garbage',
    { ...ok, v: 2 },
    { ...ok, v: '1' },
    { ...ok, type: 'port.exploded' },
    { ...ok, type: 42 },
    { ...ok, revision: -1 },
    { ...ok, revision: 'latest' },
    { ...ok, port: { ...port, mac: 'not-a-mac' } },
    { ...ok, port: { ...port, device: 'eth0 -j ACCEPT' } },
    { ...ok, port: { ...port, device: 'a;reboot' } },
    { ...ok, port: { ...port, fixedIps: ['10.0.0.256'] } },
    { ...ok, port: { ...port, fixedIps: ['10.0.0.1/24'] } },
    { ...ok, port: { ...port, fixedIps: 'all' } },
    { ...ok, port: { ...port, securityGroups: [42] } },
    { ...ok, port: { ...port, id: 'x'.repeat(10_000) } },
    { ...ok, port: { ...port, extra: 'field' } },
    { ...ok, port: { ...port, allowedAddressPairs: [{ ipAddress: '$(reboot)' }] } },
    { ...ok, __proto__: { polluted: true }, constructor: { prototype: { polluted: true } } },
    { ...members, added: ['10.0.0.1\n-A FORWARD -j ACCEPT'] },
    { ...members, added: ["'; DROP TABLE ports; --"] },
    { ...members, added: Array.from({ length: 20_000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`) },
    { ...members, revision: 0 },
    { ...members, added: [null] },
    { ...members, groupId: '' },
    { v: 1, type: 'group.rules', groupId: 'g', revision: 1, stateful: true, rules: [{ id: 'r', direction: 'sideways', ethertype: 'IPv4' }] },
    { v: 1, type: 'group.rules', groupId: 'g', revision: 1, stateful: true, rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', remoteIpPrefix: '10.0.0.0/8', remoteGroupId: 'g' }] },
    { v: 1, type: 'group.rules', groupId: 'g', revision: 1, stateful: true, rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 70000 }] },
    { v: 1, type: 'group.rules', groupId: 'g', revision: 1, stateful: 'yes', rules: [] },
    // Issue 10's reproductions: accepted by the API once, and fatal to agents.
    { v: 1, type: 'group.rules', groupId: 'g', revision: 1, stateful: true, rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 90, portRangeMax: 80 }] },
    { v: 1, type: 'group.rules', groupId: 'g', revision: 1, stateful: true, rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', portRangeMin: 80, portRangeMax: 80 }] },
    { v: 1, type: 'group.rules', groupId: 'g', revision: 1, stateful: true, rules: [{ id: 'r', direction: 'ingress', ethertype: 'IPv4', remoteIpPrefix: 'fd00::/8' }] },
    { ...ok, port: { ...port, fixedIps: ['fe80::1%lo'] } },
    { ...members, added: ['fe80::1%lo'] },
    { ...members, added: ['0.0.0.0/0'] },
    { ...members, added: ['10.0.0.1/032'] },
    { v: 1, type: 'sync.request', host },
    { v: 1, type: 'port.unbound', host, portId: { $gt: '' }, revision: 2 },
  ];
  const bodies = list.map((m) => Buffer.from(typeof m === 'string' ? m : JSON.stringify(m)));
  bodies.push(Buffer.alloc(5 << 20, 0x20)); // oversize
  return bodies;
}
