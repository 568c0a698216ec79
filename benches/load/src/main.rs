//! `strata-bench`: produce and consume load against any Kafka-compatible broker, through
//! librdkafka (the `rdkafka` crate), so the numbers are the ones a user's client sees.
//!
//! Producers send records of `--record-size` bytes, flat out or at `--rate` records/s in total;
//! each record carries its send time, so consumers reading concurrently (in this process, on the
//! same monotonic clock) measure end-to-end
//! latency (produce call to consumer delivery); with `--consume-bootstrap` the consumers read
//! another cluster, a mirror link's target, so the figure is the link's copy latency.
//! `--mode consume` instead reads a topic from the
//! beginning as fast as possible (read throughput). Results: a table for people and one JSON
//! line for scripts.
//!
//! `--idempotence` makes the producers idempotent; `--transactional-id ID` makes them
//! transactional (producer i uses `ID-i`), each committing a transaction every
//! `--records-per-txn` records.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    /// Produce, with consumers measuring end-to-end latency at the same time.
    Produce,
    /// Read the topic from the beginning as fast as possible.
    Consume,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "strata-bench", about = "Load test any Kafka-compatible broker")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "strata-bench")]
    topic: String,
    #[arg(long, value_enum, default_value = "produce")]
    mode: Mode,
    /// Partitions of the topic when the tool creates it.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Bytes per record value (at least 16: the send time travels in the first bytes).
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Total records per second across producers; 0 means flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long producers run.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Stop after this many records in all (0: no limit).
    #[arg(long, default_value_t = 0)]
    records: u64,
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumers measuring end-to-end latency (produce mode) or reading (consume mode).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Records sent in the first milliseconds are produced and counted but left out of the
    /// latency figures: they include the producer's topic lookup and first connections.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    #[arg(long, default_value_t = 1_000_000)]
    batch_bytes: u64,
    /// Consumers read from this cluster instead of --bootstrap: a mirror link's target, which
    /// must already hold the topic. End-to-end latency is then the source's produce call to
    /// delivery from the target.
    #[arg(long)]
    consume_bootstrap: Option<String>,
    /// Idempotent producers (`enable.idempotence=true`).
    #[arg(long)]
    idempotence: bool,
    /// Transactional producers: producer i uses transactional.id `ID-i` (implies idempotence).
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
    /// Records per transaction with --transactional-id; each is committed before the next begins.
    #[arg(long, default_value_t = 1000)]
    records_per_txn: u64,
    /// Extra librdkafka settings for producers and consumers, KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

const TIMESTAMP_BYTES: usize = 16;

/// Send times are nanoseconds on the monotonic clock since this process started: producers and
/// consumers share the process, and the wall clock can be slewed (NTP, a VM's clock catching
/// up) by milliseconds per second, which would show up as latency.
static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_ns() -> u128 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos()
}

/// Send time (as [`now_ns`]) from which latencies count: the end of the warm-up.
static MEASURE_FROM_NS: AtomicU64 = AtomicU64::new(u64::MAX);

fn measured(sent_ns: u128) -> bool {
    sent_ns >= MEASURE_FROM_NS.load(Ordering::Relaxed) as u128
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

struct AckContext {
    latency_us: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    failed: AtomicU64,
}

impl AckContext {
    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        match result {
            Ok(m) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                self.acked_bytes
                    .fetch_add(m.payload_len() as u64, Ordering::Relaxed);
                if measured(sent_ns as u128) {
                    let us = ((now_ns() as u64).saturating_sub(sent_ns as u64) / 1000).max(1);
                    if let Ok(mut h) = self.latency_us.lock() {
                        let _ = h.record(us.min(100_000_000));
                    }
                }
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The tool's settings for one client, then the user's `--set`s, which win.
fn client_config(args: &Args, defaults: &[(&str, &str)]) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.bootstrap);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for s in &args.sets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set {s}: expected KEY=VALUE"))?;
        c.set(k, v);
    }
    Ok(c)
}

fn ensure_topic(args: &Args) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(args, &[])?.create()?;
    let topic = NewTopic::new(
        &args.topic,
        args.partitions,
        TopicReplication::Fixed(args.replication_factor),
    );
    let created = block_on(admin.create_topics(
        &[topic],
        &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
    ));
    match created {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((t, e)) => bail!("creating {t}: {e}"),
                }
            }
            Ok(())
        }
        Err(e) => bail!("creating topic: {e}"),
    }
}

/// Drives one future to completion on this thread; the admin client is the only async API used,
/// so a polling loop beats pulling in an async runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn partitions_of(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .context("topic missing from metadata")?;
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

