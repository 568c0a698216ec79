//! Crash consistency: a child process appends with group commit and prints every offset it was
//! told is durable; the parent SIGKILLs it at random moments, reopens the log and checks that
//! every acknowledged batch is there, in order, at its offset, with its content.
//!
//! The child is this test binary re-executed with `STRATA_CRASH_CHILD` set, running only
//! `crash_child`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata::clock::SharedClock;
use strata::log::{LogConfig, UnifiedLog};
use strata::model::{LeaderEpoch, Offset};
use strata::protocol::record_batch::{build_batch, BatchIter};

const CHILD_ENV: &str = "STRATA_CRASH_CHILD";
const ITERATIONS: u64 = 30;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024, // many rolls
        index_interval_bytes: 1024,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

fn payload(writer: u64, n: u64, run: u64) -> Vec<u8> {
    let len = 20 + ((writer * 7919 + n * 104729) % 3000) as usize;
    let mut v = format!("run{run}-w{writer}-n{n}-").into_bytes();
    v.resize(len, b'a' + (n % 26) as u8);
    v
}

/// The child: 3 writers append and print `ack <offset> <run> <writer> <n>` once durable.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // a normal test run: nothing to do
    };
    let run: u64 = std::env::var("STRATA_CRASH_RUN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let clock: SharedClock = strata::clock::system();
        let log = UnifiedLog::open(dir.into(), config(), clock).expect("open");
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..3u64 {
            let log = log.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let v = payload(w, n, run);
                    let b = build_batch(0, 1, None, &[(None, Some(&v[..]))]);
                    let info = log
                        .append_as_leader(Bytes::from(b), LeaderEpoch(run as i32))
                        .expect("append");
                    log.wait_durable(Offset(info.last_offset.0 + 1))
                        .await
                        .expect("durable");
                    let mut o = out.lock().expect("stdout");
                    writeln!(o, "ack {} {run} {w} {n}", info.first_offset.0).expect("print");
                    o.flush().expect("flush");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("exe");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    // offset -> (run, writer, n)
    let mut acked: BTreeMap<i64, (u64, u64, u64)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    for run in 0..ITERATIONS {
        if Instant::now() > deadline {
            break;
        }
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("STRATA_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.len() == 5 && parts[0] == "ack" {
                    let nums: Vec<i64> = parts[1..].iter().filter_map(|p| p.parse().ok()).collect();
                    if nums.len() == 4 {
                        acks.push((nums[0], (nums[1] as u64, nums[2] as u64, nums[3] as u64)));
                    }
                }
            }
            acks
        });
        // Let it start (open + recovery) and run for a random while before the kill.
        std::thread::sleep(Duration::from_millis(30 + rng.next() % 250));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let acks = reader.join().expect("reader");
        for (off, who) in acks {
            assert!(
                acked.insert(off, who).is_none(),
                "offset {off} acknowledged twice"
            );
        }
        verify(dir.path(), &acked, run);
    }
    assert!(
        acked.len() > 100,
        "too few acknowledged appends: {}",
        acked.len()
    );
}

fn verify(dir: &std::path::Path, acked: &BTreeMap<i64, (u64, u64, u64)>, run: u64) {
    let clock: SharedClock = strata::clock::system();
    let log = UnifiedLog::open(dir.to_path_buf(), config(), clock).expect("reopen");
    let mut found = BTreeMap::new();
    let mut next = log.local_log_start_offset();
    let mut last_base = -1;
    loop {
        let r = log
            .read(next, 1 << 20, Offset(i64::MAX), true)
            .expect("read after crash");
        if r.records.is_empty() {
            break;
        }
        for item in BatchIter::new(&r.records) {
            let (pos, h) = item.expect("whole batch");
            assert!(h.base_offset > last_base, "offsets out of order");
            last_base = h.base_offset;
            let mut one = r.records.slice(pos..pos + h.total_size());
            let set =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut one).expect("decode");
            let value = set.records[0].value.clone().expect("value");
            found.insert(h.base_offset, value);
            next = Offset(h.next_offset());
        }
    }
    for (off, (r, w, n)) in acked {
        let v = found
            .get(off)
            .unwrap_or_else(|| panic!("run {run}: acknowledged offset {off} lost"));
        assert_eq!(
            v.as_ref(),
            &payload(*w, *n, *r)[..],
            "run {run}: offset {off} content"
        );
    }
    log.close().expect("close");
    // Keep the next child's recovery honest: the close above wrote a clean checkpoint, so
    // remove it to force a full scan again next time.
    let _ = std::fs::remove_file(dir.join("recovery-point-offset-checkpoint"));
}
