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

/// A 3x3 (or other odd-sized) convolution with bias and the given padding and stride.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    padding: usize,
    stride: usize,
    vb: VarBuilder,
) -> Result<candle_nn::Conv2d> {
    let cfg = candle_nn::Conv2dConfig {
        padding,
        stride,
        ..Default::default()
    };
    candle_nn::conv2d(in_channels, out_channels, kernel_size, cfg, vb)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

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
