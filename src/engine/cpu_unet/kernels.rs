//! The arithmetic of the CPU UNet: matrix products, convolutions, norms, activations.
//!
//! Activations are token-major: a picture of `h x w` cells and `c` channels is a slice of
//! `h * w` rows of `c` values, so a linear layer, a 1x1 convolution and the attention's
//! projections are all one matrix product, and a channel concatenation is a row-by-row copy.
//! Weights come packed (see `Weights` and `packed`).
//!
//! Products with a weight go to `packed`, which shares large ones out over the cores; the
//! attention's products of activations with each other go to the `gemm` crate (the kernels
//! candle itself uses), called without threads, as the pipeline runs the calls of a step side
//! by side. Everything else is plain loops
//! the compiler vectorises, with polynomial `exp` and `tanh` that stay within a few units in
//! the last place of the library functions and cost a fraction of them.

use super::packed::{self, Packed};
use crate::engine::error::{EngineError, Result};

/// Runs `body` compiled for the best instruction set this CPU has (AVX2 and FMA where present),
/// so that the loops inside, and the `#[inline(always)]` helpers they call, vectorise eight
/// wide rather than at the baseline's four. Without fast-math the results are the same bytes
/// either way.
#[inline(always)]
fn simd<R>(body: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(body)
}

/// A read-only matrix inside a slice: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A dense row-major matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Columns `first..first + count` of a row-major matrix of `rows` rows of `width` values:
    /// one attention head's slice of the queries, keys or values.
    pub fn column_block(
        data: &'a [f32],
        rows: usize,
        width: usize,
        first: usize,
        count: usize,
    ) -> Self {
        Self {
            data: &data[first..],
            rows,
            cols: count,
            row_stride: width,
            col_stride: 1,
        }
    }

    /// The same elements read as the transposed matrix.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c));
        last.is_some_and(|last| last < self.data.len())
    }
}

/// `out (+)= a · b`, with `out` a row-major `[a.rows, b.cols]` matrix whose rows lie
/// `out_row_stride` apart; without `accumulate`, what `out` held is ignored.
///
/// # Panics
/// When the shapes disagree or a matrix does not fit its slice: callers size every buffer
/// from the same dimensions, so this is a bug, never bad input.
pub fn matmul(out: &mut [f32], out_row_stride: usize, a: Mat, b: Mat, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k, "matmul: {m}x{k} times {}x{n}", b.rows);
    assert!(a.fits() && b.fits(), "matmul: operand outside its slice");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        n <= out_row_stride
            && packed::rows_end(m, out_row_stride, n).is_some_and(|end| end <= out.len()),
        "matmul: output outside its slice"
    );
    if k == 0 {
        if !accumulate {
            for row in out.chunks_mut(out_row_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every element gemm reads inside `a.data` and `b.data`
    // and every element it writes inside `out`; `out` is borrowed mutably, so it cannot
    // overlap the operands; strides are below `isize::MAX` because they index live slices.
    #[expect(
        unsafe_code,
        reason = "gemm takes raw pointers; bounds are checked above"
    )]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A linear layer on token-major rows: `out[rows, outputs] = xs[rows, inputs] · W + bias`.
///
/// # Errors
/// When the rows, the weight and the bias disagree in size (a checkpoint whose tensors do not
/// fit together).
pub fn linear(
    xs: &[f32],
    rows: usize,
    inputs: usize,
    weight: &Packed,
    bias: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let outputs = weight.outputs();
    if inputs != weight.inputs()
        || xs.len() != rows * inputs
        || bias.is_some_and(|b| b.len() != outputs)
    {
        return Err(EngineError::InvalidRequest(format!(
            "UNet layer of {} inputs and {outputs} outputs given rows of {inputs} values{}",
            weight.inputs(),
            bias.map(|b| format!(" and a bias of {}", b.len()))
                .unwrap_or_default()
        )));
    }
    let mut out = match bias {
        Some(bias) => bias.repeat(rows),
        None => vec![0.0; rows * outputs],
    };
    packed::matmul(&mut out, outputs, xs, inputs, rows, weight, bias.is_some());
    Ok(out)
}

/// The transpose of a row-major `[rows, cols]` matrix: planes `[C, cells]` to token rows
/// `[cells, C]` and back, or a weight `[out, in]` to `[in, out]`.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    if rows == 0 || cols == 0 {
        return values.to_vec();
    }
    let mut out = vec![0.0; values.len()];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, v) in row.iter().enumerate() {
            out[c * rows + r] = *v;
        }
    }
    out
}

