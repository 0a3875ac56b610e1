//! The second-level table builder: map, unmap, protect and translate over a 4-level table, for either entry format.

use core::marker::PhantomData;
use core::ops::Range;

use crate::addr::{Gpa, Hpa, PageSize};
use crate::ept_format::Ept;
use crate::flush::Flush;
use crate::format::{Format, MemType, Perms};
use crate::memory::TableMemory;
use crate::npt_format::Npt;

/// A 4-level walk translates 48-bit guest-physical addresses (SDM Vol. 3C
/// 29.3.2; APM Vol. 2 15.25.5 uses the long-mode walk of 5.3).
const GPA_LIMIT: u64 = 1 << 48;
/// Physical addresses are at most 52 bits wide (SDM Vol. 3A 4.1.4; APM Vol. 2 5.3.3).
const HPA_LIMIT: u64 = 1 << 52;
const ROOT_LEVEL: u32 = 4;

/// Why a table operation was refused. Except for [`MapError::OutOfMemory`],
/// the operation was checked before anything was touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or length is not a multiple of the page size it is used with.
    Misaligned,
    /// The guest range reaches past 2^48, or the host page past 2^52.
    OutOfRange,
    /// The format cannot grant exactly these permissions (see [`Format::supports`]).
    UnsupportedPerms(Perms),
    /// The format cannot express this memory type (see [`Format::supports_mem_type`]).
    UnsupportedMemType(MemType),
    /// No frame for a new table. Any large page split on the way stays split,
    /// but every address still translates as before: no flush is needed.
    OutOfMemory,
}

/// Where a guest-physical address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The host-physical address of the very byte asked about (page + offset).
    pub hpa: Hpa,
    pub perms: Perms,
    pub mem_type: MemType,
    /// The size of the page that maps it.
    pub size: PageSize,
}

/// A guest's second-level table, rooted at a PML4 frame, in entry format `F`.
///
/// It holds only the root's address; the frames live in a [`TableMemory`]
/// passed to each call, which must be the same one every time. Dropping it
/// frees nothing: call [`SecondLevel::destroy`].
#[derive(Debug)]
pub struct SecondLevel<F: Format> {
    root: Hpa,
    format: PhantomData<F>,
}

/// Intel EPT tables; `root()` goes into the EPTP (SDM Vol. 3C 25.6.11).
pub type EptTable = SecondLevel<Ept>;
/// AMD nested tables; `root()` goes into the VMCB's N_CR3 (APM Vol. 2 15.25).
pub type NptTable = SecondLevel<Npt>;

impl<F: Format> SecondLevel<F> {
    /// An empty table: nothing translates.
    pub fn new(mem: &mut impl TableMemory) -> Result<Self, MapError> {
        let root = mem.alloc_zeroed_table().ok_or(MapError::OutOfMemory)?;
        Ok(SecondLevel {
            root,
            format: PhantomData,
        })
    }

    /// A handle on the existing table rooted at `root` (a frame `new` gave
    /// for this format), for walks such as [`SecondLevel::translate`] by
    /// code that keeps only the root (a VMX vCPU has it in its EPTP).
    /// Mutating through it would fight the owner's handle: walk only.
    pub fn with_root(root: Hpa) -> Self {
        SecondLevel {
            root,
            format: PhantomData,
        }
    }

    /// The PML4 frame.
    pub fn root(&self) -> Hpa {
        self.root
    }

