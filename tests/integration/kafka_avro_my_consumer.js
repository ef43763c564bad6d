// The MariaDB side of kafka_avro_consumer.js: kafkajs and
// @kafkajs/confluent-schema-registry (from npm, written by no one on this
// project) read midflight's per-table topics of a MariaDB source from the
// start, decode every key and value through the schema registry, and check
// them against the source (mysql_kafka_avro.sh):
//  - every value is Debezium's envelope (before, after, source, op, ts_ms)
//    with MySQL's source record (connector mysql, db, table, file, pos); op
//    c/u/d with the images each op has, each delete followed by a tombstone
//    in the same partition; op t (a truncate) with no key and no images, in
//    every partition of its table's topic;
//  - per key, each event's position (file, pos, midflight_seq) is above every
//    earlier one of the key and of the truncates of its partition, or
//    repeats one exactly (produced again after a restart: at-least-once);
//  - applied in order (a truncate empties its partition), the events give
//    the source's final rows of sbtest1, kinds' exact per-key ops, and the
//    types Debezium encodes specially (decimal, unsigned, datetime,
//    timestamp, date, time, JSON, enum, set, bit) in Debezium's form;
//  - snapshot read events (transport.publish_snapshot, mysql_kafka_snapshot.sh):
//    op r with source.snapshot "true" (at least one "last"), every other op
//    "false"; with them every sbtest1 key of the source has events, and a key
//    the source deleted between two copy attempts (the table topics get no
//    chunk reset) may end as its older copy only when EXPECTED lists it.
//
// EXPECTED: {"sbtest1": {id: k}, "sbtest1_min_keys": n, "kinds": {...}} as
// made by mysql_kafka_avro.sh; "tables" (default ["sbtest1", "kinds"]) the
// topics read ("string_keys": those keyed by a string), "snapshot": true to
// require read events (one of them "last"), "stale": [ids]; no
// "kinds": its history and types are not checked.
//
//   node kafka_avro_my_consumer.js BROKERS REGISTRY PREFIX DB PARTITIONS EXPECTED.json
// Prints one summary line; exits 1 with the first problem.
const { Kafka, logLevel } = require('kafkajs');
const { SchemaRegistry } = require('@kafkajs/confluent-schema-registry');
const fs = require('fs');

const [brokers, registryUrl, prefix, db, partitionsText, expectedFile] = process.argv.slice(2);
const partitions = Number(partitionsText);
const expected = JSON.parse(fs.readFileSync(expectedFile, 'utf8'));
const tables = expected.tables || ['sbtest1', 'kinds'];
const topics = tables.map((t) => `${prefix}.${db}.${t}`);

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

