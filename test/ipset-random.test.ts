// Long random sequences of ipset operations through the TypeScript wrapper, valid and invalid, against
// a model of what each should do, with `ipset save` as the oracle after every step: the kernel must
// hold what the model says, and after a failed operation exactly what it held before.
//
// Seeded: SG_FUZZ_SEED=<n> replays a run, SG_FUZZ_STEPS / SG_FUZZ_SECONDS bound it (defaults keep CI
// within about half a minute). A failure names the seed, the step and the operation.
import { IpsetClient, IpsetError, type IpFamily, type SetSpec, type SetType } from '../src/addon/ipset.js';
import { native } from '../src/addon/native.js';
import { kernelTest } from './helpers/gate.js';
import { Netns } from './helpers/netns.js';
import { ipsetSave } from './helpers/ipset-oracle.js';
import { rng, textRecord } from './helpers/seeded.js';

interface ModelSet {
  type: SetType;
  family: IpFamily;
  maxelem: number;
  members: Set<string>;
}

/** What the client believes a set holds (what reconcile restores). */
interface Managed {
  spec: SetSpec;
  members: Set<string>;
}

/** The member as `ipset save` prints it, from the addon's parser (the kernel is the oracle of the rest). */
function canonical(text: string): string | null {
  if (text.length === 0 || text.length > 64) return null;
  try {
    return native.ipsetDecodeMembers(textRecord(text))[0]!;
  } catch {
    return null;
  }
}

/** Whether a parsed member fits a set: family, hash:ip only hosts and no all-zero address, hash:net no /0. */
function fits(spec: { type: SetType; family: IpFamily }, m: string): boolean {
  const v6 = m.includes(':');
  if (v6 !== (spec.family === 'inet6')) return false;
  const net = m.includes('/');
  if (spec.type === 'hash:ip') return !net && m !== '0.0.0.0' && m !== '::';
  return !m.endsWith('/0');
}

/** An address as a number (v4 in 32 bits, v6 in 128), from the canonical text. */
function addrBits(a: string): bigint {
  if (!a.includes(':')) return a.split('.').reduce((n, o) => (n << 8n) | BigInt(Number(o)), 0n);
  // A trailing dotted quad is the last two groups.
  const text = a.replace(
    /(\d+)\.(\d+)\.(\d+)\.(\d+)$/,
    (_, w, x, y, z) => `${((Number(w) << 8) | Number(x)).toString(16)}:${((Number(y) << 8) | Number(z)).toString(16)}`,
  );
  const [head, rest] = text.includes('::') ? text.split('::') : [text, ''];
  const groups = (g: string | undefined) => (g ? g.split(':').map((x) => BigInt(parseInt(x, 16))) : []);
  const [h, r] = [groups(head), groups(rest)];
  return [...h, ...Array<bigint>(8 - h.length - r.length).fill(0n), ...r].reduce((n, g) => (n << 16n) | g, 0n);
}

/** Whether `set` matches `m` as the kernel's test does: in hash:net an address is matched by any network holding it. */
function kernelMatches(set: { type: SetType; family: IpFamily; members: Set<string> }, m: string): boolean {
  if (set.members.has(m)) return true;
  if (set.type !== 'hash:net' || m.includes('/')) return false;
  const width = set.family === 'inet' ? 32n : 128n;
  const a = addrBits(m);
  return [...set.members].some((net) => {
    const [base, p] = net.split('/');
    const prefix = BigInt(p ?? width);
    return addrBits(base!) >> (width - prefix) === a >> (width - prefix);
  });
}

const V4_HOSTS = Array.from({ length: 20 }, (_, i) => `10.0.0.${i}`);
const V4_NETS = ['10.1.0.0/16', '10.2.3.4/24', '192.168.0.0/30', '0.0.0.0/1', '128.0.0.0/1', '10.0.0.7/32', '0.0.0.0'];
const V6_HOSTS = ['fd00::1', 'fd00::2', '::1.2.3.4', '::ffff:10.0.0.1', 'fe80::1', '2001:db8::42', 'FD00::3', '::0.0.1.2'];
const V6_NETS = ['fd00::/64', '2001:db8::/32', '::/1', 'fd00:1::/48', '::'];
const BAD = [
  '0.0.0.0',
  '::',
  '10.0.0.1/032',
  'bogus',
  '10.0.0.256',
  '0.0.0.0/0',
  '::/0',
  '10.0.0.1/33',
  'fd00::1/129',
  '10.0.0.1 ',
  '010.0.0.1',
];
const NAMES = ['a', 'b', 'c', 'd'];
/** Steps every run makes, however slow the machine. */
const MIN_STEPS = 50;
const BAD_NAMES = ['bad name', 'x.t', ''];

