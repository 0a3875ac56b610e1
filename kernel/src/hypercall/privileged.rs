//! The control hypercalls only a privileged domain may make: sysctl, domctl, platform_op, hypfs_op.
//!
//! Xen 4.17 copies the argument in (-EFAULT), checks its interface
//! version (-EACCES on a mismatch: XTF probes the sysctl version this
//! way), then asks XSM, whose dummy policy refuses every domain but the
//! privileged one with -EPERM (xen/common/sysctl.c `do_sysctl`,
//! xen/common/domctl.c `do_domctl`, xen/arch/x86/platform_hypercall.c
//! `do_platform_op`; hypfs_op asks XSM first, xen/common/hypfs.c). The
//! driver domain passes that check but Xenolith implements none of their
//! commands: it gets -ENOSYS, as Xen answers an unknown command. Unlike
//! Xen, a domctl naming a domain that does not exist is -EPERM too, not
//! -ESRCH: an unprivileged caller learns nothing either way.

use super::{memory, Call, Ret};
use crate::domain::Domain;
use xen_abi::hypercall::*;

/// Refuses `call` (hypercall `nr`) as Xen refuses it.
pub fn call(dom: &Domain, call: &Call) -> Ret {
    let (size, version) = match call.nr {
        SYSCTL => (SYSCTL_SIZE, XEN_SYSCTL_INTERFACE_VERSION),
        DOMCTL => (DOMCTL_SIZE, XEN_DOMCTL_INTERFACE_VERSION),
        PLATFORM_OP => (PLATFORM_OP_SIZE, XENPF_INTERFACE_VERSION),
        // HYPFS_OP: no structure to read before the permission check.
        _ => return if dom.driver { -ENOSYS } else { -EPERM },
    };
    let mut op = [0u8; DOMCTL_SIZE];
    let op = &mut op[..size];
    let paging = dom.vcpu.paging();
    if memory(dom)
        .read_gva(&paging, dom.vcpu.cpl() == 3, call.args[0], op)
        .is_err()
    {
        return -EFAULT;
    }
    // `uint32_t cmd; uint32_t interface_version;` open all three.
    let asked = u32::from_le_bytes([op[4], op[5], op[6], op[7]]);
    if asked != version {
        -EACCES
    } else if dom.driver {
        -ENOSYS
    } else {
        -EPERM
    }
}
