// MAC-derived addresses: one home for the EUI-64 rule.

/** A MAC's six bytes (the text already validated: MAC_PATTERN). */
export function macBytes(mac: string): number[] {
  return mac.split(':').map((h) => parseInt(h, 16));
}

/** The IPv6 link-local address a port uses for neighbour discovery, derived from its MAC (EUI-64). */
export function linkLocalFromMac(mac: string): string {
  const b = macBytes(mac);
  b[0] = b[0]! ^ 0x02;
  const words = [(b[0] << 8) | b[1]!, (b[2]! << 8) | 0xff, (0xfe << 8) | b[3]!, (b[4]! << 8) | b[5]!];
  return `fe80::${words.map((w) => w.toString(16)).join(':')}`;
}
