//! `console_io` (public/xen.h): a domain's early console, printed on COM1 as `(dN) text`.

use super::{memory, Call, Continue, Ret};
use crate::domain::Domain;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU16, Ordering};
use xen_abi::hypercall::*;

/// Bytes one entry of the hypercall handles before it continues (Xen's
/// guest_console_write checks for preemption between chunks and creates a
/// continuation): however long the write, the vCPU comes back to the
/// scheduler this often.
const PER_ENTRY: u64 = 2048;
const CHUNK: usize = 128;

pub fn call(dom: &mut Domain, call: &Call) -> Result<Ret, Continue> {
    match call.args[0] {
        // `count` is an unsigned int (public/xen.h, HYPERVISOR_console_io).
        CONSOLEIO_WRITE => write(dom, call.args[1] & 0xffff_ffff, call.args[2]),
        // No console input on this path yet.
        CONSOLEIO_READ => Ok(0),
        _ => Ok(-ENOSYS),
    }
}

/// Prints up to PER_ENTRY bytes; if more remain, asks to be entered again
/// with the rest (the same arguments, advanced), so a long write never
/// holds the CPU. While COM1's queue has no room for the next chunk, the
/// call continues without printing it: the guest waits for the UART, as
/// it would on a serial line, instead of its text being dropped (the queue
/// is sent from the exit loop between the entries). A buffer that would
/// run past the top of the address space is -EFAULT before anything is
/// printed.
fn write(dom: &mut Domain, count: u64, gva: u64) -> Result<Ret, Continue> {
    if gva.checked_add(count).is_none() {
        return Ok(-EFAULT);
    }
    let now = count.min(PER_ENTRY);
    let paging = dom.vcpu.paging();
    let mut buf = [0u8; CHUNK];
    let mut done = 0;
    while done < now {
        let n = (now - done).min(CHUNK as u64) as usize;
        if !crate::console::guest_room_for(n) {
            return Err(Continue([CONSOLEIO_WRITE, count - done, gva + done]));
        }
        if let Err(fault) = memory(dom).read_gva(&paging, false, gva + done, &mut buf[..n]) {
            return Ok(fault.into());
        }
        emit_limited(dom, &buf[..n]);
        done += n as u64;
    }
    if now < count {
        return Err(Continue([CONSOLEIO_WRITE, count - now, gva + now]));
    }
    Ok(0)
}

/// A domain's `console_io` bytes, within its quota (the driver domain,
/// the console domain, has none). Dropped bytes are said once output
/// resumes.
fn emit_limited(dom: &mut Domain, bytes: &[u8]) {
    if dom.driver {
        emit(dom, bytes);
        return;
    }
    let now = crate::xen::time::now_ns();
    let grant = dom.console_quota.take(now, bytes.len() as u64);
    if grant.dropped_before > 0 {
        let note = format!("\n[console_io: {} bytes dropped]\n", grant.dropped_before);
        emit(dom, note.as_bytes());
    }
    emit(dom, &bytes[..grant.allowed as usize]);
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
    crate::console::print_guest(&out);
}
