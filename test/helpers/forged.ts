// Forged and tampered signatures: every way a message can fail to come from a trusted controller.
// Each case carries the refusal the agent must count it under. `message` is what the forger wants the
// agent to apply; `trusted` is a key the agent trusts (a forger would not hold it: it serves here to
// make signatures that are real but do not fit), `untrusted` one it does not.
import { KEY_ID_HEADER, SIGNATURE_HEADER, type MessageSigner, type Refusal } from '../../src/protocol/signing.js';

export interface ForgedCase {
  name: string;
  body: Buffer;
  headers: Record<string, unknown>;
  refusal: Refusal;
}

export function forgedCases(message: object, trusted: MessageSigner, untrusted: MessageSigner): ForgedCase[] {
  const body = Buffer.from(JSON.stringify(message));
  const other = Buffer.from(JSON.stringify({ ...message, sentAt: 1 }));
  const good = trusted.headers(body, { kind: 'update' });
  const sig = good[SIGNATURE_HEADER]!;
  const foreign = untrusted.headers(body, { kind: 'update' });
  return [
    { name: 'no signature', body, headers: {}, refusal: 'unsigned' },
    { name: 'signature without key id', body, headers: { [SIGNATURE_HEADER]: sig }, refusal: 'unsigned' },
    { name: 'key id of a number type', body, headers: { [KEY_ID_HEADER]: 12345, [SIGNATURE_HEADER]: sig }, refusal: 'unsigned' },
    {
      name: 'signature as bytes, not text',
      body,
      headers: { [KEY_ID_HEADER]: trusted.keyId, [SIGNATURE_HEADER]: Buffer.from(sig, 'base64') },
      refusal: 'unsigned',
    },
    { name: 'signed by a key nobody trusts', body, headers: foreign, refusal: 'unknown-key' },
    { name: 'empty key id', body, headers: { [KEY_ID_HEADER]: '', [SIGNATURE_HEADER]: sig }, refusal: 'unknown-key' },
    {
      name: 'key id with a path in it',
      body,
      headers: { [KEY_ID_HEADER]: '../../etc/passwd', [SIGNATURE_HEADER]: sig },
      refusal: 'unknown-key',
    },
    {
      name: 'untrusted signature under the trusted key id',
      body,
      headers: { ...foreign, [KEY_ID_HEADER]: trusted.keyId },
      refusal: 'bad-signature',
    },
    { name: 'trusted signature over another body', body: other, headers: good, refusal: 'bad-signature' },
    {
      name: 'trusted signature made for a sync reply',
      body,
      headers: trusted.headers(body, { kind: 'reply', correlationId: 'x' }),
      refusal: 'bad-signature',
    },
    { name: 'truncated signature', body, headers: { ...good, [SIGNATURE_HEADER]: sig.slice(0, 40) }, refusal: 'bad-signature' },
    { name: 'signature with junk appended', body, headers: { ...good, [SIGNATURE_HEADER]: `${sig}!!` }, refusal: 'bad-signature' },
    {
      name: 'signature of zeros',
      body,
      headers: { ...good, [SIGNATURE_HEADER]: Buffer.alloc(64).toString('base64') },
      refusal: 'bad-signature',
    },
  ];
}
