//! The console backend as plain library code: the guest's ring page, output lines tagged by name, input switching.

pub mod input;
pub mod lines;
pub mod ring;

#[cfg(test)]
mod tests;

pub use input::{InputSwitch, Key};
pub use lines::LineTagger;
pub use ring::{Broken, ConsoleRing};