struct ConsumeResult {
    records: u64,
    bytes: u64,
    latency_us: Histogram<u64>,
    elapsed: Duration,
    /// When the first and the last record arrived.
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Reads `parts` from `start` until `stop` (or, with `until_end`, until every partition's end).
fn consume(
    args: &Args,
    parts: Vec<i32>,
    start: Offset,
    stop: Arc<AtomicBool>,
    until_end: bool,
) -> anyhow::Result<ConsumeResult> {
    let mut config = client_config(
        args,
        &[
            ("group.id", "strata-bench"),
            ("enable.auto.commit", "false"),
            (
                "enable.partition.eof",
                if until_end { "true" } else { "false" },
            ),
            ("fetch.max.bytes", "52428800"),
        ],
    )?;
    if let Some(b) = &args.consume_bootstrap {
        config.set("bootstrap.servers", b);
    }
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(&args.topic, *p, start)?;
    }
    consumer.assign(&tpl)?;
    let mut result = ConsumeResult {
        records: 0,
        bytes: 0,
        latency_us: histogram(),
        elapsed: Duration::ZERO,
        first: None,
        last: None,
    };
    let mut at_end = std::collections::HashSet::new();
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                if until_end && at_end.len() == parts.len() {
                    break;
                }
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            Some(Ok(m)) => {
                if until_end {
                    let now = Instant::now();
                    result.first.get_or_insert(now);
                    result.last = Some(now);
                }
                result.records += 1;
                let payload = m.payload().unwrap_or_default();
                result.bytes += payload.len() as u64;
                if !until_end && payload.len() >= TIMESTAMP_BYTES {
                    let mut ts = [0u8; 16];
                    ts.copy_from_slice(&payload[..16]);
                    let sent = u128::from_be_bytes(ts);
                    if measured(sent) {
                        let us = (now_ns().saturating_sub(sent) / 1000).max(1) as u64;
                        let _ = result.latency_us.record(us.min(100_000_000));
                    }
                }
            }
        }
    }
    result.elapsed = started.elapsed();
    Ok(result)
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    now_ns();
    if args.record_size < TIMESTAMP_BYTES {
        bail!("--record-size must be at least {TIMESTAMP_BYTES}");
    }
    if args.mode == Mode::Consume {
        return run_consume(&args);
    }
    ensure_topic(&args)?;
    let probe: BaseConsumer = client_config(&args, &[("group.id", "strata-bench")])?.create()?;
    let parts = partitions_of(&probe, &args.topic)?;
    drop(probe);

    let stop = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..args.consumers)
        .map(|i| {
            let mine: Vec<i32> = parts
                .iter()
                .copied()
                .filter(|p| (*p as usize) % args.consumers == i)
                .collect();
            let (stop, a) = (stop.clone(), args.clone());
            std::thread::spawn(move || consume(&a, mine, Offset::End, stop, false))
        })
        .collect();
    // Let consumers take their positions at the end before producing.
    std::thread::sleep(Duration::from_millis(1500));

    let ctx = Arc::new(AckContext {
        latency_us: Mutex::new(histogram()),
        acked: AtomicU64::new(0),
        acked_bytes: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    MEASURE_FROM_NS.store(
        (now_ns() + Duration::from_millis(args.warmup_ms).as_nanos()) as u64,
        Ordering::Relaxed,
    );
    let deadline = started + Duration::from_secs(args.duration_s);
    let producers: Vec<_> = (0..args.producers)
        .map(|i| {
            let (ctx, sent, a) = (ctx.clone(), sent.clone(), args.clone());
            std::thread::spawn(move || produce(&a, i, ctx, sent, started, deadline))
        })
        .collect();
    for p in producers {
        p.join()
            .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    }
    let produce_elapsed = started.elapsed();
    // Give consumers a moment to drain what was acknowledged.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let mut e2e = histogram();
    let mut consumed = 0;
    for c in consumers {
        let r = c
            .join()
            .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
        consumed += r.records;
        e2e.add(&r.latency_us).ok();
    }

    let acked = ctx.acked.load(Ordering::Relaxed);
    let acked_bytes = ctx.acked_bytes.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let secs = produce_elapsed.as_secs_f64();
    let ack = ctx
        .latency_us
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    println!("strata-bench: {} producer(s), {} consumer(s), {} B records, acks={}, compression={}, linger.ms={}, rate={}; latencies after a {} ms warm-up",
        args.producers, args.consumers, args.record_size, args.acks, args.compression, args.linger_ms,
        if args.rate == 0 { "flat out".to_string() } else { format!("{}/s", args.rate) }, args.warmup_ms);
    println!(
        "{:<28}{:>14}",
        "produced records/s",
        format!("{:.0}", acked as f64 / secs)
    );
    println!(
        "{:<28}{:>14}",
        "produced MB/s",
        format!("{:.1}", acked_bytes as f64 / secs / 1e6)
    );
    println!("{:<28}{:>14}", "produce errors", failed);
    println!("{:<28}{:>14}", "consumed records", consumed);
    println!(
        "{:<28}{:>14}",
        "ack latency p50/p99 ms",
        format!("{:.2}/{:.2}", pct(&ack, 0.5), pct(&ack, 0.99))
    );
    println!(
        "{:<28}{:>14}",
        "e2e latency p50 ms",
        format!("{:.2}", pct(&e2e, 0.5))
    );
    println!(
        "{:<28}{:>14}",
        "e2e latency p99 ms",
        format!("{:.2}", pct(&e2e, 0.99))
    );
    println!(
        "{:<28}{:>14}",
        "e2e latency p99.9 ms",
        format!("{:.2}", pct(&e2e, 0.999))
    );
    println!(
        "{:<28}{:>14}",
        "e2e latency max ms",
        format!("{:.2}", e2e.max() as f64 / 1000.0)
    );
    let json = serde_json::json!({
        "mode": "produce", "bootstrap": args.bootstrap, "consume_bootstrap": args.consume_bootstrap, "topic": args.topic, "record_size": args.record_size,
        "acks": args.acks, "compression": args.compression, "rate": args.rate, "producers": args.producers,
        "linger_ms": args.linger_ms, "warmup_ms": args.warmup_ms,
        "idempotence": args.idempotence || args.transactional_id.is_some(),
        "transactional": args.transactional_id.is_some(), "records_per_txn": args.records_per_txn,
        "consumers": args.consumers, "seconds": secs, "produced_records": acked, "produce_errors": failed,
        "produced_records_per_s": acked as f64 / secs, "produced_mb_per_s": acked_bytes as f64 / secs / 1e6,
        "consumed_records": consumed,
        "ack_latency_ms": {"p50": pct(&ack, 0.5), "p99": pct(&ack, 0.99), "max": ack.max() as f64 / 1000.0},
        "e2e_latency_ms": {"p50": pct(&e2e, 0.5), "p99": pct(&e2e, 0.99), "p999": pct(&e2e, 0.999), "max": e2e.max() as f64 / 1000.0},
    });
    println!("{json}");
    if failed > 0 {
        bail!("{failed} records were not acknowledged");
    }
    Ok(())
}

fn produce(
    args: &Args,
    index: usize,
    ctx: Arc<AckContext>,
    sent: Arc<AtomicU64>,
    started: Instant,
    deadline: Instant,
) -> anyhow::Result<()> {
    // Delivery reports are served by the producer's own polling thread, which blocks until one
    // arrives: acknowledgement latency is measured when the report comes, and pacing below can
    // sleep without spinning.
    let (linger, batch) = (args.linger_ms.to_string(), args.batch_bytes.to_string());
    let mut defaults = vec![
        ("acks", args.acks.clone()),
        ("compression.type", args.compression.clone()),
        ("linger.ms", linger),
        ("batch.size", batch),
    ];
    if args.idempotence || args.transactional_id.is_some() {
        defaults.push(("enable.idempotence", "true".into()));
    }
    if let Some(id) = &args.transactional_id {
        defaults.push(("transactional.id", format!("{id}-{index}")));
    }
    let defaults: Vec<(&str, &str)> = defaults.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let producer: ThreadedProducer<AckContextRef> =
        client_config(args, &defaults)?.create_with_context(AckContextRef(ctx))?;
    let txn_timeout = Duration::from_secs(60);
    let transactional = args.transactional_id.is_some();
    if transactional {
        producer
            .init_transactions(txn_timeout)
            .context("init_transactions")?;
        producer.begin_transaction().context("begin_transaction")?;
    }
    let mut in_txn: u64 = 0;
    let mut payload = vec![0x5au8; args.record_size];
    let per_producer_rate = args.rate as f64 / args.producers as f64;
    let mut n: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= deadline || (args.records > 0 && sent.load(Ordering::Relaxed) >= args.records) {
            break;
        }
        if per_producer_rate > 0.0 {
            let due = started + Duration::from_secs_f64(n as f64 / per_producer_rate);
            if due > now {
                std::thread::sleep(due - now);
                continue;
            }
        }
        // The send time travels in the payload (for consumers) and as the delivery opaque (an
        // integer: no allocation per record).
        let since_origin_ns = now_ns();
        payload[..16].copy_from_slice(&since_origin_ns.to_be_bytes());
        let key = n.to_be_bytes();
        let record = BaseRecord::with_opaque_to(&args.topic, since_origin_ns as usize)
            .payload(&payload[..])
            .key(&key[..]);
        match producer.send(record) {
            Ok(()) => {
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                in_txn += 1;
                if transactional && in_txn >= args.records_per_txn.max(1) {
                    drain(&producer, txn_timeout)?;
                    producer
                        .commit_transaction(txn_timeout)
                        .context("commit_transaction")?;
                    producer.begin_transaction().context("begin_transaction")?;
                    in_txn = 0;
                }
            }
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                _,
            )) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("send failed: {e}"),
        }
    }
    if transactional {
        drain(&producer, txn_timeout)?;
        producer
            .commit_transaction(txn_timeout)
            .context("commit_transaction")?;
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

/// Waits until every record sent has been acknowledged and its delivery report served by the
/// producer's polling thread, as librdkafka's own flush before a commit does: the producer is
/// marked as flushing meanwhile, so the transaction's last batches go out at once rather than
/// after `linger.ms`. (rust-rdkafka's `flush`, which `commit_transaction` calls first, asks
/// librdkafka with a zero timeout and then polls the event queue itself for up to 100 ms at a
/// time; beside a `ThreadedProducer`'s polling thread that poll sleeps its whole 100 ms.)
/// rust-rdkafka has no safe call for librdkafka's flush with a timeout alone, hence the one
/// FFI call.
#[allow(unsafe_code)]
fn drain<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let rk = producer.client().native_ptr();
    loop {
        // SAFETY: `rk` is the producer's live handle, borrowed for the call. rust-rdkafka uses
        // the event API, so librdkafka only waits (up to 10 ms) for the count of undelivered
        // records to reach zero while the polling thread serves their reports.
        let err = unsafe { rdkafka::bindings::rd_kafka_flush(rk, 10) };
        if err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("records still in flight after {timeout:?}");
        }
    }
}

