//! Deterministic content for transfers too large to hold: any stretch of
//! the stream is made from its position alone, so a sender makes it as it
//! writes and a receiver checks it as it reads.

/// Fills `out` with the stream's bytes from position `at` on: byte `i` is
/// byte `i % 8` (little-endian) of a SplitMix64 mix of `i / 8`, so any
/// byte out of place shows.
pub fn fill(at: u64, out: &mut [u8]) {
    let head = ((8 - at % 8) % 8).min(out.len() as u64) as usize;
    let (first, rest) = out.split_at_mut(head);
    let skip = (at % 8) as usize;
    first.copy_from_slice(&word(at / 8)[skip..skip + head]);
    let base = (at + head as u64) / 8;
    let whole = (rest.len() / 8) as u64;
    let mut words = rest.chunks_exact_mut(8);
    for (k, w) in (&mut words).enumerate() {
        w.copy_from_slice(&word(base + k as u64));
    }
    let tail = words.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&word(base + whole)[..n]);
}

/// The stream's 8 bytes at word `k` (SplitMix64's finaliser).
fn word(k: u64) -> [u8; 8] {
    let mut z = k
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any piece, from any position, is the same bytes as the whole made at once.
    #[test]
    fn pieces_match_the_whole_at_every_alignment() {
        let mut whole = vec![0u8; 100];
        fill(3, &mut whole);
        for start in 0..40 {
            for len in 0..30 {
                let mut piece = vec![0u8; len];
                fill(3 + start as u64, &mut piece);
                assert_eq!(piece, whole[start..start + len], "{start} +{len}");
            }
        }
        assert_ne!(whole[..8], whole[8..16]);
    }
}
