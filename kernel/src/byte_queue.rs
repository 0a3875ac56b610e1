//! A fixed-size FIFO of bytes: console output waiting for a slow UART, so nobody waits on the UART for long.

/// `N` bytes at most; pushing into a full queue takes what fits.
pub struct ByteQueue<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> ByteQueue<N> {
    pub const fn new() -> Self {
        ByteQueue {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    pub fn free(&self) -> usize {
        N - self.len
    }

    /// Appends as much of `bytes` as fits; returns how many were taken.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        for &b in &bytes[..n] {
            self.buf[(self.head + self.len) % N] = b;
            self.len += 1;
        }
        n
    }

    /// The oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(b)
    }
}

impl<const N: usize> Default for ByteQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn full_queue_takes_what_fits() {
        let mut q = ByteQueue::<4>::new();
        assert_eq!(q.push(b"abcdef"), 4);
        assert_eq!(q.push(b"x"), 0);
        assert_eq!(q.pop(), Some(b'a'));
        assert_eq!(q.push(b"xy"), 1);
        let out: Vec<u8> = core::iter::from_fn(|| q.pop()).collect();
        assert_eq!(out, b"bcdx");
        assert!(q.is_empty());
    }

    proptest! {
        /// Against a VecDeque bounded the same way.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..12).prop_map(Ok),
                (0usize..10).prop_map(Err),
            ], 0..100)) {
            let mut q = ByteQueue::<8>::new();
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Ok(bytes) => {
                        let took = q.push(&bytes);
                        let fits = bytes.len().min(8 - model.len());
                        prop_assert_eq!(took, fits);
                        model.extend(&bytes[..fits]);
                    }
                    Err(n) => for _ in 0..n {
                        prop_assert_eq!(q.pop(), model.pop_front());
                    },
                }
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
