// Editing a written dispatch chain in place: the rules that went are deleted and the new ones
// inserted at their section's place, instead of the chain being flushed and written again. A
// binding then costs iptables-restore a few lines whatever the number of ports, the rules of the
// other ports keep their counters, and no packet meets a chain caught half-rewritten. Pure.
import type { Sections } from './render.js';

/** How `chain` goes from `had` (as the kernel holds it, in order) to the rules of `want`: restore
 *  commands (`-D`, `-I <position>`, `-A`), to run in order, and the chain's rules once they ran. */
export interface InPlace {
  commands: string[];
  lines: string[];
}

/** Undefined when the chain must be rewritten whole instead: a rule that appears twice (a delete
 *  takes the first match only), kept rules out of their sections' order, or more commands than a
 *  rewrite would have lines. */
export function editInPlace(chain: string, had: readonly string[], want: Sections): InPlace | undefined {
  const sectionOf = new Map<string, number>();
  for (const [s, rules] of want.entries())
    for (const r of rules) {
      if (sectionOf.has(r)) return undefined;
      sectionOf.set(r, s);
    }
  const held = new Set(had);
  if (held.size !== had.length) return undefined;
  const lines = had.filter((r) => sectionOf.has(r));
  for (let i = 1; i < lines.length; i++) if (sectionOf.get(lines[i]!)! < sectionOf.get(lines[i - 1]!)!) return undefined;
  const commands = had.filter((r) => !sectionOf.has(r)).map((r) => `-D ${chain} ${r}`);
  for (const [s, rules] of want.entries()) {
    // Each new rule goes after the last rule of its section or an earlier one: the rules of one
    // section keep the order they are wanted in, and every section its place.
    let at = 0;
    for (const r of rules) {
      if (held.has(r)) continue;
      while (at < lines.length && sectionOf.get(lines[at]!)! <= s) at++;
      commands.push(at === lines.length ? `-A ${chain} ${r}` : `-I ${chain} ${at + 1} ${r}`);
      lines.splice(at, 0, r);
      at++;
    }
  }
  return commands.length > lines.length ? undefined : { commands, lines };
}
