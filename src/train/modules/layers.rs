//! Differentiable building blocks shared by the UNet, the VAE and the text encoder: layer norm,
//! group norm, softmax and nearest-neighbour upsampling written with ops that candle can
//! backpropagate through.
//!
//! candle-nn's fast paths (`ops::softmax_last_dim`, `ops::layer_norm` behind `LayerNorm`) are
//! custom ops without a backward pass, and `Tensor::upsample_nearest2d`'s backward pass
//! overwrites, rather than adds to, the gradient already gathered for its input. These
//! replacements compute the same values from ops that have a correct backward pass.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{GroupNorm, Init, VarBuilder};

use super::ModuleConfigError;

/// Layer norm over the last dimension, with weight and bias, composed of mean and variance ops.
///
/// Loads the same tensors as `candle_nn::layer_norm(dim, eps, vb)`: `weight` (init 1) and `bias`
/// (init 0), both of shape `[dim]`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads or creates the weight and bias of a layer norm over `dim` features.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.))?;
        let bias = vb.get_with_hints(dim, "bias", Init::Const(0.))?;
        Ok(Self { weight, bias, eps })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = xs.broadcast_sub(&xs.mean_keepdim(D::Minus1)?)?;
        let var = xs.sqr()?.mean_keepdim(D::Minus1)?;
        let xs = xs.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        xs.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension, composed of differentiable ops.
///
/// The row maximum is subtracted for numerical stability; it is detached from the graph
/// because softmax does not depend on it, which saves the backward pass through `max`.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let exp = xs.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    exp.broadcast_div(&sum)
}

/// Nearest-neighbour upsampling of a `[batch, channels, height, width]` tensor by a factor of 2
/// in both directions, written as a broadcast so that its backward pass sums the gradient of
/// each 2x2 block.
pub fn upsample_nearest_2x(xs: &Tensor) -> Result<Tensor> {
    let (batch, channels, height, width) = xs.dims4()?;
    xs.reshape((batch, channels, height, 1, width, 1))?
        .broadcast_as((batch, channels, height, 2, width, 2))?
        .reshape((batch, channels, 2 * height, 2 * width))
}

/// Group norm with weight (init 1) and bias (init 0), as `candle_nn::group_norm` creates it.
///
/// candle-nn's group norm is already composed of differentiable ops; this wrapper checks the
/// group count first so that a bad configuration names the tensor it concerns.
pub fn group_norm(
    num_groups: usize,
    num_channels: usize,
    eps: f64,
    vb: VarBuilder,
) -> Result<GroupNorm> {
    if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
        return Err(candle_core::Error::wrap(ModuleConfigError::GroupNorm {
            name: vb.prefix(),
            num_channels,
            num_groups,
        }));
    }
    candle_nn::group_norm(num_groups, num_channels, eps, vb)
}

/// A 2D convolution with bias, loading the same `weight` `[out, in, k, k]` and `bias` `[out]`
/// tensors as `candle_nn::conv2d`, computed as an explicit im2col and one batched matmul.
///
/// candle's own convolution computes the same values, but its backward pass goes through
/// `conv_transpose2d`, whose CPU kernel is a direct loop: training the embedded model with it
/// was about ten times slower. Shifted views, a stack and a matmul all have fast backward passes.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    kernel_size: usize,
    padding: usize,
    stride: usize,
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, channels, _, _) = xs.dims4()?;
        let (k, pad, stride) = (self.kernel_size, self.padding, self.stride);
        let out_channels = self.weight.dim(0)?;
        let xs = if pad > 0 {
            xs.pad_with_zeros(2, pad, pad)?
                .pad_with_zeros(3, pad, pad)?
        } else {
            xs.clone()
        };
        let (_, _, height, width) = xs.dims4()?;
        let out_h = (height - k) / stride + 1;
        let out_w = (width - k) / stride + 1;

        // Columns: one shifted (and strided) view of the input per kernel position.
        let strided = |len: usize| -> Result<Option<Tensor>> {
            if stride == 1 {
                return Ok(None);
            }
            let idx: Vec<u32> = (0..len).map(|i| (i * stride) as u32).collect();
            Ok(Some(Tensor::from_vec(idx, len, xs.device())?))
        };
        let (rows_idx, cols_idx) = (strided(out_h)?, strided(out_w)?);
        let span_h = (out_h - 1) * stride + 1;
        let span_w = (out_w - 1) * stride + 1;
        let mut patches = Vec::with_capacity(k * k);
        for ky in 0..k {
            for kx in 0..k {
                let mut patch = xs.narrow(2, ky, span_h)?.narrow(3, kx, span_w)?;
                if let (Some(r), Some(c)) = (&rows_idx, &cols_idx) {
                    patch = patch.contiguous()?.index_select(r, 2)?.index_select(c, 3)?;
                }
                patches.push(patch);
            }
        }
        let cols = if patches.len() == 1 {
            patches
                .remove(0)
                .reshape((batch, channels, out_h * out_w))?
        } else {
            Tensor::stack(&patches, 2)?.reshape((batch, channels * k * k, out_h * out_w))?
        };
        let weight = self
            .weight
            .reshape((out_channels, channels * k * k))?
            .broadcast_left(batch)?;
        weight
            .matmul(&cols)?
            .broadcast_add(&self.bias.reshape((1, out_channels, 1))?)?
            .reshape((batch, out_channels, out_h, out_w))
    }
}

