//! Is the wall clock synchronised? Four answers, chosen by `clock.sync`.
//!
//! - `kernel`: asks the kernel with `adjtimex` in read-only mode. The clock counts as
//!   synchronised when the kernel's maximum error is below 16 s, or `STA_UNSYNC` is clear.
//!   At boot the kernel sets `STA_UNSYNC` and a maximum error of 16 s; an NTP client that
//!   disciplines the clock (systemd-timesyncd, the Raspberry Pi OS default, as well as chrony
//!   and ntpd) lowers the error and clears the flag, and the kernel raises the error again by
//!   500 ppm while nobody disciplines it. The maximum error is the test systemd's
//!   `timedatectl` uses ("System clock synchronized"); taking either condition means a client
//!   that keeps `STA_UNSYNC` set on purpose (to keep the kernel from writing the RTC) is still
//!   seen as synchronised. It works whichever client is installed.
//! - `timesyncd`: systemd-timesyncd creates `/run/systemd/timesync/synchronized` on its first
//!   successful sync after boot (the file is on a tmpfs, so a reboot clears it). Only right
//!   where timesyncd is the client.
//! - `auto` (default): `kernel` where the call is allowed, else `timesyncd`. The shipped unit
//!   sets `ProtectClock=yes`, whose seccomp filter refuses even the read-only `adjtimex`
//!   (EPERM): under it the daemon reads timesyncd's flag, which Debian and Raspberry Pi OS
//!   have. [`describe`] says at start which one answers, and warns when neither can.
//! - `assume`: always synchronised; for gateways with a battery-backed RTC or GPS time.

use crate::config::SyncMode;

/// The file systemd-timesyncd touches once it has synchronised the clock.
pub const TIMESYNCD_FLAG: &str = "/run/systemd/timesync/synchronized";

/// Largest kernel maximum error (µs) of a synchronised clock: the kernel's NTP_PHASE_LIMIT.
const MAX_ERROR_SYNCED_US: i64 = 16_000_000;

/// Asks the authority `mode` names now whether the wall clock is synchronised. Cheap (one
/// syscall or one `stat`).
pub fn synced(mode: SyncMode) -> bool {
    match mode {
        SyncMode::Auto => match kernel_read() {
            Ok(s) => s.synced(),
            Err(Refused) => timesyncd_flag(),
        },
        SyncMode::Kernel => kernel_status().is_some_and(|s| s.synced()),
        SyncMode::Timesyncd => timesyncd_flag(),
        SyncMode::Assume => true,
    }
}

fn timesyncd_flag() -> bool {
    std::path::Path::new(TIMESYNCD_FLAG).exists()
}

/// Where systemd-timesyncd's binary lives on Debian (merged /usr or not).
const TIMESYNCD_BINARIES: [&str; 2] = [
    "/lib/systemd/systemd-timesyncd",
    "/usr/lib/systemd/systemd-timesyncd",
];

/// Which authority `mode` asks on this machine, for the start log, and a warning when that
/// authority can never answer yes (the daemon would then hold its readings).
pub fn describe(mode: SyncMode) -> (String, Option<String>) {
    let timesyncd_installed = TIMESYNCD_BINARIES
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    let no_timesyncd = |why: &str| {
        format!(
            "{why}, and systemd-timesyncd is not installed: if chrony or ntpd keeps the time, \
             allow adjtimex with the unit drop-in of README \"Clock sync under the sandbox\" \
             (\"auto\" then asks the kernel), or set clock.sync = \"assume\" with a \
             battery-backed clock; until then readings are held"
        )
    };
    match mode {
        SyncMode::Auto => match kernel_read() {
            Ok(_) => ("auto: the kernel (adjtimex)".into(), None),
            Err(Refused) => {
                let warn = (!timesyncd_installed)
                    .then(|| no_timesyncd("the sandbox refuses adjtimex (ProtectClock=)"));
                (format!("auto: systemd-timesyncd's flag {TIMESYNCD_FLAG} (the sandbox refuses adjtimex)"), warn)
            }
        },
        SyncMode::Kernel => {
            let warn = kernel_read().is_err().then(|| {
                "clock.sync = \"kernel\" but adjtimex is refused (ProtectClock= in the unit): \
                 the clock will never count as synchronised and readings are held; use \
                 \"auto\" or allow adjtimex (README, \"Clock sync under the sandbox\")"
                    .to_string()
            });
            ("kernel (adjtimex)".into(), warn)
        }
        SyncMode::Timesyncd => {
            let warn = (!timesyncd_installed).then(|| no_timesyncd("clock.sync = \"timesyncd\""));
            (format!("systemd-timesyncd's flag {TIMESYNCD_FLAG}"), warn)
        }
        SyncMode::Assume => ("assume (always synchronised)".into(), None),
    }
}

/// The parts of the kernel's clock state the sync check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelStatus {
    /// `STA_UNSYNC` is set.
    pub unsync_flag: bool,
    /// Maximum error in µs.
    pub max_error_us: i64,
}

impl KernelStatus {
    pub fn synced(&self) -> bool {
        !self.unsync_flag || self.max_error_us < MAX_ERROR_SYNCED_US
    }
}

/// The kernel's clock status, read with `adjtimex` (`modes = 0`: read only, needs no
/// privilege). `None` if the call fails (then the clock counts as unsynchronised).
pub fn kernel_status() -> Option<KernelStatus> {
    kernel_read().ok()
}

/// `adjtimex` failed: a seccomp filter (ProtectClock=, SystemCallFilter=) refused it. With
/// `modes = 0` and a valid pointer the kernel itself has no other reason to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

fn kernel_read() -> Result<KernelStatus, Refused> {
    // SAFETY: all-zero is a valid `timex` (plain integers and a timeval); `modes = 0` asks
    // the kernel to only read, and it writes nothing outside the struct we pass.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the duration of the call.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        return Err(Refused);
    }
    // `maxerror` is a C long: 32-bit on armhf.
    #[allow(clippy::unnecessary_cast)]
    Ok(KernelStatus {
        unsync_flag: tx.status & libc::STA_UNSYNC != 0,
        max_error_us: tx.maxerror as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_rule() {
        let boot = KernelStatus {
            unsync_flag: true,
            max_error_us: 16_000_000,
        };
        assert!(!boot.synced());
        let disciplined = KernelStatus {
            unsync_flag: false,
            max_error_us: 20_000,
        };
        assert!(disciplined.synced());
        // A client that keeps STA_UNSYNC set on purpose, with a small error.
        let rtc_off = KernelStatus {
            unsync_flag: true,
            max_error_us: 300_000,
        };
        assert!(rtc_off.synced());
        // The host running the tests answers one way or the other, without failing; with
        // the kernel answering, `auto` asks it too.
        let kernel = kernel_status().expect("adjtimex answers outside a sandbox");
        assert_eq!(synced(SyncMode::Auto), kernel.synced());
        assert!(synced(SyncMode::Assume));
        assert!(describe(SyncMode::Auto).0.contains("kernel"));
        assert_eq!(describe(SyncMode::Assume).1, None);
    }
}
