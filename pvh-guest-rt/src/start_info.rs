//! What a guest reads from its `hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h): the command line and the first module.

use xen_abi::start_info::{HvmModlistEntry, HvmStartInfo, HVM_START_MAGIC};

/// The longest command line read (Xen's `MAX_GUEST_CMDLINE` is 1024).
const CMDLINE_MAX: usize = 2048;

/// The structure at `addr`, if it carries the PVH magic.
///
/// # Safety
/// `addr` is 0 or the `hvm_start_info` the hypervisor passed in %ebx, in
/// the guest's RAM, which entry.S identity-maps.
unsafe fn read(addr: u64) -> Option<HvmStartInfo> {
    if addr == 0 {
        return None;
    }
    // SAFETY: the caller's contract; read once, by value.
    let info = unsafe { core::ptr::read_unaligned(addr as *const HvmStartInfo) };
    (info.magic == HVM_START_MAGIC).then_some(info)
}

/// The text before the first NUL of `bytes` ("" if it is not UTF-8).
fn until_nul(bytes: &[u8]) -> &str {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..len]).unwrap_or("")
}

/// The guest's command line ("" if there is none).
///
/// # Safety
/// As [`read`]; the hypervisor put the command line in the guest's RAM
/// too, NUL-terminated, with at least `CMDLINE_MAX` bytes mapped after it.
pub unsafe fn cmdline(addr: u64) -> &'static str {
    // SAFETY: the caller's contract.
    match unsafe { read(addr) } {
        Some(info) if info.cmdline_paddr != 0 => {
            // SAFETY: the caller's contract.
            until_nul(unsafe {
                core::slice::from_raw_parts(info.cmdline_paddr as *const u8, CMDLINE_MAX)
            })
        }
        _ => "",
    }
}

/// Module 0's bytes (empty if there are no modules).
///
/// # Safety
/// As [`read`]; the hypervisor placed the module list and the module in
/// the guest's RAM.
pub unsafe fn first_module(addr: u64) -> &'static [u8] {
    // SAFETY: the caller's contract.
    match unsafe { read(addr) } {
        Some(info) if info.nr_modules != 0 && info.modlist_paddr != 0 => {
            // SAFETY: the caller's contract.
            let m =
                unsafe { core::ptr::read_unaligned(info.modlist_paddr as *const HvmModlistEntry) };
            // SAFETY: the caller's contract.
            unsafe { core::slice::from_raw_parts(m.paddr as *const u8, m.size as usize) }
        }
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_ends_at_its_nul() {
        assert_eq!(until_nul(b"vbd=a:xvda\0junk"), "vbd=a:xvda");
        assert_eq!(until_nul(b"no nul"), "no nul");
        assert_eq!(until_nul(b"\xff\0"), "");
        assert_eq!(until_nul(b"\0"), "");
    }

    #[test]
    fn start_info_in_memory_is_read_and_checked() {
        // Host memory stands in for guest RAM; the addresses are pointers.
        let mut text = [0u8; CMDLINE_MAX];
        text[..9].copy_from_slice(b"hello hv\0");
        let module = *b"table";
        let list = HvmModlistEntry {
            paddr: module.as_ptr() as u64,
            size: module.len() as u64,
            ..Default::default()
        };
        let mut info = HvmStartInfo {
            magic: HVM_START_MAGIC,
            nr_modules: 1,
            modlist_paddr: &list as *const _ as u64,
            cmdline_paddr: text.as_ptr() as u64,
            ..Default::default()
        };
        let at = &info as *const _ as u64;
        // SAFETY: `at` and what it points to live to the end of the test.
        unsafe {
            assert_eq!(cmdline(at), "hello hv");
            assert_eq!(first_module(at), b"table");
            assert_eq!(cmdline(0), "");
            assert!(first_module(0).is_empty());
        }
        info.magic = 0;
        let at = &info as *const _ as u64;
        // SAFETY: as above.
        unsafe {
            assert_eq!(cmdline(at), "");
            assert!(first_module(at).is_empty());
        }
    }
}
