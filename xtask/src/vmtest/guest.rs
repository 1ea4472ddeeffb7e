//! Booting a kernel under qemu: a busybox initramfs (cached per kernel) whose init mounts the
//! host's `/` read-only with throw-away overlays, runs the run dir's `run.sh` as root and
//! records its exit status; qemu (TCG) and virtiofsd are bounded in time and killed by PID.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::kernels::Kernel;
use crate::{display, setup::VIRTIOFSD, sh};

/// PID 1 of a guest. The kernel command line names the transport of the host's `/`, the run
/// dir (the only host directory the guest can write, at the same path as on the host), the
/// kernel's modules directory (also at its host path) and the workspace (a throw-away overlay,
/// like /tmp, /etc, /var, /root, /home).
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do insmod /lib/modules/$m 2>/dev/null; done
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
SHARE=virtiofs; RUN=; MODS=; WORK=
for a in $(cat /proc/cmdline); do
  case "$a" in
    vmtest.share=*) SHARE=${a#*=};; vmtest.run=*) RUN=${a#*=};; vmtest.modules=*) MODS=${a#*=};;
    vmtest.work=*) WORK=${a#*=};;
  esac
done
die() { echo "vmtest-init: $*"; poweroff -f; }
N=/newroot
if [ "$SHARE" = 9p ]; then
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot $N || die "cannot mount / (9p)"
  RWMNT="mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 runtag"
else
  mount -t virtiofs -o ro hostroot $N || die "cannot mount / (virtiofs)"
  RWMNT="mount -t virtiofs runtag"
fi
mount -t proc proc $N/proc; mount -t sysfs sys $N/sys; mount -t devtmpfs dev $N/dev
mkdir -p /upper; mount -t tmpfs -o mode=755 tmpfs /upper
for d in tmp var etc root home boot; do
  [ -d $N/$d ] || continue
  mkdir -p /upper/$d/u /upper/$d/w
  mount -t overlay -o lowerdir=$N/$d,upperdir=/upper/$d/u,workdir=/upper/$d/w overlay $N/$d 2>/dev/null \
    || mount -t tmpfs tmpfs $N/$d
done
chmod 1777 $N/tmp
# The checkout as well: tests that run cargo write its locks and fingerprints there.
if [ -n "$WORK" ]; then
  mkdir -p /upper/work/u /upper/work/w
  mount -t overlay -o lowerdir=$N$WORK,upperdir=/upper/work/u,workdir=/upper/work/w overlay $N$WORK \
    || echo "vmtest-init: $WORK stays read-only"
fi
mount -t tmpfs -o mode=755 tmpfs $N/run
mkdir -p $N/dev/pts $N/dev/shm; mount -t devpts devpts $N/dev/pts; mount -t tmpfs tmpfs $N/dev/shm
mount -t tracefs tracefs $N/sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs $N/sys/kernel/debug 2>/dev/null
mount -t bpf bpf $N/sys/fs/bpf 2>/dev/null
mount -t securityfs securityfs $N/sys/kernel/security 2>/dev/null
mount -t cgroup2 cgroup2 $N/sys/fs/cgroup 2>/dev/null
$RWMNT $N$RUN || die "cannot mount the run dir $RUN"
# The kernel's module autoloader runs /sbin/modprobe in the initramfs: forward it to the host's
# kmod in the chroot, pointed at this kernel's modules (MODS is <base>/lib/modules/<release>).
if [ -n "$MODS" ]; then
  printf '#!/bin/sh\nexec /bin/chroot %s /sbin/modprobe -d %s "$@"\n' $N "${MODS%/lib/modules/*}" > /sbin/modprobe
  chmod 755 /sbin/modprobe
fi
[ -f $N$RUN/kconfig ] && cp $N$RUN/kconfig $N/boot/config-$(uname -r)
hostname -F $N/etc/hostname 2>/dev/null || hostname vmtest
# The second serial port carries the tests' output to the host as it is: no \r\n translation.
stty -F /dev/ttyS1 raw -echo 2>/dev/null
echo "vmtest-init: up after $(cut -d' ' -f1 /proc/uptime) s"
chroot $N /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 VMTEST_RUN=$RUN \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/sh $RUN/run.sh </dev/null >/dev/ttyS1 2>&1
rc=$?
echo "vmtest-init: run.sh exited $rc after $(cut -d' ' -f1 /proc/uptime) s"
echo $rc > $N$RUN/rc
sync
umount $N$RUN 2>/dev/null
poweroff -f
"#;

const MEMORY: &str = "3G";
const CPUS: &str = "2";

/// How the host's `/` reaches the guest: 9p where the kernel has it (generic flavour), else
/// virtiofs (Debian's cloud flavour has no 9p).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    NineP,
    Virtiofs,
}

