// Draws docs/peers.svg: per-host CPU of a storm against the group's size, for sg-agent (both
// backends), ML2/OVN (ovn-controller + ovs-vswitchd) and Neutron's iptables agent, from the lines the
// benchmarks print (bench/peers.txt keeps the measured ones):
//   node --import tsx bench/peer-chart.ts bench/peers.txt docs/peers.svg
// Lines read: `peer.ovn.storm.cpu ours=… ports=N dataplane=D` (ours, bench:ovn), `peer.ovn.detail
// ports=N ovn-controller=… ovs-vswitchd=…` (OVN's chassis, bench:ovn, also with OVN_BENCH_ONLY=ovn),
// `storm.ours.D … cpu=… ports=N` and `storm.neutron … cpu=… ports=N` (bench:storm with STORM_ONLY).
// A size measured more than once is drawn at its median. Log-log axes; the legend gives each system's growth exponent.
import fs from 'node:fs';
import { growthExponent } from './fit.js';

const [input, output = 'docs/peers.svg'] = process.argv.slice(2);
if (!input) throw new Error('usage: peer-chart.ts <benchmark output> [svg file]');

const seconds = (t: string) => Number(/^([\d.]+)s$/.exec(t)?.[1] ?? NaN);
/** system → group size → samples (CPU seconds per host). */
const data = new Map<string, Map<number, number[]>>();
const add = (system: string, n: number, v: number) => {
  if (!Number.isFinite(v) || v <= 0) return;
  const byN = data.get(system) ?? new Map<number, number[]>();
  byN.set(n, [...(byN.get(n) ?? []), v]);
  data.set(system, byN);
};
for (const l of fs.readFileSync(input, 'utf8').split('\n')) {
  const field = (k: string) => new RegExp(`(?:^| )${k}=(\\S+)`).exec(l)?.[1];
  const n = Number(field('ports'));
  if (!n) continue;
  if (l.startsWith('peer.ovn.storm.cpu ')) {
    add(`sg-agent (${field('dataplane')})`, n, seconds(field('ours')!));
  } else if (l.startsWith('peer.ovn.detail ')) {
    add('ML2/OVN', n, seconds(field('ovn-controller')!) + seconds(field('ovs-vswitchd')!));
  } else if (l.startsWith('storm.ours.')) {
    add(`sg-agent (${/^storm\.ours\.(\S+)/.exec(l)![1]})`, n, seconds(field('cpu')!));
  } else if (l.startsWith('storm.neutron ')) {
    add("Neutron's iptables agent", n, seconds(field('cpu')!));
  }
}
if (data.size === 0) throw new Error(`no per-host CPU lines with ports=N in ${input}`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const series = [...data].map(([system, byN]) => ({
  system,
  points: [...byN].map(([n, vs]) => [n, median(vs)] as [number, number]).sort((a, b) => a[0] - b[0]),
}));
const colors: Record<string, string> = {
  'sg-agent (iptables)': '#1f77b4',
  'sg-agent (nftables)': '#2ca02c',
  'ML2/OVN': '#d62728',
  "Neutron's iptables agent": '#9467bd',
};

const W = 560;
const H = 360;
const pad = { l: 60, r: 200, t: 30, b: 52 };
const Ns = [...new Set(series.flatMap((s) => s.points.map(([n]) => n)))].sort((a, b) => a - b);
const ys = series.flatMap((s) => s.points.map(([, y]) => y));
const x0 = Math.log10(Ns[0]!) - 0.05;
const x1 = Math.log10(Ns.at(-1)!) + 0.05;
const y0 = Math.log10(Math.min(...ys)) - 0.15;
const y1 = Math.log10(Math.max(...ys)) + 0.15;
const xOf = (n: number) => pad.l + ((Math.log10(n) - x0) / (x1 - x0)) * (W - pad.l - pad.r);
const yOf = (v: number) => H - pad.b - ((Math.log10(v) - y0) / (y1 - y0)) * (H - pad.t - pad.b);
const title = "Storm: CPU per host against the group's size (log-log)";
const xLabel = 'ports created into one group (20 hosts, one every 10 ms)';
const footnote = 'sg-agent: per agent, median of 20; ML2/OVN: ovn-controller + ovs-vswitchd of the real chassis (bench/RESULTS.md)';
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&#39;');

const out: string[] = [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
  `<rect width="100%" height="100%" fill="#fff"/>`,
  `<text x="${(W - pad.r + pad.l) / 2}" y="18" text-anchor="middle" font-weight="bold">${title}</text>`,
  `<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="#000"/>`,
  `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="#000"/>`,
  `<text x="${(W - pad.r + pad.l) / 2}" y="${H - pad.b + 30}" text-anchor="middle">${xLabel}</text>`,
  `<text transform="translate(14,${(H - pad.b + pad.t) / 2}) rotate(-90)" text-anchor="middle">CPU seconds per host</text>`,
];
for (const n of Ns) out.push(`<text x="${xOf(n)}" y="${H - pad.b + 14}" text-anchor="middle">${n}</text>`);
for (let e = Math.floor(y0); e <= Math.ceil(y1); e++) {
  for (const m of [1, 2, 5]) {
    const v = m * 10 ** e;
    if (Math.log10(v) < y0 || Math.log10(v) > y1) continue;
    out.push(
      `<line x1="${pad.l}" y1="${yOf(v)}" x2="${W - pad.r}" y2="${yOf(v)}" stroke="#ddd"/>`,
      `<text x="${pad.l - 4}" y="${yOf(v) + 4}" text-anchor="end">${v >= 1 ? v.toFixed(0) : v.toPrecision(1)}</text>`,
    );
  }
}
series.forEach((s, i) => {
  const color = colors[s.system] ?? '#555';
  const xy = s.points.map(([n, v]) => `${xOf(n).toFixed(1)},${yOf(v).toFixed(1)}`);
  out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${xy.join(' ')}"/>`);
  for (const pt of xy) out.push(`<circle cx="${pt.split(',')[0]}" cy="${pt.split(',')[1]}" r="3" fill="${color}"/>`);
  const k = growthExponent(s.points);
  const ly = pad.t + 10 + i * 34;
  out.push(
    `<line x1="${W - pad.r + 12}" y1="${ly}" x2="${W - pad.r + 32}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
    `<text x="${W - pad.r + 36}" y="${ly + 4}">${esc(s.system)}</text>`,
    `<text x="${W - pad.r + 36}" y="${ly + 18}" fill="#555">${Number.isNaN(k) ? 'one size' : `grows as N^${k.toFixed(2)}`}</text>`,
  );
  console.log(
    `peer.cpu.fit ${s.system.replace(/ /g, '_')} ${s.points.map(([n, v]) => `${n}:${v.toFixed(3)}s`).join(' ')} exponent=${k.toFixed(2)}`,
  );
});
out.push(`<text x="${pad.l}" y="${H - 1}" fill="#555" font-size="10">${footnote}</text>`);
out.push('</svg>');
fs.writeFileSync(output, `${out.join('\n')}\n`);
console.log(`wrote ${output}`);
