// A consumer no one on this project wrote: kafkajs and
// @kafkajs/confluent-schema-registry (from npm) read midflight's per-table
// topics from the start, decode every key and value through the schema
// registry, and check them against the source (pg_kafka_avro.sh):
//  - every value is Debezium's envelope (before, after, source, op, ts_ms),
//    op c/u/d with the images each op has, and each delete is followed by a
//    tombstone (same key, null value) in the same partition; op t (a
//    truncate) has no key and no images and is in every partition of its
//    table's topic, after every earlier event of the partition's keys;
//  - a key change that left a TOASTed value unchanged is a delete, a
//    tombstone and a create whose unchanged value is Debezium's placeholder;
//  - per key, each event's source position (lsn, midflight_seq) is above
//    every earlier one of the key, or repeats one exactly (a change produced
//    again after a restart: at-least-once);
//  - applied in order, deduplicated by position, the events give the
//    source's final rows (accounts, tellers, branches), history's rows one
//    each, and items' and docs' exact per-key sequence of ops.
//
//   node kafka_avro_consumer.js BROKERS REGISTRY PREFIX EXPECTED.json
// Prints one summary line; exits 1 with the first problem.
const { Kafka, logLevel } = require('kafkajs');
const { SchemaRegistry } = require('@kafkajs/confluent-schema-registry');
const fs = require('fs');

const [brokers, registryUrl, prefix, expectedFile] = process.argv.slice(2);
const expected = JSON.parse(fs.readFileSync(expectedFile, 'utf8'));
const tables = ['pgbench_accounts', 'pgbench_tellers', 'pgbench_branches', 'pgbench_history', 'items', 'docs'];
const kUnavailable = '__debezium_unavailable_value';
const topics = tables.map((t) => `${prefix}.public.${t}`);

function fail(msg) {
  console.log(`FAIL: ${msg}`);
  process.exit(1);
}

// Connect's Decimal: big-endian two's complement, `scale` digits after the point.
function decimal(buf, scale) {
  if (buf === null || buf === undefined) return null;
  if (!Buffer.isBuffer(buf)) fail(`a decimal that is not Avro bytes: ${JSON.stringify(buf)}`);
  let v = 0n;
  for (const b of buf) v = (v << 8n) | BigInt(b);
  if (buf.length && buf[0] & 0x80) v -= 1n << BigInt(8 * buf.length);
  const neg = v < 0n;
  let s = (neg ? -v : v).toString().padStart(scale + 1, '0');
  if (scale > 0) s = `${s.slice(0, s.length - scale)}.${s.slice(s.length - scale)}`;
  return (neg ? '-' : '') + s;
}