/// The size of a token-major picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Cells down.
    pub height: usize,
    /// Cells across.
    pub width: usize,
}

impl Grid {
    /// Cells in the picture.
    pub fn cells(self) -> usize {
        self.height * self.width
    }
}

/// Queries whose scores one pass of [`attend`] holds: 256 rows of scores over every key.
const QUERY_BLOCK: usize = 256;

/// One attention head, `out[r] = softmax(q[r] · kᵀ) · v` for every query row `r`, written
/// into rows of `out` that lie `out_stride` apart; `q` is scaled already. The queries go in
/// blocks of [`QUERY_BLOCK`], so the scores take a bounded amount of memory however many cells
/// a picture has (a 1024-pixel picture of the embedded model has 65,536).
pub fn attend(out: &mut [f32], out_stride: usize, q: Mat, k: Mat, v: Mat) {
    let tokens = k.rows;
    let mut scores = vec![0.0; QUERY_BLOCK.min(q.rows) * tokens];
    for first in (0..q.rows).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(q.rows - first);
        let block = Mat {
            data: &q.data[first * q.row_stride..],
            rows,
            ..q
        };
        let scores = &mut scores[..rows * tokens];
        matmul(scores, tokens, block, k.t(), false);
        softmax_rows(scores, tokens);
        let p = Mat::rows(scores, rows, tokens);
        matmul(&mut out[first * out_stride..], out_stride, p, v, false);
    }
}

/// Output cells gathered at a time by [`conv3x3`].
const GATHER_CELLS: usize = 4096;

/// A 3x3 convolution with padding 1 and stride 1 or 2 on a token-major picture, with the
/// weight packed by `(ky, kx, in)` rows (see `Weights`); returns the output and its grid.
///
/// # Errors
/// When the weight is not a 3x3 convolution over `in_channels` or the bias does not fit it.
pub fn conv3x3(
    xs: &[f32],
    grid: Grid,
    in_channels: usize,
    weight: &Packed,
    bias: &[f32],
    stride: usize,
) -> Result<(Vec<f32>, Grid)> {
    let taps = in_channels * 9;
    if in_channels == 0
        || weight.inputs() != taps
        || weight.outputs() != bias.len()
        || xs.len() != grid.cells() * in_channels
    {
        return Err(EngineError::InvalidRequest(format!(
            "UNet convolution of {} inputs and {} outputs (bias {}) given {in_channels} channels",
            weight.inputs(),
            weight.outputs(),
            bias.len()
        )));
    }
    let out_grid = Grid {
        height: (grid.height - 1) / stride + 1,
        width: (grid.width - 1) / stride + 1,
    };

    // Gather each output cell's 3x3 neighbourhood, neighbour by neighbour, each neighbour's
    // channels one contiguous copy; zeros beyond the border (multiplied like any value, as in
    // candle's padded convolution, so a non-finite weight spreads the same way). Cells go in
    // blocks, so the gathered values stay a few megabytes at any picture size; a cell's sums
    // do not depend on its block.
    let cells = out_grid.cells();
    let block = GATHER_CELLS.min(cells);
    let mut columns = vec![0.0; block * taps];
    let mut out = bias.repeat(cells);
    for first in (0..cells).step_by(block.max(1)) {
        let count = block.min(cells - first);
        let columns = &mut columns[..count * taps];
        for (i, column) in columns.chunks_exact_mut(taps).enumerate() {
            let cell = first + i;
            let (oy, ox) = (cell / out_grid.width, cell % out_grid.width);
            for (tap, slot) in column.chunks_exact_mut(in_channels).enumerate() {
                let y = (oy * stride + tap / 3).wrapping_sub(1);
                let x = (ox * stride + tap % 3).wrapping_sub(1);
                if y < grid.height && x < grid.width {
                    slot.copy_from_slice(&xs[(y * grid.width + x) * in_channels..][..in_channels]);
                } else {
                    slot.fill(0.0);
                }
            }
        }
        let out = &mut out[first * bias.len()..];
        packed::matmul(out, bias.len(), columns, taps, count, weight, true);
    }
    Ok((out, out_grid))
}