impl Transport {
    pub fn of(k: &Kernel) -> Self {
        let config = k.config.as_ref().and_then(|c| std::fs::read_to_string(c).ok()).unwrap_or_default();
        let built = config.lines().any(|l| l == "CONFIG_9P_FS=y" || l == "CONFIG_9P_FS=m");
        if built {
            Transport::NineP
        } else {
            Transport::Virtiofs
        }
    }

    fn name(self) -> &'static str {
        match self {
            Transport::NineP => "9p",
            Transport::Virtiofs => "virtiofs",
        }
    }

    fn modules(self) -> &'static [&'static str] {
        match self {
            Transport::NineP => &["9p", "9pnet_virtio", "virtio_pci", "overlay"],
            Transport::Virtiofs => &["virtiofs", "virtio_pci", "overlay"],
        }
    }
}

/// Builds (or reuses) the kernel's initramfs: static busybox, INIT, and the modules needed to
/// mount the host's `/`, uncompressed, in load order.
pub fn initramfs(k: &Kernel, t: Transport) -> anyhow::Result<PathBuf> {
    let dir = crate::root().join("target/vmtest/initramfs").join(format!("{}-{}", k.release, t.name()));
    let out = dir.join("initramfs.cpio");
    let base = k.modules_base();
    if !k.modules.join("modules.dep").exists() {
        sh(Command::new("depmod").arg("-b").arg(&base).arg(&k.release))?;
    }
    let modules = module_files(k, &base, t)?;
    // Rebuilt when INIT or the module set changes.
    let stamp = format!(
        "{INIT}\n{}\n",
        modules.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join("\n")
    );
    if out.exists() && std::fs::read_to_string(dir.join("stamp")).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(out);
    }
    eprintln!("xtask: vmtest: building the initramfs for {} ({})", k.release, t.name());
    let root = dir.join("root");
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    for d in ["bin", "sbin", "dev", "proc", "sys", "newroot", "lib/modules"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    // busybox-static (setup::Step::VmPackages installs it): nothing else is in the initramfs.
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).context("copying /bin/busybox")?;
    let mut list = String::new();
    for m in &modules {
        let name = decompress(m, &root.join("lib/modules"))?;
        list.push_str(&name);
        list.push('\n');
    }
    std::fs::write(root.join("modules.list"), list)?;
    write_executable(&root.join("init"), INIT)?;
    cpio(&root, &out)?;
    std::fs::write(dir.join("stamp"), stamp)?;
    Ok(out)
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The module files (with their dependencies, in load order) the transport needs; built-in
/// ones need no file.
fn module_files(k: &Kernel, base: &Path, t: Transport) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for m in t.modules() {
        let mut c = Command::new("modprobe");
        c.arg("-d").arg(base).args(["-S", &k.release, "--show-depends", m]);
        let out = c.output().with_context(|| format!("running {}", display(&c)))?;
        if !out.status.success() {
            bail!("{} has no module {m}: {}", k.release, String::from_utf8_lossy(&out.stderr).trim());
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(path) = line.strip_prefix("insmod ").and_then(|r| r.split_whitespace().next()) {
                let path = PathBuf::from(path);
                if !files.contains(&path) {
                    files.push(path);
                }
            }
        }
    }
    Ok(files)
}

/// Copies a (possibly xz/zstd/gzip compressed) module into `dir` uncompressed, as busybox's
/// insmod needs; returns its file name.
fn decompress(module: &Path, dir: &Path) -> anyhow::Result<String> {
    let name = module.file_name().context("module path")?.to_string_lossy().into_owned();
    let (plain, tool): (&str, Option<&[&str]>) = if let Some(n) = name.strip_suffix(".xz") {
        (n, Some(&["xz", "-dc"]))
    } else if let Some(n) = name.strip_suffix(".zst") {
        (n, Some(&["zstd", "-qdc"]))
    } else if let Some(n) = name.strip_suffix(".gz") {
        (n, Some(&["gzip", "-dc"]))
    } else {
        (name.as_str(), None)
    };
    let dest = dir.join(plain);
    match tool {
        None => {
            std::fs::copy(module, &dest).with_context(|| format!("copying {}", module.display()))?;
        }
        Some(tool) => {
            let file = std::fs::File::create(&dest)?;
            let mut c = Command::new(tool[0]);
            c.args(&tool[1..]).arg(module).stdout(file);
            let status = c.status().with_context(|| format!("running {}", display(&c)))?;
            if !status.success() {
                bail!("`{}` failed ({status})", display(&c));
            }
        }
    }
    Ok(plain.to_string())
}

