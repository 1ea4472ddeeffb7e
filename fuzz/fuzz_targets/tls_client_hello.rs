//! TLS ClientHello parsing of a process's first bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = aiwatch::detect::parsers::tls::parse_client_hello(data);
});
