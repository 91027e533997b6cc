//! Which Stable Diffusion a checkpoint is, read from its own config files.
//!
//! Folder names say nothing reliable ("my-model-v2-final"), so the variant comes from what the
//! configs describe: the pipeline class in `model_index.json`, the text encoder's activation
//! (OpenAI CLIP's quick GELU in 1.x, OpenCLIP's GELU in 2.x), a second text encoder and the UNet's
//! added conditioning (SDXL), and the scheduler's timestep spacing (the Turbo models are
//! distilled for one to four steps from the last timestep: "trailing"). Widths are not part of
//! the variant: a narrow model with SD 1.5's layout is an SD 1.5 for loading purposes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};
use super::scheduler::{PredictionType, ScheduleConfig, TimestepSpacing};

/// A family of Stable Diffusion checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Stable Diffusion 1.x (1.5 and its fine-tunes, the embedded model): one CLIP ViT-L-style
    /// text encoder with quick GELU, usually epsilon prediction, 512 px.
    #[serde(rename = "sd15")]
    Sd15,
    /// Stable Diffusion 2.x (2.1 and 2.1-base): an OpenCLIP ViT-H-style text encoder with GELU,
    /// linear attention projections; v-prediction at 768 px, epsilon at 512 px.
    #[serde(rename = "sd21")]
    Sd21,
    /// SD-Turbo: the 2.1 architecture distilled for 1 to 4 steps, trailing timesteps, no
    /// guidance.
    SdTurbo,
    /// SDXL 1.0: two text encoders and added time conditioning. Recognised, not supported.
    Sdxl,
    /// SDXL-Turbo: SDXL distilled for 1 to 4 steps. Recognised, not supported.
    SdxlTurbo,
}

/// The pipeline classes of `model_index.json` this program knows.
pub const KNOWN_PIPELINES: [&str; 2] = ["StableDiffusionPipeline", "StableDiffusionXLPipeline"];

/// What the candle-transformers UNet lacks for SDXL; part of the refusal message.
const SDXL_MISSING: &str = "candle-transformers 0.11.1's UNet2DConditionModel has no added \
    conditioning: SDXL's UNet also needs add_embedding (linear_1, linear_2) over the pooled \
    text_encoder_2 embedding and six size and crop time ids (addition_embed_type \"text_time\"), \
    and running it without them would produce garbage";

