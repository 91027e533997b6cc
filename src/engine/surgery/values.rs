//! The arithmetic of edits on one tensor's values, in parallel for large tensors.
//!
//! Stable Diffusion's UNet holds tensors of up to 15 million values and 860 million in all;
//! mixing noise into every one of them must take seconds, not minutes. Values are edited as a
//! flat `f32` buffer split into pieces of one noise chunk each, spread over the cores; each
//! piece draws its own chunk of [`crate::engine::noise`]'s stream where it is used, so the
//! values are those of `noise::gaussian_vec` whatever the number of threads.

use candle_core::{DType, Tensor};

use super::edit::TensorOp;
use crate::engine::noise;

/// Below this many values a tensor is edited on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 18;

/// FNV-1a, 64 bits: a hash of a tensor's name that, unlike std's `DefaultHasher`, is fixed
/// forever, so recipes keep their meaning across Rust versions.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The noise seed of one tensor under an edit's seed.
pub fn tensor_seed(edit_seed: u64, component: &str, tensor: &str) -> u64 {
    let key = format!("{component}/{tensor}");
    noise::derive_seed(edit_seed, fnv1a_64(key.as_bytes()))
}

/// Mean and population standard deviation of a tensor's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// `μ_w`.
    pub mean: f64,
    /// `σ_w`.
    pub std: f64,
}

impl Stats {
    /// The statistics of `values` (zero for an empty tensor).
    pub fn of(values: &[f32]) -> Self {
        if values.is_empty() {
            return Self {
                mean: 0.0,
                std: 0.0,
            };
        }
        let n = values.len() as f64;
        let sum: f64 = parallel_sum(values, f64::from);
        let mean = sum / n;
        let var = parallel_sum(values, |x| (f64::from(x) - mean).powi(2)) / n;
        Self {
            mean,
            std: var.sqrt(),
        }
    }
}

/// Values per piece of work: one chunk of the noise stream. Fixed, so that sums (and so the
/// statistics, and so the edited weights) do not depend on the number of cores.
const PIECE_LEN: usize = noise::CHUNK_LEN;

/// Runs `f` on every item, spreading them over the cores when `parallel`. Threads take items
/// from a shared queue, and the calling thread works too, so a thread that cannot be started
/// costs speed, not correctness.
fn run_items<T: Send>(items: Vec<T>, parallel: bool, f: impl Fn(T) + Sync) {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if !parallel || threads == 1 || items.len() < 2 {
        items.into_iter().for_each(f);
        return;
    }
    let queue = std::sync::Mutex::new(items.into_iter());
    let work = || {
        loop {
            let item = match queue.lock() {
                Ok(mut items) => items.next(),
                Err(_) => None,
            };
            match item {
                Some(item) => f(item),
                None => break,
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let spawned = std::thread::Builder::new()
                .name("surgery".into())
                .spawn_scoped(scope, work);
            if let Err(e) = spawned {
                tracing::debug!("cannot start an edit thread ({e}); fewer threads will do");
                break;
            }
        }
        work();
    });
}

/// Runs `f(piece_index, piece)` over the pieces of `values`.
fn for_each_piece(values: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    let parallel = values.len() >= PARALLEL_THRESHOLD;
    let items: Vec<(usize, &mut [f32])> = values.chunks_mut(PIECE_LEN).enumerate().collect();
    run_items(items, parallel, |(index, part)| f(index, part));
}

/// Runs `f(value, z)` over `values` with `z` the standard normal stream of `seed`
/// ([`noise::gaussian_vec`]'s values), drawing the noise piece by piece where it is used.
fn with_noise(values: &mut [f32], seed: u64, f: impl Fn(&mut f32, f32) + Sync) {
    thread_local! {
        // One noise buffer per thread, reused piece after piece: a fresh 256 KiB buffer per
        // piece costs more in page faults than drawing the noise.
        static NOISE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    for_each_piece(values, |index, part| {
        NOISE.with_borrow_mut(|z| {
            z.resize(part.len(), 0.0);
            noise::fill_chunk(seed, index, z);
            for (v, &z) in part.iter_mut().zip(z.iter()) {
                f(v, z);
            }
        });
    });
}

/// Sums `g(x)` over `values` piece by piece, the same way whatever the number of cores.
fn parallel_sum(values: &[f32], g: impl Fn(f32) -> f64 + Sync) -> f64 {
    let mut sums = vec![0f64; values.len().div_ceil(PIECE_LEN)];
    let items: Vec<(&[f32], &mut f64)> = values.chunks(PIECE_LEN).zip(sums.iter_mut()).collect();
    run_items(items, values.len() >= PARALLEL_THRESHOLD, |(part, sum)| {
        *sum = part.iter().map(|&x| g(x)).sum();
    });
    sums.iter().sum()
}

/// Computes a tensor's edited value from its original and the operations on it, in order.
///
/// `component` and `name` identify the tensor for the noise seeds.
pub(super) fn edited_tensor(
    original: &Tensor,
    ops: &[TensorOp],
    component: &str,
    name: &str,
) -> candle_core::Result<Tensor> {
    let mut values = original
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    let stats = ops
        .iter()
        .any(|op| matches!(op, TensorOp::Randomize { .. } | TensorOp::Mix { .. }))
        .then(|| Stats::of(&values));

    for op in ops {
        match *op {
            TensorOp::Zero => values.fill(0.0),
            TensorOp::Scale(factor) => for_each_piece(&mut values, |_, part| {
                for v in part {
                    *v = (f64::from(*v) * factor) as f32;
                }
            }),
            TensorOp::Randomize { seed } => {
                let Stats { mean, std } = stats.unwrap_or(Stats {
                    mean: 0.0,
                    std: 0.0,
                });
                let (mean, std) = (mean as f32, std as f32);
                with_noise(&mut values, tensor_seed(seed, component, name), |v, z| {
                    *v = mean + std * z;
                });
            }
            TensorOp::Mix { fraction, seed } => {
                let Stats { mean, std } = stats.unwrap_or(Stats {
                    mean: 0.0,
                    std: 0.0,
                });
                let (keep, mix) = ((1.0 - fraction) as f32, fraction as f32);
                let (mean, std) = (mean as f32, std as f32);
                with_noise(&mut values, tensor_seed(seed, component, name), |v, z| {
                    *v = keep * *v + mix * (mean + std * z);
                });
            }
        }
    }
    Tensor::from_vec(values, original.shape(), original.device())?.to_dtype(original.dtype())
}
