//! Environment events: the environment an exec starts with, and variable reads through libc.

use crate::{EventHeader, ARG_LEN};

/// Bytes of packed `NAME=value` strings kept per exec (a power of two, like
/// [`ARGV_LEN`](crate::ARGV_LEN)).
pub const ENV_LEN: usize = 8192;
/// Environment entries read at most per exec.
pub const MAX_ENV: usize = 160;

/// The environment a tracked or candidate exec starts with, sent just before its
/// [`ExecEvent`](crate::ExecEvent). User space keeps the watched names and redacted values only.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ExecEnvEvent {
    pub hdr: EventHeader,
    /// Entries packed in `data`.
    pub count: u32,
    /// Bytes used in `data` (each entry NUL-terminated).
    pub len: u32,
    /// `NAME=value` strings, each cut at [`ARG_LEN`] bytes; room past `ENV_LEN` as for argv.
    pub data: [u8; ENV_LEN + ARG_LEN],
}

/// Bytes of a variable name copied at most.
pub const ENV_NAME_LEN: usize = 128;

u32_enum! {
    /// Which libc function read a variable, sent as `u32` in [`EnvReadEvent::func`].
    pub enum EnvFunc {
        Getenv = 1 => "getenv",
        SecureGetenv = 2 => "secure_getenv",
    }
}

/// A tracked process asked libc for an environment variable (uprobe on the entry of `getenv`
/// and `secure_getenv`). Neither the value nor whether it was set is known here: user space
/// tells that from the process's environment.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct EnvReadEvent {
    pub hdr: EventHeader,
    /// [`EnvFunc`] as `u32`.
    pub func: u32,
    /// Reads of this name by this process since the last record for it, not sent.
    pub repeats: u32,
    pub name_len: u32,
    pub _pad: u32,
    pub name: [u8; ENV_NAME_LEN],
}

const _: () = assert!(ENV_LEN.is_power_of_two());
const _: () = assert!(core::mem::size_of::<ExecEnvEvent>() == 56 + 8 + ENV_LEN + ARG_LEN);
const _: () = assert!(core::mem::size_of::<EnvReadEvent>() == 56 + 16 + ENV_NAME_LEN);
