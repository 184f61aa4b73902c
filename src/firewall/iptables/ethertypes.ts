// Ethertypes as the ebtables tools spell them: they print (and take) the names /etc/ethertypes gives,
// so a rule is written as ebtables-save will print it back, and drift checks compare equal.
import fs from 'node:fs';

let ethertypeNames: Map<number, string> | undefined;

/** An ethertype as ebtables-save prints it: the first name /etc/ethertypes gives it (the tools read
 *  that file to print and to parse names), else in hex. */
export function ebtablesProtocol(type: number): string {
  if (!ethertypeNames) {
    ethertypeNames = new Map();
    let text = '';
    try {
      text = fs.readFileSync('/etc/ethertypes', 'utf8');
    } catch {
      // No file: the tools print and take numbers.
    }
    for (const line of text.split('\n')) {
      const [name, hex] = line.replace(/#.*/, '').trim().split(/\s+/);
      const n = hex === undefined ? NaN : parseInt(hex, 16);
      if (name && Number.isInteger(n) && !ethertypeNames.has(n)) ethertypeNames.set(n, name);
    }
  }
  return ethertypeNames.get(type) ?? `0x${type.toString(16)}`;
}
