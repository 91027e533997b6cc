//! Tests of the trainable VAE against candle-transformers' `AutoEncoderKL`.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::vae::{AutoEncoderKL, AutoEncoderKLConfig};

use super::TrainVae;
use crate::train::modules::test_support::{
    assert_close, assert_gradient_matches_finite_difference, assert_trains, named_tensors,
    perturb_vectors, recording_builder,
};

const LATENT: usize = 4;

fn small_config() -> AutoEncoderKLConfig {
    AutoEncoderKLConfig {
        block_out_channels: vec![16, 32, 32],
        layers_per_block: 1,
        latent_channels: LATENT,
        norm_num_groups: 8,
        use_quant_conv: true,
        use_post_quant_conv: true,
    }
}

fn random_vae(cfg: &AutoEncoderKLConfig) -> Result<(VarMap, TrainVae)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let vae = TrainVae::new(vb, 1, 1, cfg)?;
    perturb_vectors(&varmap)?;
    Ok((varmap, vae))
}

/// Our tensors, except that `quant_conv` puts moment rows `start..start + LATENT` of ours in
/// the mean half and a log-variance of -1e4 (a standard deviation of exactly 0) in the other,
/// so that candle-transformers' `DiagonalGaussianDistribution::sample` returns those moments.
fn tensors_exposing_moments(varmap: &VarMap, start: usize) -> Result<HashMap<String, Tensor>> {
    let mut tensors = named_tensors(varmap);
    let weight = &tensors["quant_conv.weight"];
    let bias = &tensors["quant_conv.bias"];
    let weight = Tensor::cat(
        &[
            &weight.narrow(0, start, LATENT)?,
            &weight.narrow(0, 0, LATENT)?.zeros_like()?,
        ],
        0,
    )?;
    let bias = Tensor::cat(
        &[
            &bias.narrow(0, start, LATENT)?,
            &Tensor::full(-1e4f32, LATENT, &Device::Cpu)?,
        ],
        0,
    )?;
    tensors.insert("quant_conv.weight".into(), weight);
    tensors.insert("quant_conv.bias".into(), bias);
    Ok(tensors)
}

/// Runs `f` on each sample alone and stacks the results.
///
/// candle-transformers' VAE is only compared one sample at a time: on CPU its mid-block
/// attention is wrong for batches (see `AttentionBlock::forward`), which ours is not.
fn per_sample(xs: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let outputs = (0..xs.dim(0)?)
        .map(|i| f(&xs.narrow(0, i, 1)?))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&outputs, 0)
}

#[test]
fn vae_decode_matches_candle_transformers() -> Result<()> {
    let cfg = small_config();
    let (varmap, ours) = random_vae(&cfg)?;
    let (vb, requested) = recording_builder(named_tensors(&varmap));
    let candle = AutoEncoderKL::new(vb, 1, 1, cfg)?;
    requested.assert_same_names(&varmap);
    let names = requested.names();
    assert!(names.contains("encoder.mid_block.attentions.0.to_out.0.weight"));
    assert!(names.contains("decoder.mid_block.attentions.0.to_q.bias"));

    let latents = Tensor::randn(0f32, 1., (2, LATENT, 8, 8), &Device::Cpu)?;
    let expected = per_sample(&latents, |x| candle.decode(x))?;
    let actual = ours.decode(&latents)?;
    assert_eq!(actual.dims(), [2, 1, 32, 32]);
    assert_close(&actual, &expected, 1e-4)
}

#[test]
fn vae_encode_matches_candle_transformers() -> Result<()> {
    let cfg = small_config();
    let (varmap, ours) = random_vae(&cfg)?;
    let images = Tensor::randn(0f32, 1., (2, 1, 32, 32), &Device::Cpu)?;
    let (mean, logvar) = ours.encode(&images)?;
    assert_eq!(mean.dims(), [2, LATENT, 8, 8]);
    assert_eq!(logvar.dims(), [2, LATENT, 8, 8]);

    for (start, ours) in [(0, &mean), (LATENT, &logvar)] {
        let (vb, _) = recording_builder(tensors_exposing_moments(&varmap, start)?);
        let candle = AutoEncoderKL::new(vb, 1, 1, cfg.clone())?;
        let expected = per_sample(&images, |x| candle.encode(x)?.sample())?;
        assert_close(ours, &expected, 1e-4)?;
    }
    Ok(())
}

#[test]
fn vae_trains() -> Result<()> {
    let dev = Device::Cpu;
    let (varmap, ours) = random_vae(&small_config())?;
    let images = Tensor::randn(0f32, 1., (2, 1, 32, 32), &dev)?;
    let eps = Tensor::randn(0f32, 1., (2, LATENT, 8, 8), &dev)?;

    assert_trains(&varmap, 1e-3, || vae_loss(&ours, &images, &eps))
}

/// Reconstruction through a reparameterised sample, plus a small KL term, so that both
/// halves of the moments take part.
fn vae_loss(vae: &TrainVae, images: &Tensor, eps: &Tensor) -> Result<Tensor> {
    let (mean, logvar) = vae.encode(images)?;
    let latents = (&mean + (&logvar * 0.5)?.exp()?.mul(eps)?)?;
    let reconstruction = candle_nn::loss::mse(&vae.decode(&latents)?, images)?;
    let kl = ((mean.sqr()? + logvar.exp()?)? - &logvar)?.mean_all()?;
    reconstruction + (kl * 1e-3)?
}

#[test]
fn vae_gradient_matches_finite_difference() -> Result<()> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
    let ours = TrainVae::new(vb, 1, 1, &small_config())?;
    perturb_vectors(&varmap)?;
    let images = Tensor::randn(0f64, 1., (2, 1, 32, 32), &dev)?;
    let eps = Tensor::randn(0f64, 1., (2, LATENT, 8, 8), &dev)?;
    assert_gradient_matches_finite_difference(&varmap, || vae_loss(&ours, &images, &eps))
}

#[test]
fn vae_rejects_empty_config() {
    let cfg = AutoEncoderKLConfig {
        block_out_channels: vec![],
        ..small_config()
    };
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    assert!(TrainVae::new(vb, 1, 1, &cfg).is_err());
}
