//! Seeded Gaussian noise, made by the project itself.
//!
//! candle's CPU generator cannot be seeded, and pictures must be reproducible from their recipe,
//! so every random tensor in the program comes from here. The stream is split into fixed-size
//! chunks, each with its own generator derived from the seed and the chunk index: the result does
//! not depend on the number of threads, and large tensors (all of Stable Diffusion's weights) are
//! filled in parallel.

use candle_core::{Device, Shape, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Number of values drawn from one chunk generator.
pub const CHUNK_LEN: usize = 1 << 16;

/// Below this many values the noise is drawn on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 20;

/// Mixes a seed and a stream index into a new well-spread seed (SplitMix64's finaliser).
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed
        ^ stream
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with chunk `chunk_index` of the stream of `seed`: the values
/// `gaussian_vec(seed, n)[chunk_index * CHUNK_LEN..]` would hold there, for `out` no longer
/// than [`CHUNK_LEN`]. Lets callers that work chunk by chunk draw noise where they use it.
pub fn fill_chunk(seed: u64, chunk_index: usize, out: &mut [f32]) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(derive_seed(seed, chunk_index as u64));
    for x in out.iter_mut() {
        *x = StandardNormal.sample(&mut rng);
    }
}

/// Standard normal values, `len` of them, reproducible from `seed`.
pub fn gaussian_vec(seed: u64, len: usize) -> Vec<f32> {
    let mut out = vec![0f32; len];
    if len < PARALLEL_THRESHOLD {
        for (i, chunk) in out.chunks_mut(CHUNK_LEN).enumerate() {
            fill_chunk(seed, i, chunk);
        }
        return out;
    }

    // Hand out whole chunks to each thread; chunk boundaries, not threads, decide the values.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunks: Vec<(usize, &mut [f32])> = out.chunks_mut(CHUNK_LEN).enumerate().collect();
    let per_thread = chunks.len().div_ceil(threads);
    let mut groups: Vec<Vec<(usize, &mut [f32])>> = Vec::new();
    let mut iter = chunks.into_iter();
    loop {
        let group: Vec<_> = iter.by_ref().take(per_thread).collect();
        if group.is_empty() {
            break;
        }
        groups.push(group);
    }
    std::thread::scope(|scope| {
        for group in groups {
            std::thread::Builder::new()
                .name("noise".into())
                .spawn_scoped(scope, move || {
                    for (i, chunk) in group {
                        fill_chunk(seed, i, chunk);
                    }
                })
                .expect("spawning a noise thread");
        }
    });
    out
}

/// A standard normal tensor of the given shape, reproducible from `seed`.
pub fn gaussian(
    seed: u64,
    shape: impl Into<Shape>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let shape = shape.into();
    let values = gaussian_vec(seed, shape.elem_count());
    Tensor::from_vec(values, shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        let a = gaussian_vec(7, 1000);
        let b = gaussian_vec(7, 1000);
        let c = gaussian_vec(8, 1000);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn parallel_fill_matches_a_prefix_of_the_serial_stream() {
        // The first chunks of a large request equal the small request of the same seed.
        let big = gaussian_vec(3, PARALLEL_THRESHOLD + 17);
        let small = gaussian_vec(3, 3 * CHUNK_LEN);
        assert_eq!(&big[..small.len()], &small[..]);
    }

    #[test]
    fn values_look_standard_normal() {
        let v = gaussian_vec(11, 200_000);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }
}
