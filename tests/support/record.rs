//! Tensors made up on demand as candle's modules ask for them, and remembered by name.
//!
//! Building the engine's modules (candle-transformers' UNet and VAE, the CLIP text encoders)
//! over this backend yields exactly the tensor names and shapes a real checkpoint of that
//! config must hold. Values are seeded from the name, so a fixture is the same on every run;
//! norms get values near their usual 1 and 0 (not exactly), so that a mapping which swapped
//! two norms would show in the pictures.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use interconcept::engine::noise::gaussian_vec;

/// Name → tensor, shared with the backend.
pub type Recorded = Arc<Mutex<BTreeMap<String, Tensor>>>;

/// A `VarBuilder` backend that invents tensors and records them.
pub struct Recorder {
    tensors: Recorded,
    /// Record shapes only: tensors are broadcast views of one zero (no memory), for full-size
    /// configs whose names and shapes are all a test needs.
    shapes_only: bool,
}

impl Recorder {
    /// A recording `VarBuilder` and the map it fills.
    pub fn var_builder(shapes_only: bool) -> (VarBuilder<'static>, Recorded) {
        let tensors = Recorded::default();
        let backend = Recorder {
            tensors: Arc::clone(&tensors),
            shapes_only,
        };
        let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
        (vb, tensors)
    }
}

fn seed_of(name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// Seeded values for a tensor the module asked for with `init`.
pub fn invent(shape: &Shape, name: &str, init: Init) -> candle_core::Result<Tensor> {
    let dims = shape.dims();
    let n = shape.elem_count();
    let noise = gaussian_vec(seed_of(name), n);
    let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
    let values: Vec<f32> = match init {
        Init::Const(v) => noise.iter().map(|z| v as f32 + 0.1 * z).collect(),
        Init::Randn { mean, stdev } => noise
            .iter()
            .map(|z| mean as f32 + stdev as f32 * z)
            .collect(),
        _ if dims.len() == 1 => noise.iter().map(|z| 0.05 * z).collect(),
        _ => {
            let std = (1.0 / fan_in as f32).sqrt();
            noise.iter().map(|z| std * z).collect()
        }
    };
    Tensor::from_vec(values, dims, &Device::Cpu)
}

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut tensors = self.tensors.lock().expect("recorder lock");
        if let Some(t) = tensors.get(name) {
            if t.shape() != &shape {
                candle_core::bail!(
                    "{name} asked for twice with shapes {:?} and {shape:?}",
                    t.dims()
                );
            }
            return t.to_dtype(dtype)?.to_device(dev);
        }
        let tensor = if self.shapes_only {
            Tensor::zeros(1, DType::F32, &Device::Cpu)?.broadcast_as(shape)?
        } else {
            invent(&shape, name, init)?
        };
        tensors.insert(name.to_string(), tensor.clone());
        tensor.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.tensors.lock().expect("recorder lock").get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("{name} has no shape to invent it with"),
        }
    }

    /// Every name exists: modules that probe for a newer or older spelling (the VAE's
    /// attention) then take diffusers' current one.
    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}