/// Nearest-neighbour upsampling by two.
pub fn upsample2(xs: &[f32], grid: Grid, channels: usize) -> (Vec<f32>, Grid) {
    let out_grid = Grid {
        height: grid.height * 2,
        width: grid.width * 2,
    };
    let mut out = vec![0.0; out_grid.cells() * channels];
    for (cell, row) in out.chunks_exact_mut(channels).enumerate() {
        let (y, x) = (cell / out_grid.width / 2, cell % out_grid.width / 2);
        row.copy_from_slice(&xs[(y * grid.width + x) * channels..][..channels]);
    }
    (out, out_grid)
}

/// Group normalisation of a token-major picture with `groups` groups of consecutive channels,
/// then the affine `weight`, `bias`; with `silu`, the activation follows.
pub fn group_norm(
    xs: &[f32],
    channels: usize,
    groups: usize,
    eps: f64,
    weight: &[f32],
    bias: &[f32],
    silu: bool,
) -> Vec<f32> {
    simd(
        #[inline(always)]
        || {
            let per_group = channels / groups;
            let cells = xs.len() / channels;
            let count = (cells * per_group) as f32;

            // Sums per channel first, a vector add per cell, then per group.
            let mut channel_sums = vec![0.0f32; channels];
            for row in xs.chunks_exact(channels) {
                add_in_place(&mut channel_sums, row);
            }
            let mean: Vec<f32> = channel_sums
                .chunks_exact(per_group)
                .map(|c| c.iter().sum::<f32>() / count)
                .collect();
            let channel_mean: Vec<f32> = (0..channels).map(|c| mean[c / per_group]).collect();
            let mut channel_squares = vec![0.0f32; channels];
            for row in xs.chunks_exact(channels) {
                for ((acc, v), m) in channel_squares.iter_mut().zip(row).zip(&channel_mean) {
                    *acc += (v - m) * (v - m);
                }
            }
            let inv_std: Vec<f32> = channel_squares
                .chunks_exact(per_group)
                .map(|c| 1.0 / (c.iter().sum::<f32>() / count + eps as f32).sqrt())
                .collect();

            // Per channel: y = x * scale + shift.
            let (mut scale, mut shift) = (vec![0.0f32; channels], vec![0.0f32; channels]);
            for c in 0..channels {
                let g = c / per_group;
                scale[c] = inv_std[g] * weight[c];
                shift[c] = bias[c] - mean[g] * scale[c];
            }
            let mut out = vec![0.0; xs.len()];
            for (dst, row) in out
                .chunks_exact_mut(channels)
                .zip(xs.chunks_exact(channels))
            {
                for (((d, v), s), b) in dst.iter_mut().zip(row).zip(&scale).zip(&shift) {
                    *d = v * s + b;
                }
            }
            if silu {
                silu_in_place(&mut out);
            }
            out
        },
    )
}

/// Layer normalisation of every row (eps 1e-5, as the transformer blocks use).
pub fn layer_norm(xs: &[f32], dim: usize, weight: &[f32], bias: &[f32]) -> Vec<f32> {
    simd(
        #[inline(always)]
        || {
            let mut out = vec![0.0; xs.len()];
            for (dst, row) in out.chunks_exact_mut(dim).zip(xs.chunks_exact(dim)) {
                let mean = sum(row) / dim as f32;
                let var = squared_deviation(row, mean) / dim as f32;
                let inv_std = 1.0 / (var + 1e-5).sqrt();
                for (((d, v), w), b) in dst.iter_mut().zip(row).zip(weight).zip(bias) {
                    *d = (v - mean) * inv_std * w + b;
                }
            }
            out
        },
    )
}

