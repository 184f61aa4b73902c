// Ethernet frames crafted as a VM could put them on the wire, for what the kernel's own stack never
// sends: an IPv4 UDP datagram in a frame with VLAN tags (802.1Q, 802.1ad), or from a MAC that is not
// the sender's; a DHCP server's reply (IPv4 or IPv6) to an address it should not go to. `sendFrames` writes frames raw (python3's AF_PACKET socket; python3 is a test
// dependency, scripts/setup.sh); `udpListener` hears them in the receiving VM whatever its own
// replies would meet.
import { spawn } from 'node:child_process';
import { parseCidr } from '../../src/domain/address.js';
import type { Netns } from './netns.js';

/** A MAC's six bytes. */
export function mac(text: string): Buffer {
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}

function ipv4(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

/** A UDP datagram between two addresses, in a frame from one MAC to another. */
interface Datagram {
  fromMac: string;
  toMac: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: string;
}

/** The UDP header (checksum zero) and payload of `f`. */
function udpSegment(f: Datagram): Buffer {
  const data = Buffer.from(f.payload);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(f.sport, 0);
  udp.writeUInt16BE(f.dport, 2);
  udp.writeUInt16BE(8 + data.length, 4);
  return Buffer.concat([udp, data]);
}

/** A frame holding one IPv4 UDP datagram (no UDP checksum, which IPv4 allows), behind `tags`: each a
 *  tag protocol (0x8100, 0x88a8) with VLAN id `vid`, outermost first. */
export function udpFrame(f: Datagram & { tags?: { tpid: number; vid: number }[] }): Buffer {
  const segment = udpSegment(f);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + segment.length, 2);
  ip[8] = 64;
  ip[9] = 17;
  ipv4(f.src).copy(ip, 12);
  ipv4(f.dst).copy(ip, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  const tags = (f.tags ?? []).map((t) => {
    const b = Buffer.alloc(4);
    b.writeUInt16BE(t.tpid, 0);
    b.writeUInt16BE(t.vid & 0x0fff, 2);
    return b;
  });
  return Buffer.concat([mac(f.toMac), mac(f.fromMac), ...tags, Buffer.from([0x08, 0x00]), ip, segment]);
}

/** A frame holding one IPv6 UDP datagram, with its checksum (which IPv6 requires). */
export function udp6Frame(f: Datagram): Buffer {
  const segment = udpSegment(f);
  const src = ipv6(f.src);
  const dst = ipv6(f.dst);
  segment.writeUInt16BE(ipv6Checksum(src, dst, 17, segment) || 0xffff, 6);
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(segment.length, 4);
  ip[6] = 17;
  ip[7] = 64;
  src.copy(ip, 8);
  dst.copy(ip, 24);
  return Buffer.concat([mac(f.toMac), mac(f.fromMac), Buffer.from([0x86, 0xdd]), ip, segment]);
}

/** An IPv6 address's sixteen bytes. */
export function ipv6(text: string): Buffer {
  const c = parseCidr(text);
  if (c.family !== 6) throw new Error(`not an IPv6 address: ${text}`);
  return Buffer.from(c.bytes);
}

/** The checksum of an upper-layer `body` (its checksum field zero) over IPv6 (RFC 8200 8.1). */
export function ipv6Checksum(src: Buffer, dst: Buffer, nextHeader: number, body: Buffer): number {
  const len = Buffer.alloc(8);
  len.writeUInt32BE(body.length, 0);
  len[7] = nextHeader;
  const all = Buffer.concat([src, dst, len, body, Buffer.alloc(body.length % 2)]);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) sum += all.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A frame of a type no IP or ARP hook looks at (0x88b5, for local experiments), broadcast. */
export function otherFrame(fromMac: string): Buffer {
  return Buffer.concat([Buffer.from('ffffffffffff', 'hex'), mac(fromMac), Buffer.from([0x88, 0xb5]), Buffer.alloc(46)]);
}

/** A listener for UDP datagrams on `port` in the namespace; `heard()` lists the payloads received so
 *  far. Resolves once it listens. */
export async function udpListener(ns: Netns, port: number, family: 4 | 6 = 4): Promise<{ heard: () => string[]; close: () => void }> {
  const code = `
    const u = require('dgram').createSocket('udp${family}');
    u.on('message', (m) => process.stdout.write(m.toString('hex') + '\\n'));
    u.bind(${port}, () => process.stdout.write('ready\\n'));`;
  const l = await listener(ns, [process.execPath, '-e', code]);
  return { heard: () => l.lines().map((h) => Buffer.from(h, 'hex').toString()), close: l.close };
}

const ICMP6_HEARD = `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
s.bind((sys.argv[1], 0))
print('ready', flush=True)
while True:
    f = s.recv(2048)
    # Ethernet (14 bytes), IPv6 (40: next header at 6), ICMPv6 type first; then 4 bytes, the address.
    if len(f) >= 78 and f[20] == 58 and str(f[54]) in sys.argv[2].split(','):
        print(f[54], f[62:78].hex(), flush=True)
`;

/** A listener for ICMPv6 messages of the `types` arriving on `dev` in the namespace (with no
 *  extension header); `heard(type)` lists the address each of that type carries after its first 8
 *  bytes (an MLD message's group, a solicitation's target), as hex. Resolves once it listens. */
export async function icmp6Listener(
  ns: Netns,
  dev: string,
  ...types: number[]
): Promise<{ heard: (type: number) => string[]; close: () => void }> {
  const l = await listener(ns, ['python3', '-c', ICMP6_HEARD, dev, types.join(',')]);
  const heard = (type: number) =>
    l
      .lines()
      .filter((line) => line.startsWith(`${type} `))
      .map((line) => line.slice(line.indexOf(' ') + 1));
  return { heard, close: l.close };
}

/** A process in the namespace that prints `ready` once it listens, then a line per thing heard. */
async function listener(ns: Netns, argv: string[]): Promise<{ lines: () => string[]; close: () => void }> {
  const child = spawn('ip', ['netns', 'exec', ns.name, ...argv], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`listener ${argv[0]} exited ${code}`)));
  });
  return { lines: () => out.split('\n').filter((l) => l && l !== 'ready'), close: () => child.kill('SIGKILL') };
}

const SEND = `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for f in sys.argv[2:]:
    s.send(bytes.fromhex(f))
`;

/** Sends the frames out of `dev` in the namespace, in order. */
export function sendFrames(ns: Netns, dev: string, frames: Buffer[]): void {
  ns.exec('python3', ['-c', SEND, dev, ...frames.map((f) => f.toString('hex'))]);
}
