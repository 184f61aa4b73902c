// Message authentication: every update and sync reply a controller sends carries an Ed25519 signature
// (node:crypto) in AMQP headers, and agents refuse what no trusted key signed. Broker permissions
// decide who may publish where; signatures decide whose word an agent takes, so even a broker user
// with write access to an exchange (a compromised hypervisor, a leaked password) cannot forge a
// firewall change. Agents hold public keys only.
//
// The signature covers the exact body bytes as received, preceded by a context line: an update, or
// the reply to one sync request (its correlation id). A signed reply therefore cannot be replayed as
// an update or as the answer to another request.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, describeFsError, readConfiguredFile } from '../settings.js';

/** AMQP header naming the key that signed (first 16 hex digits of SHA-256 of its SPKI DER). */
export const KEY_ID_HEADER = 'x-sg-key-id';
/** AMQP header holding the Ed25519 signature, base64 (64 bytes). */
export const SIGNATURE_HEADER = 'x-sg-signature';
/** What the two headers add to a message (names and values; the AMQP table framing aside). */
export const SIGNATURE_BYTES = KEY_ID_HEADER.length + 16 + SIGNATURE_HEADER.length + 88;

export type SignedContext = { kind: 'update' } | { kind: 'reply'; correlationId: string };
export const UPDATE_CONTEXT: SignedContext = { kind: 'update' };

/** Why a message was refused: no signature, a key not in the keyring, or a signature that fails. */
export type Refusal = 'unsigned' | 'unknown-key' | 'bad-signature';

const UPDATE_PREFIX = Buffer.from('sg-agent/1 update\n');

function signedBytes(body: Buffer, ctx: SignedContext): Buffer {
  const prefix = ctx.kind === 'update' ? UPDATE_PREFIX : Buffer.from(`sg-agent/1 reply ${ctx.correlationId}\n`);
  return Buffer.concat([prefix, body]);
}

