//! The meter's layers that candle makes slow to train on the CPU, rewritten channels-last
//! (`[B, H, W, C]`) with custom ops whose backward passes are cheap:
//! - a 3x3 convolution stored like PyTorch's `Conv2d` (weight `[out, in, 3, 3]`, bias `[out]`)
//!   but run as one matrix product over im2col columns, whose gradient is the matching col2im;
//!   candle's own conv2d backward runs a direct transposed convolution. The columns end with a
//!   column of ones that multiplies the bias, since the backward pass of a broadcast bias
//!   addition (a strided sum) cost more than the matrix products;
//! - 2x2 max pooling whose gradient goes to the first maximum of each window; candle's builds
//!   five full-size temporaries (and, in 0.11.1, scales the gradient by 1/4).
//!
//! Other devices, or dtypes other than f32, take equivalent paths made of ordinary tensor ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use candle_nn::VarBuilder;

/// A 3x3 convolution with padding 1 and stride 1.
#[derive(Clone, Debug)]
pub(super) struct Conv3x3 {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
}

impl Conv3x3 {
    /// Gets (or, from a `VarMap`, creates) `weight` and `bias` under `vb`.
    pub(super) fn new(
        in_channels: usize,
        out_channels: usize,
        vb: VarBuilder<'_>,
    ) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints(
            (out_channels, in_channels, 3, 3),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bias = vb.get_with_hints(out_channels, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    /// `[B, H, W, C]` → `[B, H, W, out]`.
    pub(super) fn forward_nhwc(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, height, width, channels) = xs.dims4()?;
        let out_channels = self.weight.dim(0)?;
        let columns = if xs.device().is_cpu() && xs.dtype() == DType::F32 {
            xs.contiguous()?.apply_op1(Im2Col3x3)?
        } else {
            im2col_with_tensor_ops(xs)?
        };

        // [out, C, 3, 3] → [3, 3, C, out] → [9C, out]: the (dy, dx, c) order of the columns;
        // the bias is the last row, facing the column of ones.
        let weight = self
            .weight
            .permute((2, 3, 1, 0))?
            .reshape((9 * channels, out_channels))?;
        let kernel = Tensor::cat(&[weight, self.bias.reshape((1, out_channels))?], 0)?;
        columns
            .matmul(&kernel)?
            .reshape((batch, height, width, out_channels))
    }
}

/// 2x2 max pooling with stride 2 of `[B, H, W, C]` into `[B, H/2, W/2, C]`; H and W must be
/// even.
pub(super) fn max_pool_2x2_nhwc(xs: &Tensor) -> candle_core::Result<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == DType::F32 {
        xs.contiguous()?.apply_op1(MaxPool2x2)
    } else {
        xs.permute((0, 3, 1, 2))?
            .max_pool2d(2)?
            .permute((0, 2, 3, 1))?
            .contiguous()
    }
}

/// The im2col columns `[B·H·W, 9·C + 1]` of `[B, H, W, C]`, ordered (dy, dx, c) and then a
/// column of ones, from tensor ops that run on any device.
pub(super) fn im2col_with_tensor_ops(xs: &Tensor) -> candle_core::Result<Tensor> {
    let (batch, height, width, channels) = xs.dims4()?;
    let padded = xs.pad_with_zeros(1, 1, 1)?.pad_with_zeros(2, 1, 1)?;
    let mut taps = Vec::with_capacity(9);
    for dy in 0..3 {
        for dx in 0..3 {
            taps.push(padded.narrow(1, dy, height)?.narrow(2, dx, width)?);
        }
    }
    taps.push(Tensor::ones(
        (batch, height, width, 1),
        xs.dtype(),
        xs.device(),
    )?);
    Tensor::cat(&taps, 3)?.reshape((batch * height * width, 9 * channels + 1))
}

/// The contiguous f32 values of a CPU tensor, or an error naming `op`.
fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op} needs f32 input")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("{op} needs contiguous input"),
    }
}

/// Source pixel of tap `d` (0, 1 or 2) around output pixel `i` on an axis of `len` pixels,
/// or `None` where the tap falls on the zero padding.
fn tap_source(i: usize, d: usize, len: usize) -> Option<usize> {
    (i + d).checked_sub(1).filter(|&s| s < len)
}

/// im2col of a contiguous f32 `[B, H, W, C]` on the CPU, as [`im2col_with_tensor_ops`];
/// its gradient is [`Col2Im3x3`].
struct Im2Col3x3;

