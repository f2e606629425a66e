#![no_main]
// cargo fuzz run gat1400 fuzz/corpus/gat1400  (see README: Fuzzing)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sightline_server::fuzzing::gat1400(data));
