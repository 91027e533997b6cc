//! Stable Diffusion 1.5's UNet has 391 modules and 859,520,964 parameters: counted on its
//! architecture as candle-transformers builds it, narrow (real tensors, written to a
//! safetensors file and listed by `interconcept modules`) and full width (shapes only).

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};
use interconcept::engine::model::Component;
use interconcept::engine::surgery::ModuleCatalog;

/// SD 1.5's UNet layout (candle-transformers' default, with SD 1.5's 768-wide text
/// conditioning) at the given block widths.
fn sd15_config(widths: [usize; 4], cross_attention_dim: usize) -> UNet2DConditionModelConfig {
    let cross = [Some(1), Some(1), Some(1), None];
    UNet2DConditionModelConfig {
        blocks: widths
            .iter()
            .zip(cross)
            .map(|(&out_channels, use_cross_attn)| BlockConfig {
                out_channels,
                use_cross_attn,
                attention_head_dim: 8,
            })
            .collect(),
        cross_attention_dim,
        ..UNet2DConditionModelConfig::default()
    }
}

#[test]
fn sd15_unet_architecture_has_391_modules() {
    // Narrow channels: multiples of the 32 norm groups and of the 8 attention heads, and with
    // SD 1.5's pattern of width changes (320, 640, 1280, 1280): with [32, 64, 64, 64] the third
    // down block's first resnet keeps its width and loses its conv_shortcut, giving 390.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    UNet2DConditionModel::new(vb, 4, 4, false, sd15_config([32, 64, 128, 128], 32)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("unet")).unwrap();
    let path = dir.path().join("unet/diffusion_pytorch_model.safetensors");
    varmap.save(&path).unwrap();

    let catalog = ModuleCatalog::from_safetensors_header(Component::Unet, &path).unwrap();
    let num_tensors = varmap.all_vars().len();
    assert_eq!(catalog.modules.len(), 391, "from {num_tensors} tensors");
    let expected_params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    assert_eq!(catalog.num_params(), expected_params);
    let names: Vec<&str> = catalog.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names[0], "conv_in");
    assert_eq!(names[390], "conv_out");

    // Per block, as the architecture says: 2 resnets + 2 transformers (16 modules each) + a
    // downsampler in each cross-attention down block...
    let tree = catalog.tree();
    let counts: Vec<(String, usize)> = tree
        .groups()
        .map(|g| (g.path.clone(), g.num_modules))
        .collect();
    let count = |path: &str| counts.iter().find(|(p, _)| p == path).unwrap().1;
    assert_eq!(count("down_blocks.0"), 43);
    assert_eq!(count("down_blocks.1"), 44);
    assert_eq!(count("down_blocks.3"), 10);
    assert_eq!(count("mid_block"), 26);
    assert_eq!(count("up_blocks.0"), 19);
    assert_eq!(count("up_blocks.1"), 67);
    assert_eq!(count("up_blocks.3"), 66);
    assert_eq!(count("time_embedding"), 2);

    // ...and the command line says the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interconcept"))
        .args(["modules", "--component", "unet", "--model"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().last().unwrap(),
        format!("391 modules, {expected_params} parameters")
    );
}

/// A `VarBuilder` backend that hands out zero-strided scalars: it records the names and shapes
/// a module asks for without allocating them.
struct ShapeRecorder {
    seen: Arc<Mutex<Vec<NamedShape>>>,
}

/// A tensor's name and shape.
type NamedShape = (String, Vec<usize>);

impl candle_nn::var_builder::SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.seen
            .lock()
            .expect("no test panicked holding the lock")
            .push((name.to_string(), shape.dims().to_vec()));
        Tensor::zeros((), dtype, dev)?.broadcast_as(shape)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: shape needed")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

#[test]
fn full_size_sd15_unet_has_391_modules_and_859520964_parameters() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = ShapeRecorder {
        seen: Arc::clone(&seen),
    };
    let vb = VarBuilder::from_backend(Box::new(recorder), DType::F32, Device::Cpu);
    UNet2DConditionModel::new(vb, 4, 4, false, sd15_config([320, 640, 1280, 1280], 768)).unwrap();
    let seen = seen.lock().unwrap().clone();
    let catalog = ModuleCatalog::from_shapes(Component::Unet, seen);
    assert_eq!(catalog.modules.len(), 391);
    assert_eq!(catalog.num_params(), 859_520_964);
}
