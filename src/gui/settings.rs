//! The generate panel's persisted settings: what the user typed and chose, kept between runs.
//!
//! Only plain data lives here (serde, every field defaulted), so a settings file written by an
//! older or newer build still loads; runtime handles live in [`super::app::ExplorerApp`].

use serde::{Deserialize, Serialize};

use crate::engine::pipeline::SamplingParams;
use crate::engine::scheduler::SamplerKind;
use crate::engine::variant::Variant;
use crate::worker::GenerateJob;

/// The key under which eframe stores the settings.
pub const STORAGE_KEY: &str = "interconcept.generate";

/// The largest seed the panel offers: seeds go through `f64` in a drag value, and a seed a
/// person can read and type is worth more than the full `u64` range.
pub const MAX_SEED: u64 = u32::MAX as u64;

/// Everything the generate panel remembers between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateSettings {
    /// The prompt; empty for unconditional generation.
    pub prompt: String,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Denoising steps.
    pub num_steps: usize,
    /// Classifier-free guidance scale.
    pub guidance_scale: f64,
    /// The sampler.
    pub sampler: SamplerKind,
    /// Picture width and height in pixels; `None` until a model says its default.
    pub size: Option<[usize; 2]>,
    /// The model the size was chosen for: loading a different model resets the size to that
    /// model's default, since sizes rarely carry over between models.
    pub size_model: Option<String>,
}

impl Default for GenerateSettings {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            seed: 0,
            num_steps: 20,
            // The command line's default, so a prompt typed here and `generate` with the same
            // seed make the same picture.
            guidance_scale: Variant::Sd15.default_guidance(),
            sampler: SamplerKind::default(),
            size: None,
            size_model: None,
        }
    }
}

impl GenerateSettings {
    /// Adopts a freshly loaded model's default size unless the size was chosen for this model.
    /// Switching to a Turbo model also switches to its few steps without guidance, and
    /// switching away from one restores the usual defaults if those were still in place.
    pub fn adopt_model(&mut self, name: &str, default_size: usize, variant: Variant) {
        if self.size.is_some() && self.size_model.as_deref() == Some(name) {
            return;
        }
        self.size = Some([default_size, default_size]);
        self.size_model = Some(name.to_string());
        let turbo_defaults = (
            Variant::SdTurbo.default_steps(),
            Variant::SdTurbo.default_guidance(),
        );
        if variant.is_turbo() {
            (self.num_steps, self.guidance_scale) = turbo_defaults;
        } else if (self.num_steps, self.guidance_scale) == turbo_defaults {
            let usual = Self::default();
            (self.num_steps, self.guidance_scale) = (usual.num_steps, usual.guidance_scale);
        }
    }

    /// The job these settings describe, or `None` while the size is unknown (no model yet).
    ///
    /// Values are passed as they are: the worker validates every request and reports what is
    /// wrong, so the rules live in one place.
    pub fn to_job(&self) -> Option<GenerateJob> {
        let [width, height] = self.size?;
        Some(GenerateJob::prompt(
            self.prompt.clone(),
            self.seed,
            SamplingParams {
                num_steps: self.num_steps,
                guidance_scale: self.guidance_scale,
                sampler: self.sampler,
                width,
                height,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_defaults() {
        let settings: GenerateSettings =
            serde_json::from_str(r#"{"prompt":"a shoe","seed":7,"unknown":1}"#)
                .expect("settings JSON");
        assert_eq!(settings.prompt, "a shoe");
        assert_eq!(settings.seed, 7);
        assert_eq!(settings.num_steps, GenerateSettings::default().num_steps);
        assert_eq!(settings.size, None);
    }

    #[test]
    fn size_follows_the_model_until_chosen_for_it() {
        let mut settings = GenerateSettings::default();
        assert!(settings.to_job().is_none());
        settings.adopt_model("embedded", 32, Variant::Sd15);
        assert_eq!(settings.size, Some([32, 32]));

        // A size chosen for this model survives reloading it, but not a switch of model.
        settings.size = Some([64, 32]);
        settings.adopt_model("embedded", 32, Variant::Sd15);
        assert_eq!(settings.size, Some([64, 32]));
        settings.adopt_model("sd-1.5", 512, Variant::Sd15);
        assert_eq!(settings.size, Some([512, 512]));

        let job = settings.to_job().expect("size is known");
        assert_eq!((job.params.width, job.params.height), (512, 512));
    }

    #[test]
    fn turbo_models_bring_their_step_and_guidance_defaults() {
        let mut settings = GenerateSettings {
            num_steps: 30,
            ..GenerateSettings::default()
        };
        settings.adopt_model("sd-turbo", 512, Variant::SdTurbo);
        assert_eq!((settings.num_steps, settings.guidance_scale), (1, 0.0));
        settings.adopt_model("sd-1.5", 512, Variant::Sd15);
        let usual = GenerateSettings::default();
        assert_eq!(
            (settings.num_steps, settings.guidance_scale),
            (usual.num_steps, usual.guidance_scale)
        );
        // Steps the user chose for a non-Turbo model stay.
        settings.num_steps = 40;
        settings.adopt_model("sd-2.1", 768, Variant::Sd21);
        assert_eq!(settings.num_steps, 40);
    }
}
