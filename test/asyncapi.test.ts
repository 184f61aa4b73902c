// docs/asyncapi.yaml publishes the wire contract for integrators; src/protocol/schema.ts is what the
// agents enforce. Each message of the one must say what the other checks: the same fields, the same
// required ones, no others accepted, and the same limits — or the document has drifted (unit).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { messageSchemas } from '../src/protocol/schema.js';

type Schema = Record<string, unknown>;
const repo = path.resolve(__dirname, '..');
const doc = parse(fs.readFileSync(path.join(repo, 'docs/asyncapi.yaml'), 'utf8')) as {
  components: { schemas: Record<string, Schema>; messages: Record<string, { name: string; payload: Schema }> };
};

/** A document schema with its `$ref` (to components/schemas) followed. */
function resolve(s: Schema): Schema {
  const ref = s.$ref;
  if (typeof ref !== 'string') return s;
  const name = /^#\/components\/schemas\/(.+)$/.exec(ref)?.[1];
  const target = name === undefined ? undefined : doc.components.schemas[name];
  if (!target) throw new Error(`unresolved $ref ${ref}`);
  return resolve(target);
}

/** The document's message whose `type` field takes this value. */
function documented(type: string): Schema | undefined {
  for (const m of Object.values(doc.components.messages)) {
    const t = (m.payload.properties as Record<string, Schema>).type!;
    if (t.const === type || (Array.isArray(t.enum) && t.enum.includes(type))) return m.payload;
  }
  return undefined;
}

/** Where the document says otherwise than the schema the agents enforce, at `where` and below. */
function differences(where: string, ours: Schema, theirs: Schema): string[] {
  const out: string[] = [];
  const d = resolve(theirs);
  for (const limit of ['maxItems', 'maxLength', 'minimum', 'maximum', 'minLength'] as const) {
    // Limits are numbers in both.
    const [enforced, said] = [ours[limit] as number | undefined, d[limit] as number | undefined];
    if (enforced !== undefined && said !== enforced) out.push(`${where}: ${limit} ${said}, enforced ${enforced}`);
  }
  if (ours.additionalProperties === false && d.additionalProperties !== false) out.push(`${where}: accepts other fields in the document`);
  if (ours.required) {
    const [a, b] = [[...(ours.required as string[])].sort(), [...((d.required as string[] | undefined) ?? [])].sort()];
    if (a.join() !== b.join()) out.push(`${where}: required [${b.join(', ')}], enforced [${a.join(', ')}]`);
  }
  const props = ours.properties as Record<string, Schema> | undefined;
  if (props) {
    const theirProps = (d.properties as Record<string, Schema> | undefined) ?? {};
    const [a, b] = [Object.keys(props).sort(), Object.keys(theirProps).sort()];
    if (a.join() !== b.join()) out.push(`${where}: fields [${b.join(', ')}], enforced [${a.join(', ')}]`);
    for (const k of a) if (theirProps[k]) out.push(...differences(`${where}.${k}`, props[k]!, theirProps[k]));
  }
  const items = ours.items as Schema | undefined;
  // Objects the model validator checks are `{type: 'object'}` in schema.ts: their shape is its own.
  if (items && (items.properties || items.maxLength !== undefined) && d.items)
    out.push(...differences(`${where}[]`, items, d.items as Schema));
  return out;
}

for (const [type, schema] of Object.entries(messageSchemas)) {
  test(`docs/asyncapi.yaml says what the agents enforce of ${type} (unit)`, (t) => {
    const payload = documented(type);
    if (!payload) return void t.fail(`${type} is not in docs/asyncapi.yaml`);
    t.deepEqual(differences(type, schema as unknown as Schema, payload), []);
  });
}

test('the check finds a drifted document (unit)', (t) => {
  const ours = messageSchemas['group.deleted'] as unknown as Schema;
  const drifted: Schema = {
    type: 'object',
    required: ['v', 'type', 'groupId'],
    properties: { v: {}, type: {}, groupId: {}, revision: {} },
  };
  t.deepEqual(differences('group.deleted', ours, drifted), [
    'group.deleted: accepts other fields in the document',
    'group.deleted: required [groupId, type, v], enforced [groupId, revision, type, v]',
    'group.deleted: fields [groupId, revision, type, v], enforced [groupId, revision, sentAt, type, v]',
    'group.deleted.groupId: maxLength undefined, enforced 255',
    'group.deleted.groupId: minLength undefined, enforced 1',
    'group.deleted.revision: minimum undefined, enforced 0',
    'group.deleted.revision: maximum undefined, enforced 9007199254740991',
  ]);
});
