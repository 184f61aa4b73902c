// docs/neutron.md's operator checklists, step by step, on a compute host of openstack-env.ts: migrating
// a host from Neutron's iptables_hybrid firewall to sg-agent, and rolling it back. Each step is what
// the checklist says an operator runs (systemctl is the harness's stop and start); `between` runs after
// each step, so that a test can check its connections at every point, and a benchmark count losses.
import fs from 'node:fs';
import path from 'node:path';
import type { ComputeHost } from './compute-host.js';
import type { OpenStackEnv } from './openstack-env.js';
import { waitFor } from './wait.js';

export type Step = (name: string) => Promise<void>;

const FAMILIES = ['iptables', 'ip6tables'] as const;
const repo = path.resolve(__dirname, '../..');

/** The shell block of docs/neutron.md whose first line is `# checklist: <name>`, as an operator would
 *  paste it on `host` (the configuration files the docs name are this host's). */
export function checklistBlock(name: string, host: ComputeHost): string {
  const doc = fs.readFileSync(path.join(repo, 'docs/neutron.md'), 'utf8');
  const m = new RegExp(`\\n( *)\`\`\`sh\\n *# checklist: ${name}\\n([\\s\\S]*?)\\n *\`\`\`\\n`).exec(doc);
  if (!m) throw new Error(`docs/neutron.md has no block "# checklist: ${name}"`);
  const indent = m[1]!.length;
  const script = m[2]!
    .split('\n')
    .map((l) => l.slice(indent))
    .join('\n');
  return script.replace(
    '--config-file /etc/neutron/neutron.conf --config-file /etc/neutron/plugins/ml2/openvswitch_agent.ini',
    `--config-file ${host.agentConfigFile}`,
  );
}

/** Neutron's chains in the filter and nat tables (both families): `neutron-openvswi-*`, `neutron-filter-top`. */
export function neutronChains(host: ComputeHost): string[] {
  return FAMILIES.flatMap((t) =>
    ['filter', 'nat'].flatMap((table) =>
      host.ns
        .exec(`${t}-save`, ['-t', table])
        .split('\n')
        .filter((l) => /^:neutron-/.test(l))
        .map((l) => `${t} ${table} ${l.slice(1).split(' ')[0]}`),
    ),
  );
}

/** Neutron's ipsets (their names start with N: NIPv4…, NIPv6…). */
export function neutronIpsets(host: ComputeHost): string[] {
  return host.ns
    .exec('ipset', ['list', '-n'])
    .split('\n')
    .filter((l) => /^N/.test(l));
}

/** The jumps from FORWARD and INPUT to Neutron's chains (both families). */
export function neutronJumps(host: ComputeHost): string[] {
  return FAMILIES.flatMap((t) =>
    host.ns
      .exec(`${t}-save`, ['-t', 'filter'])
      .split('\n')
      .filter((l) => /^-A (FORWARD|INPUT) .*-j neutron-/.test(l))
      .map((l) => `${t} ${l}`),
  );
}

/** The ports Neutron binds to the host (`openstack port list --host <host>`). */
async function portsOf(env: OpenStackEnv, host: ComputeHost): Promise<string[]> {
  const ports = await env.neutron.list('port', `binding:host_id=${encodeURIComponent(host.name)}&fields=id`);
  return ports.map((p) => p.id as string).sort();
}

/** `sg-agent status` lists every port of the host, each with its filter in the kernel. */
async function sgAgentHoldsEveryPort(env: OpenStackEnv, host: ComputeHost): Promise<void> {
  await waitFor(
    `sg-agent on ${host.name} holding every port of the host`,
    async () => {
      const want = await portsOf(env, host);
      const s = await host.status();
      return want.every((id) => s.ports.some((p) => p.id === id && p.inKernel));
    },
    60_000,
  );
}

/** "Migrating a host from Neutron's iptables driver, with no window", the checklist. */
export async function migrateToSgAgent(env: OpenStackEnv, host: ComputeHost, between: Step = async () => undefined): Promise<void> {
  // 1. sg-controller runs: /healthz shows it connected, Neutron's broker connected, a full read done.
  type Health = { connected: boolean; neutron: { brokerConnected: boolean; lastFullResync?: unknown } };
  await waitFor(
    'sg-controller healthy with a full resync done',
    async () => {
      const r = await fetch(`${env.controllerUrl}/healthz`);
      const h = (await r.json()) as Health;
      return r.ok && h.connected && h.neutron.brokerConnected && !!h.neutron.lastFullResync;
    },
    60_000,
  );
  await between('1. sg-controller checked');

  // 2. sg-agent started (without dropUnknownDevices); wait until it holds every port of the host.
  await host.startSgAgent({});
  await sgAgentHoldsEveryPort(env, host);
  await between('2. sg-agent holds every port');

  // 3. The OVS agent stopped, then Neutron's jumps deciding for the VMs deleted, both families.
  await host.stopOvsAgent();
  host.shell(checklistBlock('migrate step 3', host));
  await between("3. OVS agent stopped, Neutron's jumps deleted");

  // 4. firewall_driver = sg_agent, the OVS agent started; its first loop completes.
  host.firewallDriver = 'sg_agent';
  await host.startOvsAgent();
  await between('4. OVS agent on the sg_agent driver');

  // 5. Neutron's remaining jumps and its chains (filter and nat tables, both families) removed, then its ipsets.
  host.shell(checklistBlock('migrate step 5', host));
  await between("5. Neutron's chains and ipsets removed");

  // 6. dropUnknownDevices: ["tap"] set, sg-agent restarted; it holds every port again.
  await host.stopSgAgent();
  await host.startSgAgent({ SG_DROP_UNKNOWN_DEVICES: 'tap' });
  await sgAgentHoldsEveryPort(env, host);
  await between('6. sg-agent dropping unknown taps');
}

/** Neutron's chains are in place on the host: its jumps in FORWARD and a chain for every port of the
 *  host (`neutron-openvswi-i` + the first 10 characters of the port's id), both families. */
async function neutronFiltersEveryPort(env: OpenStackEnv, host: ComputeHost): Promise<void> {
  await waitFor(
    `Neutron's chains for every port of ${host.name}`,
    async () => {
      const ports = await portsOf(env, host);
      return FAMILIES.every((t) => {
        const saved = host.ns.exec(`${t}-save`, ['-t', 'filter']);
        return (
          saved.includes('\n-A FORWARD -j neutron-openvswi-FORWARD') &&
          ports.every((id) => saved.includes(`\n:neutron-openvswi-i${id.slice(0, 10)} `))
        );
      });
    },
    120_000,
  );
}

/** "Rolling back a host", the checklist. */
export async function rollBackToIptablesHybrid(env: OpenStackEnv, host: ComputeHost, between: Step = async () => undefined): Promise<void> {
  // 1. firewall_driver = iptables_hybrid, the OVS agent restarted; wait until Neutron's chains are
  //    in place for every port of the host (its first loop may have processed none).
  await host.stopOvsAgent();
  host.firewallDriver = 'iptables_hybrid';
  await host.startOvsAgent();
  await neutronFiltersEveryPort(env, host);
  await between("1. OVS agent on iptables_hybrid, Neutron's chains in place");

  // 2. sg-agent stopped, then `sg-agent cleanup`.
  await host.stopSgAgent();
  host.sgAgentCleanup();
  await between('2. sg-agent stopped and cleaned up');
}