kernelTest('random operation sequences leave the kernel as the model says, failures leaving it as it was', async (t) => {
  const seed = Number(process.env.SG_FUZZ_SEED ?? Math.floor(Math.random() * 1e9));
  const maxSteps = Number(process.env.SG_FUZZ_STEPS ?? 1500);
  const deadline = Date.now() + Number(process.env.SG_FUZZ_SECONDS ?? 30) * 1000;
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const chance = (p: number) => r() < p;

  const ns = Netns.create('sgfuzz');
  t.teardown(() => ns.destroy());
  const c = await IpsetClient.open({ netns: ns.path });
  t.teardown(() => c.close());

  const kernel = new Map<string, ModelSet>();
  const mirror = new Map<string, Managed>();
  /** The list each set was last synced to, as given: `evolve` edits it the way lists change between syncs. */
  const lastList = new Map<string, string[]>();
  const history: string[] = [];

  const specOf = (s: ModelSet): SetSpec => ({ type: s.type, family: s.family, maxelem: s.maxelem });
  const randomSpec = (): SetSpec => {
    const spec: SetSpec = { type: pick(['hash:ip', 'hash:net'] as const), family: chance(0.7) ? 'inet' : 'inet6' };
    const m = pick([undefined, 4, 8, 65536]);
    if (m !== undefined) spec.maxelem = m;
    return spec;
  };
  const maxOf = (spec: SetSpec) => spec.maxelem ?? 65536;
  const randomMember = (family: IpFamily): string => {
    if (chance(0.08)) return pick(BAD);
    if (chance(0.05)) return family === 'inet' ? pick(V6_HOSTS) : pick(V4_HOSTS);
    return family === 'inet' ? (chance(0.7) ? pick(V4_HOSTS) : pick(V4_NETS)) : chance(0.7) ? pick(V6_HOSTS) : pick(V6_NETS);
  };
  const randomList = (family: IpFamily): string[] => {
    if (chance(0.06) && family === 'inet') {
      // Large: several netlink messages, and the swap path when it replaces a large set.
      const base = Math.floor(r() * 4) * 1000;
      const n = 300 + Math.floor(r() * 2700);
      const list = Array.from({ length: n }, (_, i) => `10.${100 + ((base + i) >> 16)}.${((base + i) >> 8) & 255}.${(base + i) & 255}`);
      // Now and then one the kernel itself refuses in a hash:ip set, deep inside the list.
      if (chance(0.3)) list.splice(Math.floor(r() * n), 0, '0.0.0.0');
      return list;
    }
    return Array.from({ length: Math.floor(r() * 8) }, () => randomMember(family));
  };
  const nameFor = (creating: boolean) =>
    chance(0.05) ? pick(BAD_NAMES) : creating && chance(0.2) ? pick(NAMES) : pick([...NAMES, ...kernel.keys()]);
  const badName = (n: string, creating: boolean) => n === '' || n.includes(' ') || (creating && n.endsWith('.t'));

  /** The code an operation must fail with, or null when it must succeed. */
  type Expect = string | null;

  // Element by element as the kernel takes a batch, each element tried: a full set still takes (with
  // exist) what it holds, and says ELEMENT_EXISTS for it without.
  function modelAdt(op: 'add' | 'del', set: ModelSet, members: string[], exist: boolean): { applied: number; failed: [string, string][] } {
    const failed: [string, string][] = [];
    let applied = 0;
    for (const m of members) {
      const present = set.members.has(m);
      let code: string | null = null;
      if (op === 'add') {
        if (present) code = exist ? null : 'ELEMENT_EXISTS';
        else if (set.members.size >= set.maxelem) code = 'SET_FULL';
        else set.members.add(m);
      } else if (!present) code = exist ? null : 'ELEMENT_MISSING';
      else set.members.delete(m);
      if (code === null) applied++;
      else failed.push([m, code]);
    }
    return { applied, failed };
  }

  function snapshot(): Map<string, ModelSet> {
    return new Map([...kernel].map(([k, v]) => [k, { ...v, members: new Set(v.members) }]));
  }

  function checkKernel(step: number, what: string): boolean {
    const saved = ipsetSave(ns);
    const want = [...kernel.keys()].sort();
    const got = [...saved.keys()].sort();
    const fail = (msg: string) => {
      t.fail(
        `seed ${seed} step ${step} (${what}): ${msg}\nrerun: SG_FUZZ_SEED=${seed} npx ava test/ipset-random.test.ts\nlast steps:\n${history.slice(-12).join('\n')}`,
      );
      return false;
    };
    if (want.join() !== got.join()) return fail(`sets ${got.join(',')} but the model has ${want.join(',')}`);
    for (const name of want) {
      const m = kernel.get(name)!;
      const s = saved.get(name)!;
      const head = s.create.split(' ');
      if (head[0] !== m.type || head[head.indexOf('family') + 1] !== m.family || Number(head[head.indexOf('maxelem') + 1]) !== m.maxelem) {
        return fail(`set ${name} is "${s.create}" but the model has ${m.type} ${m.family} maxelem ${m.maxelem}`);
      }
      const a = [...s.members].sort().join(' ');
      const b = [...m.members].sort().join(' ');
      if (a !== b) return fail(`set ${name} holds [${a}] but the model has [${b}]`);
    }
    return true;
  }

  const tally = new Map<string, number>();
  let steps = 0;
  // The time bound keeps a slow machine's run short; at least MIN_STEPS run whatever the time.
  for (; steps < maxSteps && (Date.now() < deadline || steps < MIN_STEPS); steps++) {
    const op = pick([
      'sync',
      'sync',
      'evolve',
      'evolve',
      'add',
      'add',
      'del',
      'create',
      'destroy',
      'flush',
      'swap',
      'rename',
      'reconcile',
      'drift',
      'read',
      'test',
    ] as const);
    let what = op as string;
    let expect: Expect = null;
    let run: () => Promise<unknown>;
    let after: (result: unknown) => string | null = () => null;
    const before = snapshot();
    const commit: (() => void)[] = [];

    switch (op) {
      case 'sync':
      case 'evolve': {
        const synced = [...lastList.keys()].filter((n) => kernel.has(n));
        const evolve = op === 'evolve' && synced.length > 0;
        const name = evolve ? pick(synced) : nameFor(true);
        const spec = evolve || (kernel.has(name) && chance(0.6)) ? specOf(kernel.get(name)!) : randomSpec();
        let list: string[];
        if (evolve) {
          // Members dropped anywhere, new ones inserted or appended, now and then a duplicate.
          list = [...lastList.get(name)!];
          for (let k = Math.floor(r() * 6); k > 0 && list.length; k--) list.splice(Math.floor(r() * list.length), 1);
          for (let k = Math.floor(r() * 6); k > 0; k--)
            list.splice(chance(0.5) ? list.length : Math.floor(r() * (list.length + 1)), 0, randomMember(spec.family));
          if (chance(0.2) && list.length) list.push(list[Math.floor(r() * list.length)]!);
        } else {
          list = randomList(spec.family);
        }
        what = `syncSet(${JSON.stringify(name)}, ${JSON.stringify(spec)}, [${list.length > 10 ? `${list.length} members` : list.join(', ')}])`;
        const parsed = list.map(canonical);
        const distinct = new Set(parsed.filter((m): m is string => m !== null));
        if (badName(name, true)) expect = 'INVALID_NAME';
        else if (parsed.some((m) => m === null || !fits(spec, m))) expect = 'INVALID_MEMBER';
        else if (distinct.size > maxOf(spec)) expect = 'SET_FULL';
        else {
          commit.push(() => {
            kernel.set(name, { type: spec.type, family: spec.family, maxelem: maxOf(spec), members: new Set(distinct) });
            mirror.set(name, { spec, members: new Set(distinct) });
            lastList.set(name, list);
          });
        }
        run = () => c.syncSet(name, spec, list);
        break;
      }
      case 'add':
      case 'del': {
        const name = nameFor(false);
        const set = kernel.get(name);
        const family = set?.family ?? 'inet';
        const list = chance(0.1) ? randomList(family) : Array.from({ length: 1 + Math.floor(r() * 6) }, () => randomMember(family));
        const exist = chance(0.5);
        what = `${op}(${JSON.stringify(name)}, [${list.length > 10 ? `${list.length} members` : list.join(', ')}], exist=${exist})`;
        const parsed = list.map(canonical);
        if (badName(name, false)) expect = 'INVALID_NAME';
        else if (parsed.some((m) => m === null)) expect = 'INVALID_MEMBER';
        else if (!set) expect = 'SET_NOT_FOUND';
        else if (parsed.some((m) => !fits(set, m!))) expect = 'INVALID_MEMBER';
        else {
          const copy = { ...set, members: new Set(set.members) };
          const want = modelAdt(op, copy, parsed as string[], exist);
          commit.push(() => {
            kernel.set(name, copy);
            const mm = mirror.get(name);
            if (mm) mm.members = new Set(copy.members);
          });
          after = (res) => {
            const b = res as { applied: number; failed: { member: string; code: string }[] };
            const got = JSON.stringify([b.applied, b.failed.map((f) => [f.member, f.code])]);
            const exp = JSON.stringify([want.applied, want.failed]);
            return got === exp ? null : `batch result ${got}, model ${exp}`;
          };
        }
        run = () => (op === 'add' ? c.add(name, list, { exist }) : c.del(name, list, { exist }));
        break;
      }
      case 'create': {
        const name = nameFor(true);
        const spec = randomSpec();
        const exist = chance(0.5);
        what = `create(${JSON.stringify(name)}, ${JSON.stringify(spec)}, exist=${exist})`;
        const had = kernel.get(name);
        if (badName(name, true)) expect = 'INVALID_NAME';
        else if (had && !exist) expect = 'SET_EXISTS';
        else if (had && (had.type !== spec.type || had.family !== spec.family)) expect = 'TYPE_MISMATCH';
        else if (had && had.maxelem !== maxOf(spec)) expect = 'SET_EXISTS';
        else if (!had) {
          commit.push(() => {
            kernel.set(name, { type: spec.type, family: spec.family, maxelem: maxOf(spec), members: new Set() });
            if (exist) mirror.delete(name);
            else mirror.set(name, { spec, members: new Set() });
          });
        }
        run = () => c.create(name, spec, { exist });
        break;
      }
      case 'destroy':
      case 'flush': {
        const name = nameFor(false);
        what = `${op}(${JSON.stringify(name)})`;
        if (badName(name, false)) expect = 'INVALID_NAME';
        else if (!kernel.has(name)) expect = 'SET_NOT_FOUND';
        else {
          commit.push(() => {
            if (op === 'destroy') {
              kernel.delete(name);
              mirror.delete(name);
            } else {
              kernel.get(name)!.members.clear();
              mirror.get(name)?.members.clear();
            }
          });
        }
        run = () => (op === 'destroy' ? c.destroy(name) : c.flush(name));
        break;
      }
      case 'swap':
      case 'rename': {
        const a = nameFor(false);
        const b = op === 'rename' ? nameFor(true) : nameFor(false);
        what = `${op}(${JSON.stringify(a)}, ${JSON.stringify(b)})`;
        const [sa, sb] = [kernel.get(a), kernel.get(b)];
        if (badName(a, false) || badName(b, op === 'rename')) expect = 'INVALID_NAME';
        else if (!sa) expect = 'SET_NOT_FOUND';
        else if (op === 'rename' && sb) expect = 'SET_EXISTS';
        else if (op === 'swap' && !sb) expect = 'SET_NOT_FOUND';
        else if (op === 'swap' && (sa.type !== sb!.type || sa.family !== sb!.family)) expect = 'TYPE_MISMATCH';
        else {
          commit.push(() => {
            const [ma, mb] = [mirror.get(a), mirror.get(b)];
            kernel.delete(a);
            mirror.delete(a);
            mirror.delete(b);
            if (op === 'swap') kernel.set(a, sb!);
            kernel.set(b, sa);
            if (ma) mirror.set(b, ma);
            if (op === 'swap' && mb) mirror.set(a, mb);
          });
        }
        run = () => (op === 'swap' ? c.swap(a, b) : c.rename(a, b));
        break;
      }
      case 'reconcile':
      case 'drift': {
        const managed = [...mirror.keys()];
        const name = op === 'drift' && managed.length ? pick(managed) : nameFor(false);
        const m = mirror.get(name);
        let changed = false;
        if (op === 'drift' && m) {
          // Hand-made drift the client cannot know of; reconcile must put the set back.
          const set = kernel.get(name)!;
          const kind = pick(['del', 'add', 'flush', 'destroy', 'recreate'] as const);
          what = `drift ${kind} of ${name}, then reconcile`;
          if (kind === 'del' && set.members.size) {
            ns.exec('ipset', ['del', name, pick([...set.members])]);
            changed = true;
          } else if (kind === 'add') {
            const extra = canonical(randomMember(set.family));
            if (extra && fits(set, extra) && !set.members.has(extra) && set.members.size < set.maxelem) {
              ns.exec('ipset', ['add', name, extra]);
              changed = true;
            }
          } else if (kind === 'flush' && set.members.size) {
            ns.exec('ipset', ['flush', name]);
            changed = true;
          } else if (kind === 'destroy' || kind === 'recreate') {
            ns.exec('ipset', ['destroy', name]);
            if (kind === 'recreate') ns.exec('ipset', ['create', name, set.type, 'family', set.family === 'inet' ? 'inet6' : 'inet']);
            changed = true;
          }
        } else {
          what = `reconcile(${JSON.stringify(name)})`;
        }
        if (badName(name, false)) expect = 'INVALID_NAME';
        else if (!m) expect = 'SET_NOT_FOUND';
        else {
          const target = m;
          commit.push(() => {
            kernel.set(name, {
              type: target.spec.type,
              family: target.spec.family,
              maxelem: maxOf(target.spec),
              members: new Set(target.members),
            });
          });
          after = (res) =>
            (res as { repaired: boolean }).repaired === changed
              ? null
              : `repaired ${(res as { repaired: boolean }).repaired}, drift made ${changed}`;
        }
        run = () => c.reconcile(name);
        break;
      }
      case 'read': {
        const name = nameFor(false);
        what = `readSet(${JSON.stringify(name)})`;
        const set = kernel.get(name);
        if (badName(name, false)) expect = 'INVALID_NAME';
        else if (!set) expect = 'SET_NOT_FOUND';
        else {
          commit.push(() => mirror.set(name, { spec: specOf(set), members: new Set(set.members) }));
          after = (res) => {
            const got = [...(res as { members: string[] }).members].sort().join(' ');
            const want = [...set.members].sort().join(' ');
            return got === want ? null : `read [${got}], model [${want}]`;
          };
        }
        run = () => c.readSet(name);
        break;
      }
      case 'test': {
        const name = nameFor(false);
        const set = kernel.get(name);
        const member = randomMember(set?.family ?? 'inet');
        what = `test(${JSON.stringify(name)}, ${member})`;
        const m = canonical(member);
        if (badName(name, false)) expect = 'INVALID_NAME';
        else if (m === null) expect = 'INVALID_MEMBER';
        else if (!set) expect = 'SET_NOT_FOUND';
        else if (!fits(set, m)) expect = 'INVALID_MEMBER';
        else after = (res) => (res === kernelMatches(set, m) ? null : `test said ${String(res)}`);
        run = () => c.test(name, member);
        break;
      }
    }
    history.push(`${steps}: ${what}${expect ? ` -> ${expect}` : ''}`);
    const key = `${op}:${expect ?? 'ok'}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);

    let outcome: unknown;
    let error: unknown = null;
    try {
      outcome = await run!();
    } catch (e) {
      error = e;
    }
    if (expect !== null) {
      const code = error instanceof IpsetError ? error.code : error === null ? 'success' : (error as Error).message;
      if (code !== expect) {
        t.fail(
          `seed ${seed} step ${steps} (${what}): ${code} where the model expects ${expect}\nrerun: SG_FUZZ_SEED=${seed}\n${history.slice(-12).join('\n')}`,
        );
        return;
      }
      // A failed operation changes nothing.
      kernel.clear();
      for (const [k, v] of before) kernel.set(k, v);
    } else {
      if (error !== null) {
        t.fail(
          `seed ${seed} step ${steps} (${what}): failed with ${(error as Error).message} where the model expects success\nrerun: SG_FUZZ_SEED=${seed}\n${history.slice(-12).join('\n')}`,
        );
        return;
      }
      const wrong = after(outcome);
      if (wrong) {
        t.fail(`seed ${seed} step ${steps} (${what}): ${wrong}\nrerun: SG_FUZZ_SEED=${seed}\n${history.slice(-12).join('\n')}`);
        return;
      }
      for (const f of commit) f();
    }
    if (!checkKernel(steps, what)) return;
  }
  t.log(
    `seed ${seed}: ${steps} steps; ${[...tally]
      .sort()
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
  );
  t.true(steps >= Math.min(maxSteps, MIN_STEPS), `only ${steps} steps ran (seed ${seed})`);
});
