// A small seeded generator for randomized tests: the same seed replays the same run.
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

/** One member as a plain-text record of the packed list (native/core/src/ipset/packed.rs), bypassing the JS fast path. */
export function textRecord(member: string): Buffer {
  const b = Buffer.from(member, 'utf8');
  return Buffer.concat([Buffer.from([0, b.length]), b]);
}
