//! Tests of the trainable UNet against candle-transformers' `UNet2DConditionModel`.

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};

use super::TrainUNet;
use crate::train::modules::test_support::{
    assert_close, assert_gradient_matches_finite_difference, assert_trains, named_tensors,
    perturb_vectors, recording_builder,
};

fn block(out_channels: usize, use_cross_attn: Option<usize>, heads: usize) -> BlockConfig {
    BlockConfig {
        out_channels,
        use_cross_attn,
        attention_head_dim: heads,
    }
}

/// Two cross-attention levels, 8 groups in the configurable norms.
fn two_level_config() -> UNet2DConditionModelConfig {
    UNet2DConditionModelConfig {
        blocks: vec![block(32, Some(1), 4), block(64, Some(1), 4)],
        layers_per_block: 1,
        norm_num_groups: 8,
        cross_attention_dim: 32,
        ..Default::default()
    }
}

/// Three levels, the last without cross-attention, and every non-default switch flipped.
fn three_level_config() -> UNet2DConditionModelConfig {
    UNet2DConditionModelConfig {
        center_input_sample: true,
        flip_sin_to_cos: false,
        freq_shift: 1.,
        blocks: vec![
            block(32, Some(1), 2),
            block(64, Some(2), 4),
            block(64, None, 8),
        ],
        layers_per_block: 2,
        downsample_padding: 0,
        mid_block_scale_factor: 1.5,
        norm_num_groups: 16,
        norm_eps: 1e-5,
        cross_attention_dim: 24,
        sliced_attention_size: None,
        use_linear_projection: true,
    }
}

/// Builds our UNet with random tensors, then candle-transformers' UNet on the same tensors,
/// checking that both ask for exactly the same names and shapes.
fn both_unets(
    cfg: &UNet2DConditionModelConfig,
) -> Result<(VarMap, TrainUNet, UNet2DConditionModel)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let ours = TrainUNet::new(vb, 4, 4, cfg)?;
    perturb_vectors(&varmap)?;
    let (vb, requested) = recording_builder(named_tensors(&varmap));
    let candle = UNet2DConditionModel::new(vb, 4, 4, false, cfg.clone())?;
    requested.assert_same_names(&varmap);
    Ok((varmap, ours, candle))
}

#[test]
fn unet_matches_candle_transformers_two_levels() -> Result<()> {
    let dev = Device::Cpu;
    let cfg = two_level_config();
    let (_varmap, ours, candle) = both_unets(&cfg)?;
    let xs = Tensor::randn(0f32, 1., (2, 4, 8, 8), &dev)?;
    let context = Tensor::randn(0f32, 1., (2, 7, 32), &dev)?;

    let expected = candle.forward(&xs, 500., &context)?;
    let actual = ours.forward(&xs, &Tensor::new(&[500f32, 500.], &dev)?, &context)?;
    assert_eq!(actual.dims(), [2, 4, 8, 8]);
    assert_close(&actual, &expected, 1e-4)
}

#[test]
fn unet_matches_candle_transformers_three_levels_odd_size() -> Result<()> {
    let dev = Device::Cpu;
    let cfg = three_level_config();
    let (_varmap, ours, candle) = both_unets(&cfg)?;

    // 10 is not a multiple of 4: the upsamplers resize to the skip connections' 5 and 10.
    let xs = Tensor::randn(0f32, 1., (2, 4, 10, 10), &dev)?;
    let context = Tensor::randn(0f32, 1., (2, 5, 24), &dev)?;
    let expected = candle.forward(&xs, 37., &context)?;
    let actual = ours.forward(&xs, &Tensor::new(&[37f32, 37.], &dev)?, &context)?;
    assert_eq!(actual.dims(), [2, 4, 10, 10]);
    assert_close(&actual, &expected, 1e-4)
}

#[test]
fn unet_takes_one_timestep_per_sample() -> Result<()> {
    let dev = Device::Cpu;
    let (_varmap, ours, candle) = both_unets(&two_level_config())?;
    let xs = Tensor::randn(0f32, 1., (2, 4, 8, 8), &dev)?;
    let context = Tensor::randn(0f32, 1., (2, 7, 32), &dev)?;
    let timesteps = [3f32, 871.];

    // candle-transformers takes one timestep per call: run it on each sample alone.
    let actual = ours.forward(&xs, &Tensor::new(&timesteps, &dev)?, &context)?;
    for (i, &t) in timesteps.iter().enumerate() {
        let sample = xs.i(i..i + 1)?;
        let expected = candle.forward(&sample, f64::from(t), &context.i(i..i + 1)?)?;
        assert_close(&actual.i(i..i + 1)?, &expected, 1e-4)?;
    }

    // And the two samples really do see different timesteps.
    let swapped = ours.forward(&xs, &Tensor::new(&[871f32, 3.], &dev)?, &context)?;
    let diff = (swapped - actual)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(diff > 1e-3, "timesteps had no effect ({diff})");
    Ok(())
}

