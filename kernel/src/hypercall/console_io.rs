//! `console_io` (public/xen.h): a domain's early console, printed on COM1 as `(dN) text`.

use super::{memory, Call, Ret};
use crate::domain::Domain;
use xen_abi::hypercall::*;

/// Longest write accepted in one call; Xen copies in chunks without a limit,
/// but a guest gains nothing from more and must not hold the CPU for long.
const MAX_WRITE: u64 = 16 * 1024;
const CHUNK: usize = 128;
/// A line longer than this is printed in pieces.
const MAX_LINE: usize = 512;

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
        for &b in &buf[..n] {
            super::console_byte(dom, b);
        }
        done += n as u64;
    }
    0
}

/// Collects bytes into lines so each line carries the domain prefix.
pub fn emit(dom: &mut Domain, byte: u8) {
    if byte == b'\n' || dom.console_line.len() >= MAX_LINE {
        crate::println!("(d{}) {}", dom.id, dom.console_line);
        dom.console_line.clear();
    }
    match byte {
        b'\n' | b'\r' => {}
        // Control characters from a guest must not drive the user's terminal.
        0x20..=0x7e => dom.console_line.push(byte as char),
        _ => dom.console_line.push('.'),
    }
}
