//! `xen_version` (public/version.h): every sub-op, answered as Xen 4.17 answers a domU.
//!
//! Xen's dummy XSM policy (xen/include/xsm/dummy.h, `xsm_xen_version`)
//! splits the sub-ops three ways: version, platform_parameters and
//! get_features for everyone; extraversion, compile_info, capabilities,
//! changeset, pagesize and guest_handle for every guest too; the rest
//! (commandline, build_id) only for the privileged domain, the others
//! being "denied": the command line reads `<denied>`, build_id is -EPERM
//! (xen/common/kernel.c, `do_xen_version`).

use super::{memory, Call, Ret};
use crate::domain::Domain;
use alloc::string::String;
use xen_abi::hypercall::*;

/// `xen_extraversion_t`, NUL-padded.
const EXTRAVERSION: &[u8; XEN_EXTRAVERSION_LEN] = b"-xenolith\0\0\0\0\0\0\0";
/// `xen_compile_info_t`'s four strings.
const COMPILER: &str = "rustc";
const COMPILE_BY: &str = "xenolith";
const COMPILE_DOMAIN: &str = "";
const COMPILE_DATE: &str = "";
/// What an x86-64 Xen with HVM and without PV offers (xen/arch/x86/setup.c,
/// `arch_get_xen_caps`).
const CAPABILITIES: &str = "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64";
const CHANGESET: &str = concat!("xenolith ", env!("CARGO_PKG_VERSION"));
/// `xen_deny()`: what a denied string sub-op copies out.
const DENIED: &[u8] = b"<denied>\0";

/// The hypervisor's command line, kept for the privileged domain's
/// `XENVER_commandline` (Xen's `saved_cmdline`).
static COMMAND_LINE: spin::Once<String> = spin::Once::new();

/// Keeps the boot command line for `XENVER_commandline`.
pub fn save_command_line(cmdline: &str) {
    COMMAND_LINE.call_once(|| String::from(cmdline));
}

/// `text` NUL-padded into `out` (Xen's `safe_strcpy` into a zeroed buffer:
/// the last byte always stays NUL).
fn fill(out: &mut [u8], text: &[u8]) {
    let n = text.len().min(out.len().saturating_sub(1));
    out[..n].copy_from_slice(&text[..n]);
    out[n..].fill(0);
}

/// Copies `bytes` to the guest's buffer at `gva`.
fn copy_out(dom: &Domain, gva: u64, bytes: &[u8]) -> Ret {
    let paging = dom.vcpu.paging();
    let user = dom.vcpu.cpl() == 3;
    match memory(dom).write_gva(&paging, user, gva, bytes) {
        Ok(()) => 0,
        Err(fault) => fault.into(),
    }
}

/// The sub-op's answer: its return value, and for buffer sub-ops what
/// was written.
pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    let arg = call.args[1];
    match call.args[0] {
        XENVER_VERSION => i64::from((VERSION_MAJOR << 16) | VERSION_MINOR),
        XENVER_EXTRAVERSION => copy_out(dom, arg, EXTRAVERSION),
        XENVER_COMPILE_INFO => {
            let mut info = [0u8; XEN_COMPILE_INFO_LEN];
            fill(&mut info[..64], COMPILER.as_bytes());
            fill(&mut info[64..80], COMPILE_BY.as_bytes());
            fill(&mut info[80..112], COMPILE_DOMAIN.as_bytes());
            fill(&mut info[112..], COMPILE_DATE.as_bytes());
            copy_out(dom, arg, &info)
        }
        XENVER_CAPABILITIES => {
            let mut info = [0u8; XEN_CAPABILITIES_INFO_LEN];
            fill(&mut info, CAPABILITIES.as_bytes());
            copy_out(dom, arg, &info)
        }
        XENVER_CHANGESET => {
            let mut info = [0u8; XEN_CHANGESET_INFO_LEN];
            fill(&mut info, CHANGESET.as_bytes());
            copy_out(dom, arg, &info)
        }
        XENVER_PLATFORM_PARAMETERS => {
            // `xen_platform_parameters_t` is one `unsigned long`: 8 bytes
            // from 64-bit code, 4 (the compat layout) from 32-bit code.
            if dom.vcpu.in_64bit_mode() {
                copy_out(dom, arg, &HYPERVISOR_VIRT_START.to_le_bytes())
            } else {
                copy_out(dom, arg, &0u32.to_le_bytes())
            }
        }
        XENVER_GET_FEATURES => {
            match super::read_arg::<xen_abi::features::XenFeatureInfo>(dom, arg) {
                Ok(mut fi) => match xen_abi::features::pvh_domu_submap(fi.submap_idx) {
                    Some(map) => {
                        fi.submap = map;
                        match super::write_arg(dom, arg, &fi) {
                            Ok(()) => 0,
                            Err(f) => f.into(),
                        }
                    }
                    None => -EINVAL,
                },
                Err(f) => f.into(),
            }
        }
        // Xen 4.17 takes no buffer here: a non-null handle is -EINVAL.
        XENVER_PAGESIZE if arg != 0 => -EINVAL,
        XENVER_PAGESIZE => 4096,
        XENVER_GUEST_HANDLE => copy_out(
            dom,
            arg,
            &xen_abi::domain_handle::domain_handle(dom.name.as_bytes()),
        ),
        XENVER_COMMANDLINE if !dom.driver => copy_out(dom, arg, DENIED),
        XENVER_COMMANDLINE => {
            let mut line = [0u8; XEN_COMMANDLINE_LEN];
            fill(&mut line, COMMAND_LINE.get().map_or("", |s| s).as_bytes());
            copy_out(dom, arg, &line)
        }
        XENVER_BUILD_ID if !dom.driver => -EPERM,
        // The image carries no build ID: Xen's `xen_build_id` says so.
        XENVER_BUILD_ID => -ENODATA,
        _ => -ENOSYS,
    }
}