/// Shares one acknowledgement context between producer threads.
struct AckContextRef(Arc<AckContext>);

impl ClientContext for AckContextRef {}

impl ProducerContext for AckContextRef {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        self.0.delivery(result, sent)
    }
}

fn run_consume(args: &Args) -> anyhow::Result<()> {
    let probe: BaseConsumer = client_config(args, &[("group.id", "strata-bench")])?.create()?;
    let parts = partitions_of(&probe, &args.topic)?;
    drop(probe);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..args.consumers)
        .map(|i| {
            let mine: Vec<i32> = parts
                .iter()
                .copied()
                .filter(|p| (*p as usize) % args.consumers == i)
                .collect();
            let (stop, a) = (stop.clone(), args.clone());
            std::thread::spawn(move || consume(&a, mine, Offset::Beginning, stop, true))
        })
        .collect();
    let (mut records, mut bytes) = (0, 0);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
        records += r.records;
        bytes += r.bytes;
        first = match (first, r.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = last.max(r.last);
    }
    let secs = started.elapsed().as_secs_f64();
    // Reading rate from the first record to the last, without connecting and looking up
    // partitions (which the wall time includes).
    let read_secs = match (first, last) {
        (Some(f), Some(l)) if l > f => (l - f).as_secs_f64(),
        _ => secs,
    };
    println!(
        "strata-bench consume: {} consumer(s) read {records} records, {:.1} MB in {secs:.2} s ({read_secs:.2} s from the first record to the last)",
        args.consumers,
        bytes as f64 / 1e6
    );
    println!(
        "{:<28}{:>14}",
        "consumed MB/s",
        format!("{:.1}", bytes as f64 / read_secs / 1e6)
    );
    println!(
        "{:<28}{:>14}",
        "consumed records/s",
        format!("{:.0}", records as f64 / read_secs)
    );
    println!(
        "{:<28}{:>14}",
        "consumed MB/s, wall time",
        format!("{:.1}", bytes as f64 / secs / 1e6)
    );
    let json = serde_json::json!({
        "mode": "consume", "bootstrap": args.bootstrap, "topic": args.topic, "consumers": args.consumers,
        "seconds": secs, "read_seconds": read_secs, "consumed_records": records,
        "consumed_mb_per_s": bytes as f64 / read_secs / 1e6,
        "consumed_records_per_s": records as f64 / read_secs,
        "consumed_mb_per_s_wall": bytes as f64 / secs / 1e6,
    });
    println!("{json}");
    Ok(())
}
