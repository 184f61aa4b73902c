// IPv6 neighbour discovery frames crafted as a VM could put them on the wire (any source, any target:
// the kernel's own neighbour discovery never lies), built here and sent raw from inside a VM's
// namespace with frames.ts's `sendFrames`, in order, on one socket.
import { ipv6, ipv6Checksum, mac } from './frames.js';

const ICMPV6 = 58;
const RS = 133;
const NS = 135;
const NA = 136;
const MLD_DONE = 132;
const RA = 134;
/** Neighbour advertisement flags (RFC 4861 4.4). */
export const NA_SOLICITED = 0x40;
export const NA_OVERRIDE = 0x20;

/** The multicast MAC an IPv6 multicast address is sent to (RFC 2464 7). */
function multicastMac(dst: Buffer): Buffer {
  return Buffer.from([0x33, 0x33, dst[12]!, dst[13]!, dst[14]!, dst[15]!]);
}

/** The solicited-node multicast address of `target` (RFC 4291 2.7.1): where DAD and resolution go. */
export function solicitedNode(target: string): string {
  const t = ipv6(target);
  return `ff02::1:ff${t[13]!.toString(16).padStart(2, '0')}:${((t[14]! << 8) | t[15]!).toString(16)}`;
}

interface Frame {
  /** Ethernet source: the sender's MAC unless it lies about that too. */
  from: string;
  /** IPv6 source and destination; a multicast destination goes to its multicast MAC. */
  src: string;
  dst: string;
  /** Ethernet destination for a unicast `dst`. */
  toMac?: string;
  /** A hop-by-hop options header (of padding only) between the IPv6 header and the message. */
  hopByHop?: boolean;
}

/** A hop-by-hop options header of eight bytes, padding only (PadN), followed by ICMPv6. */
const HOP_BY_HOP = Buffer.from([ICMPV6, 0, 1, 4, 0, 0, 0, 0]);

function frame(f: Frame, icmp: Buffer): Buffer {
  const src = ipv6(f.src);
  const dst = ipv6(f.dst);
  icmp.writeUInt16BE(ipv6Checksum(src, dst, ICMPV6, icmp), 2);
  const ext = f.hopByHop ? HOP_BY_HOP : Buffer.alloc(0);
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(ext.length + icmp.length, 4);
  ip[6] = f.hopByHop ? 0 : ICMPV6;
  ip[7] = 255; // ND is only believed with the hop limit a router cannot have decremented
  src.copy(ip, 8);
  dst.copy(ip, 24);
  const dstMac = dst[0] === 0xff ? multicastMac(dst) : mac(f.toMac ?? '');
  if (dstMac.length !== 6) throw new Error(`a unicast ${f.dst} needs toMac`);
  return Buffer.concat([dstMac, mac(f.from), Buffer.from([0x86, 0xdd]), ip, ext, icmp]);
}

/** A link-layer address option (RFC 4861 4.6.1): source (1) or target (2), naming `at`. */
export function linkLayerOption(type: 1 | 2, at: string): Buffer {
  return Buffer.concat([Buffer.from([type, 1]), mac(at)]);
}

/** An option of a type no receiver knows (RFC 4861 says to skip it), eight bytes. */
export function unknownOption(): Buffer {
  return Buffer.from([200, 1, 0, 0, 0, 0, 0, 0]);
}

/** A neighbour advertisement: `target` is at `lladdr` (target link-layer address option), or
 *  `options` in its place. */
export function neighbourAdvert(f: Frame & { target: string; lladdr: string; flags: number; options?: Buffer[] }): Buffer {
  const head = Buffer.alloc(24);
  head[0] = NA;
  head[4] = f.flags;
  ipv6(f.target).copy(head, 8);
  return frame(f, Buffer.concat([head, ...(f.options ?? [linkLayerOption(2, f.lladdr)])]));
}

/** A router solicitation to all routers; with `lladdr` (source link-layer address option) a router
 *  learns the source at it. */
export function routerSolicit(f: Omit<Frame, 'dst'> & { lladdr?: string }): Buffer {
  const head = Buffer.alloc(8);
  head[0] = RS;
  return frame({ ...f, dst: 'ff02::2' }, Buffer.concat([head, ...(f.lladdr ? [linkLayerOption(1, f.lladdr)] : [])]));
}

/** An MLDv1 done (RFC 2710 3): the sender leaves the multicast `group`. Sent to all routers. */
export function mldDone(f: Omit<Frame, 'dst'> & { group: string }): Buffer {
  const icmp = Buffer.alloc(24);
  icmp[0] = MLD_DONE;
  ipv6(f.group).copy(icmp, 8);
  return frame({ ...f, dst: 'ff02::2' }, icmp);
}

/** A router advertisement to all nodes (RFC 4861 4.2): a router lifetime of 30 s, and the sender's
 *  MAC as its source link-layer address option. */
export function routerAdvert(f: Omit<Frame, 'dst'>): Buffer {
  const icmp = Buffer.alloc(24);
  icmp[0] = RA;
  icmp[4] = 64;
  icmp.writeUInt16BE(30, 6);
  icmp[16] = 1;
  icmp[17] = 1;
  mac(f.from).copy(icmp, 18);
  return frame({ ...f, dst: 'ff02::1' }, icmp);
}

/** A neighbour solicitation for `target`; with `lladdr` (source link-layer address option) the
 *  receiver learns the source at it. From `::` (duplicate address detection) it carries none. */
export function neighbourSolicit(f: Frame & { target: string; lladdr?: string }): Buffer {
  const head = Buffer.alloc(24);
  head[0] = NS;
  ipv6(f.target).copy(head, 8);
  return frame(f, Buffer.concat([head, ...(f.lladdr ? [linkLayerOption(1, f.lladdr)] : [])]));
}
