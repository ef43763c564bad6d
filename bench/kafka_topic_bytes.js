// Counts what a Kafka topic received between two moments, for
// bench/kafka_bench.sh: messages and their key and value bytes as produced
// (what a consumer receives, before any compression on the wire).
//
//   node kafka_topic_bytes.js BROKERS offsets TOPIC...  > MARK.json
//     each partition's low and high watermarks, as JSON
//   node kafka_topic_bytes.js BROKERS bytes MARK.json
//     reads every partition from the MARK's high watermark to its current
//     one; prints one line per topic: TOPIC MESSAGES KEY_BYTES VALUE_BYTES
//     MAX_PARTITION_BYTES LOST, LOST being the messages of that range the
//     broker no longer holds (the partition's low watermark went past the
//     mark: librdkafka's mock cluster keeps about 5 MiB per partition).
//     Exits 1 when the range cannot be read in 300 s.
const { Kafka, logLevel } = require('kafkajs');
const fs = require('fs');

const [brokers, mode, ...args] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'midflight-bench', brokers: brokers.split(','), logLevel: logLevel.NOTHING });

async function watermarks(admin, topics) {
  const out = {};
  for (const t of topics) {
    out[t] = {};
    for (const p of await admin.fetchTopicOffsets(t)) out[t][p.partition] = { low: Number(p.low), high: Number(p.high) };
  }
  return out;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  if (mode === 'offsets') {
    console.log(JSON.stringify(await watermarks(admin, args)));
    await admin.disconnect();
    return;
  }
  const mark = JSON.parse(fs.readFileSync(args[0], 'utf8'));
  const topics = Object.keys(mark);
  const now = await watermarks(admin, topics);
  await admin.disconnect();
  const stats = {};
  const pending = new Map(); // "topic/partition" -> offset to reach (exclusive)
  for (const t of topics) {
    stats[t] = { messages: 0, key: 0, value: 0, lost: 0, perPartition: {} };
    for (const [p, m] of Object.entries(now[t])) {
      const from = mark[t][p] ? mark[t][p].high : 0;
      stats[t].lost += Math.max(0, Math.min(m.low, m.high) - from);
      stats[t].perPartition[p] = 0;
      if (m.high > Math.max(from, m.low)) pending.set(`${t}/${p}`, { from: Math.max(from, m.low), to: m.high });
    }
  }
  if (pending.size) {
    const consumer = kafka.consumer({ groupId: `midflight-bench-${process.pid}`, maxBytes: 16 << 20 });
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: true });
    let done;
    const finished = new Promise((resolve) => (done = resolve));
    await consumer.run({
      eachBatch: async ({ batch }) => {
        const k = `${batch.topic}/${batch.partition}`;
        const want = pending.get(k);
        if (!want) return;
        const s = stats[batch.topic];
        for (const msg of batch.messages) {
          const off = Number(msg.offset);
          if (off < want.from || off >= want.to) continue;
          const bytes = (msg.key ? msg.key.length : 0) + (msg.value ? msg.value.length : 0);
          s.messages += 1;
          s.key += msg.key ? msg.key.length : 0;
          s.value += msg.value ? msg.value.length : 0;
          s.perPartition[batch.partition] += bytes;
          if (off === want.to - 1) {
            pending.delete(k);
            if (!pending.size) done();
          }
        }
      },
    });
    for (const k of pending.keys()) {
      const i = k.lastIndexOf('/');
      consumer.seek({ topic: k.slice(0, i), partition: Number(k.slice(i + 1)), offset: String(pending.get(k).from) });
    }
    const timer = setTimeout(() => {
      console.error(`kafka_topic_bytes: not read in 300 s: ${[...pending.keys()].join(' ')}`);
      process.exit(1);
    }, 300000);
    await finished;
    clearTimeout(timer);
    await consumer.disconnect();
  }
  for (const t of topics) {
    const s = stats[t];
    console.log(`${t} ${s.messages} ${s.key} ${s.value} ${Math.max(0, ...Object.values(s.perPartition))} ${s.lost}`);
  }
}

main().catch((e) => {
  console.error(`kafka_topic_bytes: ${e.message}`);
  process.exit(1);
});
