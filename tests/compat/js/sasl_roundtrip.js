// kafkajs authenticates with SASL, produces COUNT messages and reads them back; prints a JSON
// summary, or the error when authentication fails.
// Usage: node sasl_roundtrip.js BOOTSTRAP MECHANISM USERNAME PASSWORD TOPIC COUNT
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, mechanism, username, password, topic, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  const kafka = new Kafka({
    clientId: 'strata-kafkajs-sasl',
    brokers: [bootstrap],
    sasl: { mechanism: mechanism.toLowerCase(), username, password },
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
  });
  const producer = kafka.producer();
  try {
    await producer.connect();
  } catch (e) {
    console.log(JSON.stringify({ error: e.type || e.name, message: e.message }));
    return;
  }
  await producer.send({ topic, messages: Array.from({ length: count }, (_, i) => ({ value: `js-${i}` })) });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `js-sasl-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({ eachMessage: async ({ message }) => { seen.push(message.value.toString()); if (seen.length >= count) done(); } });
  const timer = setTimeout(() => done(), 20000);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  console.log(JSON.stringify({ seen }));
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