#[test]
fn unet_rejects_timestep_of_wrong_shape() -> Result<()> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let ours = TrainUNet::new(vb, 4, 4, &two_level_config())?;
    let xs = Tensor::zeros((2, 4, 8, 8), DType::F32, &dev)?;
    let context = Tensor::zeros((2, 7, 32), DType::F32, &dev)?;
    let err = ours
        .forward(&xs, &Tensor::new(&[1f32], &dev)?, &context)
        .expect_err("one timestep for two samples");
    assert!(err.to_string().contains("one timestep per sample"), "{err}");
    Ok(())
}

#[test]
fn unet_block_resnets_need_channels_divisible_by_32() {
    // 48 channels divide into norm_num_groups = 16 but not into the 32 groups that
    // candle-transformers hard-codes for down and up block resnets: both must refuse.
    let cfg = UNet2DConditionModelConfig {
        blocks: vec![block(48, Some(1), 4), block(96, Some(1), 4)],
        norm_num_groups: 16,
        ..two_level_config()
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let err = TrainUNet::new(vb, 4, 4, &cfg).expect_err("48 channels in 32 groups");
    assert!(
        err.to_string().contains("down_blocks.0.resnets.0.norm1"),
        "{err}"
    );

    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    assert!(UNet2DConditionModel::new(vb, 4, 4, false, cfg).is_err());
}

#[test]
fn unet_trains() -> Result<()> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let ours = TrainUNet::new(vb, 4, 4, &two_level_config())?;
    let xs = Tensor::randn(0f32, 1., (2, 4, 8, 8), &dev)?;
    let timesteps = Tensor::new(&[25f32, 700.], &dev)?;
    let context = Tensor::randn(0f32, 1., (2, 7, 32), &dev)?;
    let noise = Tensor::randn(0f32, 1., (2, 4, 8, 8), &dev)?;
    assert_trains(&varmap, 1e-3, || {
        candle_nn::loss::mse(&ours.forward(&xs, &timesteps, &context)?, &noise)
    })
}

#[test]
fn unet_gradient_matches_finite_difference() -> Result<()> {
    // F64 for precision; three levels so that both resamplers and the linear projections,
    // per-sample timesteps and the up blocks' skip concatenation are on the path.
    let dev = Device::Cpu;
    let cfg = UNet2DConditionModelConfig {
        downsample_padding: 1,
        ..three_level_config()
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
    let ours = TrainUNet::new(vb, 4, 4, &cfg)?;
    perturb_vectors(&varmap)?;
    let xs = Tensor::randn(0f64, 1., (2, 4, 8, 8), &dev)?;
    let timesteps = Tensor::new(&[25f32, 700.], &dev)?;
    let context = Tensor::randn(0f64, 1., (2, 5, 24), &dev)?;
    let noise = Tensor::randn(0f64, 1., (2, 4, 8, 8), &dev)?;
    assert_gradient_matches_finite_difference(&varmap, || {
        candle_nn::loss::mse(&ours.forward(&xs, &timesteps, &context)?, &noise)
    })
}

#[test]
fn unet_time_embedding_vanishes_in_32_channel_blocks() -> Result<()> {
    // With one channel per group, norm2 cancels the timestep embedding added per channel:
    // the 32-channel level's projection gets no gradient, the 64-channel level's does.
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let ours = TrainUNet::new(vb, 4, 4, &two_level_config())?;
    let xs = Tensor::randn(0f32, 1., (2, 4, 8, 8), &dev)?;
    let timesteps = Tensor::new(&[25f32, 700.], &dev)?;
    let context = Tensor::randn(0f32, 1., (2, 7, 32), &dev)?;
    let loss = ours.forward(&xs, &timesteps, &context)?.sqr()?.mean_all()?;
    let grads = loss.backward()?;
    let tensors = named_tensors(&varmap);
    let grad_norm = |name: &str| -> Result<f32> {
        let grad = grads
            .get(&tensors[name])
            .expect("every tensor has a gradient");
        grad.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()
    };
    let at_32 = grad_norm("down_blocks.0.resnets.0.time_emb_proj.weight")?;
    let at_64 = grad_norm("down_blocks.1.resnets.0.time_emb_proj.weight")?;
    assert!(
        at_32 < 1e-4 * at_64,
        "32 channels: {at_32}, 64 channels: {at_64}"
    );
    Ok(())
}
