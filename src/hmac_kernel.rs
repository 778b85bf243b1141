//! HMAC-SHA-256 (RFC 2104) with the key's inner and outer hash states computed once.
//!
//! A keyed MAC is two SHA-256 states: after compressing `key ⊕ ipad` and `key ⊕ opad`. Each message
//! then costs its own blocks plus one outer block (two compressions for identifiers of up to 55 bytes),
//! with no buffering or re-keying. SHA-NI is used when the CPU has it (the sha2 crate detects it at run
//! time). Zeroized on drop: the states are as secret as the key.

use sha2::Digest;
use sha2::block_api::compress256;
use zeroize::Zeroize;

const BLOCK: usize = 64;
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

#[derive(Clone)]
pub struct HmacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl HmacKey {
    pub fn new(key: &[u8]) -> HmacKey {
        let mut block = [0u8; BLOCK];
        if key.len() > BLOCK {
            block[..32].copy_from_slice(&sha2::Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let state_after = |pad: u8| {
            let mut padded = block;
            padded.iter_mut().for_each(|b| *b ^= pad);
            let mut state = IV;
            compress256(&mut state, &[padded]);
            padded.zeroize();
            state
        };
        let key = HmacKey {
            inner: state_after(0x36),
            outer: state_after(0x5c),
        };
        block.zeroize();
        key
    }

    /// HMAC-SHA-256 of `message`.
    #[inline]
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut state = self.inner;
        let mut blocks = message.chunks_exact(BLOCK);
        for b in &mut blocks {
            compress256(&mut state, &[b.try_into().expect("64-byte block")]);
        }
        // Padding: 0x80, zeros, then the bit length of (ipad block + message) as a big-endian u64.
        let rest = blocks.remainder();
        let bits = ((BLOCK + message.len()) as u64) * 8;
        let mut tail = [[0u8; BLOCK]; 2];
        let flat = tail.as_flattened_mut();
        flat[..rest.len()].copy_from_slice(rest);
        flat[rest.len()] = 0x80;
        let n = if rest.len() < BLOCK - 8 { 1 } else { 2 };
        flat[n * BLOCK - 8..n * BLOCK].copy_from_slice(&bits.to_be_bytes());
        compress256(&mut state, &tail[..n]);

        let mut outer_block = [0u8; BLOCK];
        for (chunk, word) in outer_block.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        outer_block[32] = 0x80;
        outer_block[BLOCK - 8..].copy_from_slice(&(((BLOCK + 32) as u64) * 8).to_be_bytes());
        let mut out_state = self.outer;
        compress256(&mut out_state, &[outer_block]);
        let mut digest = [0u8; 32];
        for (chunk, word) in digest.chunks_exact_mut(4).zip(out_state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use rand::{RngExt, SeedableRng};

    /// Agrees with the `hmac` crate for every key length around the block size and every message length
    /// across the one-, two- and many-block paddings.
    #[test]
    fn agrees_with_the_hmac_crate_for_all_lengths() {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(4231);
        for key_len in [0, 1, 20, 32, 63, 64, 65, 131] {
            let key: Vec<u8> = (0..key_len).map(|_| rng.random()).collect();
            let fast = HmacKey::new(&key);
            for msg_len in 0..300 {
                let msg: Vec<u8> = (0..msg_len).map(|_| rng.random()).collect();
                let mut reference = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
                reference.update(&msg);
                let expected: [u8; 32] = reference.finalize().into_bytes().into();
                assert_eq!(
                    fast.mac(&msg),
                    expected,
                    "key {key_len} bytes, message {msg_len} bytes"
                );
            }
        }
    }
}
