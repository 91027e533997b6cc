//! Matrix products against a weight packed once per run, summed in one fixed order.
//!
//! A linear layer's or a convolution's weight is the same for every call of a run, so it is
//! laid out once in the order the inner loop reads it: panels of [`PANEL`] output columns,
//! each holding, input by input, that input's weights for those columns. The product then
//! walks a panel front to back while six rows of the activation are broadcast against it,
//! twelve AVX2 accumulators held in registers, with no packing at call time.
//!
//! Every output element is `init`, then one fused multiply-add per input in input order.
//! Nothing else enters it, so its value does not depend on how many rows the call has, where
//! the row falls in a tile, or whether the AVX2 or the portable path ran: a picture is the same
//! bytes alone or in a batch, on any x86-64 CPU and elsewhere.

/// Output columns per panel: two AVX2 vectors.
const PANEL: usize = 16;

/// Rows per tile: six rows of two vectors keep twelve accumulators in the sixteen registers.
const TILE_ROWS: usize = 6;

/// Inputs per pass when a weight is too large to stay in the core's cache: a pass over
/// `INPUT_BLOCK` inputs of [`COLUMN_BLOCK`] columns reads 256 KiB of weights, which stay in L2
/// while every row tile goes by. Between passes a tile's sums are stored and reloaded, which
/// leaves each sum's order, and so its value, as it is.
const INPUT_BLOCK: usize = 256;

/// Output columns per pass (sixteen panels); see [`INPUT_BLOCK`].
const COLUMN_BLOCK: usize = 16 * PANEL;

/// Weights up to this many values are read in one pass (the embedded model's largest, a
/// 3x3 convolution from 128 to 64 channels, holds 74K).
const ONE_PASS_VALUES: usize = 160 * 1024;

/// Products of at least this many multiply-adds share their rows out over the thread pool.
const PARALLEL_WORK: usize = 64 << 20;

/// A weight `[inputs, outputs]` (the transposed layout of `Weights`) packed by panels of
/// [`PANEL`] output columns, the last padded with zeros.
#[derive(Debug, Clone)]
pub struct Packed {
    values: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Packed {
    /// Packs a row-major `[inputs, outputs]` weight.
    ///
    /// # Panics
    /// When `weight_t` does not hold `inputs * outputs` values.
    #[cfg(test)]
    pub fn new(weight_t: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(weight_t.len(), inputs * outputs, "packed weight shape");
        Self::from_fn(inputs, outputs, |i, o| weight_t[i * outputs + o])
    }

    /// Packs the weight whose value from input `i` to output `o` is `value(i, o)`, read once
    /// each, straight from a checkpoint's own layout.
    pub fn from_fn(inputs: usize, outputs: usize, value: impl Fn(usize, usize) -> f32) -> Self {
        let panels = outputs.div_ceil(PANEL);
        let mut values = vec![0.0; panels * inputs * PANEL];
        // A weight without inputs packs to nothing (its products are the bias alone).
        for (p, panel) in values.chunks_exact_mut((inputs * PANEL).max(1)).enumerate() {
            let first = p * PANEL;
            let width = PANEL.min(outputs - first);
            for (i, slot) in panel.chunks_exact_mut(PANEL).enumerate() {
                for (j, v) in slot[..width].iter_mut().enumerate() {
                    *v = value(i, first + j);
                }
            }
        }
        Self {
            values,
            inputs,
            outputs,
        }
    }

    /// Whether every weight is zero (a knocked-out layer).
    #[cfg(test)]
    pub fn is_zero(&self) -> bool {
        self.values.iter().all(|v| *v == 0.0)
    }

    /// Inputs per output (the product's inner dimension).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Output columns.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Inputs `inputs` of panel `p`.
    fn panel(&self, p: usize, inputs: std::ops::Range<usize>) -> &[f32] {
        &self.values[(p * self.inputs + inputs.start) * PANEL..][..inputs.len() * PANEL]
    }
}

/// `out[r] (+)= xs[r] · W` for `rows` rows: `xs` holds rows of `w.inputs()` values
/// `xs_stride` apart, `out` rows of `w.outputs()` values `out_stride` apart. With
/// `accumulate` the sums start from what `out` holds (a bias, a residual), else from zero.
///
/// # Panics
/// When a row lies outside its slice: callers size every buffer from the same dimensions, so
/// this is a bug, never bad input.
pub fn matmul(
    out: &mut [f32],
    out_stride: usize,
    xs: &[f32],
    xs_stride: usize,
    rows: usize,
    w: &Packed,
    accumulate: bool,
) {
    let (k, n) = (w.inputs, w.outputs);
    if rows == 0 || n == 0 {
        return;
    }
    assert!(
        k <= xs_stride && n <= out_stride,
        "packed matmul: rows narrower than the weight"
    );
    let (Some(xs_end), Some(out_end)) = (
        rows_end(rows, xs_stride, k).filter(|&end| end <= xs.len()),
        rows_end(rows, out_stride, n).filter(|&end| end <= out.len()),
    ) else {
        panic!("packed matmul: a row outside its slice");
    };
    let (xs, out) = (&xs[..xs_end], &mut out[..out_end]);
    let product = Product {
        xs,
        xs_stride,
        w,
        accumulate,
        out_stride,
    };
    let work = rows.saturating_mul(k).saturating_mul(n);
    let threads = rayon::current_num_threads();
    if work >= PARALLEL_WORK && threads > 1 {
        // Whole tiles to each thread: a row's sums are the same whoever computes them.
        use rayon::prelude::*;
        let per_thread = rows.div_ceil(threads).div_ceil(TILE_ROWS) * TILE_ROWS;
        out.par_chunks_mut(per_thread * out_stride)
            .enumerate()
            .for_each(|(i, out)| {
                let first = i * per_thread;
                product.rows(out, first, per_thread.min(rows - first));
            });
    } else {
        product.rows(out, 0, rows);
    }
}

/// Where `rows` rows of `width` values, `stride` apart, end; `None` when that overflows.
pub fn rows_end(rows: usize, stride: usize, width: usize) -> Option<usize> {
    match rows {
        0 => Some(0),
        _ => (rows - 1).checked_mul(stride)?.checked_add(width),
    }
}

/// One matrix product's operands.
struct Product<'a> {
    xs: &'a [f32],
    xs_stride: usize,
    w: &'a Packed,
    accumulate: bool,
    out_stride: usize,
}

