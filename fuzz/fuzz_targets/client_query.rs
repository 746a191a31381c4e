#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsxdp_fuzz::client_query(data));
