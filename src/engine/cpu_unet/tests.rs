use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};

use super::{CpuUNet, Weights};
use crate::engine::model::{Component, DiffusionModel, embedded_model_dir};
use crate::engine::noise::{gaussian, gaussian_vec};
use crate::engine::weights::WeightStore;

/// Largest difference between two tensors, relative to the largest value of the reference.
fn relative_gap(ours: &Tensor, reference: &Tensor) -> f32 {
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    gap / scale
}

/// Runs both UNets on the same latent and conditioning and returns the relative gap.
fn compare(
    cpu: &CpuUNet,
    candle: &UNet2DConditionModel,
    store: &WeightStore,
    latent: &Tensor,
    conditioning: &Tensor,
    timestep: f64,
) -> f32 {
    let weights = Weights::snapshot(store, None).unwrap();
    let context = cpu.prepare(&weights, conditioning).unwrap();
    let ours = cpu.forward(&weights, latent, timestep, &context).unwrap();
    let reference = candle.forward(latent, timestep, conditioning).unwrap();
    assert_eq!(ours.dims(), reference.dims());
    relative_gap(&ours, &reference)
}

#[test]
fn embedded_unet_matches_candles() {
    let mut model = DiffusionModel::load(&embedded_model_dir(), &Device::Cpu).unwrap();
    let cpu = model
        .cpu_unet
        .clone()
        .expect("the embedded UNet runs on the CPU path");
    let latent = gaussian(3, (1, 4, 8, 8), &Device::Cpu).unwrap();
    let (conditioning, _) = model.encode_prompts(&["a red sneaker"]).unwrap();
    let gap = |model: &DiffusionModel, timestep| {
        let store = model.store(Component::Unet);
        compare(&cpu, &model.unet, store, &latent, &conditioning, timestep)
    };
    for timestep in [999.0, 500.0, 1.0] {
        let gap = gap(&model, timestep);
        assert!(gap < 1e-4, "t={timestep}: relative gap {gap}");
    }
    // A 256-pixel picture: 4096 cells, products past one pass and over both cores.
    {
        let large = gaussian(4, (1, 4, 64, 64), &Device::Cpu).unwrap();
        let store = model.store(Component::Unet);
        let gap = compare(&cpu, &model.unet, store, &large, &conditioning, 500.0);
        assert!(gap < 1e-4, "64x64: relative gap {gap}");
    }

    // An edit written into the store is seen by the next snapshot, as by candle's module.
    let name = "down_blocks.0.resnets.0.conv1.weight";
    let weight = model.store(Component::Unet).get(name).unwrap();
    let zeros = weight.zeros_like().unwrap();
    model.store_mut(Component::Unet).set(name, &zeros).unwrap();
    let after = gap(&model, 500.0);
    assert!(after < 1e-4, "after a knockout: relative gap {after}");
}

#[test]
fn a_packing_serves_until_the_store_changes() {
    let mut model = DiffusionModel::load(&embedded_model_dir(), &Device::Cpu).unwrap();
    let cpu = model.cpu_unet.clone().unwrap();
    let name = "down_blocks.0.resnets.0.conv1.weight";
    let packed = |model: &DiffusionModel| cpu.weights(model.store(Component::Unet)).unwrap();
    let first = packed(&model);
    assert!(Arc::ptr_eq(&first, &packed(&model)), "nothing changed");

    let zeros = model
        .store(Component::Unet)
        .get(name)
        .unwrap()
        .zeros_like()
        .unwrap();
    model.store_mut(Component::Unet).set(name, &zeros).unwrap();
    let knocked_out = packed(&model);
    assert!(!Arc::ptr_eq(&first, &knocked_out));
    assert!(knocked_out.matrix(name).unwrap().is_zero());
    assert!(!first.matrix(name).unwrap().is_zero());
    // Only the edited tensor was packed again.
    let other = "down_blocks.0.resnets.0.conv2.weight";
    assert!(std::ptr::eq(
        first.matrix(other).unwrap(),
        knocked_out.matrix(other).unwrap()
    ));

    model.store_mut(Component::Unet).restore(name).unwrap();
    let restored = packed(&model);
    assert!(
        !Arc::ptr_eq(&knocked_out, &restored),
        "an undo is a change too"
    );
    assert!(!restored.matrix(name).unwrap().is_zero());

    // Another model's store, even with the same weights, is packed for itself.
    let other = DiffusionModel::load(&embedded_model_dir(), &Device::Cpu).unwrap();
    assert!(!Arc::ptr_eq(&restored, &packed(&other)));
}

