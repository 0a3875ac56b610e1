//! Deliberate faults, chosen by `selftest=` on the command line, that prove the protections and the exception path.

use core::hint::black_box;

/// Runs the named fault; returns only for an unknown name. Each case must end
/// in `idt::exception_entry` with a failure exit:
/// - `write-text`: a store into the read-only text (#PF, error code 0x3);
/// - `null`: a load from page 0, left unmapped (#PF, error code 0x0);
/// - `stack-overflow`: recursion into the guard page under the stack; the
///   #PF cannot push its frame there, so it becomes a #DF taken on the IST stack.
pub fn run(name: &str) -> Result<(), ()> {
    match name {
        "write-text" => {
            let text = run as *const () as *mut u8;
            // SAFETY: intentionally faults; the handler never returns here.
            unsafe { core::ptr::write_volatile(text, 0xcc) };
        }
        "null" => {
            let null = black_box(0usize) as *const u64;
            // SAFETY: intentionally faults; the handler never returns here.
            let _ = unsafe { core::ptr::read_volatile(null) };
        }
        "stack-overflow" => {
            black_box(recurse(black_box(1)));
        }
        _ => return Err(()),
    }
    Ok(())
}

#[inline(never)]
#[expect(unconditional_recursion, reason = "runs until it hits the guard page")]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    recurse(depth + 1) + frame[black_box(3)]
}
