//! Offsets of kernel struct members, read from the kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Rust eBPF programs have no CO-RE relocations, so a program that must read a kernel struct
//! gets the member's offset from the loader, which finds it here and writes it into the
//! object's read-only data. aya parses BTF but keeps struct members private, so this walks the
//! type section itself: only the records' sizes are needed to step from one type to the next.

use anyhow::{bail, Context as _};

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

// Kinds (`BTF_KIND_*`) whose records carry data after the common 12 bytes.
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;
const KIND_MAX: u32 = 19;

/// A parsed BTF blob: its type section and string section.
#[derive(Debug)]
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    /// Checks the header and finds the sections (little-endian hosts only, as this sensor is).
    pub fn parse(data: &'a [u8]) -> anyhow::Result<Self> {
        if data.len() < HEADER_LEN {
            bail!("BTF is {} bytes, shorter than its header", data.len());
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != MAGIC {
            bail!("BTF magic is {magic:#x}, expected {MAGIC:#x} (little-endian)");
        }
        let field = |at| u32_at(data, at).map(|v| v as usize).context("BTF header cut short");
        let hdr_len = field(4)?;
        let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
        let section = |off: usize, len: usize, what: &str| {
            hdr_len
                .checked_add(off)
                .and_then(|start| Some(start..start.checked_add(len)?))
                .and_then(|r| data.get(r))
                .with_context(|| {
                    format!("BTF {what} section ({off}+{len}) is outside the {} bytes", data.len())
                })
        };
        Ok(Self {
            types: section(type_off, type_len, "type")?,
            strings: section(str_off, str_len, "string")?,
        })
    }

    fn name(&self, off: u32) -> &'a [u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())]
    }

    /// Byte offset of member `member` of `struct name` (the first struct of that name that has
    /// it). Bitfield members and members of nested anonymous structs are not looked into.
    pub fn member_offset(&self, name: &str, member: &str) -> anyhow::Result<u32> {
        let mut at = 0usize;
        let mut found_struct = false;
        while at < self.types.len() {
            let name_off = u32_at(self.types, at).context("BTF type record cut short")?;
            let info = u32_at(self.types, at + 4).context("BTF type record cut short")?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                k if k <= KIND_MAX => 0,
                k => bail!("unknown BTF kind {k} at type-section offset {at}"),
            };
            let members = at + 12;
            if kind == KIND_STRUCT && self.name(name_off) == name.as_bytes() {
                found_struct = true;
                for i in 0..vlen {
                    let m = members + 12 * i;
                    let m_name = u32_at(self.types, m).context("BTF member cut short")?;
                    let m_off = u32_at(self.types, m + 8).context("BTF member cut short")?;
                    if self.name(m_name) != member.as_bytes() {
                        continue;
                    }
                    // With kind_flag the low 24 bits are the offset and the top 8 a bitfield size.
                    let (bits, bitfield) =
                        if kind_flag { (m_off & 0xff_ffff, m_off >> 24) } else { (m_off, 0) };
                    if bitfield != 0 || bits % 8 != 0 {
                        bail!("struct {name} member {member} is a bitfield");
                    }
                    return Ok(bits / 8);
                }
            }
            at = members.checked_add(extra).context("BTF type record too long")?;
        }
        if found_struct {
            bail!("struct {name} has no member {member} in the kernel's BTF")
        }
        bail!("struct {name} is not in the kernel's BTF")
    }
}

/// Where the exit program finds a thread group's live-thread count (see
/// `process_enter_sched_exit_live`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupOffsets {
    /// `task_struct.signal`.
    pub task_signal: u32,
    /// `signal_struct.live`.
    pub signal_live: u32,
}

impl GroupOffsets {
    pub fn find(btf: &Btf<'_>) -> anyhow::Result<Self> {
        Ok(Self {
            task_signal: btf.member_offset("task_struct", "signal")?,
            signal_live: btf.member_offset("signal_struct", "live")?,
        })
    }

    /// From the running kernel's BTF.
    pub fn from_sys_fs() -> anyhow::Result<Self> {
        with_sys_fs(Self::find)
    }
}

