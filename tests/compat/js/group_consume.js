// A kafkajs consumer group reads a topic end to end and commits; prints a JSON summary.
// Usage: node group_consume.js BOOTSTRAP TOPIC GROUP EXPECTED_COUNT
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, groupId, expectedArg] = process.argv.slice(2);
  const expected = Number(expectedArg);
  const kafka = new Kafka({ clientId: 'strata-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  const consumers = [
    kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000 }),
    kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000 }),
  ];
  // kafkajs reports a consumer that failed with a retriable error (REBALANCE_IN_PROGRESS on a
  // heartbeat racing the second member's join, say) as a crash and restarts it after a backoff;
  // the summary says how often, so the test can see it.
  const crashes = [];
  for (const c of consumers) {
    c.on(c.events.CRASH, ({ payload }) => crashes.push({ error: String(payload.error && payload.error.message), restart: payload.restart }));
  }
  const seen = [];
  const byMember = [0, 0];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  for (const [i, c] of consumers.entries()) {
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      autoCommit: true,
      autoCommitInterval: 100,
      eachMessage: async ({ message }) => {
        seen.push(message.value.toString());
        byMember[i] += 1;
        if (seen.length >= expected) done();
      },
    });
  }
  const timer = setTimeout(() => done(), 40000);
  await finished;
  clearTimeout(timer);
  // Let the auto-commit go out, then leave the group cleanly.
  await new Promise((r) => setTimeout(r, 500));
  for (const c of consumers) await c.disconnect();
  const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
  const groups = await admin.listGroups();
  await admin.disconnect();
  console.log(JSON.stringify({ seen, byMember, offsets, groups: groups.groups, crashes }));
}

// A consumer restart that kafkajs scheduled before `disconnect` keeps a timer alive after
// main() is done, so the process ends explicitly once the summary is out.
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
