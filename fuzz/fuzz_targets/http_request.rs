//! HTTP request heads (CONNECT targets, Host, absolute URIs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(r) = aiwatch::detect::parsers::http::parse_request(data) {
        let _ = (r.connect_target(), r.absolute_host());
    }
});
