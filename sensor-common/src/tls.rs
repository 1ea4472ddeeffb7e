//! TLS plaintext: what a tracked process hands OpenSSL's `SSL_write`/`SSL_write_ex` (uprobes),
//! copied for the prompt-marker scan when it is an HTTP request with a body.

use crate::{EventHeader, DATA_LEN};

u32_enum! {
    /// Which OpenSSL function was called, sent as `u32` in [`TlsDataEvent::func`].
    pub enum TlsFunc {
        SslWrite = 1 => "SSL_write",
        SslWriteEx = 2 => "SSL_write_ex",
    }
}

/// One chunk (at most [`DATA_LEN`] bytes) of the plaintext of an `SSL_write`: with
/// [`flags::CONTENT_START`](crate::flags::CONTENT_START) in the header, the call's first.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TlsDataEvent {
    pub hdr: EventHeader,
    /// The `SSL *` the call wrote to: one TLS connection of the process.
    pub ssl: u64,
    /// Bytes the call was given.
    pub bytes: u64,
    /// Bytes of `data` that are valid.
    pub len: u32,
    /// [`TlsFunc`] as `u32`.
    pub func: u32,
    pub data: [u8; DATA_LEN],
}

/// Key of the `TLS_STREAMS` map: one `SSL *` of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct TlsKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ssl: u64,
}

const _: () = assert!(core::mem::size_of::<TlsDataEvent>() == 56 + 24 + DATA_LEN);
const _: () = assert!(core::mem::size_of::<TlsKey>() == 16);
