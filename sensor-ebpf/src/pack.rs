//! Packing a user array of strings (an exec's argv or environment) into a record.

use aya_ebpf::helpers::{bpf_probe_read_user, generated};
use sensor_common::{flags, Stat, ARG_LEN};

use crate::helpers::bump;

/// What [`strings`] packed.
pub struct Packed {
    /// Strings packed.
    pub count: u32,
    /// Bytes used, each string NUL-terminated.
    pub len: u32,
}

/// Packs the strings of the NULL-terminated user array `list` into `buf`, each cut at
/// [`ARG_LEN`] bytes, at most `MAX` of them, while fewer than `N - ARG_LEN` bytes are used.
///
/// One policy for every list, flagged in `hdr_flags` (the record's header flags): a failed read
/// ends the list (`READ_FAILED`, counted as `Stat::ReadFailed`); strings left out, for want of
/// room or beyond `MAX`, are `ARGV_TRUNCATED` and counted as `Stat::ArgvTruncated`; a string that
/// filled its `ARG_LEN` bytes is flagged `ARGV_TRUNCATED` too, without counting.
///
/// `hdr_flags` is in the record (map memory), not on the stack: the verifier does not track its
/// value, so paths that differ only in flags do not multiply the states it explores. For the
/// same reason the loop branches on flags nowhere, and counts only where the list ends.
#[inline(always)]
pub fn strings<const MAX: usize, const N: usize>(
    buf: &mut [u8; N],
    list: *const *const u8,
    hdr_flags: &mut u32,
) -> Packed {
    // Offsets are masked into the first `room` bytes and `buf` has ARG_LEN bytes past them, so
    // the verifier sees every string read stay inside `buf`.
    const { assert!((N - ARG_LEN).is_power_of_two()) };
    // A read returns at most ARG_LEN (the NUL included), so `n & ARG_LEN` is ARG_LEN exactly for
    // a string that filled its room; dividing it down gives the flag without a branch.
    const { assert!(ARG_LEN.is_power_of_two() && ARG_LEN as u32 > flags::ARGV_TRUNCATED) };
    const FILLED_TO_FLAG: u32 = ARG_LEN as u32 / flags::ARGV_TRUNCATED;
    let room = N - ARG_LEN;
    let mut off = 0usize;
    let mut count = 0u32;
    let mut i = 0usize;
    while i < MAX {
        // SAFETY: the i-th pointer of the user's array; the helper checks it.
        let s = match unsafe { bpf_probe_read_user(list.wrapping_add(i)) } {
            Ok(s) => s,
            Err(_) => {
                *hdr_flags |= flags::READ_FAILED;
                bump(Stat::ReadFailed);
                break;
            }
        };
        if s.is_null() {
            break;
        }
        if off >= room {
            *hdr_flags |= flags::ARGV_TRUNCATED;
            bump(Stat::ArgvTruncated);
            break;
        }
        let dst = buf.as_mut_ptr().wrapping_add(off & (room - 1));
        // SAFETY: dst has ARG_LEN bytes of room (see above); src is checked by the helper.
        let n = unsafe { generated::bpf_probe_read_user_str(dst as *mut _, ARG_LEN as u32, s as *const _) };
        if n <= 0 {
            *hdr_flags |= flags::READ_FAILED;
            bump(Stat::ReadFailed);
            break;
        }
        *hdr_flags |= (n as u32 & ARG_LEN as u32) / FILLED_TO_FLAG;
        off += n as usize;
        count += 1;
        i += 1;
    }
    if i == MAX {
        // SAFETY: the pointer after the last one read; the helper checks it.
        if let Ok(s) = unsafe { bpf_probe_read_user(list.wrapping_add(MAX)) } {
            if !s.is_null() {
                *hdr_flags |= flags::ARGV_TRUNCATED;
                bump(Stat::ArgvTruncated);
            }
        }
    }
    Packed { count, len: if off > N { N as u32 } else { off as u32 } }
}