/// `x * sigmoid(x)` on every value.
pub fn silu_in_place(xs: &mut [f32]) {
    simd(
        #[inline(always)]
        || {
            for v in xs {
                *v /= 1.0 + exp(-*v);
            }
        },
    )
}

/// Softmax of every row of `scores`, in place.
pub fn softmax_rows(scores: &mut [f32], width: usize) {
    simd(
        #[inline(always)]
        || {
            for row in scores.chunks_exact_mut(width) {
                let max = max(row);
                // The exponentials in a loop of their own, which vectorises; the sum after it.
                for v in row.iter_mut() {
                    *v = exp(*v - max);
                }
                let inv = 1.0 / sum(row);
                for v in row.iter_mut() {
                    *v *= inv;
                }
            }
        },
    )
}

/// The sum of `values`, over eight running lanes so that the loop vectorises (a single running
/// sum fixes the order of additions and keeps the compiler to one value at a time).
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// The largest of `values` (NaN where one is NaN), over eight lanes like [`sum`].
#[inline(always)]
fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, v| greater(m, *v));
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane = greater(*lane, *v);
        }
    }
    lanes.iter().fold(rest, |m, v| greater(m, *v))
}

/// The larger of two values, NaN when either is: one compare and select, which vectorises
/// (`f32::max` skips NaN, which takes more).
#[inline(always)]
fn greater(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() { a } else { b }
}

/// The sum of squared distances of `values` from `mean`, over eight lanes like [`sum`].
#[inline(always)]
fn squared_deviation(values: &[f32], mean: f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += (v - mean) * (v - mean);
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// GEGLU: rows of `[hidden | gate]` (`2 * inner` wide) become `hidden * gelu(gate)`, with
/// GELU's tanh form, as candle's `gelu` computes it.
pub fn geglu(xs: &[f32], inner: usize) -> Vec<f32> {
    simd(
        #[inline(always)]
        || {
            const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
            let mut out = vec![0.0; xs.len() / 2];
            for (dst, row) in out.chunks_exact_mut(inner).zip(xs.chunks_exact(2 * inner)) {
                let (hidden, gate) = row.split_at(inner);
                for ((d, h), g) in dst.iter_mut().zip(hidden).zip(gate) {
                    let inner = SQRT_TWO_OVER_PI * g * (1.0 + 0.044_715 * g * g);
                    *d = h * (0.5 * g * (1.0 + tanh(inner)));
                }
            }
            out
        },
    )
}

/// `a += b`, element by element.
pub fn add_in_place(a: &mut [f32], b: &[f32]) {
    simd(
        #[inline(always)]
        || {
            for (a, b) in a.iter_mut().zip(b) {
                *a += b;
            }
        },
    )
}

/// `e^x` for `f32`, a few ulp from the library's, without branches so that loops over it
/// vectorise: `2^n · p(r)` with `x = n ln 2 + r`, `|r| <= ln 2 / 2`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Below -87.3 the result would be subnormal; e^-87.3 stands in for it, as good as 0.
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer.
    let x = x.clamp(-87.3, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = n.mul_add(-1.428_606_8e-6, n.mul_add(-0.693_145_75, x));
    // Taylor to degree 7: the first term left out is below 1e-8 of the result.
    let p: f32 = 1.0 / 5040.0;
    let p = p.mul_add(r, 1.0 / 720.0);
    let p = p.mul_add(r, 1.0 / 120.0);
    let p = p.mul_add(r, 1.0 / 24.0);
    let p = p.mul_add(r, 1.0 / 6.0);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r, 1.0);
    let p = p.mul_add(r, 1.0);
    // 2^n built in the exponent field: adding `ROUND + 127` leaves `n + 127` (1..=254 here) in
    // the low mantissa bits, which the shift moves into the exponent. Plain bit operations,
    // unlike a float-to-int cast, vectorise.
    let scale = f32::from_bits((n + (ROUND + 127.0)).to_bits() << 23);
    // NaN survives the clamp and the arithmetic; keep it NaN rather than a random power of 2.
    if x.is_nan() { x } else { p * scale }
}