// (file, pos, seq) compared: -1, 0, 1.
function cmp(a, b) {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
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

  const counts = { c: 0, u: 0, d: 0, r: 0, t: 0, tombstones: 0, replays: 0, last: 0 };
  const perKey = new Map(); // topic|key -> {max, seen, partition, state, ops}
  const pendingTombstone = new Map(); // topic|partition|key -> offset of the delete
  const truncates = new Map(); // topic|partition -> positions of its truncates
  for (const e of events) {
    const table = e.topic.slice(`${prefix}.${db}.`.length);
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
    const s = v.source;
    if (s.connector !== 'mysql' || s.db !== db || s.table !== table || !/^\d{6}$/.test(s.file) || typeof s.pos !== 'number')
      fail(`${e.topic}@${e.offset}: source ${JSON.stringify(s)}`);
    if ((op === 'r') !== (s.snapshot === 'true' || s.snapshot === 'last'))
      fail(`${e.topic}@${e.offset}: op ${op} with source.snapshot ${JSON.stringify(s.snapshot)}`);
    if (s.snapshot === 'last') counts.last++;
    const pos = [s.file, s.pos, s.midflight_seq];
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
        if (cmp(pos, k.max) <= 0) fail(`${id}: the truncate at ${posText} comes after its event at ${k.max.join(':')}`);
        k.max = pos;
        k.state = null;
        k.ops.push('t');
      }
      continue;
    }
    if ((op === 'c' || op === 'r') && (v.before !== null || v.after === null)) fail(`${e.topic}@${e.offset}: op ${op} images`);
    if (op === 'u' && v.after === null) fail(`${e.topic}@${e.offset}: an update without 'after'`);
    if (op === 'd' && (v.after !== null || v.before === null)) fail(`${e.topic}@${e.offset}: a delete's images`);
    if (op === 'd') pendingTombstone.set(pk, e.offset);
    if (e.key === null) fail(`${e.topic}@${e.offset}: no key`);
    const keyType = (expected.string_keys || []).includes(table) ? 'string' : 'number';
    for (const [c, kv] of Object.entries(e.key))
      if (typeof kv !== keyType) fail(`${e.topic}@${e.offset}: key column ${c} is ${typeof kv}, not an Avro int/long`);
    const id = `${e.topic}|${keyText}`;
    let k = perKey.get(id);
    if (!k) perKey.set(id, (k = { max: null, seen: new Set(), partition: e.partition, state: null, ops: [] }));
    if (k.partition !== e.partition) fail(`${id}: in partitions ${k.partition} and ${e.partition}`);
    if (k.max !== null && cmp(pos, k.max) <= 0) {
      if (!k.seen.has(posText)) fail(`${id}: position ${posText} after ${k.max.join(':')} (out of order)`);
      counts.replays++;
      continue;
    }
    k.max = pos;
    k.seen.add(posText);
    k.state = op === 'd' ? null : v.after;
    const amount = v.after && 'amount' in v.after ? decimal(v.after.amount, 3) : undefined;
    k.ops.push(amount === undefined ? op : `${op}:${amount}`);
  }
  if (pendingTombstone.size) fail(`deletes without a tombstone: ${[...pendingTombstone.keys()].join(', ')}`);

  // sbtest1: every key with events ends as the source's row (k), or absent.
  let keys = 0, stale = 0;
  const seenKeys = new Set();
  for (const [id, k] of perKey) {
    if (!id.startsWith(`${prefix}.${db}.sbtest1|`)) continue;
    keys++;
    const key = JSON.parse(id.slice(id.indexOf('|') + 1)).id;
    seenKeys.add(String(key));
    const src = expected.sbtest1[key];
    const got = k.state === null ? undefined : k.state.k;
    if (src === undefined && got !== undefined && (expected.stale || []).includes(key)) {
      stale++;
      continue;
    }
    if (String(got) !== String(src)) fail(`sbtest1 id=${key}: the events end at k=${got}, the source has ${src}`);
  }
  if (keys < expected.sbtest1_min_keys) fail(`sbtest1: events for ${keys} keys, expected at least ${expected.sbtest1_min_keys}`);
  if (expected.snapshot) {
    if (counts.r === 0 || counts.last !== 1) fail(`snapshot: ${counts.r} read events, ${counts.last} marked last`);
    for (const key of Object.keys(expected.sbtest1))
      if (!seenKeys.has(key)) fail(`sbtest1 id=${key}: on the source, and no event in the topic`);
    console.log(
      `decoded ${events.length} messages from ${topics.length} topics: r=${counts.r} (last ${counts.last}) ` +
        `c=${counts.c} u=${counts.u} d=${counts.d} tombstones=${counts.tombstones} replayed=${counts.replays}; ` +
        `${keys} sbtest1 keys end as on the source (${stale} kept from an abandoned copy attempt)`);
  }
  if (!expected.kinds) return;

  // kinds: each key's ops, the truncate in every partition, Debezium's forms.
  for (const [key, want] of Object.entries(expected.kinds)) {
    const k = perKey.get(`${prefix}.${db}.kinds|${JSON.stringify({ id: Number(key) })}`);
    const got = k ? k.ops.join(' ') : '(none)';
    if (got !== want) {
      const seen = events
        .filter((e) => e.topic.endsWith('.kinds'))
        .map((e) => `${e.partition}@${e.offset}:${e.value ? e.value.op : 'tombstone'}${e.key ? e.key.id : ''}`);
      fail(`kinds id=${key}: events ${got}, the source made ${want} (kinds topic: ${seen.join(' ')})`);
    }
  }
  for (let p = 0; p < partitions; p++)
    if (!truncates.has(`${prefix}.${db}.kinds|${p}`)) fail(`kinds: no truncate event in partition ${p}`);
  const row = perKey.get(`${prefix}.${db}.kinds|${JSON.stringify({ id: 4 })}`).state;
  const want = {
    amount: ['-1234.500', decimal(row.amount, 3)],
    big: ['18446744073709551615', decimal(row.big, 0)],
    at: [Date.UTC(2024, 1, 29, 13, 14, 15, 250), row.at],
    ts: ['2024-01-02T03:04:05.00025Z', row.ts],
    day: [19782, row.day],
    tm: [-3723000000, row.tm],
    doc: ['{"a":[1,2]}', row.doc === null ? null : JSON.stringify(JSON.parse(row.doc))],
    color: ['green', row.color],
    marks: ['a,c', row.marks],
    one: [true, row.one],
    bits: ['0102', Buffer.isBuffer(row.bits) ? row.bits.toString('hex') : row.bits],
    tiny: [255, row.tiny],
    small: [65535, row.small],
    name: ['é1', row.name],
    fx: ['42000000', Buffer.isBuffer(row.fx) ? row.fx.toString('hex') : row.fx],
  };
  for (const [col, [w, g]] of Object.entries(want))
    if (w !== g) fail(`kinds id=4 column ${col}: ${JSON.stringify(g)}, Debezium's form is ${JSON.stringify(w)}`);
  console.log(
    `decoded ${events.length} messages from ${topics.length} topics: c=${counts.c} u=${counts.u} d=${counts.d} ` +
      `t=${counts.t} tombstones=${counts.tombstones} replayed=${counts.replays}; ${keys} sbtest1 keys end as on the ` +
      `source, kinds as made, ${Object.keys(want).length} special types in Debezium's form`);
}

main().catch((e) => fail(e.stack || String(e)));
