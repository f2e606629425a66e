#![no_main]
// cargo fuzz run wal_records fuzz/corpus/wal_records  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_storage::fuzzing::wal_records(data));
