// Waiting for a state, never for a time: polls `f` until it returns something truthy.
export async function waitFor<T>(what: string, f: () => Promise<T | undefined | false> | T | undefined | false, ms = 20_000, explain?: () => string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${explain ? `\n${explain()}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
