// A kafkajs transactional producer commits one transaction and aborts another.
// Usage: node txn_produce.js BOOTSTRAP TOPIC TRANSACTIONAL_ID COUNT
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, transactionalId, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  const kafka = new Kafka({ clientId: 'strata-kafkajs-txn', brokers: [bootstrap], logLevel: logLevel.WARN });
  const producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = (tag) => Array.from({ length: count }, (_, i) => ({ value: `${tag}-${i}`, partition: i % 2 }));
  let txn = await producer.transaction();
  await txn.send({ topic, messages: messages('js-commit') });
  await txn.commit();
  txn = await producer.transaction();
  await txn.send({ topic, messages: messages('js-abort') });
  await txn.abort();
  await producer.disconnect();
  console.log(JSON.stringify({ ok: true }));
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