/// `busybox cpio -o -H newc` of everything under `root` (uncompressed: the kernel takes it as
/// it is, and it is small).
fn cpio(root: &Path, out: &Path) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    walk(root, Path::new("."), &mut paths)?;
    let tmp = out.with_extension("tmp");
    let mut c = Command::new("busybox");
    c.args(["cpio", "-o", "-H", "newc"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&tmp)?)
        .stderr(Stdio::null());
    let mut child = c.spawn().with_context(|| format!("running {}", display(&c)))?;
    let mut stdin = child.stdin.take().context("cpio stdin")?;
    stdin.write_all(paths.join("\n").as_bytes())?;
    stdin.write_all(b"\n")?;
    drop(stdin);
    let status = child.wait()?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(&c));
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    out.push(rel.display().to_string());
    let full = root.join(rel);
    if full.symlink_metadata()?.is_dir() {
        let mut entries: Vec<_> =
            std::fs::read_dir(&full)?.filter_map(Result::ok).map(|e| e.file_name()).collect();
        entries.sort();
        for e in entries {
            walk(root, &rel.join(e), out)?;
        }
    }
    Ok(())
}

/// A process killed (SIGKILL, by its PID) and reaped when dropped, so nothing outlives a run
/// that fails or times out, nor xtask returning with an error.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts `cmd` so that it also dies if xtask is killed outright (no destructor runs then).
fn spawn(cmd: &mut Command) -> anyhow::Result<Killed> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("cannot start {}", display(cmd)))?;
    Ok(Killed(child))
}

/// How a boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// run.sh's exit status, as the guest recorded it.
    Exited(i32),
    /// qemu ended without an exit status from the guest (a guest kernel panic, most likely).
    Died,
    /// Killed at the time limit.
    TimedOut,
}

pub struct Boot<'a> {
    pub kernel: &'a Kernel,
    pub initramfs: &'a Path,
    pub transport: Transport,
    /// Holds run.sh; the guest writes here (console.log, guest.log, rc, test output).
    pub run_dir: &'a Path,
    pub timeout: Duration,
    /// Prefix of the guest's output lines as they are echoed.
    pub label: &'a str,
}

/// Boots the kernel, echoes the guest's second serial port (run.sh's output) line by line
/// while it runs, and waits for it to power off, at most `timeout`.
pub fn boot(b: &Boot) -> anyhow::Result<Outcome> {
    let run = b.run_dir;
    let run_s = run.to_str().context("run dir path is not UTF-8")?;
    let mods_s = b.kernel.modules.to_str().context("modules path is not UTF-8")?;
    let work = crate::root();
    let work_s = work.to_str().context("workspace path is not UTF-8")?;
    if [run_s, mods_s, work_s].iter().any(|p| p.contains(char::is_whitespace)) {
        bail!("the workspace path must not contain spaces (it goes on the kernel command line)");
    }
    if let Some(cfg) = &b.kernel.config {
        // The guest copies it to /boot/config-<release>, where tools look for it.
        std::fs::copy(cfg, run.join("kconfig")).context("copying the kernel config")?;
    }
    let mut qemu = Command::new("qemu-system-x86_64");
    // TCG, not KVM: /dev/kvm on these machines is a nested paravirtual hypervisor that cannot
    // run stock kernels. One host thread for all vCPUs: multi-threaded TCG races a kernel
    // patching its own code (static keys flipped as probes attach) and guests died in a third
    // of full runs; one thread is about 10% slower (see docs/vmtest.md).
    qemu.args(["-accel", "tcg,thread=single", "-cpu", "max", "-m", MEMORY, "-smp", CPUS])
        .args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", run.join("console.log").display()))
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(&b.kernel.image)
        .arg("-initrd")
        .arg(b.initramfs)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init vmtest.share={} vmtest.run={run_s} \
             vmtest.modules={mods_s} vmtest.work={work_s}",
            b.transport.name()
        ));
    // Kept alive until qemu is gone (dropped after it: declared before).
    let daemons = share_host(&mut qemu, b.transport, run, run_s)?;
    qemu.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(run.join("qemu.log"))?);
    eprintln!("xtask: vmtest: $ {}", display(&qemu));
    let mut vm = spawn(&mut qemu)?;
    let stdout = vm.0.stdout.take().context("qemu stdout")?;
    let echo = echo_thread(stdout, run.join("guest.log"), b.label.to_string())?;
    let timed_out = wait_for_exit(&mut vm, b.timeout)?;
    drop(vm);
    drop(daemons);
    // The pipe closes with qemu; the thread ends at EOF.
    let _ = echo.join();
    let rc = std::fs::read_to_string(run.join("rc")).ok().and_then(|s| s.trim().parse::<i32>().ok());
    Ok(match (rc, timed_out) {
        (Some(rc), _) => Outcome::Exited(rc),
        (None, true) => Outcome::TimedOut,
        (None, false) => Outcome::Died,
    })
}

