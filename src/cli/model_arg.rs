//! Turning `--model`, `--device` and `--noise` into what the engine takes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};

use crate::engine::device::parse_device;
use crate::engine::hub::HubOptions;
use crate::engine::model::{DiffusionModel, embedded_model_dir};
use crate::engine::npy::{NpyArray, read_npy};
use crate::engine::source::ModelSource;

/// The local folder or file a `--model` argument names: the embedded model when absent, the
/// Hugging Face cache snapshot (downloaded if need be) for `ORG/NAME`.
pub fn model_path(arg: Option<&str>) -> Result<PathBuf> {
    let Some(arg) = arg else {
        return Ok(embedded_model_dir());
    };
    let source = ModelSource::parse(arg)?;
    Ok(source.local_path(&HubOptions::from_env())?)
}

/// The device for headless commands: `--device`, else the CPU.
pub fn device(arg: Option<&str>) -> Result<Device> {
    Ok(parse_device(arg.unwrap_or("cpu"))?)
}

/// The tokenizer folder of a model: its own, or the embedded one for single-file checkpoints.
pub fn tokenizer_dir(model: &Path) -> PathBuf {
    if model.is_dir() {
        model.join("tokenizer")
    } else {
        embedded_model_dir().join("tokenizer")
    }
}

/// An initial latent from a `.npy` file, checked against the model: `[1, C, h, w]`.
pub struct NoiseFile {
    /// The latent.
    pub latent: Tensor,
    /// Picture width and height it implies.
    pub width: usize,
    /// Picture height.
    pub height: usize,
    /// Hash of its values, for the recipe.
    pub hash: String,
}

/// Reads `--noise` for a model.
pub fn read_noise(path: &Path, model: &DiffusionModel) -> Result<NoiseFile> {
    let NpyArray { shape, data } = read_npy(path)?;
    let hash = NpyArray {
        shape: shape.clone(),
        data: data.clone(),
    }
    .hash();
    let channels = model.latent_channels;
    let &[1, c, h, w] = shape.as_slice() else {
        bail!(
            "noise {} has shape {shape:?}, expected [1, {channels}, height/{d}, width/{d}]",
            path.display(),
            d = model.vae_downscale
        );
    };
    if c != channels {
        bail!(
            "noise {} has {c} channels, the model's latent has {channels}",
            path.display()
        );
    }
    if data.iter().any(|v| !v.is_finite()) {
        bail!("noise {} holds NaN or infinity", path.display());
    }
    let latent = Tensor::from_vec(data, (1, c, h, w), &model.device)
        .with_context(|| format!("noise {}", path.display()))?;
    Ok(NoiseFile {
        latent,
        width: w * model.vae_downscale,
        height: h * model.vae_downscale,
        hash,
    })
}