impl CustomOp1 for Im2Col3x3 {
    fn name(&self) -> &'static str {
        "im2col3x3"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (batch, height, width, channels) = layout.shape().dims4()?;
        let src = contiguous_f32(storage, layout, self.name())?;
        let row_len = 9 * channels + 1;
        let mut dst = vec![0f32; batch * height * width * row_len];
        let image_len = height * width * channels;
        for (image, out) in src
            .chunks_exact(image_len)
            .zip(dst.chunks_exact_mut(height * width * row_len))
        {
            for (pixel, row) in out.chunks_exact_mut(row_len).enumerate() {
                let (y, x) = (pixel / width, pixel % width);
                row[9 * channels] = 1.0;
                for (tap, slot) in row[..9 * channels].chunks_exact_mut(channels).enumerate() {
                    let source_y = tap_source(y, tap / 3, height);
                    let source_x = tap_source(x, tap % 3, width);
                    if let (Some(sy), Some(sx)) = (source_y, source_x) {
                        let start = (sy * width + sx) * channels;
                        slot.copy_from_slice(&image[start..start + channels]);
                    }
                }
            }
        }
        let shape = Shape::from((batch * height * width, row_len));
        Ok((CpuStorage::F32(dst), shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = Col2Im3x3 { dims: arg.dims4()? };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// The adjoint of [`Im2Col3x3`]: sums columns `[B·H·W, 9·C + 1]` back into `[B, H, W, C]`
/// (the column of ones has no input behind it).
struct Col2Im3x3 {
    dims: (usize, usize, usize, usize),
}

impl CustomOp1 for Col2Im3x3 {
    fn name(&self) -> &'static str {
        "col2im3x3"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (batch, height, width, channels) = self.dims;
        let row_len = 9 * channels + 1;
        let expected = Shape::from((batch * height * width, row_len));
        if layout.shape() != &expected {
            candle_core::bail!("col2im3x3 got {:?}, expected {expected:?}", layout.shape())
        }
        let src = contiguous_f32(storage, layout, self.name())?;
        let image_len = height * width * channels;
        let mut dst = vec![0f32; batch * image_len];
        for (columns, image) in src
            .chunks_exact(height * width * row_len)
            .zip(dst.chunks_exact_mut(image_len))
        {
            for (pixel, row) in columns.chunks_exact(row_len).enumerate() {
                let (y, x) = (pixel / width, pixel % width);
                for (tap, slot) in row[..9 * channels].chunks_exact(channels).enumerate() {
                    let source_y = tap_source(y, tap / 3, height);
                    let source_x = tap_source(x, tap % 3, width);
                    if let (Some(sy), Some(sx)) = (source_y, source_x) {
                        let start = (sy * width + sx) * channels;
                        for (sum, &g) in image[start..start + channels].iter_mut().zip(slot) {
                            *sum += g;
                        }
                    }
                }
            }
        }
        Ok((CpuStorage::F32(dst), Shape::from(self.dims)))
    }
}

/// Offsets of the four values of pooling window (`out_y`, `out_x`) in a contiguous
/// `[H, W, C]` image, channel 0.
fn window_offsets(out_y: usize, out_x: usize, width: usize, channels: usize) -> [usize; 4] {
    let top_left = (2 * out_y * width + 2 * out_x) * channels;
    let bottom_left = top_left + width * channels;
    [
        top_left,
        top_left + channels,
        bottom_left,
        bottom_left + channels,
    ]
}

/// Checks the pooling input shape and returns it with the output shape.
fn pool_dims(shape: &Shape) -> candle_core::Result<((usize, usize, usize, usize), Shape)> {
    let (batch, height, width, channels) = shape.dims4()?;
    if height % 2 != 0 || width % 2 != 0 {
        candle_core::bail!("max_pool_2x2 needs even sides, got {height}x{width}")
    }
    let out = Shape::from((batch, height / 2, width / 2, channels));
    Ok(((batch, height, width, channels), out))
}

/// 2x2 max pooling of a contiguous f32 `[B, H, W, C]` on the CPU; its gradient is
/// [`MaxPool2x2Grad`].
struct MaxPool2x2;

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "max_pool_2x2"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((_, height, width, channels), out_shape) = pool_dims(layout.shape())?;
        let src = contiguous_f32(storage, layout, self.name())?;
        let (out_h, out_w) = (height / 2, width / 2);
        let mut dst = vec![0f32; out_shape.elem_count()];
        for (image, out) in src
            .chunks_exact(height * width * channels)
            .zip(dst.chunks_exact_mut(out_h * out_w * channels))
        {
            for (cell, maxima) in out.chunks_exact_mut(channels).enumerate() {
                let [a, b, c, d] = window_offsets(cell / out_w, cell % out_w, width, channels);
                for (ch, max) in maxima.iter_mut().enumerate() {
                    *max = image[a + ch]
                        .max(image[b + ch])
                        .max(image[c + ch])
                        .max(image[d + ch]);
                }
            }
        }
        Ok((CpuStorage::F32(dst), out_shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &MaxPool2x2Grad)?;
        Ok(Some(grad))
    }
}

/// Gradient of [`MaxPool2x2`]: (pooling input, gradient of the output) → gradient of the
/// input, nonzero only at the first maximum of each window.
struct MaxPool2x2Grad;

impl CustomOp2 for MaxPool2x2Grad {
    fn name(&self) -> &'static str {
        "max_pool_2x2_grad"
    }