/// A random UNet with every option the CPU path follows: a block without attention, a
/// resnet shortcut, two transformer blocks per transformer, a mid-block output scale,
/// unflipped embeddings with a frequency shift.
fn random_unet(linear_projection: bool) -> (UNet2DConditionModelConfig, WeightStore) {
    let config = UNet2DConditionModelConfig {
        blocks: vec![
            BlockConfig {
                out_channels: 32,
                use_cross_attn: Some(2),
                attention_head_dim: 2,
            },
            BlockConfig {
                out_channels: 64,
                use_cross_attn: None,
                attention_head_dim: 4,
            },
            BlockConfig {
                out_channels: 64,
                use_cross_attn: Some(1),
                attention_head_dim: 4,
            },
        ],
        center_input_sample: false,
        flip_sin_to_cos: false,
        freq_shift: 1.0,
        layers_per_block: 2,
        downsample_padding: 1,
        mid_block_scale_factor: 1.5,
        norm_num_groups: 8,
        norm_eps: 1e-5,
        cross_attention_dim: 16,
        sliced_attention_size: None,
        use_linear_projection: linear_projection,
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    UNet2DConditionModel::new(vb, 4, 4, false, config.clone()).unwrap();

    let store = randomized(&varmap, "unet");
    (config, store)
}

#[test]
fn random_unets_match_candles() {
    for linear_projection in [false, true] {
        let (config, store) = random_unet(linear_projection);
        let candle = UNet2DConditionModel::new(
            store.var_builder(DType::F32, &Device::Cpu),
            4,
            4,
            false,
            config.clone(),
        )
        .unwrap();
        let cpu = CpuUNet::new(&config, 4).unwrap();
        let conditioning = gaussian(5, (1, 77, 16), &Device::Cpu).unwrap();
        for (height, width, seed) in [(8, 8, 1), (4, 4, 2), (12, 12, 3), (4, 12, 4)] {
            assert!(cpu.takes(height, width));
            let latent = gaussian(seed, (1, 4, height, width), &Device::Cpu).unwrap();
            let gap = compare(&cpu, &candle, &store, &latent, &conditioning, 321.0);
            assert!(
                gap < 1e-4,
                "linear projection {linear_projection}, {height}x{width}: relative gap {gap}"
            );
        }
        assert!(!cpu.takes(6, 6), "sides must halve evenly twice");
        assert!(!cpu.takes(512, 512), "huge latents stay with candle");
    }
}

#[test]
fn same_input_same_bytes() {
    let (config, store) = random_unet(false);
    let cpu = CpuUNet::new(&config, 4).unwrap();
    let weights = Weights::snapshot(&store, None).unwrap();
    let conditioning = gaussian(5, (1, 77, 16), &Device::Cpu).unwrap();
    let context = cpu.prepare(&weights, &conditioning).unwrap();
    let latent = gaussian(1, (1, 4, 8, 8), &Device::Cpu).unwrap();
    let run = || {
        cpu.forward(&weights, &latent, 10.0, &context)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let first = run();
    assert_eq!(first, run());
    assert!(first.iter().all(|v| v.is_finite()));
}

#[test]
fn a_blown_up_weight_comes_out_non_finite() {
    let (config, mut store) = random_unet(false);
    let name = "mid_block.resnets.0.conv1.weight";
    let weight = store.get(name).unwrap();
    let nan = (weight.ones_like().unwrap() * f64::NAN).unwrap();
    store.set(name, &nan).unwrap();
    let cpu = CpuUNet::new(&config, 4).unwrap();
    let weights = Weights::snapshot(&store, None).unwrap();
    let conditioning = gaussian(5, (1, 77, 16), &Device::Cpu).unwrap();
    let context = cpu.prepare(&weights, &conditioning).unwrap();
    let latent = gaussian(1, (1, 4, 8, 8), &Device::Cpu).unwrap();
    let out = cpu.forward(&weights, &latent, 10.0, &context).unwrap();
    let values = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(
        values.iter().all(|v| !v.is_finite()),
        "NaN must reach every output value"
    );
}

/// A store of every tensor a module created in `varmap`, norms included, at seeded random
/// values around their initial ones.
fn randomized(varmap: &VarMap, component: &str) -> WeightStore {
    let mut tensors = HashMap::new();
    let data = varmap.data().lock().unwrap();
    for (i, (name, var)) in data.iter().enumerate() {
        let shape = var.shape().clone();
        let noise = Tensor::from_vec(
            gaussian_vec(i as u64, shape.elem_count()),
            shape,
            &Device::Cpu,
        )
        .unwrap();
        let value = (var.as_tensor() + (noise * 0.2).unwrap()).unwrap();
        tensors.insert(name.clone(), value);
    }
    WeightStore::from_tensors(component, Path::new("random"), tensors, DType::F32).unwrap()
}

#[test]
fn embedded_decoder_matches_candles() {
    let model = DiffusionModel::load(&embedded_model_dir(), &Device::Cpu).unwrap();
    let decoder = model.cpu_decoder.clone().expect("the CPU decodes itself");
    let weights = decoder.weights(model.store(Component::Vae)).unwrap();
    for (seed, side) in [(1, 8), (2, 12)] {
        let latent = gaussian(seed, (1, 4, side, side), &Device::Cpu).unwrap();
        let ours = decoder.decode(&weights, &latent).unwrap();
        let reference = model.vae.decode(&latent).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        let gap = relative_gap(&ours, &reference);
        assert!(gap < 1e-4, "{side}x{side}: relative gap {gap}");
    }
}

#[test]
fn random_decoders_match_candles() {
    use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;

    // Two resnets a level, a channel change (a shortcut), no post-quant convolution, and the
    // mid attention under its older names once.
    for (post_quant, old_names) in [(false, false), (true, true)] {
        let json = serde_json::json!({
            "block_out_channels": [16, 32],
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 8,
            "use_post_quant_conv": post_quant,
        });
        let config: crate::engine::config::VaeJson = serde_json::from_value(json).unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        AutoEncoderKL::new(vb, 3, 3, config.to_candle()).unwrap();
        let mut store = randomized(&varmap, "vae");
        if old_names {
            let renamed = store
                .names()
                .map(|name| {
                    let new = name
                        .replace("attentions.0.to_q", "attentions.0.query")
                        .replace("attentions.0.to_k", "attentions.0.key")
                        .replace("attentions.0.to_v", "attentions.0.value")
                        .replace("attentions.0.to_out.0", "attentions.0.proj_attn");
                    (new, store.get(name).unwrap())
                })
                .collect();
            store =
                WeightStore::from_tensors("vae", Path::new("random"), renamed, DType::F32).unwrap();
        }
        let candle = AutoEncoderKL::new(
            store.var_builder(DType::F32, &Device::Cpu),
            3,
            3,
            config.to_candle(),
        )
        .unwrap();
        let decoder = super::CpuDecoder::new(&config).unwrap();
        let weights = decoder.weights(&store).unwrap();
        let latent = gaussian(7, (1, 4, 6, 10), &Device::Cpu).unwrap();
        let ours = decoder.decode(&weights, &latent).unwrap();
        let reference = candle.decode(&latent).unwrap();
        assert_eq!(ours.dims(), &[1, 3, 12, 20]);
        let gap = relative_gap(&ours, &reference);
        assert!(
            gap < 1e-4,
            "post-quant {post_quant}, old names {old_names}: gap {gap}"
        );
    }
}
