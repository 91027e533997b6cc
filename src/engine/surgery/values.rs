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
    /// The statistics of a tensor's values, read as `f32`.
    pub fn of_tensor(tensor: &Tensor) -> candle_core::Result<Self> {
        let values = tensor
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        Ok(Self::of(&values))
    }

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
pub(super) const PIECE_LEN: usize = noise::CHUNK_LEN;

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

/// Sums `g(x)` over `values` piece by piece, the same way whatever the number of cores.
fn parallel_sum(values: &[f32], g: impl Fn(f32) -> f64 + Sync) -> f64 {
    let mut sums = vec![0f64; values.len().div_ceil(PIECE_LEN)];
    let items: Vec<(&[f32], &mut f64)> = values.chunks(PIECE_LEN).zip(sums.iter_mut()).collect();
    run_items(items, values.len() >= PARALLEL_THRESHOLD, |(part, sum)| {
        *sum = part.iter().map(|&x| g(x)).sum();
    });
    sums.iter().sum()
}

/// Whether any of `ops` needs the tensor's [`Stats`].
pub(super) fn needs_stats(ops: &[TensorOp]) -> bool {
    ops.iter()
        .any(|op| matches!(op, TensorOp::Randomize { .. } | TensorOp::Mix { .. }))
}

/// Computes a tensor's edited value from its original and the operations on it, in order.
///
/// `component` and `name` identify the tensor for the noise seeds; `stats` are the original's
/// (see [`needs_stats`]).
pub(super) fn edited_tensor(
    original: &Tensor,
    ops: &[TensorOp],
    component: &str,
    name: &str,
    stats: Option<Stats>,
) -> candle_core::Result<Tensor> {
    let mut values = original
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    let edit = PieceEdit::new(ops, component, name, stats);
    for_each_piece(&mut values, |index, piece| edit.apply(index, piece));
    Tensor::from_vec(values, original.shape(), original.device())?.to_dtype(original.dtype())
}

/// Writes the edited value of `original` straight into `target`, a tensor of the same shape
/// (the live weight), when both are contiguous `f32` tensors in memory; returns `false`,
/// having written nothing, when they are not. This spares the copy, the allocation and the
/// page faults of [`edited_tensor`]: for SD's UNet, more time than the arithmetic itself.
pub(super) fn write_edited(
    original: &Tensor,
    target: &Tensor,
    ops: &[TensorOp],
    component: &str,
    name: &str,
    stats: Option<Stats>,
) -> candle_core::Result<bool> {
    let in_memory =
        |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous();
    if !in_memory(original) || !in_memory(target) || original.shape() != target.shape() {
        return Ok(false);
    }
    let edit = PieceEdit::new(ops, component, name, stats);
    target.inplace_op2(original, &edit)?;
    Ok(true)
}

/// The operations on one tensor, ready to run on any piece of it: piece `i` uses chunk `i` of
/// each noise stream, so pieces can be edited in any order, on any thread.
struct PieceEdit<'a> {
    ops: &'a [TensorOp],
    /// The noise seed of each operation (unused by those without noise).
    seeds: Vec<u64>,
    /// Mean and standard deviation of the original, as `f32`.
    mean: f32,
    std: f32,
}

impl<'a> PieceEdit<'a> {
    fn new(ops: &'a [TensorOp], component: &str, name: &str, stats: Option<Stats>) -> Self {
        let seeds = ops
            .iter()
            .map(|op| match *op {
                TensorOp::Randomize { seed } | TensorOp::Mix { seed, .. } => {
                    tensor_seed(seed, component, name)
                }
                TensorOp::Zero | TensorOp::Scale(_) => 0,
            })
            .collect();
        let Stats { mean, std } = stats.unwrap_or(Stats {
            mean: 0.0,
            std: 0.0,
        });
        Self {
            ops,
            seeds,
            mean: mean as f32,
            std: std as f32,
        }
    }

    /// Edits piece `index` of the tensor, which holds the original values on entry.
    fn apply(&self, index: usize, piece: &mut [f32]) {
        let (mean, std) = (self.mean, self.std);
        for (op, &seed) in self.ops.iter().zip(&self.seeds) {
            match *op {
                TensorOp::Zero => piece.fill(0.0),
                TensorOp::Scale(factor) => {
                    for v in piece.iter_mut() {
                        *v = (f64::from(*v) * factor) as f32;
                    }
                }
                TensorOp::Randomize { .. } => with_noise(piece, seed, index, |_, z| mean + std * z),
                TensorOp::Mix { fraction, .. } => {
                    let (keep, mix) = ((1.0 - fraction) as f32, fraction as f32);
                    with_noise(piece, seed, index, |v, z| keep * v + mix * (mean + std * z));
                }
            }
        }
    }
}

/// Replaces each value `v` of piece `index` by `f(v, z)`, with `z` the matching value of chunk
/// `index` of the noise stream of `seed`.
fn with_noise(piece: &mut [f32], seed: u64, index: usize, f: impl Fn(f32, f32) -> f32) {
    thread_local! {
        // One noise buffer per thread, reused piece after piece: a fresh 256 KiB buffer per
        // piece costs more in page faults than drawing the noise.
        static NOISE: std::cell::RefCell<Vec<f32>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    NOISE.with_borrow_mut(|z| {
        z.resize(piece.len(), 0.0);
        noise::fill_chunk(seed, index, z);
        for (v, &z) in piece.iter_mut().zip(z.iter()) {
            *v = f(*v, z);
        }
    });
}

impl candle_core::InplaceOp2 for PieceEdit<'_> {
    fn name(&self) -> &'static str {
        "weight-edit"
    }

    fn cpu_fwd(
        &self,
        dst: &mut candle_core::CpuStorage,
        dst_l: &candle_core::Layout,
        src: &candle_core::CpuStorage,
        src_l: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use candle_core::CpuStorage;

        let (CpuStorage::F32(dst), CpuStorage::F32(src)) = (dst, src) else {
            candle_core::bail!("weight-edit: only f32 tensors are edited in place");
        };
        let (Some((d0, d1)), Some((s0, s1))) =
            (dst_l.contiguous_offsets(), src_l.contiguous_offsets())
        else {
            candle_core::bail!("weight-edit: only contiguous tensors are edited in place");
        };
        let (dst, src) = (&mut dst[d0..d1], &src[s0..s1]);
        if dst.len() != src.len() {
            candle_core::bail!("weight-edit: {} values into {}", src.len(), dst.len());
        }
        for_each_piece(dst, |index, piece| {
            let start = index * PIECE_LEN;
            piece.copy_from_slice(&src[start..start + piece.len()]);
            self.apply(index, piece);
        });
        Ok(())
    }
}
