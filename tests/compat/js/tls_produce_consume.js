// kafkajs over TLS with a client certificate: produces COUNT records to TOPIC, reads them back,
// and prints a JSON summary. Usage: node tls_produce_consume.js BOOTSTRAP TOPIC COUNT CERT_DIR
const fs = require('fs');
const path = require('path');
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, countArg, certDir] = process.argv.slice(2);
  const count = Number(countArg);
  const kafka = new Kafka({
    clientId: 'strata-kafkajs-tls',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    ssl: {
      ca: [fs.readFileSync(path.join(certDir, 'ca.pem'))],
      cert: fs.readFileSync(path.join(certDir, 'client.pem')),
      key: fs.readFileSync(path.join(certDir, 'client.key')),
    },
  });
  const producer = kafka.producer();
  await producer.connect();
  const values = Array.from({ length: count }, (_, i) => `js-tls-${i}`);
  await producer.send({ topic, acks: -1, messages: values.map((value) => ({ key: 'k', value })) });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${topic}-g` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({
    eachMessage: async ({ message }) => {
      seen.push({ key: message.key.toString(), value: message.value.toString(), offset: message.offset });
      if (seen.length >= count) done();
    },
  });
  const timer = setTimeout(() => done(), 30000);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  console.log(JSON.stringify({ seen }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
