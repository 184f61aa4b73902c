// Hostile requests to the controller's admin API: malformed paths and percent-encodings, wrong
// methods, content types and bodies, oversize and deeply nested JSON, ids too long for the store's
// keys, injection strings. None may answer 500 or stop the controller; none may change anything.
export interface HostileRequest {
  name: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

const json = { 'content-type': 'application/json' };
const port = { host: 'h1', device: 'tap1', mac: '02:00:00:00:aa:01', fixedIps: ['10.0.0.9'], securityGroups: ['g'] };
const wide = '𝕏'.repeat(255); // 255 characters, 1,020 bytes in UTF-8

export function hostileRequests(): HostileRequest[] {
  return [
    { name: 'bad percent-encoding in a group id', method: 'GET', path: '/groups/%ZZ' },
    { name: 'truncated UTF-8 escape', method: 'GET', path: '/ports/%E0%A4%A' },
    { name: 'overlong UTF-8 escape', method: 'DELETE', path: '/groups/%C0%AF' },
    { name: 'lone surrogate escape', method: 'PUT', path: '/groups/%ED%A0%80', headers: json, body: '{"rules":[]}' },
    { name: 'NUL in an id', method: 'GET', path: '/groups/a%00b' },
    { name: 'encoded slashes', method: 'GET', path: '/groups/..%2F..%2Fetc%2Fpasswd' },
    { name: 'dot segments', method: 'GET', path: '/groups/../../etc/passwd' },
    { name: 'id over the limit', method: 'PUT', path: `/groups/${'x'.repeat(300)}`, headers: json, body: '{"rules":[]}' },
    { name: 'extra path segment', method: 'GET', path: '/groups/a/b' },
    { name: 'empty id', method: 'DELETE', path: '/ports/' },
    { name: 'absolute-form target', method: 'GET', path: 'http://evil.example/groups' },
    { name: 'asterisk target', method: 'OPTIONS', path: '*' },
    { name: 'unknown method on a group', method: 'PATCH', path: '/groups/g', headers: json, body: '{}' },
    { name: 'POST to a collection', method: 'POST', path: '/groups', headers: json, body: '{"rules":[]}' },
    { name: 'text/plain body', method: 'PUT', path: '/groups/g', headers: { 'content-type': 'text/plain' }, body: '{"rules":[]}' },
    {
      name: 'form body',
      method: 'PUT',
      path: '/groups/g',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'rules=',
    },
    { name: 'no content type', method: 'PUT', path: '/groups/g', body: '{"rules":[]}' },
    {
      name: 'JSON with another charset',
      method: 'PUT',
      path: '/groups/g',
      headers: { 'content-type': 'application/json; charset=utf-16' },
      body: '{"rules":[]}',
    },
    { name: 'a body on DELETE', method: 'DELETE', path: '/groups/g', headers: json, body: '{}' },
    { name: 'not JSON', method: 'PUT', path: '/groups/g', headers: json, body: '{"rules":' },
    // Valid JSON around bytes that are not UTF-8: decoded leniently, the id would be stored as U+FFFD.
    {
      name: 'invalid UTF-8 inside a JSON string',
      method: 'PUT',
      path: '/groups/g',
      headers: json,
      body: Buffer.concat([
        Buffer.from('{"rules":[{"id":"'),
        Buffer.from([0xff, 0xfe, 0xc0]),
        Buffer.from('","direction":"ingress","ethertype":"IPv4"}]}'),
      ]),
    },
    { name: 'binary garbage', method: 'PUT', path: '/ports/p', headers: json, body: Buffer.from([0xff, 0xfe, 0, 1, 2, 0x80]) },
    { name: 'JSON null', method: 'PUT', path: '/groups/g', headers: json, body: 'null' },
    { name: 'JSON array', method: 'PUT', path: '/ports/p', headers: json, body: '[]' },
    {
      name: 'deeply nested JSON',
      method: 'PUT',
      path: '/groups/g',
      headers: json,
      body: `{"rules":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
    },
    { name: 'body over 1 MiB', method: 'PUT', path: '/groups/g', headers: json, body: `{"rules":[],"x":"${'a'.repeat(2 << 20)}"}` },
    { name: 'prototype pollution', method: 'PUT', path: '/groups/g', headers: json, body: '{"rules":[],"__proto__":{"polluted":true}}' },
    {
      name: 'rule with a bad type',
      method: 'PUT',
      path: '/groups/g',
      headers: json,
      body: '{"rules":[{"id":"r","direction":"ingress","ethertype":"IPv4","portRangeMin":"80"}]}',
    },
    {
      name: 'port with an injection device',
      method: 'PUT',
      path: '/ports/p',
      headers: json,
      body: JSON.stringify({ ...port, device: 'eth0 -j ACCEPT' }),
    },
    {
      name: 'port with a shell string as address',
      method: 'PUT',
      path: '/ports/p',
      headers: json,
      body: JSON.stringify({ ...port, fixedIps: ['$(reboot)'] }),
    },
    {
      name: 'port whose host and id are too wide for a store key',
      method: 'PUT',
      path: `/ports/${encodeURIComponent(wide)}`,
      headers: json,
      body: JSON.stringify({ ...port, host: wide }),
    },
    {
      name: 'group id too wide in bytes',
      method: 'PUT',
      path: `/groups/${encodeURIComponent('𝕏'.repeat(200))}`,
      headers: json,
      body: '{"rules":[]}',
    },
    {
      name: 'port naming a group too wide in bytes',
      method: 'PUT',
      path: '/ports/p',
      headers: json,
      body: JSON.stringify({ ...port, securityGroups: ['𝕏'.repeat(200)] }),
    },
  ];
}
