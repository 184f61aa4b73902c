// The package's public entry exports exactly its documented API (README.md, "Public API"): nothing
// internal (benchmark and test hooks, the packed form, the error mapper) leaks out.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import * as api from '../src/index.js';

const PUBLIC = [
  'Controller',
  'DEAD_LETTER_EXCHANGE',
  'DEAD_LETTER_QUEUE',
  'GROUP_EXCHANGE',
  'HOST_EXCHANGE',
  'IpsetClient',
  'IpsetError',
  'LIMITS',
  'MAX_MESSAGE_BYTES',
  'MalformedMessage',
  'MemberList',
  'NativeBindingError',
  'NativeError',
  'PROTOCOL_NUMBERS',
  'PROTOCOL_VERSION',
  'Publisher',
  'SYNC_QUEUE',
  'Store',
  'ValidationError',
  'agentQueue',
  'buildSync',
  'checkOwnCapabilities',
  'coalesceUpdates',
  'declareTopology',
  'decode',
  'encode',
  'formatVersion',
  'groupKey',
  'hostKey',
  'missingCapabilities',
  'serveSync',
  'tempSetName',
  'validateGroup',
  'validateMember',
  'validatePort',
  'validateRule',
  'versionReport',
  'SYNC_EXCHANGE',
  'SYNC_ROUTING_KEY',
  'MessageSigner',
  'MessageVerifier',
  'Keyring',
  'generateSigningKey',
  'KEY_ID_HEADER',
  'SIGNATURE_HEADER',
  'agentPermissions',
  'controllerPermissions',
];

test('the public entry exports exactly the documented API', (t) => {
  t.deepEqual(Object.keys(api).sort(), [...PUBLIC].sort());
  for (const internal of [
    'measureDiff',
    'syncSetForced',
    'bytesSent',
    'nativeHandle',
    'packedMemberList',
    'fromNative',
    'native',
    'IPSET_ERROR_CODES',
    'NATIVE_ERROR_CODES',
  ]) {
    t.false(internal in api, internal);
  }
});

test('every export is documented in the README', (t) => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Public API'));
  t.true(section.length > 0 && readme.includes('## Public API'));
  for (const name of PUBLIC) t.regex(section, new RegExp(`\\b${name}\\b`), name);
});

test('the results of the ipset client carry no benchmark fields', async (t) => {
  // SyncResult had `nanos`; it is gone from the type and from what the addon returns.
  const d = fs.readFileSync(path.join(__dirname, '..', 'native', 'index.d.ts'), 'utf8');
  const sync = d.slice(d.indexOf('export interface JsSyncResult'), d.indexOf('}', d.indexOf('export interface JsSyncResult')));
  t.notRegex(sync, /nanos/);
});