impl Variant {
    /// A human name.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Sd15 => "Stable Diffusion 1.5",
            Variant::Sd21 => "Stable Diffusion 2.1",
            Variant::SdTurbo => "SD-Turbo",
            Variant::Sdxl => "SDXL",
            Variant::SdxlTurbo => "SDXL-Turbo",
        }
    }

    /// Whether the model is distilled for a few steps without guidance.
    pub fn is_turbo(self) -> bool {
        matches!(self, Variant::SdTurbo | Variant::SdxlTurbo)
    }

    /// Denoising steps to use when the user names none.
    pub fn default_steps(self) -> usize {
        if self.is_turbo() { 1 } else { 20 }
    }

    /// Guidance scale to use when the user names none: off for the Turbo models, which were
    /// distilled without it.
    pub fn default_guidance(self) -> f64 {
        if self.is_turbo() { 0.0 } else { 4.0 }
    }

    /// Fails, naming `path`, for variants this build recognises but cannot run.
    pub fn check_supported(self, path: &Path) -> Result<()> {
        match self {
            Variant::Sdxl | Variant::SdxlTurbo => Err(EngineError::file(
                format!(
                    "{} is recognised but not supported: {SDXL_MISSING}",
                    self.label()
                ),
                path,
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The `_class_name` field diffusers writes into every config.
#[derive(Debug, Default, Deserialize)]
pub struct ClassName {
    /// The Python class, e.g. `UNet2DConditionModel`.
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
}

/// Checks that a config names the class the program expects, if it names one.
pub fn check_class(found: &ClassName, expected: &[&str], path: &Path) -> Result<()> {
    match &found.class_name {
        Some(name) if !expected.contains(&name.as_str()) => Err(EngineError::file(
            format!(
                "unknown architecture {name}; this program loads {}",
                expected.join(", ")
            ),
            path,
        )),
        _ => Ok(()),
    }
}

/// The configs a variant is read from.
pub struct VariantClues<'a> {
    /// `model_index.json`'s `_class_name`, if the file exists.
    pub pipeline: Option<&'a str>,
    /// Whether there is a second text encoder (`text_encoder_2/`, or SDXL's `conditioner`).
    pub has_text_encoder_2: bool,
    /// The UNet's `addition_embed_type`.
    pub addition_embed_type: Option<&'a str>,
    /// The text encoder's `hidden_act`.
    pub text_activation: &'a str,
    /// The noise schedule.
    pub schedule: &'a ScheduleConfig,
}

impl VariantClues<'_> {
    /// Decides the variant; `index_path` is named when the pipeline class is unknown.
    pub fn variant(&self, index_path: &Path) -> Result<Variant> {
        if let Some(pipeline) = self.pipeline
            && !KNOWN_PIPELINES.contains(&pipeline)
        {
            return Err(EngineError::file(
                format!(
                    "unknown architecture {pipeline}; this program loads {}",
                    KNOWN_PIPELINES.join(", ")
                ),
                index_path,
            ));
        }
        let trailing = self.schedule.timestep_spacing == Some(TimestepSpacing::Trailing);
        let sdxl = self.pipeline == Some("StableDiffusionXLPipeline")
            || self.has_text_encoder_2
            || self.addition_embed_type.is_some();
        Ok(
            match (sdxl, self.text_activation == "quick_gelu", trailing) {
                (true, _, true) => Variant::SdxlTurbo,
                (true, _, false) => Variant::Sdxl,
                (false, true, _) => Variant::Sd15,
                (false, false, true) => Variant::SdTurbo,
                (false, false, false) => Variant::Sd21,
            },
        )
    }
}

/// The prediction type Stable Diffusion 2.x single-file checkpoints are assumed to use when
/// nothing says otherwise: SD 2.1's (768 px, v-prediction).
pub fn default_prediction(variant: Variant) -> PredictionType {
    match variant {
        Variant::Sd21 => PredictionType::VPrediction,
        _ => PredictionType::Epsilon,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clues<'a>(act: &'a str, schedule: &'a ScheduleConfig) -> VariantClues<'a> {
        VariantClues {
            pipeline: Some("StableDiffusionPipeline"),
            has_text_encoder_2: false,
            addition_embed_type: None,
            text_activation: act,
            schedule,
        }
    }

    #[test]
    fn variants_follow_the_configs() {
        let p = Path::new("model_index.json");
        let plain = ScheduleConfig::default();
        let trailing = ScheduleConfig {
            timestep_spacing: Some(TimestepSpacing::Trailing),
            ..ScheduleConfig::default()
        };
        assert_eq!(
            clues("quick_gelu", &plain).variant(p).unwrap(),
            Variant::Sd15
        );
        assert_eq!(clues("gelu", &plain).variant(p).unwrap(), Variant::Sd21);
        assert_eq!(
            clues("gelu", &trailing).variant(p).unwrap(),
            Variant::SdTurbo
        );
        let mut xl = clues("quick_gelu", &trailing);
        xl.pipeline = Some("StableDiffusionXLPipeline");
        xl.has_text_encoder_2 = true;
        xl.addition_embed_type = Some("text_time");
        assert_eq!(xl.variant(p).unwrap(), Variant::SdxlTurbo);
        let err = Variant::SdxlTurbo
            .check_supported(Path::new("unet/config.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("add_embedding") && err.contains("unet/config.json"),
            "{err}"
        );
    }

    #[test]
    fn unknown_pipelines_name_the_file() {
        let schedule = ScheduleConfig::default();
        let mut c = clues("gelu", &schedule);
        c.pipeline = Some("FluxPipeline");
        let err = c
            .variant(Path::new("m/model_index.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FluxPipeline") && err.contains("m/model_index.json"),
            "{err}"
        );
    }
}
