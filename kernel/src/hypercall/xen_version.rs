//! `xen_version` (public/version.h): the version number and the extra-version string.

use super::{memory, Call, Ret};
use crate::domain::Domain;
use xen_abi::hypercall::*;

/// `xen_extraversion_t`, NUL-padded.
const EXTRAVERSION: &[u8; XEN_EXTRAVERSION_LEN] = b"-xenolith\0\0\0\0\0\0\0";

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    match call.args[0] {
        XENVER_VERSION => i64::from((VERSION_MAJOR << 16) | VERSION_MINOR),
        XENVER_EXTRAVERSION => {
            let paging = dom.vcpu.paging();
            match memory(dom).write_gva(&paging, false, call.args[1], EXTRAVERSION) {
                Ok(()) => 0,
                Err(fault) => fault.into(),
            }
        }
        XENVER_GET_FEATURES => {
            match super::read_arg::<xen_abi::features::XenFeatureInfo>(dom, call.args[1]) {
                Ok(mut fi) => match xen_abi::features::pvh_domu_submap(fi.submap_idx) {
                    Some(map) => {
                        fi.submap = map;
                        match super::write_arg(dom, call.args[1], &fi) {
                            Ok(()) => 0,
                            Err(f) => f.into(),
                        }
                    }
                    None => -EINVAL,
                },
                Err(f) => f.into(),
            }
        }
        XENVER_PAGESIZE => 4096,
        _ => -ENOSYS,
    }
}