/// A square convolution with bias and the given padding and stride, named as candle-nn names it.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    padding: usize,
    stride: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    // The same initialisation as candle_nn::conv2d.
    let fan_in = (in_channels * kernel_size * kernel_size) as f64;
    let bound = 1.0 / fan_in.sqrt();
    let weight = vb.get_with_hints(
        (out_channels, in_channels, kernel_size, kernel_size),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    let bias = vb.get_with_hints(
        out_channels,
        "bias",
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    Ok(Conv2d {
        weight,
        bias,
        kernel_size,
        padding,
        stride,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn im2col_conv_matches_candle_conv() -> Result<()> {
        let dev = Device::Cpu;
        let xs = Tensor::randn(0f32, 1., (2, 3, 9, 8), &dev)?;
        for (k, pad, stride) in [(3, 1, 1), (3, 0, 2), (3, 1, 2), (1, 0, 1)] {
            let map = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&map, candle_core::DType::F32, &dev);
            let ours = conv2d(3, 5, k, pad, stride, vb.pp("c"))?;
            let cfg = candle_nn::Conv2dConfig {
                padding: pad,
                stride,
                ..Default::default()
            };
            let theirs = candle_nn::conv2d(3, 5, k, cfg, vb.pp("c"))?;
            let diff = (ours.forward(&xs)? - theirs.forward(&xs)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "k {k} pad {pad} stride {stride}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn layer_norm_matches_candle_fast_path() -> Result<()> {
        let dev = Device::Cpu;
        let xs = Tensor::randn(0f32, 2., (3, 5, 16), &dev)?;
        let weight = Tensor::randn(1f32, 0.1, 16, &dev)?;
        let bias = Tensor::randn(0f32, 0.1, 16, &dev)?;
        let ours = LayerNorm {
            weight: weight.clone(),
            bias: bias.clone(),
            eps: 1e-5,
        };
        let candle = candle_nn::LayerNorm::new(weight, bias, 1e-5);
        let diff = (ours.forward(&xs)? - candle.forward(&xs)?)?
            .abs()?
            .max_all()?;
        assert!(diff.to_scalar::<f32>()? < 1e-5);
        Ok(())
    }

    #[test]
    fn softmax_matches_candle_and_has_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let xs = Var::from_tensor(&Tensor::randn(0f32, 3., (4, 7), &dev)?)?;
        let ours = softmax_last_dim(xs.as_tensor())?;
        let candle = candle_nn::ops::softmax_last_dim(xs.as_tensor())?;
        let diff = (&ours - candle)?.abs()?.max_all()?;
        assert!(diff.to_scalar::<f32>()? < 1e-6);

        // The gradient of sum(softmax * w) is softmax * (w - sum(softmax * w)).
        let w = Tensor::randn(0f32, 1., (4, 7), &dev)?;
        let grads = (&ours * &w)?.sum_all()?.backward()?;
        let grad = grads
            .get(xs.as_tensor())
            .expect("softmax input has a gradient");
        let expected = (&ours * w.broadcast_sub(&(&ours * &w)?.sum_keepdim(1)?)?)?;
        let diff = (grad - expected)?.abs()?.max_all()?;
        assert!(diff.to_scalar::<f32>()? < 1e-6);
        Ok(())
    }

    #[test]
    fn upsample_matches_candle_and_accumulates_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let xs = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 4, 5), &dev)?)?;
        let ours = upsample_nearest_2x(xs.as_tensor())?;
        let candle = xs.as_tensor().upsample_nearest2d(8, 10)?;
        let diff = (&ours - candle)?.abs()?.max_all()?;
        assert_eq!(diff.to_scalar::<f32>()?, 0.);

        // The input is also used directly: both gradient contributions must add up.
        let loss = (ours.sum_all()? + xs.as_tensor().sum_all()?)?;
        let grads = loss.backward()?;
        let grad = grads
            .get(xs.as_tensor())
            .expect("upsample input has a gradient");
        let expected = Tensor::full(5f32, (2, 3, 4, 5), &dev)?;
        let diff = (grad - expected)?.abs()?.max_all()?;
        assert_eq!(diff.to_scalar::<f32>()?, 0.);
        Ok(())
    }

    #[test]
    fn group_norm_rejects_indivisible_channels() {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
        let err = group_norm(32, 48, 1e-6, vb.pp("mid").pp("norm")).expect_err("48 % 32 != 0");
        assert!(err.to_string().contains("mid.norm"), "{err}");
    }
}
