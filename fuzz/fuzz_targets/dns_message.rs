//! DNS messages, UDP and TCP framing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for tcp in [false, true] {
        if let Ok(m) = aiwatch::detect::parsers::dns::parse(data, tcp) {
            let _ = (m.addresses(), m.min_ttl());
        }
    }
});