impl Product<'_> {
    /// Rows `first..first + count` into `out`, whose first row is row `first`.
    fn rows(&self, out: &mut [f32], first: usize, count: usize) {
        let (k, n) = (self.w.inputs, self.w.outputs);
        let (input_block, column_block) = if k * n <= ONE_PASS_VALUES {
            (k.max(1), n.div_ceil(PANEL) * PANEL)
        } else {
            (INPUT_BLOCK, COLUMN_BLOCK)
        };
        for start in (0..k.max(1)).step_by(input_block) {
            let inputs = start..(start + input_block).min(k);
            // Sums start from `out` where asked, and from the previous pass after the first.
            let pass = Pass {
                w: self.w,
                panels: 0..0,
                from_out: self.accumulate || start > 0,
                out_stride: self.out_stride,
            };
            for columns in (0..n).step_by(column_block) {
                let pass = Pass {
                    panels: columns / PANEL..(columns + column_block).min(n).div_ceil(PANEL),
                    ..pass
                };
                for tile_first in (0..count).step_by(TILE_ROWS) {
                    let tile = Tile {
                        xs: &self.xs[(first + tile_first) * self.xs_stride..],
                        xs_stride: self.xs_stride,
                        inputs: inputs.clone(),
                    };
                    let out = &mut out[tile_first * self.out_stride..];
                    match TILE_ROWS.min(count - tile_first) {
                        6 => pass.tile::<6>(out, &tile),
                        5 => pass.tile::<5>(out, &tile),
                        4 => pass.tile::<4>(out, &tile),
                        3 => pass.tile::<3>(out, &tile),
                        2 => pass.tile::<2>(out, &tile),
                        _ => pass.tile::<1>(out, &tile),
                    }
                }
            }
        }
    }
}

/// Up to [`TILE_ROWS`] rows of the left operand, over some of its inputs.
struct Tile<'a> {
    xs: &'a [f32],
    xs_stride: usize,
    inputs: std::ops::Range<usize>,
}

impl Tile<'_> {
    fn row(&self, r: usize) -> &[f32] {
        &self.xs[r * self.xs_stride..][self.inputs.clone()]
    }
}

/// Some panels of a weight, over a tile's inputs.
#[derive(Clone)]
struct Pass<'a> {
    w: &'a Packed,
    panels: std::ops::Range<usize>,
    from_out: bool,
    out_stride: usize,
}

impl Pass<'_> {
    /// One tile of `R` rows against the pass's panels.
    fn tile<const R: usize>(&self, out: &mut [f32], tile: &Tile) {
        let rows: [&[f32]; R] = std::array::from_fn(|r| tile.row(r));
        for p in self.panels.clone() {
            let first = p * PANEL;
            let width = PANEL.min(self.w.outputs - first);
            // The tile's outputs in this panel, padded to full width.
            let mut acc = [[0.0f32; PANEL]; R];
            if self.from_out {
                for (r, a) in acc.iter_mut().enumerate() {
                    a[..width].copy_from_slice(&out[r * self.out_stride + first..][..width]);
                }
            }
            panel_product(&mut acc, &rows, self.w.panel(p, tile.inputs.clone()));
            for (r, a) in acc.iter().enumerate() {
                out[r * self.out_stride + first..][..width].copy_from_slice(&a[..width]);
            }
        }
    }
}

