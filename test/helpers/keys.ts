// Signing keys for tests, made as a deployment makes them (`sg-controller keygen` calls the same
// function): a private key file (0600) for the controller, a public key file for the agents.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateSigningKey, MessageSigner } from '../../src/protocol/signing.js';

export interface TestKey {
  dir: string;
  keyId: string;
  privateKeyFile: string;
  publicKeyFile: string;
  signer: MessageSigner;
}

export function testKey(): TestKey {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgtrust-key-'));
  const k = generateSigningKey(dir);
  return { dir, ...k, signer: MessageSigner.fromFile(k.privateKeyFile) };
}

export function removeKeys(...keys: (TestKey | undefined)[]): void {
  for (const k of keys) if (k) fs.rmSync(k.dir, { recursive: true, force: true });
}

/** A bearer token for the admin API, in a file only its owner reads. */
export function testToken(): { token: string; file: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sgtrust-token-'));
  const token = `t-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  const file = path.join(dir, 'api-token');
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return { token, file, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
