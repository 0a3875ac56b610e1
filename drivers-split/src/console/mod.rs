//! The console backend as plain library code: the guest's ring page, output lines tagged by name, buffered output to the UART, input switching.

pub mod input;
pub mod lines;
pub mod output;
pub mod ring;

#[cfg(test)]
mod tests;

pub use input::{InputSwitch, Key};
pub use lines::LineTagger;
pub use output::Output;
pub use ring::{Broken, ConsoleRing};