async function main() {
  const kafka = new Kafka({ clientId: 'outside-consumer', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const registry = new SchemaRegistry({ host: registryUrl });
  const consumer = kafka.consumer({ groupId: `outside-${process.pid}` });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  const events = []; // in arrival order; per partition that is offset order
  let last = Date.now();
  let problem = null;
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      last = Date.now();
      try {
        const key = message.key ? await registry.decode(message.key) : null;
        const value = message.value ? await registry.decode(message.value) : null;
        events.push({ topic, partition, offset: Number(message.offset), key, value });
      } catch (e) {
        problem = problem || `${topic}/${partition}@${message.offset}: cannot decode: ${e.message}`;
      }
    },
  });
  const started = Date.now();
  while ((events.length === 0 || Date.now() - last < 4000) && Date.now() - started < 90000) {
    await new Promise((r) => setTimeout(r, 200));
  }
  await consumer.disconnect();
  if (problem) fail(problem);
  if (events.length === 0) fail('no message in the table topics');

  const counts = { c: 0, u: 0, d: 0, r: 0, t: 0, tombstones: 0, replays: 0 };
  const truncates = new Map(); // topic|partition -> positions of its truncates
  const perKey = new Map(); // topic|key -> {maxPos, seen:Set, partition, state, ops:[]}
  const pendingTombstone = new Map(); // topic|partition|key -> offset of the delete
  const historyRows = new Map();
  for (const e of events) {
    const table = e.topic.slice(prefix.length + '.public.'.length);
    const keyText = JSON.stringify(e.key);
    const pk = `${e.topic}|${e.partition}|${keyText}`;
    if (e.value === null) {
      counts.tombstones++;
      if (!pendingTombstone.has(pk)) fail(`${e.topic}/${e.partition}@${e.offset}: a tombstone for ${keyText} after no delete`);
      pendingTombstone.delete(pk);
      continue;
    }
    if (pendingTombstone.has(pk))
      fail(`${e.topic}/${e.partition}: the delete of ${keyText} at ${pendingTombstone.get(pk)} has no tombstone after it`);
    const v = e.value;
    for (const f of ['before', 'after', 'source', 'op', 'ts_ms'])
      if (!(f in v)) fail(`${e.topic}@${e.offset}: the envelope has no '${f}'`);
    const op = v.op;
    if (!(op in counts)) fail(`${e.topic}@${e.offset}: op '${op}'`);
    counts[op]++;
    if ((op === 'c' || op === 'r') && (v.before !== null || v.after === null)) fail(`${e.topic}@${e.offset}: op ${op} images`);
    if (op === 'u' && v.after === null) fail(`${e.topic}@${e.offset}: an update without 'after'`);
    if (op === 'd' && (v.after !== null || v.before === null)) fail(`${e.topic}@${e.offset}: a delete's images`);
    const s = v.source;
    if (s.connector !== 'postgresql' || s.table !== table || s.schema !== 'public' || typeof s.lsn !== 'number')
      fail(`${e.topic}@${e.offset}: source ${JSON.stringify(s)}`);
    if (op === 'd') pendingTombstone.set(pk, e.offset);
    const pos = [s.lsn, s.midflight_seq];
    const posText = pos.join(':');
    if (op === 't') {
      if (e.key !== null || v.before !== null || v.after !== null) fail(`${e.topic}@${e.offset}: a truncate with a key or images`);
      const tk = `${e.topic}|${e.partition}`;
      const seen = truncates.get(tk) || [];
      if (seen.includes(posText)) {
        counts.replays++;
        continue;
      }
      seen.push(posText);
      truncates.set(tk, seen);
      for (const [id, k] of perKey) {
        if (!id.startsWith(`${e.topic}|`) || k.partition !== e.partition) continue;
        if (pos[0] < k.max[0] || (pos[0] === k.max[0] && pos[1] <= k.max[1]))
          fail(`${id}: the truncate at ${posText} comes after its event at ${k.max.join(':')}`);
        k.max = pos;
        k.state = null;
        k.ops.push('t');
      }
      continue;
    }
    if (table === 'pgbench_history') {
      if (op !== 'c') fail(`history: op ${op}`);
      historyRows.set(posText, v.after);
      continue;
    }
    if (e.key === null) fail(`${e.topic}@${e.offset}: no key`);
    for (const [c, kv] of Object.entries(e.key))
      if (typeof kv !== 'number') fail(`${e.topic}@${e.offset}: key column ${c} is ${typeof kv}, not an Avro int`);
    const id = `${e.topic}|${keyText}`;
    let k = perKey.get(id);
    if (!k) perKey.set(id, (k = { max: null, seen: new Set(), partition: e.partition, state: null, ops: [] }));
    if (k.partition !== e.partition) fail(`${id}: in partitions ${k.partition} and ${e.partition}`);
    const above = k.max === null || pos[0] > k.max[0] || (pos[0] === k.max[0] && pos[1] > k.max[1]);
    if (!above) {
      if (!k.seen.has(posText)) fail(`${id}: position ${posText} after ${k.max.join(':')} (out of order)`);
      counts.replays++;
      continue;
    }
    k.max = pos;
    k.seen.add(posText);
    k.state = op === 'd' ? null : v.after;
    const price = v.after && 'price' in v.after ? decimal(v.after.price, 2) : undefined;
    const body = v.after && v.after.body === kUnavailable ? 'unavailable' : undefined;
    k.ops.push(price === undefined ? (body === undefined ? op : `${op}:${body}`) : `${op}:${price}`);
  }
  if (pendingTombstone.size) fail(`deletes without a tombstone: ${[...pendingTombstone.keys()].join(', ')}`);

  // The final rows against the source's.
  const finals = { pgbench_accounts: ['aid', 'abalance'], pgbench_tellers: ['tid', 'tbalance'], pgbench_branches: ['bid', 'bbalance'] };
  let keys = 0;
  for (const [table, [keyCol, col]] of Object.entries(finals)) {
    const src = expected[table];
    for (const [id, k] of perKey) {
      if (!id.startsWith(`${prefix}.public.${table}|`)) continue;
      keys++;
      const key = JSON.parse(id.slice(id.indexOf('|') + 1))[keyCol];
      if (k.state === null || String(k.state[col]) !== String(src[key]))
        fail(`${table} ${keyCol}=${key}: the events end at ${k.state && k.state[col]}, the source has ${src[key]}`);
    }
    for (const key of expected[`${table}_changed`]) {
      if (!perKey.has(`${prefix}.public.${table}|${JSON.stringify({ [keyCol]: key })}`))
        fail(`${table} ${keyCol}=${key} changed on the source and has no event`);
    }
  }
  if (historyRows.size !== expected.history_count)
    fail(`pgbench_history: ${historyRows.size} distinct inserts, the source has ${expected.history_count} rows`);
  for (const [key, want] of Object.entries(expected.items)) {
    const k = perKey.get(`${prefix}.public.items|${JSON.stringify({ id: Number(key) })}`);
    const got = k ? k.ops.join(' ') : '(none)';
    if (got !== want) fail(`items id=${key}: events ${got}, the source made ${want}`);
  }
  for (const [key, want] of Object.entries(expected.docs)) {
    const k = perKey.get(`${prefix}.public.docs|${JSON.stringify({ id: Number(key) })}`);
    const got = k ? k.ops.join(' ') : '(none)';
    if (got !== want) fail(`docs id=${key}: events ${got}, the source made ${want}`);
  }
  for (let p = 0; p < expected.partitions; p++)
    if (!truncates.has(`${prefix}.public.docs|${p}`)) fail(`docs: no truncate event in partition ${p}`);
  const item1 = perKey.get(`${prefix}.public.items|${JSON.stringify({ id: 0 })}`);
  const a = item1 && item1.state;
  if (!a || a.name !== 'zero' || a.seen !== '2024-01-02T03:04:05.25Z' || a.day !== 19782 || a.doc !== '{"a": 1}' ||
      a.tags !== '{x,y}')
    fail(`items id=0: after ${JSON.stringify(a)} is not Debezium's form of the row`);
  console.log(
    `decoded ${events.length} messages from ${topics.length} topics: c=${counts.c} u=${counts.u} d=${counts.d} ` +
      `t=${counts.t} (${[...truncates].map(([k, v]) => `${k.slice(prefix.length + 8)}@${v.join(',')}`).join(' ')}) tombstones=${counts.tombstones} replayed=${counts.replays}; ${keys} keys end as on the source, ` +
      `${historyRows.size} history rows, items and docs as made`);
}

main().catch((e) => fail(e.stack || String(e)));
