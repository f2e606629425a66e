#![no_main]
// cargo fuzz run ingest_json fuzz/corpus/ingest_json  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_server::fuzzing::ingest_json(data));
