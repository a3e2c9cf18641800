//! The broker's stories: each test provokes one anomaly a log must survive — a torn tail at
//! every byte, a flipped bit, racing appenders, a writer killed mid-`write()` — and checks that
//! what comes back is exactly the whole records, in order, or an error that names the damage.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use outbox_lab::Error;
use outbox_lab::broker::{
    self, Appended, Broker, DEFAULT_PARTITIONS, DurableEnd, LogReader, MAX_RECORD_BYTES, RawRecord,
    commit_offset, encode_record, log_path, offset_path, partition_of, read_offset, recover, scan,
};

/// A fresh, empty directory of its own for one test (shared helper: `tests/common`).
fn test_dir(name: &str) -> PathBuf {
    common::temp_dir(&format!("broker-{name}"))
}

/// A small event-shaped JSON record.
fn record(i: usize) -> Vec<u8> {
    format!(r#"{{"event_id":"e{i:04}","aggregate_id":"{i}","payload":{{"n":{i}}}}}"#).into_bytes()
}

fn refs(records: &[Vec<u8>]) -> Vec<&[u8]> {
    records.iter().map(Vec::as_slice).collect()
}

/// A one-partition broker in `dir/broker` holding `records`, each appended on its own.
fn broker_with(dir: &Path, records: &[Vec<u8>]) -> PathBuf {
    let broker_dir = dir.join("broker");
    Broker::create(&broker_dir, 1).unwrap();
    let mut broker = Broker::open(&broker_dir, 1).unwrap();
    for json in records {
        broker.append_durable(0, &[json]).unwrap();
    }
    broker_dir
}

fn read_all(path: &Path) -> Vec<RawRecord> {
    LogReader::open(path)
        .unwrap()
        .read_from(0, usize::MAX)
        .unwrap()
}

fn jsons(records: &[RawRecord]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.json.clone()).collect()
}

fn flip_byte(path: &Path, offset_bytes: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset_bytes as usize] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

