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
    pub fn new(weight_t: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(weight_t.len(), inputs * outputs, "packed weight shape");
        let panels = outputs.div_ceil(PANEL);
        let mut values = vec![0.0; panels * inputs * PANEL];
        for (p, panel) in values.chunks_exact_mut(inputs * PANEL).enumerate() {
            let first = p * PANEL;
            let width = PANEL.min(outputs - first);
            for (row, slot) in weight_t
                .chunks_exact(outputs)
                .zip(panel.chunks_exact_mut(PANEL))
            {
                slot[..width].copy_from_slice(&row[first..first + width]);
            }
        }
        Self {
            values,
            inputs,
            outputs,
        }
    }

    /// Inputs per output (the product's inner dimension).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Output columns.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.values[p * self.inputs * PANEL..][..self.inputs * PANEL]
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
    assert!(
        (rows - 1)
            .checked_mul(xs_stride)
            .and_then(|r| r.checked_add(k))
            .is_some_and(|end| end <= xs.len())
            && (rows - 1)
                .checked_mul(out_stride)
                .and_then(|r| r.checked_add(n))
                .is_some_and(|end| end <= out.len()),
        "packed matmul: a row outside its slice"
    );
    for first in (0..rows).step_by(TILE_ROWS) {
        let count = TILE_ROWS.min(rows - first);
        let tile = Tile {
            xs: &xs[first * xs_stride..],
            xs_stride,
            rows: count,
            k,
        };
        let out = &mut out[first * out_stride..];
        match count {
            6 => tile_all_panels::<6>(out, out_stride, &tile, w, accumulate),
            5 => tile_all_panels::<5>(out, out_stride, &tile, w, accumulate),
            4 => tile_all_panels::<4>(out, out_stride, &tile, w, accumulate),
            3 => tile_all_panels::<3>(out, out_stride, &tile, w, accumulate),
            2 => tile_all_panels::<2>(out, out_stride, &tile, w, accumulate),
            _ => tile_all_panels::<1>(out, out_stride, &tile, w, accumulate),
        }
    }
}

/// Up to [`TILE_ROWS`] rows of the left operand.
struct Tile<'a> {
    xs: &'a [f32],
    xs_stride: usize,
    rows: usize,
    k: usize,
}

impl Tile<'_> {
    fn row(&self, r: usize) -> &[f32] {
        &self.xs[r * self.xs_stride..][..self.k]
    }
}

/// One tile of `R` rows against every panel.
fn tile_all_panels<const R: usize>(
    out: &mut [f32],
    out_stride: usize,
    tile: &Tile,
    w: &Packed,
    accumulate: bool,
) {
    debug_assert_eq!(tile.rows, R);
    let rows: [&[f32]; R] = std::array::from_fn(|r| tile.row(r));
    for p in 0..w.outputs.div_ceil(PANEL) {
        let first = p * PANEL;
        let width = PANEL.min(w.outputs - first);
        // The tile's outputs in this panel, padded to full width.
        let mut acc = [[0.0f32; PANEL]; R];
        if accumulate {
            for (r, a) in acc.iter_mut().enumerate() {
                a[..width].copy_from_slice(&out[r * out_stride + first..][..width]);
            }
        }
        panel_product(&mut acc, &rows, w.panel(p));
        for (r, a) in acc.iter().enumerate() {
            out[r * out_stride + first..][..width].copy_from_slice(&a[..width]);
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
        panel_product_portable(&mut portable, &[&xs[17 * k..][..k]], packed.panel(0));
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