/// `acc[r][j] = fma(rows[r][k], panel[k][j], acc[r][j])` for `k` in order.
#[inline(always)]
fn panel_product<const R: usize>(acc: &mut [[f32; PANEL]; R], rows: &[&[f32]; R], panel: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || panel_product_avx2(simd, acc, rows, panel),
        );
    }
    panel_product_portable(acc, rows, panel);
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn panel_product_avx2<const R: usize>(
    simd: pulp::x86::V3,
    acc: &mut [[f32; PANEL]; R],
    rows: &[&[f32]; R],
    panel: &[f32],
) {
    use pulp::Simd;
    use pulp::x86::V3;

    let k = panel.len() / PANEL;
    let (vectors, _) = V3::as_simd_f32s(panel);
    let vectors = &vectors[..2 * k];
    let rows: [&[f32]; R] = std::array::from_fn(|r| &rows[r][..k]);
    let mut regs: [[pulp::f32x8; 2]; R] = std::array::from_fn(|r| {
        let (v, _) = V3::as_simd_f32s(&acc[r]);
        [v[0], v[1]]
    });
    for i in 0..k {
        let (b0, b1) = (vectors[2 * i], vectors[2 * i + 1]);
        for (reg, row) in regs.iter_mut().zip(&rows) {
            let a = simd.splat_f32s(row[i]);
            reg[0] = simd.mul_add_f32s(a, b0, reg[0]);
            reg[1] = simd.mul_add_f32s(a, b1, reg[1]);
        }
    }
    for (a, reg) in acc.iter_mut().zip(&regs) {
        let (v, _) = V3::as_mut_simd_f32s(a);
        v[0] = reg[0];
        v[1] = reg[1];
    }
}

/// The same sums one value at a time, with the same fused multiply-adds.
fn panel_product_portable<const R: usize>(
    acc: &mut [[f32; PANEL]; R],
    rows: &[&[f32]; R],
    panel: &[f32],
) {
    for (i, weights) in panel.chunks_exact(PANEL).enumerate() {
        for (a, row) in acc.iter_mut().zip(rows) {
            let x = row[i];
            for (c, w) in a.iter_mut().zip(weights) {
                *c = x.mul_add(*w, *c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of values with varied low bits.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed)
                    .wrapping_mul(2_654_435_761)
                    .rotate_left(13);
                (h % 20_011) as f32 / 10_005.5 - 1.0
            })
            .collect()
    }

    #[test]
    fn products_match_plain_sums_for_every_tile_and_panel_remainder() {
        for (rows, k, n) in [
            (1, 1, 1),
            (7, 5, 3),
            (13, 64, 17),
            (64, 576, 64),
            (6, 9, 33),
            // Several input and column passes (a weight past ONE_PASS_VALUES).
            (8, 600, 300),
        ] {
            let (xs, w) = (values(rows * k, 1), values(k * n, 2));
            let packed = Packed::new(&w, k, n);
            let bias = values(n, 3);
            let mut out = bias.repeat(rows);
            matmul(&mut out, n, &xs, k, rows, &packed, true);
            for r in 0..rows {
                for j in 0..n {
                    let mut c = bias[j];
                    for i in 0..k {
                        c = xs[r * k + i].mul_add(w[i * n + j], c);
                    }
                    assert_eq!(out[r * n + j], c, "{rows}x{k}x{n} at ({r}, {j})");
                }
            }
            let mut fresh = vec![f32::NAN; rows * n];
            matmul(&mut fresh, n, &xs, k, rows, &packed, false);
            let zero_bias: Vec<f32> = (0..rows * n)
                .map(|idx| {
                    let (r, j) = (idx / n, idx % n);
                    (0..k).fold(0.0f32, |c, i| xs[r * k + i].mul_add(w[i * n + j], c))
                })
                .collect();
            assert_eq!(fresh, zero_bias);
        }
    }

    #[test]
    fn a_row_comes_out_the_same_in_any_batch() {
        let (k, n) = (96, 40);
        let xs = values(50 * k, 4);
        let packed = Packed::new(&values(k * n, 5), k, n);
        let mut all = vec![0.0; 50 * n];
        matmul(&mut all, n, &xs, k, 50, &packed, false);
        for first in [0, 5, 17, 49] {
            let mut one = vec![0.0; n];
            matmul(&mut one, n, &xs[first * k..], k, 1, &packed, false);
            assert_eq!(one, all[first * n..][..n]);
        }
        let mut portable = [[0.0; PANEL]; 1];
        panel_product_portable(&mut portable, &[&xs[17 * k..][..k]], packed.panel(0, 0..k));
        assert_eq!(portable[0], all[17 * n..][..PANEL]);
    }

    #[test]
    fn strided_rows_leave_the_gaps_alone() {
        let (k, n) = (4, 3);
        let xs = values(3 * 10, 6);
        let packed = Packed::new(&values(k * n, 7), k, n);
        let mut out = vec![9.0; 3 * 5];
        matmul(&mut out, 5, &xs, 10, 3, &packed, false);
        for r in 0..3 {
            assert_eq!(out[r * 5 + 3..r * 5 + 5], [9.0, 9.0]);
        }
    }
}