fn expect_corrupt(result: Result<impl std::fmt::Debug, Error>, path: &Path, offset_bytes: u64) {
    match result {
        Err(err @ Error::Corrupt { .. }) => {
            let Error::Corrupt {
                file,
                offset_bytes: at,
                ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(file, path, "corruption names the file");
            assert_eq!(
                *at, offset_bytes,
                "corruption names the start of the bad record"
            );
            let text = err.to_string();
            assert!(
                text.contains(&path.display().to_string()),
                "message names the file: {text}"
            );
            assert!(
                text.contains(&format!("byte offset {offset_bytes}")),
                "message names the offset: {text}"
            );
        }
        other => panic!(
            "expected Error::Corrupt at {offset_bytes} in {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn records_round_trip_across_partitions_in_order() {
    let dir = test_dir("round-trip");
    let broker_dir = dir.join("broker");
    Broker::create(&broker_dir, DEFAULT_PARTITIONS).unwrap();
    let mut broker = Broker::open(&broker_dir, DEFAULT_PARTITIONS).unwrap();
    assert_eq!(broker.partitions(), DEFAULT_PARTITIONS);

    let all: Vec<Vec<u8>> = (0..40).map(record).collect();
    let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); DEFAULT_PARTITIONS as usize];
    for (i, batch) in all.chunks(3).enumerate() {
        let partition = i as u32 % DEFAULT_PARTITIONS;
        let appended = broker.write(partition, &refs(batch)).unwrap();
        let bytes: usize = batch.iter().map(|j| 9 + j.len() + 1).sum();
        assert_eq!(
            appended.end_offset_bytes - appended.first_offset_bytes,
            bytes as u64
        );
        expected[partition as usize].extend(batch.iter().cloned());
    }
    for partition in 0..DEFAULT_PARTITIONS {
        broker.sync(partition).unwrap();
    }

    for partition in 0..DEFAULT_PARTITIONS {
        let path = log_path(&broker_dir, partition);
        let records = read_all(&path);
        assert_eq!(
            jsons(&records),
            expected[partition as usize],
            "partition {partition} in append order"
        );
        let mut offset_bytes = 0;
        for r in &records {
            assert_eq!(r.offset_bytes, offset_bytes, "records are back to back");
            let mut line = Vec::new();
            encode_record(&r.json, &mut line);
            assert_eq!(r.next_offset_bytes, r.offset_bytes + line.len() as u64);
            offset_bytes = r.next_offset_bytes;
        }
        assert_eq!(offset_bytes, fs::metadata(&path).unwrap().len());

        // Reading in small steps from each returned offset gives the same records.
        let mut reader = LogReader::open(&path).unwrap();
        let (mut stepped, mut at) = (Vec::new(), 0);
        loop {
            let got = reader.read_from(at, 4).unwrap();
            assert!(got.len() <= 4, "max_records is a limit");
            let Some(last) = got.last() else { break };
            at = last.next_offset_bytes;
            stepped.extend(got);
        }
        assert_eq!(stepped, records);
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn partition_of_is_stable_and_spreads_keys() {
    // python3 -c 'import zlib; [print(k, zlib.crc32(k.encode()) % 4) for k in ["1","2","42","7"]]'
    assert_eq!(partition_of("1", 4), 3);
    assert_eq!(partition_of("2", 4), 1);
    assert_eq!(partition_of("42", 4), 0);
    assert_eq!(partition_of("7", 4), 2);
    assert_eq!(partition_of("42", 1), 0);

    let mut counts = [0u32; 4];
    for id in 1..=4000 {
        counts[partition_of(&id.to_string(), 4) as usize] += 1;
    }
    for (partition, count) in counts.iter().enumerate() {
        assert!(
            (800..=1200).contains(count),
            "partition {partition} got {count} of 4000 keys: {counts:?}"
        );
    }
}

#[test]
fn torn_tail_at_every_byte_is_truncated_on_recovery() {
    let dir = test_dir("torn-every-byte");
    let records: Vec<Vec<u8>> = (0..5).map(record).collect();
    let broker_dir = broker_with(&dir, &records);
    let full = fs::read(log_path(&broker_dir, 0)).unwrap();
    let written = scan(&log_path(&broker_dir, 0)).unwrap().records;
    let from_bytes = written[written.len() - 2].offset_bytes;
    let new_record = record(99);

    for len_bytes in from_bytes..=full.len() as u64 {
        let whole: Vec<&RawRecord> = written
            .iter()
            .filter(|r| r.next_offset_bytes <= len_bytes)
            .collect();
        let good_end_bytes = whole.last().map_or(0, |r| r.next_offset_bytes);
        let mut expected = jsons(&whole.iter().map(|r| (*r).clone()).collect::<Vec<_>>());
        expected.push(new_record.clone());

        // 1. `recover`, then an append.
        let case_dir = dir.join(format!("recover-{len_bytes}"));
        Broker::create(&case_dir, 1).unwrap();
        let path = log_path(&case_dir, 0);
        fs::write(&path, &full[..len_bytes as usize]).unwrap();
        let before = scan(&path).unwrap();
        assert_eq!(
            before.records.len(),
            whole.len(),
            "len {len_bytes}: readers see only whole records"
        );
        assert_eq!(before.torn_tail_bytes, len_bytes - good_end_bytes);
        assert_eq!(
            recover(&path).unwrap(),
            len_bytes - good_end_bytes,
            "len {len_bytes}: cut bytes"
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), good_end_bytes);
        assert_eq!(recover(&path).unwrap(), 0, "recovery is idempotent");
        let appended = Broker::open(&case_dir, 1)
            .unwrap()
            .append_durable(0, &[&new_record])
            .unwrap();
        assert_eq!(
            appended.first_offset_bytes, good_end_bytes,
            "len {len_bytes}: append lands after the whole records"
        );
        assert_eq!(
            jsons(&read_all(&path)),
            expected,
            "len {len_bytes}: old whole records + the new one"
        );

        // 2. A writer on its own: the tail check in `write` does the same.
        let (appended, path) = append_to_a_cut_log(
            &dir.join(format!("writer-{len_bytes}")),
            &full[..len_bytes as usize],
            &new_record,
        );
        assert_eq!(
            appended.first_offset_bytes, good_end_bytes,
            "len {len_bytes}: writer cut the torn tail"
        );
        let after = scan(&path).unwrap();
        assert_eq!(after.torn_tail_bytes, 0);
        assert_eq!(
            jsons(&after.records),
            expected,
            "len {len_bytes}: writer path"
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_crc_on_the_last_line_is_a_torn_tail() {
    // The last record is appended but never synced: past the durable end, so a bad CRC there
    // is what a power cut leaves, and recovery cuts it.
    let dir = test_dir("bad-crc-last");
    let records: Vec<Vec<u8>> = (0..4).map(record).collect();
    let broker_dir = broker_with(&dir, &records[..3]);
    Broker::open(&broker_dir, 1)
        .unwrap()
        .write(0, &[&records[3]])
        .unwrap();
    let path = log_path(&broker_dir, 0);
    let written = scan(&path).unwrap().records;
    let last = written.last().unwrap().clone();
    flip_byte(&path, last.offset_bytes + 20); // inside the JSON: the CRC no longer matches

    assert_eq!(
        jsons(&read_all(&path)),
        records[..3],
        "reader stops before the bad last line"
    );
    assert_eq!(
        scan(&path).unwrap().torn_tail_bytes,
        last.next_offset_bytes - last.offset_bytes
    );
    assert_eq!(
        recover(&path).unwrap(),
        last.next_offset_bytes - last.offset_bytes,
        "recovery cuts it"
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), last.offset_bytes);
    assert_eq!(jsons(&read_all(&path)), records[..3]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flipped_byte_mid_log_is_named_corruption() {
    let dir = test_dir("flipped-mid");
    let records: Vec<Vec<u8>> = (0..6).map(record).collect();
    let broker_dir = broker_with(&dir, &records);
    let path = log_path(&broker_dir, 0);
    let bad = scan(&path).unwrap().records[1].clone();
    let len_before = fs::metadata(&path).unwrap().len();
    flip_byte(&path, bad.offset_bytes + 15);

    expect_corrupt(
        LogReader::open(&path).unwrap().read_from(0, 100),
        &path,
        bad.offset_bytes,
    );
    expect_corrupt(
        LogReader::open(&path)
            .unwrap()
            .read_from(bad.offset_bytes, 1),
        &path,
        bad.offset_bytes,
    );
    expect_corrupt(scan(&path), &path, bad.offset_bytes);
    expect_corrupt(recover(&path), &path, bad.offset_bytes);
    let mut broker = Broker::open(&broker_dir, 1).unwrap();
    expect_corrupt(broker.write(0, &[&record(99)]), &path, bad.offset_bytes);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        len_before,
        "nothing cut, nothing appended"
    );

    // The record before the damage is still readable on its own.
    let first = LogReader::open(&path).unwrap().read_from(0, 1).unwrap();
    assert_eq!(jsons(&first), records[..1]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_line_before_a_torn_tail_is_corruption_not_two_torn_lines() {
    // A crash tears at most the last line. A bad line followed by a torn one cannot come from a
    // crash, so the writer must not "recover" both — also when the bad line is bigger than the
    // writer's first tail window, so that the window alone holds only its '\n'.
    for (case, last_json_bytes) in [("small", 60), ("beyond-window", 200 * 1024)] {
        let dir = test_dir(&format!("bad-then-torn-{case}"));
        let records = vec![
            record(0),
            record(1),
            record(2),
            big_record(3, last_json_bytes),
        ];
        let broker_dir = broker_with(&dir, &records);
        let path = log_path(&broker_dir, 0);
        let bad_bytes = scan(&path).unwrap().records[3].offset_bytes;
        flip_byte(&path, bad_bytes + 20);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(b"0badc0de {\"half");
        fs::write(&path, bytes).unwrap();

        expect_corrupt(recover(&path), &path, bad_bytes);
        expect_corrupt(
            Broker::open(&broker_dir, 1)
                .unwrap()
                .write(0, &[&record(9)]),
            &path,
            bad_bytes,
        );
        expect_corrupt(scan(&path), &path, bad_bytes);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn reader_waits_at_an_unfinished_line_and_resumes_when_it_completes() {
    let dir = test_dir("unfinished");
    let records: Vec<Vec<u8>> = (0..2).map(record).collect();
    let broker_dir = broker_with(&dir, &records);
    let path = log_path(&broker_dir, 0);
    let end_bytes = fs::metadata(&path).unwrap().len();
    let mut line = Vec::new();
    encode_record(&record(2), &mut line);

    // Half of a line is "still being written" to a reader: it stops before it, cuts nothing.
    let (head, rest) = line.split_at(line.len() / 2);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all_ok(head);
    let mut reader = LogReader::open(&path).unwrap();
    assert_eq!(reader.read_from(0, 10).unwrap().len(), 2);
    assert!(reader.read_from(end_bytes, 10).unwrap().is_empty());
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        end_bytes + head.len() as u64,
        "readers never truncate"
    );

    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all_ok(rest);
    let got = reader.read_from(end_bytes, 10).unwrap();
    assert_eq!(jsons(&got), vec![record(2)]);
    assert_eq!(got[0].offset_bytes, end_bytes);
    fs::remove_dir_all(&dir).unwrap();
}

/// `write_all` that panics: test files are small and local.
trait WriteAllOk {
    fn write_all_ok(self, bytes: &[u8]);
}

impl WriteAllOk for fs::File {
    fn write_all_ok(mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self, bytes).unwrap();
    }
}

#[test]
fn concurrent_appenders_keep_every_record_whole() {
    let dir = test_dir("concurrent");
    let broker_dir = dir.join("broker");
    Broker::create(&broker_dir, 2).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let broker_dir = broker_dir.clone();
            std::thread::spawn(move || {
                let mut broker = Broker::open(&broker_dir, 2).unwrap();
                for i in 0..500 {
                    let json =
                        format!(r#"{{"writer":{t},"i":{i},"pad":"{}"}}"#, "x".repeat(i % 37));
                    broker.write(1, &[json.as_bytes()]).unwrap();
                    if i % 100 == 99 {
                        broker.sync(1).unwrap();
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    let scanned = scan(&log_path(&broker_dir, 1)).unwrap();
    assert_eq!(scanned.torn_tail_bytes, 0);
    assert_eq!(scanned.records.len(), 2000, "every record whole");
    let mut next_i = [0usize; 4];
    for r in &scanned.records {
        let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
        let (t, i) = (
            v["writer"].as_u64().unwrap() as usize,
            v["i"].as_u64().unwrap() as usize,
        );
        assert_eq!(i, next_i[t], "writer {t}'s records in its own order");
        next_i[t] += 1;
    }
    assert!(scan(&log_path(&broker_dir, 0)).unwrap().records.is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn committed_offsets_read_back_and_leave_no_temp_file() {
    let dir = test_dir("offsets");
    let broker_dir = dir.join("broker");
    Broker::create(&broker_dir, 2).unwrap();
    assert_eq!(
        read_offset(&broker_dir, "consumer", 0).unwrap(),
        0,
        "never committed = 0"
    );

    commit_offset(&broker_dir, "consumer", 0, 1234).unwrap();
    commit_offset(&broker_dir, "consumer", 1, 77).unwrap();
    commit_offset(&broker_dir, "consumer", 0, 5678).unwrap();
    assert_eq!(
        read_offset(&broker_dir, "consumer", 0).unwrap(),
        5678,
        "the last commit wins"
    );
    assert_eq!(read_offset(&broker_dir, "consumer", 1).unwrap(), 77);
    assert_eq!(
        read_offset(&broker_dir, "other-group", 0).unwrap(),
        0,
        "groups are apart"
    );
    assert_eq!(
        offset_path(&broker_dir, "consumer", 0),
        broker_dir.join("consumer.p0.offset")
    );

    let mut names: Vec<String> = fs::read_dir(&broker_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "consumer.p0.offset",
            "consumer.p1.offset",
            "orders.p0.durable",
            "orders.p0.log",
            "orders.p1.durable",
            "orders.p1.log"
        ]
    );

    fs::write(offset_path(&broker_dir, "consumer", 1), "12x\n").unwrap();
    match read_offset(&broker_dir, "consumer", 1) {
        Err(Error::Corrupt { file, .. }) => {
            assert_eq!(file, offset_path(&broker_dir, "consumer", 1))
        }
        other => panic!("a garbled offset file must be named corruption, got {other:?}"),
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn open_on_a_missing_dir_or_partition_is_not_initialised() {
    let dir = test_dir("not-initialised");
    let broker_dir = dir.join("broker");
    match Broker::open(&broker_dir, 4) {
        Err(err @ Error::NotInitialised { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains(&broker_dir.display().to_string()),
                "names the broker dir: {text}"
            );
            assert!(
                text.contains(&format!("init --dir {}", dir.display())),
                "says how to fix it: {text}"
            );
        }
        other => panic!("expected NotInitialised, got {other:?}"),
    }
    Broker::create(&broker_dir, 4).unwrap();
    fs::remove_file(log_path(&broker_dir, 2)).unwrap();
    match Broker::open(&broker_dir, 4) {
        Err(Error::NotInitialised { reason, .. }) => {
            assert!(reason.contains("orders.p2.log"), "{reason}")
        }
        other => panic!("expected NotInitialised naming p2, got {other:?}"),
    }
    assert!(matches!(
        LogReader::open(&log_path(&broker_dir, 2)),
        Err(Error::NotInitialised { .. })
    ));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn create_is_idempotent_and_never_truncates() {
    let dir = test_dir("create-twice");
    let broker_dir = broker_with(&dir, &[record(1), record(2)]);
    let len_bytes = fs::metadata(log_path(&broker_dir, 0)).unwrap().len();
    Broker::create(&broker_dir, 1).unwrap();
    assert_eq!(
        fs::metadata(log_path(&broker_dir, 0)).unwrap().len(),
        len_bytes
    );
    assert_eq!(
        jsons(&read_all(&log_path(&broker_dir, 0))),
        vec![record(1), record(2)]
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_record_is_refused_as_input_and_nothing_is_written() {
    let dir = test_dir("oversized");
    let broker_dir = broker_with(&dir, &[]);
    let mut broker = Broker::open(&broker_dir, 1).unwrap();
    let huge = vec![b'x'; MAX_RECORD_BYTES + 1];
    assert!(matches!(
        broker.write(0, &[&record(1), &huge]),
        Err(Error::Input(_))
    ));
    assert_eq!(fs::metadata(log_path(&broker_dir, 0)).unwrap().len(), 0);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn read_offset_past_the_end_of_the_log_is_corruption() {
    let dir = test_dir("past-end");
    let broker_dir = broker_with(&dir, &[record(1)]);
    let path = log_path(&broker_dir, 0);
    let len_bytes = fs::metadata(&path).unwrap().len();
    assert!(
        LogReader::open(&path)
            .unwrap()
            .read_from(len_bytes, 10)
            .unwrap()
            .is_empty(),
        "at the end: nothing yet"
    );
    expect_corrupt(
        LogReader::open(&path)
            .unwrap()
            .read_from(len_bytes + 100, 10),
        &path,
        len_bytes + 100,
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_appends_after_other_writers_without_rereading_its_own_tail() {
    // Two brokers on one partition: each sees the other's appends (length changed) and checks
    // the tail; offsets they report tile the file exactly.
    let dir = test_dir("two-writers");
    let broker_dir = broker_with(&dir, &[]);
    let mut a = Broker::open(&broker_dir, 1).unwrap();
    let mut b = Broker::open(&broker_dir, 1).unwrap();
    let mut appended: Vec<Appended> = Vec::new();
    for i in 0..10_usize {
        let broker = if i.is_multiple_of(3) { &mut b } else { &mut a };
        appended.push(broker.write(0, &[&record(i), &record(i + 100)]).unwrap());
    }
    for pair in appended.windows(2) {
        assert_eq!(
            pair[0].end_offset_bytes, pair[1].first_offset_bytes,
            "batches are back to back"
        );
    }
    let scanned = scan(&log_path(&broker_dir, 0)).unwrap();
    assert_eq!(scanned.records.len(), 20);
    assert_eq!(
        appended.last().unwrap().end_offset_bytes,
        fs::metadata(log_path(&broker_dir, 0)).unwrap().len()
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// The child half of the torn-append story: runs only when the parent re-executes this test
/// binary with `BROKER_TEST_TORN_DIR` set (and `OUTBOX_CRASH` armed), otherwise does nothing.
#[test]
fn child_process_for_torn_append() {
    let Ok(broker_dir) = std::env::var("BROKER_TEST_TORN_DIR") else {
        return;
    };
    let mut broker = Broker::open(Path::new(&broker_dir), 1).unwrap();
    for batch in 0..3 {
        broker
            .append_durable(0, &[&record(batch * 2), &record(batch * 2 + 1)])
            .unwrap();
    }
    panic!("the crash point broker.torn_append@2 should have killed this process");
}

#[test]
fn writer_killed_mid_append_leaves_half_a_record_that_the_next_writer_cuts() {
    let dir = test_dir("torn-append-crash");
    let broker_dir = broker_with(&dir, &[]);
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_for_torn_append",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BROKER_TEST_TORN_DIR", &broker_dir)
        .env("OUTBOX_CRASH", "broker.torn_append@2")
        .env("OUTBOX_TRACE", "0")
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child dies by SIGKILL at the crash point: {status:?}"
    );

    let path = log_path(&broker_dir, 0);
    let torn = scan(&path).unwrap();
    assert_eq!(
        jsons(&torn.records),
        vec![record(0), record(1)],
        "the first batch is whole"
    );
    assert!(torn.torn_tail_bytes > 0, "half a record is on disk");
    assert!(
        !fs::read(&path).unwrap().ends_with(b"\n"),
        "the file ends mid-line"
    );

    let appended = Broker::open(&broker_dir, 1)
        .unwrap()
        .append_durable(0, &[&record(2), &record(3)])
        .unwrap();
    assert_eq!(
        appended.first_offset_bytes, torn.records[1].next_offset_bytes,
        "the torn half was cut"
    );
    let after = scan(&path).unwrap();
    assert_eq!(after.torn_tail_bytes, 0);
    assert_eq!(
        jsons(&after.records),
        (0..4).map(record).collect::<Vec<_>>()
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broker_module_paths_are_the_contract() {
    assert_eq!(
        log_path(Path::new("/d/broker"), 3),
        Path::new("/d/broker/orders.p3.log")
    );
    assert_eq!(broker::DEFAULT_PARTITIONS, 4);
}

/// A record of exactly `json_bytes` bytes of JSON.
fn big_record(i: usize, json_bytes: usize) -> Vec<u8> {
    let head = format!(r#"{{"event_id":"big{i}","pad":""#);
    let pad = json_bytes - head.len() - 2;
    let mut json = head.into_bytes();
    json.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, pad));
    json.extend_from_slice(b"\"}");
    assert_eq!(json.len(), json_bytes);
    json
}

#[test]
fn torn_tail_behind_a_long_log_and_huge_records_is_cut_exactly() {
    // Past the writer's first 4 KiB tail window and the readers' 256 KiB chunks: many small
    // records, then records up to the 1 MiB limit, torn at the interesting bytes of the last six.
    let dir = test_dir("torn-long");
    let mut records: Vec<Vec<u8>> = (0..400).map(record).collect();
    records.push(big_record(1, 300 * 1024));
    records.push(big_record(2, MAX_RECORD_BYTES));
    records.push(record(500));
    records.push(big_record(3, 200 * 1024));
    // Worst case for the tail window: two of the longest records, the last one torn.
    records.push(big_record(4, MAX_RECORD_BYTES));
    records.push(big_record(5, MAX_RECORD_BYTES));
    let broker_dir = broker_with(&dir, &records);
    let path = log_path(&broker_dir, 0);
    let full = fs::read(&path).unwrap();
    let written = scan(&path).unwrap().records;
    assert_eq!(
        jsons(&written),
        records,
        "huge records round-trip across read chunks"
    );

    let mut cut_points = Vec::new();
    for r in &written[written.len() - 6..] {
        let (start, end) = (r.offset_bytes, r.next_offset_bytes);
        cut_points.extend([
            start,
            start + 1,
            start + 8,
            start + 9,
            start + 10,
            (start + end) / 2,
            end - 2,
            end - 1,
            end,
        ]);
    }
    let new_record = record(999);
    for len_bytes in cut_points {
        let whole = written
            .iter()
            .filter(|r| r.next_offset_bytes <= len_bytes)
            .count();
        let good_end_bytes = written[..whole].last().map_or(0, |r| r.next_offset_bytes);
        let case_dir = dir.join(format!("case-{len_bytes}"));
        let (appended, case_path) =
            append_to_a_cut_log(&case_dir, &full[..len_bytes as usize], &new_record);
        assert_eq!(
            appended.first_offset_bytes, good_end_bytes,
            "len {len_bytes}"
        );
        let after = scan(&case_path).unwrap();
        assert_eq!(after.records.len(), whole + 1, "len {len_bytes}");
        assert_eq!(after.records.last().unwrap().json, new_record);
        fs::remove_dir_all(&case_dir).unwrap();
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn line_longer_than_any_record_is_corruption() {
    let dir = test_dir("overlong");
    let broker_dir = broker_with(&dir, &[record(1)]);
    let path = log_path(&broker_dir, 0);
    let start_bytes = fs::metadata(&path).unwrap().len();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend(std::iter::repeat_n(b'z', MAX_RECORD_BYTES + 100)); // no '\n' ever comes
    fs::write(&path, bytes).unwrap();

    expect_corrupt(
        LogReader::open(&path).unwrap().read_from(0, 10),
        &path,
        start_bytes,
    );
    expect_corrupt(scan(&path), &path, start_bytes);
    // Past the durable end it is a bad un-synced tail: recovery cuts it.
    assert_eq!(recover(&path).unwrap(), MAX_RECORD_BYTES as u64 + 100);
    assert_eq!(fs::metadata(&path).unwrap().len(), start_bytes);

    // Ended by a '\n' and covered by the durable end, the same line is corruption.
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend(std::iter::repeat_n(b'z', MAX_RECORD_BYTES + 100));
    bytes.push(b'\n');
    fs::write(&path, &bytes).unwrap();
    DurableEnd::open(&broker_dir, 0)
        .unwrap()
        .rewind_to(bytes.len() as u64)
        .unwrap();
    expect_corrupt(recover(&path), &path, start_bytes);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flipped_byte_far_from_the_tail_is_found_by_readers_not_by_the_hot_path_writer() {
    // The writer's tail check reads the last two lines, not the whole partition: that is what
    // keeps appends cheap. Damage further back is the readers' (and `scan`'s) to report — and
    // they do, by file and offset, so it is never skipped. This pins that cost model.
    let dir = test_dir("flipped-far");
    let records: Vec<Vec<u8>> = (0..2000).map(record).collect();
    let broker_dir = broker_with(&dir, &records);
    let path = log_path(&broker_dir, 0);
    let bad = scan(&path).unwrap().records[3].clone();
    flip_byte(&path, bad.offset_bytes + 15);

    Broker::open(&broker_dir, 1)
        .unwrap()
        .write(0, &[&record(1)])
        .unwrap();
    expect_corrupt(scan(&path), &path, bad.offset_bytes);
    expect_corrupt(
        LogReader::open(&path).unwrap().read_from(0, usize::MAX),
        &path,
        bad.offset_bytes,
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flipped_byte_in_the_second_to_last_record_stops_the_writer() {
    // The writer verifies the last two lines: a bad one with a line after it (good, or itself
    // bad) is not a torn tail, even in a log far longer than the tail window.
    for also_tear_the_last in [false, true] {
        let dir = test_dir(&format!("flipped-second-to-last-{also_tear_the_last}"));
        let records: Vec<Vec<u8>> = (0..2000).map(record).collect();
        let broker_dir = broker_with(&dir, &records);
        let path = log_path(&broker_dir, 0);
        let written = scan(&path).unwrap().records;
        let bad = written[written.len() - 2].clone();
        flip_byte(&path, bad.offset_bytes + 15);
        if also_tear_the_last {
            flip_byte(&path, written.last().unwrap().offset_bytes + 15);
        }
        let len_bytes = fs::metadata(&path).unwrap().len();

        expect_corrupt(
            Broker::open(&broker_dir, 1)
                .unwrap()
                .write(0, &[&record(1)]),
            &path,
            bad.offset_bytes,
        );
        expect_corrupt(recover(&path), &path, bad.offset_bytes);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            len_bytes,
            "nothing cut, nothing appended"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// A one-partition log holding exactly `prefix` (a log cut short somewhere), then one writer's
/// append of `record`: the writer must cut any torn tail first. Returns the append and the path.
fn append_to_a_cut_log(case_dir: &Path, prefix: &[u8], record: &[u8]) -> (Appended, PathBuf) {
    Broker::create(case_dir, 1).unwrap();
    let path = log_path(case_dir, 0);
    fs::write(&path, prefix).unwrap();
    let appended = Broker::open(case_dir, 1)
        .unwrap()
        .write(0, &[record])
        .unwrap();
    (appended, path)
}

#[test]
fn zeroed_page_past_the_durable_end_is_cut_at_its_first_byte_with_everything_after_it() {
    // A synced prefix, then a 40-record batch appended without sync; the "power cut" zeroes a
    // page of the batch and cuts its last page short. Recovery must cut at the first zero byte
    // — not just the torn last line — so nobody ever appends after a hole.
    let dir = test_dir("zeroed-page");
    let synced: Vec<Vec<u8>> = (0..10).map(record).collect();
    let broker_dir = broker_with(&dir, &synced);
    let path = log_path(&broker_dir, 0);
    let durable_end_bytes = fs::metadata(&path).unwrap().len();
    let batch: Vec<Vec<u8>> = (100..140).map(|i| big_record(i, 200)).collect();
    Broker::open(&broker_dir, 1)
        .unwrap()
        .write(0, &refs(&batch))
        .unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let hole_bytes = durable_end_bytes + 1000;
    bytes[hole_bytes as usize..hole_bytes as usize + 4096].fill(0);
    bytes.truncate(bytes.len() - 300);
    fs::write(&path, &bytes).unwrap();

    // Readers up to the durable end see exactly the synced records; past it they never look.
    let durable = DurableEnd::open(&broker_dir, 0).unwrap();
    assert_eq!(durable.read().unwrap(), durable_end_bytes);
    let seen = LogReader::open(&path)
        .unwrap()
        .read_durable(0, usize::MAX, durable_end_bytes)
        .unwrap();
    assert_eq!(jsons(&seen), synced);

    let first_bad_bytes = scan(&path)
        .map(|_| unreachable!("a hole with data after it reads as corruption"))
        .unwrap_or_else(|e| match e {
            Error::Corrupt { offset_bytes, .. } => offset_bytes,
            other => panic!("{other:?}"),
        });
    assert!(first_bad_bytes >= durable_end_bytes && first_bad_bytes <= hole_bytes);
    let appended = Broker::open(&broker_dir, 1)
        .unwrap()
        .append_durable(0, &[&record(999)])
        .unwrap();
    assert_eq!(
        appended.first_offset_bytes, first_bad_bytes,
        "cut at the start of the line the hole begins in"
    );
    let after = scan(&path).unwrap();
    assert_eq!(after.torn_tail_bytes, 0);
    assert_eq!(after.records.last().unwrap().json, record(999));
    assert_eq!(
        durable.read().unwrap(),
        appended.end_offset_bytes,
        "published after the sync"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn log_shorter_than_its_durable_end_is_corruption_not_a_torn_tail() {
    let dir = test_dir("shorter-than-durable");
    let records: Vec<Vec<u8>> = (0..4).map(record).collect();
    let broker_dir = broker_with(&dir, &records);
    let path = log_path(&broker_dir, 0);
    let len_bytes = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len_bytes - 10)
        .unwrap();
    expect_corrupt(recover(&path), &path, len_bytes - 10);
    expect_corrupt(
        Broker::open(&broker_dir, 1)
            .unwrap()
            .write(0, &[&record(9)]),
        &path,
        len_bytes - 10,
    );
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        len_bytes - 10,
        "nothing cut or appended"
    );
    fs::remove_dir_all(&dir).unwrap();
}