/// Shares the host's / (read-only) and the run directory with the guest; returns the
/// virtiofsd daemons, which must outlive qemu.
fn share_host(
    qemu: &mut Command,
    transport: Transport,
    run: &Path,
    run_s: &str,
) -> anyhow::Result<Vec<Killed>> {
    let mut daemons: Vec<Killed> = Vec::new();
    match transport {
        Transport::NineP => {
            qemu.args(["-fsdev", "local,id=fs0,path=/,security_model=none,readonly=on,multidevs=remap"])
                .args(["-device", "virtio-9p-pci,fsdev=fs0,mount_tag=hostroot"])
                .arg("-fsdev")
                .arg(format!("local,id=fs1,path={run_s},security_model=none"))
                .args(["-device", "virtio-9p-pci,fsdev=fs1,mount_tag=runtag"]);
        }
        Transport::Virtiofs => {
            for (i, source, cache, tag) in [(0, "/", "always", "hostroot"), (1, run_s, "none", "runtag")] {
                let sock = run.join(format!("vfs{i}.sock"));
                let log = std::fs::File::create(run.join(format!("virtiofsd{i}.log")))?;
                let mut c = Command::new(VIRTIOFSD);
                c.arg(format!("--socket-path={}", sock.display()))
                    .args(["-o", &format!("source={source}"), "-o", &format!("cache={cache}")])
                    .args(["-o", "sandbox=chroot"])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log);
                daemons.push(spawn(&mut c)?);
                wait_for_socket(&sock)?;
                qemu.arg("-chardev")
                    .arg(format!("socket,id=vfs{i},path={}", sock.display()))
                    .arg("-device")
                    .arg(format!("vhost-user-fs-pci,chardev=vfs{i},tag={tag}"));
            }
            // vhost-user needs the guest's memory shared with virtiofsd.
            qemu.args(["-object", &format!("memory-backend-memfd,id=mem,size={MEMORY},share=on")])
                .args(["-numa", "node,memdev=mem"]);
        }
    }
    Ok(daemons)
}

/// Waits for qemu to end, at most `timeout`; whether it timed out.
fn wait_for_exit(vm: &mut Killed, timeout: Duration) -> anyhow::Result<bool> {
    let end = Instant::now() + timeout;
    loop {
        if vm.0.try_wait()?.is_some() {
            return Ok(false);
        }
        if Instant::now() > end {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for_socket(sock: &Path) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if Instant::now() > end {
            bail!("virtiofsd did not create {}", sock.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Copies the guest's output to `log` and, line by line with `label`, to stderr.
fn echo_thread(
    from: impl std::io::Read + Send + 'static,
    log: PathBuf,
    label: String,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let mut file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    Ok(std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let _ = file.write_all(&line);
            let text = String::from_utf8_lossy(&line);
            eprintln!("[{label}] {}", text.trim_end_matches(['\r', '\n']));
            line.clear();
        }
    }))
}

/// The last `n` lines of a file (qemu's messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What to show of a failed guest's console: from the first line of a kernel crash report
/// near the end (its reason is above the call trace), else the last lines.
pub fn console_excerpt(path: &Path) -> String {
    const MARKS: [&str; 5] = ["Kernel panic", "BUG:", "Oops:", "general protection fault", "watchdog: "];
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let recent = lines.len().saturating_sub(200);
    let start = lines[recent..]
        .iter()
        .position(|l| MARKS.iter().any(|m| l.contains(m)))
        .map_or(lines.len().saturating_sub(30), |i| recent + i);
    let end = lines.len().min(start + 60);
    lines[start..end].join("\n")
}
