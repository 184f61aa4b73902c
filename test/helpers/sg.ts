// sg-controller and sg-agent as real processes for the security and resilience tests, configured as
// a deployment configures them: a signing key for the controller, its public key for the agents, a
// bearer token for the admin API. Every process runs with unhandled rejections fatal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { freePort } from './net.js';
import { startProcess, stopProcess, type Running } from './processes.js';
import { waitFor } from './wait.js';
import { removeKeys, testKey, testToken, type TestKey } from './keys.js';
import { testVhost, type TestVhost } from './broker.js';
import { Topology } from './topology.js';

export interface ControllerProc extends Running {
  api: string;
  token: string;
  call(method: string, p: string, body?: unknown): Promise<Response>;
}

export async function startController(o: {
  amqpUrl: string;
  key: TestKey;
  token: { token: string; file: string };
  dataDir?: string;
  env?: Record<string, string>;
  waitConnected?: boolean;
}): Promise<ControllerProc> {
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  // A data directory of its own unless given one, removed when the process ends.
  const ownDir = o.dataDir ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'sgtrust-ctl-'));
  const r = startProcess('src/cli/sg-controller.ts', [], {
    SG_AMQP_URL: o.amqpUrl,
    SG_HTTP_LISTEN: `127.0.0.1:${port}`,
    SG_DATA_DIR: o.dataDir ?? ownDir!,
    SG_SIGNING_KEY_FILE: o.key.privateKeyFile,
    SG_HTTP_TOKEN_FILE: o.token.file,
    SG_LOG_LEVEL: 'info',
    ...o.env,
  });
  const call = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(`${api}${p}`, {
      method,
      headers: { authorization: `Bearer ${o.token.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? null : JSON.stringify(body),
    });
    if (res.status >= 400) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
    return res;
  };
  if (ownDir) void r.exit.then(() => fs.rmSync(ownDir, { recursive: true, force: true }));
  const ctl: ControllerProc = Object.assign(r, { api, token: o.token.token, call });
  await waitFor(
    'controller API',
    async () => {
      if (r.exited) throw new Error(`controller exited:\n${r.dump()}`);
      const h = (await (await fetch(`${api}/healthz`)).json()) as { connected: boolean };
      return o.waitConnected === false || h.connected;
    },
    60_000,
  );
  return ctl;
}

export interface AgentStatus {
  connected: boolean;
  ports: { id: string; device: string; groups: string[]; inKernel: boolean }[];
  groups: { id: string; members: number; rulesRevision: number | null; membersRevision: number | null }[];
  sets: { name: string; size: number }[];
  /** With conntrack zones: the zoned bridges present and their zones. */
  conntrackZones?: { bridge: string; zone: number }[];
}

export interface AgentProc extends Running {
  host: string;
  metrics: string;
  status(): Promise<AgentStatus>;
  /** A counter or gauge of /metrics (labels included in `name`, as Prometheus prints them). */
  metric(name: string): Promise<number>;
}

export async function startAgent(o: {
  host: string;
  amqpUrl: string;
  trustedKeys: string;
  netns: string;
  env?: Record<string, string>;
}): Promise<AgentProc> {
  const metrics = `127.0.0.1:${await freePort()}`;
  const r = startProcess('src/cli/sg-agent.ts', ['run'], {
    SG_AGENT_HOST: o.host,
    SG_AMQP_URL: o.amqpUrl,
    SG_TRUSTED_KEYS: o.trustedKeys,
    SG_NETNS: o.netns,
    SG_METRICS_LISTEN: metrics,
    SG_LOG_LEVEL: 'info',
    SG_QUEUE_EXPIRES_MS: '120000',
    ...o.env,
  });
  const status = async () => (await (await fetch(`http://${metrics}/status`)).json()) as AgentStatus;
  const metric = async (name: string) => {
    const text = await (await fetch(`http://${metrics}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.slice(name.length + 1)) : 0;
  };
  return Object.assign(r, { host: o.host, metrics, status, metric });
}

/** Waits for the agent's first full sync, failing at once if it exits. */
export async function agentConnected(a: AgentProc, ms = 60_000): Promise<void> {
  await waitFor(
    `agent ${a.host} connected`,
    async () => {
      if (a.exited) throw new Error(`agent exited:\n${a.dump()}`);
      return (await a.status()).connected;
    },
    ms,
  );
}

/** What most tests here start from: a vhost of their own, a signing key, an API token, a controller
 *  data directory, optionally a host namespace; all removed, and every process handed to `track`
 *  stopped, when the test ends. */
export interface TestBed {
  vhost: TestVhost;
  key: TestKey;
  token: ReturnType<typeof testToken>;
  dataDir: string;
  topo: Topology;
  /** Registers a process to stop at the end; returns it. */
  track: <P extends Running | undefined>(p: P) => P;
}

/** `tls`: a TLS node of the test's own for the vhost (test/helpers/rabbit-tls.ts); else the tests' broker. */
export async function testBed(
  t: ExecutionContext,
  o: { topology?: boolean; prefix?: string; tls?: { node: string; port: number } } = {},
): Promise<TestBed> {
  const running: Running[] = [];
  const bed: TestBed = {
    vhost: await testVhost(o.prefix ?? 'sgtrust', { tls: o.tls }),
    key: testKey(),
    token: testToken(),
    dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'sgtrust-ctl-')),
    topo: (o.topology ? new Topology() : undefined) as Topology,
    track: (p) => {
      if (p) running.push(p);
      return p;
    },
  };
  t.teardown(async () => {
    for (const p of running.reverse()) await stopProcess(p);
    bed.topo?.destroy();
    bed.vhost.remove();
    removeKeys(bed.key);
    bed.token.remove();
    fs.rmSync(bed.dataDir, { recursive: true, force: true });
  });
  return bed;
}
