//! The CMOS real-time clock, read once for the guests' wallclock (MC146818A registers, PC/AT CMOS map).

use x86::io::{inb, outb};

fn read(register: u8) -> u8 {
    // SAFETY: CMOS index/data ports; bit 7 of the index keeps NMIs masked as firmware leaves them.
    unsafe {
        outb(0x70, 0x80 | register);
        inb(0x71)
    }
}

fn bcd(v: u8) -> u8 {
    (v & 0x0f) + (v >> 4) * 10
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch per the RTC, or `None` if it reads as
/// nonsense (no RTC: every register reads 0xff).
pub fn unix_seconds() -> Option<u64> {
    // Wait out an update in progress (status A bit 7), bounded.
    for _ in 0..100_000 {
        if read(0x0a) & 0x80 == 0 {
            break;
        }
    }
    let status_b = read(0x0b);
    let decode = |v: u8| if status_b & 0x04 == 0 { bcd(v) } else { v };
    let sec = decode(read(0x00));
    let min = decode(read(0x02));
    let hour_raw = read(0x04);
    let mut hour = decode(hour_raw & 0x7f);
    if status_b & 0x02 == 0 && hour_raw & 0x80 != 0 {
        hour = (hour % 12) + 12; // 12-hour mode, PM
    }
    let day = decode(read(0x07));
    let month = decode(read(0x08));
    let year = 2000 + i64::from(decode(read(0x09)));
    if sec > 59 || min > 59 || hour > 23 || !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return None;
    }
    let days = days_from_civil(year, u32::from(month), u32::from(day));
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec);
    u64::try_from(secs).ok()
}
