// Traffic from inside a VM's namespace, kept up while a host is changed under it (restarts, a firewall
// migration, a live migration): for each flow that must stay open, one long-lived TCP connection or UDP
// flow carrying a numbered message every interval to an echo server, and for each flow that must stay
// closed, a new attempt every few intervals. Plain CommonJS: started with `ip netns exec VM node`, it
// must start fast.
//
//   node vm-probe.cjs '{"intervalMs": 50, "flows": [{"id": "a", "proto": "tcp", "host": "10.0.0.2", "port": 80, "open": true}]}'
// Prints "up" once every open flow carries data (or "fail <id> <why>"); on each line "r" read from
// stdin, a JSON report: per flow { sent, echoed, lost, broken, maxGapMs } (open) or { attempts, passed }
// (closed). `lost` counts UDP messages unanswered after five seconds; TCP retransmits what a firewall drops,
// so its loss shows as a gap (and in the namespace's retransmission counter), and a reset as `broken`.
'use strict';
const net = require('net');
const dgram = require('dgram');

const spec = JSON.parse(process.argv[2]);
const interval = spec.intervalMs || 50;
const flows = [];

function openTcp(f) {
  const s = { id: f.id, open: true, sent: 0, echoed: 0, lost: 0, broken: '', maxGapMs: 0, last: 0, up: false };
  const sock = net.connect({ host: f.host, port: f.port });
  let buf = '';
  sock.setNoDelay(true);
  sock.on('connect', () => {
    s.up = true;
    s.last = Date.now();
    s.timer = setInterval(() => {
      sock.write(`${s.sent++}\n`);
    }, interval);
  });
  sock.on('data', (d) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop();
    const now = Date.now();
    for (let i = 0; i < lines.length; i++) {
      s.echoed++;
      s.maxGapMs = Math.max(s.maxGapMs, now - s.last);
      s.last = now;
    }
  });
  const end = (why) => {
    if (!s.broken) s.broken = why;
    clearInterval(s.timer);
  };
  sock.on('error', (e) => end(e.code || String(e)));
  sock.on('close', () => end('closed'));
  s.report = () => ({
    sent: s.sent,
    echoed: s.echoed,
    lost: 0,
    broken: s.broken,
    maxGapMs: Math.max(s.maxGapMs, s.up && !s.broken ? Date.now() - s.last - interval : 0),
  });
  return s;
}

function openUdp(f) {
  const s = { id: f.id, open: true, sent: 0, echoed: 0, up: false, sentAt: new Map(), maxGapMs: 0, last: 0 };
  const sock = dgram.createSocket(f.host.includes(':') ? 'udp6' : 'udp4');
  sock.on('message', (m) => {
    const n = Number(m.toString());
    if (s.sentAt.delete(n)) {
      s.echoed++;
      const now = Date.now();
      if (s.up) s.maxGapMs = Math.max(s.maxGapMs, now - s.last);
      s.last = now;
      s.up = true;
    }
  });
  sock.on('error', () => undefined);
  s.timer = setInterval(() => {
    const n = s.sent++;
    s.sentAt.set(n, Date.now());
    sock.send(String(n), f.port, f.host);
  }, interval);
  s.report = () => {
    const old = [...s.sentAt.values()].filter((t) => Date.now() - t > 5000).length;
    return { sent: s.sent, echoed: s.echoed, lost: old, broken: '', maxGapMs: s.maxGapMs };
  };
  return s;
}

function closedTcp(f) {
  const s = { id: f.id, open: false, attempts: 0, passed: 0, up: true };
  const attempt = () => {
    s.attempts++;
    const sock = net.connect({ host: f.host, port: f.port });
    const t = setTimeout(() => sock.destroy(), 1000);
    sock.on('connect', () => {
      s.passed++;
      (s.passedAt = s.passedAt || []).push(Date.now());
      clearTimeout(t);
      sock.destroy();
    });
    sock.on('error', () => clearTimeout(t));
  };
  s.timer = setInterval(attempt, interval * 4);
  s.report = () => ({ attempts: s.attempts, passed: s.passed, passedAt: s.passedAt || [] });
  return s;
}

function closedUdp(f) {
  const s = { id: f.id, open: false, attempts: 0, passed: 0, up: true };
  const sock = dgram.createSocket(f.host.includes(':') ? 'udp6' : 'udp4');
  sock.on('message', () => {
    s.passed++;
    (s.passedAt = s.passedAt || []).push(Date.now());
  });
  sock.on('error', () => undefined);
  s.timer = setInterval(() => {
    s.attempts++;
    sock.send('x', f.port, f.host);
  }, interval * 4);
  s.report = () => ({ attempts: s.attempts, passed: s.passed, passedAt: s.passedAt || [] });
  return s;
}

for (const f of spec.flows) {
  if (f.open) flows.push(f.proto === 'tcp' ? openTcp(f) : openUdp(f));
  else flows.push(f.proto === 'tcp' ? closedTcp(f) : closedUdp(f));
}

const started = Date.now();
const waitUp = setInterval(() => {
  const broken = flows.find((s) => s.open && s.report().broken);
  if (broken) {
    clearInterval(waitUp);
    process.stdout.write(`fail ${broken.id} ${broken.report().broken}\n`);
  } else if (flows.every((s) => s.up)) {
    clearInterval(waitUp);
    process.stdout.write('up\n');
  } else if (Date.now() - started > 20000) {
    clearInterval(waitUp);
    process.stdout.write(`fail ${flows.find((s) => !s.up).id} no answer\n`);
  }
}, 20);

let input = '';
process.stdin.on('data', (d) => {
  input += d.toString();
  const lines = input.split('\n');
  input = lines.pop();
  for (const l of lines) {
    if (l === 'r') process.stdout.write(`${JSON.stringify(Object.fromEntries(flows.map((s) => [s.id, s.report()])))}\n`);
  }
});
process.stdin.on('end', () => process.exit(0));
