// What signing costs per message (npm run bench:signing): the controller signs each update and sync
// reply part (Ed25519, node:crypto), each agent verifies it before decoding. Measured on the message
// shapes of the storm benchmark (a member delta of one address), a group of 100 rules, and a full sync
// reply part of 50,000 addresses. Lines:
//   sign.<shape>    ours = encode + sign     baseline = encode alone     (controller, per message)
//   verify.<shape>  ours = verify + decode   baseline = decode alone     (agent, per message)
// ratio = baseline/ours, so 0.5 means signing doubles that step's cost.
import { decode, encode, type AnyMessage } from '../src/protocol/messages.js';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Keyring, MessageSigner, MessageVerifier, UPDATE_CONTEXT, type SignedContext } from '../src/protocol/signing.js';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const signer = new MessageSigner(privateKey);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-bench-keys-'));
fs.writeFileSync(path.join(dir, 'k.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
const verifier = new MessageVerifier(new Keyring([dir]));

const ip = (i: number) => `10.${60 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const shapes: { id: string; m: AnyMessage; ctx: SignedContext; n: number }[] = [
  {
    id: 'delta1',
    m: {
      v: 1,
      type: 'group.members',
      groupId: 'default',
      baseRevision: 41,
      revision: 42,
      added: [ip(42)],
      removed: [],
      sentAt: Date.now(),
    },
    ctx: UPDATE_CONTEXT,
    n: 20_000,
  },
  {
    id: 'rules100',
    m: {
      v: 1,
      type: 'group.rules',
      groupId: 'web',
      revision: 3,
      stateful: true,
      rules: Array.from({ length: 100 }, (_, i) => ({
        id: `r${i}`,
        direction: 'ingress' as const,
        ethertype: 'IPv4' as const,
        protocol: 6,
        portRangeMin: 1000 + i,
        portRangeMax: 1000 + i,
        remoteIpPrefix: `10.${i}.0.0/16`,
        remoteGroupId: null,
      })),
    },
    ctx: UPDATE_CONTEXT,
    n: 5_000,
  },
  {
    id: 'reply50k',
    m: {
      v: 1,
      type: 'sync.reply',
      part: 0,
      parts: 1,
      groups: [],
      members: [{ groupId: 'default', revision: 9, ips: Array.from({ length: 50_000 }, (_, i) => ip(i)) }],
    },
    ctx: { kind: 'reply', correlationId: '4f1c7e0e-8a51-4d8e-9a55-3f1f0c7d2b11' },
    n: 50,
  },
];

function perOp(n: number, f: () => void): number {
  for (let i = 0; i < Math.min(n, 200); i++) f(); // warm-up
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    runs.push(Number(process.hrtime.bigint() - t) / n / 1000);
  }
  return runs.sort((a, b) => a - b)[2]!; // median of five, µs
}

const us = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)}ms` : `${x.toFixed(1)}us`);
for (const s of shapes) {
  const body = encode(s.m);
  const headers = signer.headers(body, s.ctx);
  if (verifier.check(body, headers, s.ctx)) throw new Error('bench: the signature does not verify');
  const expect = [s.m.type] as const;
  const encodeOnly = perOp(s.n, () => encode(s.m));
  const encodeSign = perOp(s.n, () => signer.headers(encode(s.m), s.ctx));
  const decodeOnly = perOp(s.n, () => decode(body, expect));
  const verifyDecode = perOp(s.n, () => {
    if (verifier.check(body, headers, s.ctx)) throw new Error('refused');
    decode(body, expect);
  });
  console.log(
    `sign.${s.id} ours=${us(encodeSign)} baseline=${us(encodeOnly)} ratio=${(encodeOnly / encodeSign).toFixed(2)} (${body.length} bytes)`,
  );
  console.log(`verify.${s.id} ours=${us(verifyDecode)} baseline=${us(decodeOnly)} ratio=${(decodeOnly / verifyDecode).toFixed(2)}`);
}
fs.rmSync(dir, { recursive: true, force: true });
