//! `console_io` (public/xen.h): a domain's early console, printed on COM1 as `(dN) text`.

use super::{memory, Call, Ret};
use crate::domain::Domain;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU16, Ordering};
use xen_abi::hypercall::*;

/// Longest write accepted in one call; Xen copies in chunks without a limit,
/// but a guest gains nothing from more and must not hold the CPU for long.
const MAX_WRITE: u64 = 16 * 1024;
const CHUNK: usize = 128;

pub fn call(dom: &mut Domain, call: &Call) -> Ret {
    match call.args[0] {
        CONSOLEIO_WRITE => write(dom, call.args[1], call.args[2]),
        // No console input on this path yet.
        CONSOLEIO_READ => 0,
        _ => -ENOSYS,
    }
}

fn write(dom: &mut Domain, count: u64, gva: u64) -> Ret {
    if count > MAX_WRITE {
        return -EINVAL;
    }
    let paging = dom.vcpu.paging();
    let mut buf = [0u8; CHUNK];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(CHUNK as u64) as usize;
        if let Err(fault) = memory(dom).read_gva(&paging, false, gva + done, &mut buf[..n]) {
            return fault.into();
        }
        emit(dom, &buf[..n]);
        done += n as u64;
    }
    0
}

/// The domain whose line is in progress on COM1 (0: none). COM1 is shared:
/// output from another domain (or the hypervisor) first ends that line.
static MIDLINE: AtomicU16 = AtomicU16::new(0);

/// Ends a domain's unfinished console line, so the next output starts afresh.
pub fn end_line() {
    if MIDLINE.swap(0, Ordering::Relaxed) != 0 {
        crate::console::print(format_args!("\n"));
    }
}

/// Prints a domain's console bytes as they come, each line starting with
/// `(dN) `, so prompts show before the newline arrives.
pub fn emit(dom: &mut Domain, bytes: &[u8]) {
    if crate::console::handed_over() {
        // COM1 is the driver domain's: the hypervisor's own channel takes it.
        let text: String = bytes
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    ' '
                }
            })
            .collect();
        defmt::info!("(d{=u16}) {=str}", dom.id, text.trim_end());
        return;
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for &byte in bytes {
        if byte == b'\r' {
            continue;
        }
        let owner = MIDLINE.load(Ordering::Relaxed);
        if owner != dom.id {
            if owner != 0 {
                out.push('\n');
            }
            out.push_str(&format!("(d{}) ", dom.id));
            MIDLINE.store(dom.id, Ordering::Relaxed);
        }
        match byte {
            b'\n' => {
                out.push('\n');
                MIDLINE.store(0, Ordering::Relaxed);
            }
            // Control characters from a guest must not drive the user's terminal.
            0x20..=0x7e => out.push(byte as char),
            _ => out.push('.'),
        }
    }
    crate::console::print(format_args!("{out}"));
}
