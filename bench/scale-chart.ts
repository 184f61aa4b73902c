// Draws docs/scale.svg from the output of `npm run bench:scale` (its `scale.<metric>.<H>` lines):
//   npm run bench:scale | tee /tmp/scale.txt && node --import tsx bench/scale-chart.ts /tmp/scale.txt docs/scale.svg
// Three panels against H (log scales): per-host bytes, convergence p99 and the broker's CPU per
// change, for each workload; ours solid, the fanout-to-all baseline dashed. Plain SVG, no dependencies.
// Also prints, per metric, how it grows with H: the exponent k of a least-squares fit y ≈ c·H^k on
// log-log axes (k ≈ 0 constant, 1 linear, -1 as 1/H).
import fs from 'node:fs';
import { growthExponent } from './fit.js';

const [input, output = 'docs/scale.svg'] = process.argv.slice(2);
if (!input) throw new Error('usage: scale-chart.ts <bench:scale output> [svg file]');

/** A value with its unit as the bench prints it, in base units (bytes, seconds). */
function value(text: string): number {
  const m = /^([\d.]+)(KiB|ms|s|B)?$/.exec(text);
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'KiB' ? n * 1024 : m[2] === 'ms' ? n / 1000 : n;
}

/** metric → H → { ours, baseline } */
const data = new Map<string, Map<number, { ours: number; baseline?: number }>>();
for (const l of fs.readFileSync(input, 'utf8').split('\n')) {
  const m = /^scale\.(.+)\.(\d+) ours=(\S+)(?: baseline=(\S+))?/.exec(l);
  if (!m) continue;
  const byH = data.get(m[1]!) ?? new Map<number, { ours: number; baseline?: number }>();
  byH.set(Number(m[2]), { ours: value(m[3]!), ...(m[4] ? { baseline: value(m[4]) } : {}) });
  data.set(m[1]!, byH);
}
const Hs = [...new Set([...data.values()].flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
if (Hs.length === 0) throw new Error(`no scale.* lines in ${input}`);

interface Series {
  metric: string;
  label: string;
  color: string;
}
interface Panel {
  title: string;
  unit: string;
  scale: number;
  series: Series[];
}
const colors = { boot: '#1f77b4', churn: '#d62728', rule: '#2ca02c' };
const panels: Panel[] = [
  {
    title: 'Bytes received per host',
    unit: 'KiB',
    scale: 1 / 1024,
    series: [
      { metric: 'boot.bytes_per_host', label: 'boot', color: colors.boot },
      { metric: 'churn.bytes_per_host', label: 'churn', color: colors.churn },
      { metric: 'rule.bytes_per_host', label: 'rule', color: colors.rule },
    ],
  },
  {
    title: 'Convergence p99',
    unit: 's',
    scale: 1,
    series: [
      { metric: 'boot.p99', label: 'boot', color: colors.boot },
      { metric: 'churn.p99', label: 'churn', color: colors.churn },
      { metric: 'rule.p99', label: 'rule', color: colors.rule },
    ],
  },
  {
    title: 'Broker CPU per change',
    unit: 'ms',
    scale: 1000,
    series: [
      { metric: 'boot.broker_cpu_per_change', label: 'boot', color: colors.boot },
      { metric: 'churn.broker_cpu_per_change', label: 'churn', color: colors.churn },
      { metric: 'rule.broker_cpu_per_change', label: 'rule', color: colors.rule },
    ],
  },
];

const W = 320;
const Hgt = 230;
const pad = { l: 52, r: 12, t: 28, b: 58 };
const xOf = (h: number) => {
  const lo = Math.log10(Hs[0]!);
  const hi = Math.log10(Hs.at(-1)!);
  return pad.l + (hi === lo ? 0.5 : (Math.log10(h) - lo) / (hi - lo)) * (W - pad.l - pad.r);
};
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function panel(p: Panel, ox: number): string {
  const pts = p.series
    .flatMap((s) => [...(data.get(s.metric)?.values() ?? [])].flatMap((v) => [v.ours, v.baseline ?? NaN]))
    .filter((v) => Number.isFinite(v) && v > 0)
    .map((v) => v * p.scale);
  // Log scale on y too: ours and the baseline differ by up to 400x in bytes.
  const lo = Math.log10(Math.min(...pts)) - 0.1;
  const hi = Math.log10(Math.max(...pts)) + 0.1;
  const yOf = (v: number) => Hgt - pad.b - ((Math.log10(v) - lo) / (hi - lo || 1)) * (Hgt - pad.t - pad.b);
  const out: string[] = [
    `<g transform="translate(${ox},0)">`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-weight="bold">${esc(p.title)} (${p.unit}, log)</text>`,
  ];
  out.push(
    `<line x1="${pad.l}" y1="${Hgt - pad.b}" x2="${W - pad.r}" y2="${Hgt - pad.b}" stroke="#000"/>`,
    `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${Hgt - pad.b}" stroke="#000"/>`,
  );
  for (const h of Hs) out.push(`<text x="${xOf(h)}" y="${Hgt - pad.b + 14}" text-anchor="middle">${h}</text>`);
  out.push(`<text x="${W / 2}" y="${Hgt - pad.b + 28}" text-anchor="middle">hosts (H)</text>`);
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (Math.log10(v) < lo || Math.log10(v) > hi) continue;
      out.push(
        `<text x="${pad.l - 4}" y="${yOf(v) + 4}" text-anchor="end">${v >= 1 ? v.toFixed(0) : v.toPrecision(1)}</text>`,
        `<line x1="${pad.l}" y1="${yOf(v)}" x2="${W - pad.r}" y2="${yOf(v)}" stroke="#ddd"/>`,
      );
    }
  }
  p.series.forEach((s, i) => {
    const byH = data.get(s.metric);
    if (!byH) return;
    for (const which of ['ours', 'baseline'] as const) {
      const xy = Hs.filter((h) => (byH.get(h)?.[which] ?? 0) > 0).map(
        (h) => `${xOf(h).toFixed(1)},${yOf(byH.get(h)![which]! * p.scale).toFixed(1)}`,
      );
      if (xy.length === 0) continue;
      out.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="2"${which === 'baseline' ? ' stroke-dasharray="5,4"' : ''} points="${xy.join(' ')}"/>`,
      );
      for (const pt of xy) out.push(`<circle cx="${pt.split(',')[0]}" cy="${pt.split(',')[1]}" r="2.5" fill="${s.color}"/>`);
    }
    out.push(
      `<line x1="${pad.l + i * 88}" y1="${Hgt - 12}" x2="${pad.l + i * 88 + 18}" y2="${Hgt - 12}" stroke="${s.color}" stroke-width="2"/>`,
      `<text x="${pad.l + i * 88 + 22}" y="${Hgt - 8}">${esc(s.label)}</text>`,
    );
  });
  out.push('</g>');
  return out.join('\n');
}

const svg = [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W * panels.length}" height="${Hgt + 14}" font-family="sans-serif" font-size="11">`,
  `<rect width="100%" height="100%" fill="#fff"/>`,
  ...panels.map((p, i) => panel(p, i * W)),
  `<text x="8" y="${Hgt + 8}" fill="#555">bench:scale — solid: ours (per-group routing); dashed: fanout-to-all baseline (every host hears every change)</text>`,
  '</svg>',
].join('\n');
fs.writeFileSync(output, svg + '\n');

for (const [metric, byH] of data) {
  const fit = (which: 'ours' | 'baseline') => {
    const pts = [...byH].filter(([, v]) => (v[which] ?? 0) > 0).map(([h, v]) => [h, v[which]!] as [number, number]);
    return pts.length >= 2 ? growthExponent(pts).toFixed(2) : '-';
  };
  console.log(`fit.${metric} ours=H^${fit('ours')} baseline=H^${fit('baseline')}`);
}
console.log(`wrote ${output} (${Hs.join(', ')} hosts)`);