/// `tanh` for `f32` within a few ulp, as a rational function (the minimax fit used by Eigen),
/// which saturates to ±1 beyond ±9.
#[inline(always)]
pub fn tanh(input: f32) -> f32 {
    let x = input.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = x2.mul_add(-2.760_768_5e-16, 2.000_188e-13);
    let p = x2.mul_add(p, -8.604_672e-11);
    let p = x2.mul_add(p, 5.122_297e-8);
    let p = x2.mul_add(p, 1.485_722_4e-5);
    let p = x2.mul_add(p, 6.372_619_3e-4);
    let p = x2.mul_add(p, 4.893_524_6e-3);
    let q = x2.mul_add(1.198_258_4e-6, 1.185_347_1e-4);
    let q = x2.mul_add(q, 2.268_434_6e-3);
    let q = x2.mul_add(q, 4.893_525e-3);
    // Beyond ±9 the library's tanh is ±1 to the last bit.
    if input.abs() > 9.0 {
        1f32.copysign(input)
    } else {
        x * p / q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> i64 {
        (i64::from(a.to_bits() as i32) - i64::from(b.to_bits() as i32)).abs()
    }

    #[test]
    fn exp_and_tanh_stay_close_to_the_library() {
        let mut worst = (0, 0.0f32);
        for i in -80_000..=80_000 {
            let x = i as f32 * 1e-3;
            let e = ulps(exp(x), x.exp());
            assert!(e <= 4, "exp({x}) = {} vs {}", exp(x), x.exp());
            let t = (tanh(x) - x.tanh()).abs();
            if t > worst.1 {
                worst = (i, t);
            }
        }
        assert!(worst.1 < 4e-7, "tanh off by {} at {}", worst.1, worst.0);
        assert!(exp(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
        assert!(exp(-200.0) < 2e-38, "far below zero, e^x is as good as 0");
        assert_eq!(tanh(50.0), 1.0);
    }

    #[test]
    fn matmul_follows_the_strides() {
        // [2x3] · [3x2], the right operand read transposed from a [2x3] weight.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
        let w_t = Mat::rows(&w, 2, 3).t();
        let mut out = [10.0; 4];
        matmul(&mut out, 2, Mat::rows(&a, 2, 3), w_t, true);
        assert_eq!(out, [10.0 - 2.0, 14.0, 10.0 - 2.0, 23.0]);
        matmul(&mut out, 2, Mat::rows(&a, 2, 3), w_t, false);
        assert_eq!(out, [-2.0, 4.0, -2.0, 13.0]);
    }

    #[test]
    fn strided_convolution_sees_the_border_as_zero() {
        // One channel, 4x4 ramp, a kernel that sums the neighbourhood.
        let xs: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let grid = Grid {
            height: 4,
            width: 4,
        };
        let (out, g) = conv3x3(&xs, grid, 1, &Packed::new(&[1.0; 9], 9, 1), &[0.5], 2).unwrap();
        assert_eq!(
            g,
            Grid {
                height: 2,
                width: 2
            }
        );
        // Output (0,0) covers input rows -1..=1, columns -1..=1: 0+1+4+5.
        assert_eq!(out[0], 10.5);
        // Output (1,1) covers rows 1..=3, columns 1..=3.
        let full: f32 = [5, 6, 7, 9, 10, 11, 13, 14, 15]
            .iter()
            .map(|&v| v as f32)
            .sum();
        assert_eq!(out[3], full + 0.5);
    }
}
