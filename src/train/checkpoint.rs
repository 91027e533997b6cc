//! A training run's work folder: checkpoints of each stage (weights under a temporary name,
//! renamed into place, and a step file beside them), the moving averages of the UNet stage's
//! weights, and the latent fit the run trains on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_nn::VarMap;

use crate::engine::preview::LatentRgb;

use super::diffusion::DiffusionTrainConfig;

/// A trainer's view of a `VarMap` checkpoint on disk: the weights and the step file.
pub fn checkpoint_paths(work_dir: &Path, stage: &str) -> (PathBuf, PathBuf) {
    (
        work_dir.join(format!("{stage}.safetensors")),
        work_dir.join(format!("{stage}.json")),
    )
}

pub(super) fn save_checkpoint(
    varmap: &VarMap,
    work_dir: &Path,
    stage: &str,
    step: usize,
) -> Result<()> {
    write_checkpoint(work_dir, stage, step, |tmp| Ok(varmap.save(tmp)?))
}

/// Makes a checkpoint of `stage` at `step` from a safetensors file (a finished model's).
pub fn copy_checkpoint(weights: &Path, work_dir: &Path, stage: &str, step: usize) -> Result<()> {
    write_checkpoint(work_dir, stage, step, |tmp| {
        std::fs::copy(weights, tmp)
            .with_context(|| format!("cannot copy {}", weights.display()))
            .map(|_| ())
    })
}

/// Writes a checkpoint's weights with `write` under a temporary name, renames them into place,
/// then records the step: an interrupted write never leaves a half file under the real name.
fn write_checkpoint(
    work_dir: &Path,
    stage: &str,
    step: usize,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("cannot create {}", work_dir.display()))?;
    let (weights, state) = checkpoint_paths(work_dir, stage);
    let tmp = weights.with_extension("safetensors.tmp");
    write(&tmp)?;
    std::fs::rename(&tmp, &weights)
        .with_context(|| format!("cannot write {}", weights.display()))?;
    std::fs::write(&state, serde_json::json!({ "step": step }).to_string())
        .with_context(|| format!("cannot write {}", state.display()))?;
    Ok(())
}

/// The step a checkpoint of `stage` was saved at, when the work folder holds one.
pub fn checkpoint_step(work_dir: &Path, stage: &str) -> Result<Option<usize>> {
    let (weights, state) = checkpoint_paths(work_dir, stage);
    if !weights.is_file() || !state.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&state)
        .with_context(|| format!("cannot read {}", state.display()))?;
    let state: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a checkpoint step file", state.display()))?;
    Ok(state
        .get("step")
        .and_then(serde_json::Value::as_u64)
        .map(|s| s as usize))
}

/// Loads a checkpoint into `varmap`; returns the step it was saved at.
pub(super) fn load_checkpoint(
    varmap: &mut VarMap,
    work_dir: &Path,
    stage: &str,
) -> Result<Option<usize>> {
    let Some(step) = checkpoint_step(work_dir, stage)? else {
        return Ok(None);
    };
    let weights = checkpoint_paths(work_dir, stage).0;
    varmap
        .load(&weights)
        .with_context(|| format!("cannot resume from {}", weights.display()))?;
    Ok(Some(step))
}

/// Exponential moving average of a `VarMap`'s weights, kept in a `VarMap` of the same names so
/// that it saves, loads and exports like the weights themselves.
pub(super) struct Ema {
    pairs: Vec<(candle_core::Var, candle_core::Var)>,
    /// The averaged weights.
    pub(super) average: VarMap,
    decay: f64,
    /// Updates folded in so far (the decay ramps up over the first ones).
    pub(super) updates: usize,
}

impl Ema {
    /// Starts the average at the current weights.
    pub(super) fn new(weights: &VarMap, decay: f64) -> Result<Self> {
        let average = VarMap::new();
        let mut pairs = Vec::new();
        {
            let source = weights.data().lock().expect("weights lock");
            let mut target = average.data().lock().expect("average lock");
            let mut names: Vec<&String> = source.keys().collect();
            names.sort();
            for name in names {
                let var = &source[name];
                let copy = candle_core::Var::from_tensor(&var.as_tensor().copy()?)?;
                target.insert(name.clone(), copy.clone());
                pairs.push((var.clone(), copy));
            }
        }
        Ok(Self {
            pairs,
            average,
            decay,
            updates: 0,
        })
    }

    /// Folds the current weights in; the decay ramps up so early averages forget the start.
    pub(super) fn update(&mut self) -> Result<()> {
        self.updates += 1;
        let k = self.updates as f64;
        let decay = self.decay.min((1.0 + k) / (10.0 + k));
        for (weight, average) in &self.pairs {
            let next = ((average.as_tensor() * decay)? + (weight.as_tensor() * (1.0 - decay))?)?;
            average.set(&next)?;
        }
        Ok(())
    }
}

/// Saves the UNet stage: weights, text encoder, and their averages (in that order).
pub(super) fn save_unet_checkpoints(
    cfg: &DiffusionTrainConfig,
    maps: [&VarMap; 4],
    step: usize,
) -> Result<()> {
    for (map, stage) in maps.into_iter().zip(UNET_STAGE_CHECKPOINTS) {
        save_checkpoint(map, &cfg.work_dir, stage, step)?;
    }
    Ok(())
}

/// Checkpoint names of the UNet stage; the `_ema` ones are what a finished run exports.
pub const UNET_STAGE_CHECKPOINTS: [&str; 4] =
    ["unet", "text_encoder", "unet_ema", "text_encoder_ema"];

/// The latent scaling and preview projection a run fitted, kept in its work folder so that a
/// resumed run (or one started from a finished model) trains on the same latents.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LatentFit {
    /// Multiplies raw VAE latents to unit variance (the VAE config's `scaling_factor`).
    pub scaling_factor: f64,
    /// Fitted projection from (scaled) latents to RGB, for previews.
    pub latent_rgb: LatentRgb,
}

/// Saves a run's [`LatentFit`] in its work folder.
pub fn save_latent_fit(work_dir: &Path, fit: &LatentFit) -> Result<()> {
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("cannot create {}", work_dir.display()))?;
    let path = latent_fit_path(work_dir);
    std::fs::write(&path, serde_json::to_string_pretty(fit)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Where a work folder keeps its [`LatentFit`].
pub fn latent_fit_path(work_dir: &Path) -> PathBuf {
    work_dir.join("latent_fit.json")
}
