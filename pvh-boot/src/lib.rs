//! PVH loader: places a Xen PVH kernel, its hvm_start_info, memory map, command line, initrd and ACPI tables in guest memory.
