// `sg-agent explain` and `sg-agent trace`: why a port's filter admits or drops a packet — from the
// desired state (explain: the running agent answers) or from the kernel itself (trace: this process
// marks matching packets for a bounded time and reads the kernel's trace events; it needs
// CAP_NET_ADMIN in the agent's namespace, as `cleanup` does). The agent says where the port's chains
// are and what each of their rules is.
import { checkOwnCapabilities } from '../capabilities.js';
import { option } from '../cli/command-line.js';
import type { PortRuleMap } from '../firewall/dataplane.js';
import { describeTag, type Explanation, type ProbePacket } from '../firewall/explain.js';
import { PortTrace, type TraceStep } from '../firewall/trace.js';
import { ConfigError, parseTcpListen, urlAuthority } from '../settings.js';
import { loadConfig, type AgentConfig } from './config.js';
import { ProbeError, probeQuery, readProbe, traceMatch, type Probe } from './probe.js';

/** Longest trace: marking is bounded in time, whatever is asked. */
const MAX_TRACE_SECONDS = 300;

function configOf(args: string[]): AgentConfig {
  return loadConfig(option(args, '--config'), { SG_AGENT_HOST: '-', SG_AMQP_URL: '-', ...process.env });
}

function probeOf(args: string[]): Probe {
  try {
    return readProbe(
      (k) => option(args, `--${k}`),
      (k) => args.includes(`--${k}`),
    );
  } catch (e) {
    if (e instanceof ProbeError) throw new ConfigError(e.message);
    throw e;
  }
}

/** A JSON answer of the running agent's listener, or an error naming why not. */
async function ask<T>(cfg: AgentConfig, path: string): Promise<T> {
  if (!cfg.metricsListen) throw new ConfigError("the agent's listener is off (metricsListen is empty)");
  const res = await fetch(`http://${urlAuthority(parseTcpListen(cfg.metricsListen)!)}${path}`).catch(() => undefined);
  if (!res) throw new ConfigError(`no agent answering on ${cfg.metricsListen}`);
  const body = (await res.json()) as T & { error?: string };
  if (!res.ok) throw new ConfigError(body.error ?? `the agent answered ${res.status}`);
  return body;
}

function packetText(p: ProbePacket): string {
  const proto = p.proto === null ? 'any protocol' : `proto ${p.proto}`;
  const port = p.dport !== undefined ? ` port ${p.dport}` : p.icmpType !== undefined ? ` type ${p.icmpType}` : '';
  return `${p.src} → ${p.dst} ${proto}${port}${p.state && p.state !== 'new' ? ` (${p.state})` : ''}`;
}

export async function explain(args: string[]): Promise<number> {
  const cfg = configOf(args);
  const probe = probeOf(args);
  const r = await ask<{ port: string; packet: ProbePacket; unfiltered?: boolean; explanation?: Explanation }>(
    cfg,
    `/explain?${probeQuery(probe)}`,
  );
  console.log(`port ${r.port}, ${r.packet.direction}: ${packetText(r.packet)}`);
  if (r.unfiltered) {
    console.log('  port security is off: the port is not filtered (accepted)');
    return 0;
  }
  const x = r.explanation!;
  for (const s of x.steps) console.log(`  ${s.chain.padEnd(13)} ${describeTag(s.rule)} → ${s.verdict}`);
  console.log(`${x.verdict === 'accept' ? 'accepted' : 'dropped'} by ${describeTag(x.decidedBy.rule)} (${x.decidedBy.chain})`);
  return 0;
}

function stepText(s: TraceStep): string {
  const rule = s.rule ? ` rule ${s.position}: ${describeTag(s.rule)}` : s.position !== undefined ? ` rule ${s.position}` : '';
  const how =
    s.kind === 'return'
      ? 'end of chain (return)'
      : s.kind === 'policy'
        ? `policy ${s.verdict ?? ''}`
        : `${s.verdict ?? 'continue'}${s.target ? ` ${s.target}` : ''}`;
  return `  ${s.where}:${rule} → ${how}`;
}

export async function trace(args: string[]): Promise<number> {
  const cfg = configOf(args);
  const probe = probeOf(args);
  const match = (() => {
    try {
      return traceMatch(probe);
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
  })();
  const seconds = Number(option(args, '--seconds') ?? 10);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_TRACE_SECONDS)
    throw new ConfigError(`--seconds must be a number from 1 to ${MAX_TRACE_SECONDS}`);
  const caps = checkOwnCapabilities();
  if (caps.missing.includes('CAP_NET_ADMIN')) throw new ConfigError(`trace marks packets in the kernel: ${caps.message}`);
  const r = await ask<{ port: string; device: string; map: PortRuleMap }>(cfg, `/port-rules?port=${encodeURIComponent(probe.port)}`);
  const seen = new Set<number>();
  const t = await PortTrace.start(
    { ...(cfg.netns ? { netns: cfg.netns } : {}), prefix: cfg.prefix, mode: cfg.mode, portId: r.port, device: r.device, map: r.map },
    match,
    (s) => {
      // The kernel announces the headers at the first rule of each hook a packet meets.
      if (s.headers) {
        seen.add(s.packet);
        const p = s.packetInfo;
        const what = p
          ? `: ${p.src} → ${p.dst} proto ${p.proto}${p.dport !== undefined ? ` port ${p.dport}` : ''}` +
            `${p.icmpType !== undefined ? ` type ${p.icmpType}` : ''}`
          : '';
        console.log(`packet ${s.packet}${what}`);
      }
      // Rules of other chains that let the packet go on say nothing about it.
      if (s.portChain || (s.verdict !== 'continue' && s.kind === 'rule') || s.kind === 'policy') console.log(stepText(s));
    },
    (m) => console.error(`trace: ${m}`),
  );
  console.error(`tracing ${probe.direction} packets of port ${r.port} for ${seconds} s (Ctrl-C stops)`);
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    const timer = setTimeout(done, seconds * 1000);
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
  await t.stop();
  console.error(`${seen.size} packet(s) traced`);
  return 0;
}