export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/** A private key file must not be readable by anyone but its owner (as ssh insists). */
export function readSecretFile(file: string, what: string): Buffer {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new ConfigError(`${what} ${file}: ${describeFsError(e)}`);
  }
  if (st.mode & 0o077)
    throw new ConfigError(`${what} ${file} is accessible to group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  return readConfiguredFile(file, what);
}

export class MessageSigner {
  readonly keyId: string;

  constructor(private readonly key: KeyObject) {
    if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') throw new Error('signing key: an Ed25519 private key is required');
    this.keyId = keyIdOf(createPublicKey(key));
  }

  static fromFile(file: string): MessageSigner {
    return new MessageSigner(createPrivateKey(readSecretFile(file, 'signing key')));
  }

  /** The headers to publish `body` with. */
  headers(body: Buffer, ctx: SignedContext): Record<string, string> {
    return { [KEY_ID_HEADER]: this.keyId, [SIGNATURE_HEADER]: sign(null, signedBytes(body, ctx), this.key).toString('base64') };
  }
}

const PEM_PUBLIC_KEY = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/g;
/** Every lookup stats the configured paths (a directory's time changes when a file is added, removed
 *  or renamed in it): a key added or removed counts from the next message on, with no restart. A key
 *  file rewritten in place is noticed within this much, or at once when a key id is not found. */
const CHECK_EVERY_MS = 1_000;

/** Trusted public keys, from PEM files or directories of them (every `*.pub` and `*.pem` in it). */
export class Keyring {
  private keys = new Map<string, KeyObject>();
  private loadedFrom = '';
  private pathsSeen = '';
  private checkedAt = 0;

  /** `onError` hears of files that could not be read (the rest are used). */
  constructor(
    private readonly paths: readonly string[],
    private readonly onError: (e: Error) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {
    const errors: Error[] = [];
    this.pathsSeen = this.pathsNow();
    this.load((e) => errors.push(e));
    if (errors.length) throw errors[0]!;
    if (this.keys.size === 0) throw new Error(`no trusted public key found in ${paths.join(', ') || '(no path given)'}`);
  }

  get ids(): string[] {
    return [...this.keys.keys()];
  }

  private files(): string[] {
    return this.paths.flatMap((p) =>
      fs.statSync(p).isDirectory()
        ? fs
            .readdirSync(p)
            .filter((f) => /\.(pub|pem)$/.test(f))
            .sort()
            .map((f) => path.join(p, f))
        : [p],
    );
  }

  /** What the configured paths are now (2–3 µs a path). */
  private pathsNow(): string {
    return this.paths
      .map((p) => {
        try {
          const st = fs.statSync(p);
          return `${st.ino}:${st.size}:${st.mtimeMs}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  }

  /** What the key files are now (names, sizes, times): a change means they must be read again. */
  private fingerprint(): string {
    return this.files()
      .map((f) => {
        const st = fs.statSync(f);
        return `${f}:${st.ino}:${st.size}:${st.mtimeMs}`;
      })
      .join('|');
  }

  /** Reads every key file. What failed is reported once: the files are not read again until they change. */
  private load(onError: (e: Error) => void): void {
    const from = this.fingerprint();
    this.loadedFrom = from;
    const next = new Map<string, KeyObject>();
    for (const f of this.files()) {
      try {
        for (const pem of fs.readFileSync(f, 'utf8').match(PEM_PUBLIC_KEY) ?? []) {
          const key = createPublicKey(pem);
          if (key.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 public key');
          next.set(keyIdOf(key), key);
        }
      } catch (e) {
        onError(new Error(`trusted key ${f}: ${(e as Error).message}`));
      }
    }
    // An emptied keyring would refuse everything: more likely a deployment caught half-way. Keep the
    // keys held (the error says why) until a key is there again.
    if (next.size === 0 && this.keys.size > 0)
      return onError(new Error(`no trusted public key left in ${this.paths.join(', ')}; keeping the ones held`));
    this.keys = next;
  }

  get(id: string): KeyObject | undefined {
    const now = this.now();
    const seen = this.pathsNow();
    if (!this.keys.has(id) || now - this.checkedAt >= CHECK_EVERY_MS || seen !== this.pathsSeen) {
      const pathsChanged = seen !== this.pathsSeen;
      this.checkedAt = now;
      this.pathsSeen = seen;
      try {
        if (this.fingerprint() !== this.loadedFrom) this.load(this.onError);
      } catch (e) {
        // A path gone or unreadable: reported when that changes, not at every message.
        if (pathsChanged) this.onError(e as Error);
      }
    }
    return this.keys.get(id);
  }
}

const KEY_ID = /^[0-9a-f]{16}$/;

export class MessageVerifier {
  constructor(private readonly keyring: Keyring) {}

  /** Undefined when a trusted key signed exactly these bytes in this context; else why not. */
  check(body: Buffer, headers: Record<string, unknown> | undefined, ctx: SignedContext): Refusal | undefined {
    const id = headers?.[KEY_ID_HEADER];
    const sig = headers?.[SIGNATURE_HEADER];
    if (typeof id !== 'string' || typeof sig !== 'string') return 'unsigned';
    if (!KEY_ID.test(id)) return 'unknown-key';
    const key = this.keyring.get(id);
    if (!key) return 'unknown-key';
    const raw = Buffer.from(sig, 'base64');
    // Base64 decoding skips junk; only the canonical 64-byte form is a signature.
    if (raw.length !== 64 || raw.toString('base64') !== sig) return 'bad-signature';
    return verify(null, signedBytes(body, ctx), key, raw) ? undefined : 'bad-signature';
  }
}

/** Writes a new signing key pair into `dir`: `signing-key.pem` (0600) and `<key id>.pub` (0644). */
export function generateSigningKey(dir: string): { keyId: string; privateKeyFile: string; publicKeyFile: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const keyId = keyIdOf(publicKey);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const privateKeyFile = path.join(dir, 'signing-key.pem');
  const publicKeyFile = path.join(dir, `${keyId}.pub`);
  // 'wx': never overwrite a key in use.
  fs.writeFileSync(privateKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  fs.writeFileSync(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644, flag: 'wx' });
  return { keyId, privateKeyFile, publicKeyFile };
}