    /// Maps the `size` page at `gpa` to `hpa`.
    ///
    /// Whatever was mapped at `gpa` with the same size is replaced; smaller
    /// pages under it are dropped and their tables freed. Inside a larger page,
    /// that page is first split into 512 smaller ones that keep its mapping.
    /// `Flush::None` only when the entry written was not present before.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: Gpa,
        hpa: Hpa,
        size: PageSize,
        perms: Perms,
        mem_type: MemType,
    ) -> Result<Flush, MapError> {
        check_page(gpa, size)?;
        if !hpa.0.is_multiple_of(size.bytes()) {
            return Err(MapError::Misaligned);
        }
        if hpa.0 >= HPA_LIMIT {
            return Err(MapError::OutOfRange);
        }
        if !F::supports(perms) {
            return Err(MapError::UnsupportedPerms(perms));
        }
        if !F::supports_mem_type(mem_type) {
            return Err(MapError::UnsupportedMemType(mem_type));
        }
        let level = size.level();
        let table = match self.descend(mem, gpa.0, level, true) {
            Ok(Some(table)) => table,
            Ok(None) => unreachable!("descend creates missing tables"),
            Err(error) => {
                // Give back the empty tables made on the way before running out.
                self.prune(mem, gpa.0);
                return Err(error);
            }
        };
        let new = F::leaf_entry(hpa, size, perms, mem_type);
        let old = core::mem::replace(&mut mem.table_mut(table)[index(gpa.0, level)], new);
        if !F::is_present(old) {
            return Ok(Flush::None);
        }
        if F::leaf_size(old, level).is_none() {
            Self::free_subtree(mem, F::address(old), level - 1);
        }
        Ok(Flush::when(old != new))
    }

    /// Removes the `size` page at `gpa`, whatever maps it: the page itself,
    /// smaller pages under it (their tables are freed), or part of a larger
    /// page (which is split first). Unmapping nothing is not an error.
    /// Tables left empty are freed.
    pub fn unmap(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: Gpa,
        size: PageSize,
    ) -> Result<Flush, MapError> {
        check_page(gpa, size)?;
        let level = size.level();
        let Some(table) = self.descend(mem, gpa.0, level, false)? else {
            return Ok(Flush::None);
        };
        let old = core::mem::replace(&mut mem.table_mut(table)[index(gpa.0, level)], 0);
        if !F::is_present(old) {
            return Ok(Flush::None);
        }
        if F::leaf_size(old, level).is_none() {
            Self::free_subtree(mem, F::address(old), level - 1);
        }
        self.prune(mem, gpa.0);
        Ok(Flush::Needed)
    }

    /// Gives every mapped page in `gpa .. gpa + len` the permissions `perms`,
    /// keeping addresses and memory types. Holes are skipped. A large page
    /// that the range only partly covers is split first (unless it already
    /// has `perms`), so the change stops exactly at the range's ends. To take
    /// every right away, unmap: no format has a present entry without any.
    pub fn protect(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: Gpa,
        len: u64,
        perms: Perms,
    ) -> Result<Flush, MapError> {
        let page = PageSize::Size4K.bytes();
        if !gpa.0.is_multiple_of(page) || !len.is_multiple_of(page) {
            return Err(MapError::Misaligned);
        }
        let end = match gpa.0.checked_add(len) {
            Some(end) if end <= GPA_LIMIT => end,
            _ => return Err(MapError::OutOfRange),
        };
        if !F::supports(perms) {
            return Err(MapError::UnsupportedPerms(perms));
        }
        // Splitting may run out of memory but changes no translation; after
        // it, rewriting leaves cannot fail, so protect is all or nothing.
        self.split_at(mem, gpa.0, perms)?;
        self.split_at(mem, end, perms)?;
        let whole = gpa.0..end;
        Ok(Self::protect_range(
            mem, self.root, ROOT_LEVEL, whole, perms,
        ))
    }

    /// Where `gpa` leads, or `None` if nothing maps it.
    pub fn translate(&self, mem: &impl TableMemory, gpa: Gpa) -> Option<Translation> {
        if gpa.0 >= GPA_LIMIT {
            return None;
        }
        let mut table = self.root;
        for level in (1..=ROOT_LEVEL).rev() {
            let entry = mem.table(table)[index(gpa.0, level)];
            if !F::is_present(entry) {
                return None;
            }
            if let Some(size) = F::leaf_size(entry, level) {
                return Some(Translation {
                    hpa: Hpa(F::address(entry).0 | (gpa.0 & (size.bytes() - 1))),
                    perms: F::perms(entry),
                    mem_type: F::mem_type(entry),
                    size,
                });
            }
            table = F::address(entry);
        }
        None
    }

    /// Frees every table frame, the root included. The backend must have
    /// stopped using the root (and flushed) before.
    pub fn destroy(self, mem: &mut impl TableMemory) {
        Self::free_subtree(mem, self.root, ROOT_LEVEL);
    }

    /// The table holding `gpa`'s entry at `level`. Large pages on the way are
    /// split; a not-present entry on the way gets a new table if `create`,
    /// otherwise the answer is `None` (nothing is mapped there).
    fn descend(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        level: u32,
        create: bool,
    ) -> Result<Option<Hpa>, MapError> {
        let mut table = self.root;
        for upper in (level + 1..=ROOT_LEVEL).rev() {
            let i = index(gpa, upper);
            let entry = mem.table(table)[i];
            table = if !F::is_present(entry) {
                if !create {
                    return Ok(None);
                }
                let new = mem.alloc_zeroed_table().ok_or(MapError::OutOfMemory)?;
                mem.table_mut(table)[i] = F::table_entry(new);
                new
            } else if F::leaf_size(entry, upper).is_some() {
                Self::split(mem, table, i, entry, upper)?
            } else {
                F::address(entry)
            };
        }
        Ok(Some(table))
    }

    /// Splits the large page that straddles `addr`, down to 4 KiB if need be,
    /// so that `addr` becomes a page boundary. Pages that already have
    /// `perms` are left whole: protect will not change them anyway.
    fn split_at(
        &mut self,
        mem: &mut impl TableMemory,
        addr: u64,
        perms: Perms,
    ) -> Result<(), MapError> {
        if addr >= GPA_LIMIT {
            return Ok(());
        }
        let mut table = self.root;
        for level in (2..=ROOT_LEVEL).rev() {
            let i = index(addr, level);
            let entry = mem.table(table)[i];
            if !F::is_present(entry) {
                return Ok(());
            }
            table = if F::leaf_size(entry, level).is_none() {
                F::address(entry)
            } else if addr.is_multiple_of(span(level)) || F::perms(entry) == perms {
                return Ok(());
            } else {
                Self::split(mem, table, i, entry, level)?
            };
        }
        Ok(())
    }

    /// Replaces the large leaf `entry` (at `parent[i]`, table level `level`)
    /// by a table of 512 pages of the next size down with the same host
    /// addresses, permissions and memory type, and returns the new table.
    /// No translation changes, so this alone needs no flush: the manuals only
    /// forbid changing the page size together with frame or attributes
    /// without invalidation (SDM Vol. 3A 4.10.2.3).
    fn split(
        mem: &mut impl TableMemory,
        parent: Hpa,
        i: usize,
        entry: u64,
        level: u32,
    ) -> Result<Hpa, MapError> {
        let table = mem.alloc_zeroed_table().ok_or(MapError::OutOfMemory)?;
        let size = if level == 3 {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        let (base, perms, mem_type) = (F::address(entry).0, F::perms(entry), F::mem_type(entry));
        for (n, slot) in (0u64..).zip(mem.table_mut(table).iter_mut()) {
            *slot = F::leaf_entry(Hpa(base + n * size.bytes()), size, perms, mem_type);
        }
        mem.table_mut(parent)[i] = F::table_entry(table);
        Ok(table)
    }

    /// Sets `perms` on every leaf in `range`, which lies inside the
    /// range of `table` (a table at `level`). `split_at` has made sure no
    /// leaf needing a change sticks out of the range.
    fn protect_range(
        mem: &mut impl TableMemory,
        table: Hpa,
        level: u32,
        range: Range<u64>,
        perms: Perms,
    ) -> Flush {
        let mut flush = Flush::None;
        let (mut addr, end) = (range.start, range.end);
        while addr < end {
            let i = index(addr, level);
            let entry_start = addr & !(span(level) - 1);
            let entry_end = entry_start + span(level);
            let entry = mem.table(table)[i];
            if F::is_present(entry) {
                match F::leaf_size(entry, level) {
                    Some(size) if F::perms(entry) != perms => {
                        debug_assert!(addr == entry_start && entry_end <= end);
                        mem.table_mut(table)[i] =
                            F::leaf_entry(F::address(entry), size, perms, F::mem_type(entry));
                        flush = Flush::Needed;
                    }
                    Some(_) => {}
                    None => {
                        let below = F::address(entry);
                        let inner = addr..end.min(entry_end);
                        let inner = Self::protect_range(mem, below, level - 1, inner, perms);
                        flush = flush.merge(inner);
                    }
                }
            }
            addr = entry_end;
        }
        flush
    }

    /// Frees `table` (a table at `level`) and every table under it.
    fn free_subtree(mem: &mut impl TableMemory, table: Hpa, level: u32) {
        for i in 0..512 {
            let entry = mem.table(table)[i];
            if F::is_present(entry) && F::leaf_size(entry, level).is_none() {
                Self::free_subtree(mem, F::address(entry), level - 1);
            }
        }
        mem.free_table(table);
    }

    /// Frees the tables on `gpa`'s path that hold no entries any more, from
    /// the bottom up, clearing the entries that pointed at them.
    fn prune(&mut self, mem: &mut impl TableMemory, gpa: u64) {
        // (parent table, index in it) of each table below the root on the path.
        let mut path = [(Hpa(0), 0usize); 3];
        let mut depth = 0;
        let mut table = self.root;
        for level in (2..=ROOT_LEVEL).rev() {
            let i = index(gpa, level);
            let entry = mem.table(table)[i];
            if !F::is_present(entry) || F::leaf_size(entry, level).is_some() {
                break;
            }
            path[depth] = (table, i);
            depth += 1;
            table = F::address(entry);
        }
        while depth > 0 && mem.table(table).iter().all(|&entry| entry == 0) {
            depth -= 1;
            let (parent, i) = path[depth];
            mem.table_mut(parent)[i] = 0;
            mem.free_table(table);
            table = parent;
        }
    }
}

/// Checks that the `size` page at `gpa` is aligned and inside the 48-bit space.
fn check_page(gpa: Gpa, size: PageSize) -> Result<(), MapError> {
    if !gpa.0.is_multiple_of(size.bytes()) {
        Err(MapError::Misaligned)
    } else if gpa.0 >= GPA_LIMIT {
        Err(MapError::OutOfRange)
    } else {
        Ok(())
    }
}

/// Bytes covered by one entry of a table at `level`.
fn span(level: u32) -> u64 {
    1 << (12 + 9 * (level - 1))
}

/// The index of `addr`'s entry in its table at `level` (9 address bits per level).
fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}