/// Where `current->thread_info.status` is (see `compat_enter_syscall`): `thread_info` is the
/// first member of `task_struct` on x86 (`CONFIG_THREAD_INFO_IN_TASK`), but the offset is taken
/// from BTF all the same; `status` is at 8 on 5.10 and at 16 once `syscall_work` came (5.11).
pub fn task_status_offset(btf: &Btf<'_>) -> anyhow::Result<u32> {
    let info = btf.member_offset("task_struct", "thread_info")?;
    let status = btf.member_offset("thread_info", "status")?;
    info.checked_add(status).context("task_struct.thread_info.status offset overflows")
}

/// The group offsets and the status offset from one read of the running kernel's BTF, each
/// with why it is unknown.
pub fn kernel_offsets() -> (Result<GroupOffsets, String>, Result<u32, String>) {
    let both = with_sys_fs(|btf| Ok((GroupOffsets::find(btf), task_status_offset(btf))));
    let text = |e: anyhow::Error| format!("{e:#}");
    match both {
        Ok((group, status)) => (group.map_err(text), status.map_err(text)),
        Err(e) => {
            let e = text(e);
            (Err(e.clone()), Err(e))
        }
    }
}

/// Runs `f` on the running kernel's BTF.
pub fn with_sys_fs<T>(f: impl FnOnce(&Btf<'_>) -> anyhow::Result<T>) -> anyhow::Result<T> {
    const PATH: &str = "/sys/kernel/btf/vmlinux";
    let data = std::fs::read(PATH).with_context(|| format!("reading {PATH}"))?;
    f(&Btf::parse(&data).with_context(|| format!("parsing {PATH}"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with an int and the two structs (the second with a kind_flag member).
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0task_struct\0pid\0signal\0signal_struct\0live\0flags\0".to_vec();
        let s = |name: &str| {
            let needle = format!("\0{name}\0");
            strings.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap() as u32 + 1
        };
        let mut types = Vec::new();
        let mut put = |words: &[u32]| words.iter().for_each(|w| types.extend_from_slice(&w.to_le_bytes()));
        put(&[s("int"), KIND_INT << 24, 4, 32]); // [1] int
        put(&[s("task_struct"), (KIND_STRUCT << 24) | 2, 64]); // [2]
        put(&[s("pid"), 1, 0]);
        put(&[s("signal"), 1, 8 * 40]);
        put(&[s("signal_struct"), (1 << 31) | (KIND_STRUCT << 24) | 2, 32]); // [3], kind_flag
        put(&[s("flags"), 1, (3 << 24) | 4]); // a 3-bit bitfield at bit 4
        put(&[s("live"), 1, 8 * 12]);
        let mut out = Vec::new();
        for w in [HEADER_LEN as u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.splice(0..0, [0x9f, 0xeb, 1, 0]);
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn finds_member_offsets_and_names_what_is_missing() {
        let data = blob();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(GroupOffsets::find(&btf).unwrap(), GroupOffsets { task_signal: 40, signal_live: 12 });
        assert!(btf.member_offset("task_struct", "nope").unwrap_err().to_string().contains("no member nope"));
        assert!(btf.member_offset("mm_struct", "x").unwrap_err().to_string().contains("not in the kernel"));
        assert!(btf.member_offset("signal_struct", "flags").unwrap_err().to_string().contains("bitfield"));
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        let data = blob();
        for cut in 0..data.len() {
            if let Ok(btf) = Btf::parse(&data[..cut]) {
                let _ = btf.member_offset("signal_struct", "live");
            }
        }
        let mut bad = data.clone();
        bad[0] = 0;
        assert!(Btf::parse(&bad).unwrap_err().to_string().contains("magic"));
        let mut huge = data;
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Btf::parse(&huge).is_err());
    }

    #[test]
    fn this_kernels_btf_has_the_group_offsets() {
        // Every kernel this sensor supports has BTF; the offsets vary by build.
        let o = GroupOffsets::from_sys_fs().unwrap();
        assert!(o.task_signal > 0 && o.signal_live > 0, "{o:?}");
        // x86: thread_info first, then flags (and syscall_work from 5.11) before status.
        let status = with_sys_fs(task_status_offset).unwrap();
        assert!(status == 8 || status == 16, "{status}");
    }
}
