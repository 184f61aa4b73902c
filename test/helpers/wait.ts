// Waiting for a state, never for a time: polls `f` until it returns something truthy. An error `f`
// throws counts as "not yet"; the last one is reported on timeout, with `explain()` if given.
export async function waitFor<T>(
  what: string,
  f: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  ms = 30_000,
  explain?: () => string,
): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      const error = last ? ` (last error: ${(last as Error).message})` : '';
      throw new Error(`timed out waiting for ${what}${error}${explain ? `\n${explain()}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
