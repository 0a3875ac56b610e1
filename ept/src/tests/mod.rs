//! Host tests of the table builder and the guest walker, with vectors standing in for memory.

mod arena;
mod model;
mod table;
mod walker;
mod walker_model;