    fn cpu_fwd(
        &self,
        input: &CpuStorage,
        input_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((_, height, width, channels), out_shape) = pool_dims(input_layout.shape())?;
        if grad_layout.shape() != &out_shape {
            candle_core::bail!("max_pool_2x2_grad got {:?}", grad_layout.shape())
        }
        let input = contiguous_f32(input, input_layout, self.name())?;
        let grad = contiguous_f32(grad, grad_layout, self.name())?;
        let (out_h, out_w) = (height / 2, width / 2);
        let mut dst = vec![0f32; input.len()];
        let image_len = height * width * channels;
        for ((image, grad), dst) in input
            .chunks_exact(image_len)
            .zip(grad.chunks_exact(out_h * out_w * channels))
            .zip(dst.chunks_exact_mut(image_len))
        {
            for (cell, grads) in grad.chunks_exact(channels).enumerate() {
                let offsets = window_offsets(cell / out_w, cell % out_w, width, channels);
                for (ch, &g) in grads.iter().enumerate() {
                    let mut best = offsets[0] + ch;
                    for offset in &offsets[1..] {
                        if image[offset + ch] > image[best] {
                            best = offset + ch;
                        }
                    }
                    dst[best] = g;
                }
            }
        }
        Ok((CpuStorage::F32(dst), input_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn custom_im2col_matches_tensor_ops_forward_and_backward() -> anyhow::Result<()> {
        let xs = Var::from_tensor(&Tensor::rand(-1f32, 1f32, (2, 5, 4, 3), &Device::Cpu)?)?;
        let weights = Tensor::rand(-1f32, 1f32, (2 * 5 * 4, 28), &Device::Cpu)?;

        let ours = xs.apply_op1(Im2Col3x3)?;
        let theirs = im2col_with_tensor_ops(&xs)?;
        let difference = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(difference, 0.0);

        // Same gradient for a weighted sum of the columns.
        let grad_ours = (ours * &weights)?.sum_all()?.backward()?;
        let grad_theirs = (theirs * &weights)?.sum_all()?.backward()?;
        let (Some(a), Some(b)) = (grad_ours.get(&xs), grad_theirs.get(&xs)) else {
            anyhow::bail!("no gradient for the input")
        };
        let difference = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(difference < 1e-5, "{difference}");
        Ok(())
    }

    #[test]
    fn custom_max_pool_matches_a_reduction_forward_and_backward() -> anyhow::Result<()> {
        // The reference is a max over reshaped windows: candle's max_pool2d backward (0.11.1)
        // scales gradients by 1/4, so it cannot serve. Random values have no ties, so both
        // gradients go to the one maximum.
        let xs = Var::from_tensor(&Tensor::rand(-1f32, 1f32, (2, 6, 4, 3), &Device::Cpu)?)?;
        let weights = Tensor::rand(-1f32, 1f32, (2, 3, 2, 3), &Device::Cpu)?;
        let ours = max_pool_2x2_nhwc(&xs)?;
        let reference = xs.reshape((2, 3, 2, 2, 2, 3))?.max(4)?.max(2)?;
        let difference = (&ours - &reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(difference, 0.0);

        let grad_ours = (ours * &weights)?.sum_all()?.backward()?;
        let grad_reference = (reference * &weights)?.sum_all()?.backward()?;
        let (Some(a), Some(b)) = (grad_ours.get(&xs), grad_reference.get(&xs)) else {
            anyhow::bail!("no gradient for the input")
        };
        let difference = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(difference < 1e-6, "{difference}");

        // A window of equal values passes its gradient to one place only.
        let flat = Var::from_tensor(&Tensor::ones((1, 2, 2, 1), DType::F32, &Device::Cpu)?)?;
        let grads = max_pool_2x2_nhwc(&flat)?.sum_all()?.backward()?;
        let grad = grads.get(&flat).map(|g| g.flatten_all()?.to_vec1::<f32>());
        assert_eq!(grad.transpose()?, Some(vec![1.0, 0.0, 0.0, 0.0]));
        let odd = Tensor::zeros((1, 3, 2, 1), DType::F32, &Device::Cpu)?;
        assert!(max_pool_2x2_nhwc(&odd).is_err());
        Ok(())
    }
}
