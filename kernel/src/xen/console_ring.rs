//! The guest's PV console ring (public/io/console.h), served by the hypervisor until the driver domain takes it over.

use crate::guest_memory::{Fault, GuestMemory};

// `struct xencons_interface` (public/io/console.h): in[1024], out[2048], then
// the four 32-bit indices. Indices run freely; MASK_XENCONS_IDX reduces them.
const IN_OFFSET: u64 = 0;
const IN_SIZE: u32 = 1024;
const OUT_OFFSET: u64 = 1024;
const OUT_SIZE: u32 = 2048;
const IN_CONS: u64 = 3072;
const IN_PROD: u64 = 3076;
const OUT_CONS: u64 = 3080;
const OUT_PROD: u64 = 3084;

fn read_u32(mem: &GuestMemory, gpa: u64) -> Result<u32, Fault> {
    let mut b = [0u8; 4];
    mem.read_gpa(gpa, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn write_u32(mem: &GuestMemory, gpa: u64, value: u32) -> Result<(), Fault> {
    mem.write_gpa(gpa, &value.to_le_bytes())
}

/// Moves everything the guest wrote to `out` into `sink`, and frees the
/// space. The indices come from the guest: a producer more than the ring
/// size ahead is a broken guest, reported as a fault.
pub fn drain_output(mem: &GuestMemory, page: u64, mut sink: impl FnMut(u8)) -> Result<bool, Fault> {
    let cons = read_u32(mem, page + OUT_CONS)?;
    let prod = read_u32(mem, page + OUT_PROD)?;
    let len = prod.wrapping_sub(cons);
    if len > OUT_SIZE {
        return Err(Fault);
    }
    for i in 0..len {
        let at = cons.wrapping_add(i) % OUT_SIZE;
        let mut b = [0u8];
        mem.read_gpa(page + OUT_OFFSET + u64::from(at), &mut b)?;
        sink(b[0]);
    }
    write_u32(mem, page + OUT_CONS, prod)?;
    Ok(len > 0)
}

/// Puts `byte` in the guest's input ring; false if the ring is full.
pub fn push_input(mem: &GuestMemory, page: u64, byte: u8) -> Result<bool, Fault> {
    let cons = read_u32(mem, page + IN_CONS)?;
    let prod = read_u32(mem, page + IN_PROD)?;
    if prod.wrapping_sub(cons) >= IN_SIZE {
        return Ok(false);
    }
    mem.write_gpa(page + IN_OFFSET + u64::from(prod % IN_SIZE), &[byte])?;
    write_u32(mem, page + IN_PROD, prod.wrapping_add(1))?;
    Ok(true)
}
