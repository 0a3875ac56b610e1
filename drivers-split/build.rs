//! Links the driver domain with pvh-guest-rt's guest.ld.

fn main() {
    pvh_guest_rt::build::link_bins();
}
