//! The weight edits a recipe can hold, and how each one changes a tensor.
//!
//! Edits are artificial neuroscience on the network: knocking a module out (a stroke),
//! randomizing it (a tumour), scaling it, drowning every weight in noise (a drug) or knocking
//! out ever more modules in a random order (the "HAL" experiment). Every edit is computed from
//! the weights as loaded, never from a previous edit, so a list of edits always gives the same
//! weights however the program got there.
//!
//! Two statistics of the loaded tensor `w` appear below: its mean `μ_w` and its standard
//! deviation `σ_w` (population, over all values of that one tensor). The *randomized* tensor
//! is `r = μ_w + σ_w·n`, with `n` standard normal noise seeded from the edit's seed and the
//! tensor's name, so randomizing keeps each tensor's statistics and loses everything learned.

use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};
use crate::engine::model::Component;

/// One change to a model's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WeightEdit {
    /// Sets every tensor of a module (or of a group of modules) to zero: `w' = 0`.
    Knockout {
        /// The component; the UNet when absent.
        #[serde(default = "unet")]
        component: Component,
        /// A module name, or a group such as `down_blocks.0`.
        module: String,
    },
    /// Replaces a module's tensors by seeded noise with each tensor's own statistics:
    /// `w' = μ_w + σ_w·n`.
    Randomize {
        /// The component; the UNet when absent.
        #[serde(default = "unet")]
        component: Component,
        /// A module name, or a group.
        module: String,
        /// Seed of the noise.
        seed: u64,
    },
    /// Multiplies a module's tensors by a factor: `w' = factor·w`.
    Scale {
        /// The component; the UNet when absent.
        #[serde(default = "unet")]
        component: Component,
        /// A module name, or a group.
        module: String,
        /// The factor (1 leaves the module as it is).
        factor: f64,
    },
    /// Mixes randomness into every weight: `w' = (1 - p)·w + p·(μ_w + σ_w·n)` with
    /// `p = percent / 100`, per tensor. At 100% this equals [`WeightEdit::Randomize`] of every
    /// module with the same seed.
    MixNoise {
        /// How much randomness, 0 to 100.
        percent: f64,
        /// Seed of the noise.
        seed: u64,
        /// The components whose weights are mixed; the UNet when absent.
        #[serde(default = "unet_only")]
        components: Vec<Component>,
    },
    /// Multiplies every weight by a factor: `w' = factor·w` (1.0 is 100%).
    ScaleAll {
        /// The factor.
        factor: f64,
        /// The components scaled; the UNet when absent.
        #[serde(default = "unet_only")]
        components: Vec<Component>,
    },
    /// Knocks out the first `count` modules of a seeded random order of a component's modules
    /// (see [`super::progressive_order`]): raising `count` with the same seed knocks out ever
    /// more of the same brain.
    ProgressiveKnockout {
        /// How many modules are knocked out.
        count: usize,
        /// Seed of the order.
        seed: u64,
        /// The component; the UNet when absent.
        #[serde(default = "unet")]
        component: Component,
    },
}

fn unet() -> Component {
    Component::Unet
}

fn unet_only() -> Vec<Component> {
    vec![Component::Unet]
}

impl WeightEdit {
    /// Checks the numbers of an edit; module names are checked against the model when the
    /// edit is applied.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(EngineError::InvalidRequest(what));
        match self {
            WeightEdit::Scale { factor, .. } | WeightEdit::ScaleAll { factor, .. }
                if !factor.is_finite() =>
            {
                bad(format!(
                    "scale factor must be a finite number, got {factor}"
                ))
            }
            WeightEdit::MixNoise { percent, .. }
                if !(percent.is_finite() && (0.0..=100.0).contains(percent)) =>
            {
                bad(format!(
                    "noise must be between 0 and 100 percent, got {percent}"
                ))
            }
            WeightEdit::MixNoise { components, .. } | WeightEdit::ScaleAll { components, .. }
                if components.is_empty() =>
            {
                bad("a global edit needs at least one component".to_string())
            }
            _ => Ok(()),
        }
    }

    /// Whether the edit changes any weight of `component`.
    pub fn touches(&self, component: Component) -> bool {
        match self {
            WeightEdit::Knockout { component: c, .. }
            | WeightEdit::Randomize { component: c, .. }
            | WeightEdit::Scale { component: c, .. }
            | WeightEdit::ProgressiveKnockout { component: c, .. } => *c == component,
            WeightEdit::MixNoise { components, .. } | WeightEdit::ScaleAll { components, .. } => {
                components.contains(&component)
            }
        }
    }

    /// A short label for pictures and file names (`knockout down_blocks.0.resnets.0.conv1`).
    pub fn label(&self) -> String {
        let module_label = |component: &Component, module: &str| match component {
            Component::Unet => module.to_string(),
            other => format!("{}:{module}", other.name()),
        };
        match self {
            WeightEdit::Knockout { component, module } => {
                format!("knockout {}", module_label(component, module))
            }
            WeightEdit::Randomize {
                component,
                module,
                seed,
            } => format!(
                "randomize {} (seed {seed})",
                module_label(component, module)
            ),
            WeightEdit::Scale {
                component,
                module,
                factor,
            } => format!("scale {} x{factor}", module_label(component, module)),
            WeightEdit::MixNoise { percent, seed, .. } => {
                format!("noise {percent}% (seed {seed})")
            }
            WeightEdit::ScaleAll { factor, .. } => format!("scale all {}%", factor * 100.0),
            WeightEdit::ProgressiveKnockout { count, seed, .. } => {
                format!("progressive knockout {count} (order {seed})")
            }
        }
    }
}

/// What happens to one tensor, in edit order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TensorOp {
    /// `w' = 0`.
    Zero,
    /// `w' = μ_w + σ_w·n`.
    Randomize {
        /// The edit's seed; the tensor's own is derived from it and the tensor's name.
        seed: u64,
    },
    /// `w' = factor·w`.
    Scale(f64),
    /// `w' = (1 - p)·w + p·(μ_w + σ_w·n)`.
    Mix {
        /// `p`, from 0 to 1.
        fraction: f64,
        /// The edit's seed.
        seed: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_round_trip_as_tagged_json_with_unet_defaults() {
        let edits = vec![
            WeightEdit::Knockout {
                component: Component::Vae,
                module: "decoder.conv_out".into(),
            },
            WeightEdit::MixNoise {
                percent: 2.0,
                seed: 1,
                components: vec![Component::Unet],
            },
            WeightEdit::ProgressiveKnockout {
                count: 40,
                seed: 1,
                component: Component::Unet,
            },
        ];
        let json = serde_json::to_string(&edits).unwrap();
        assert!(json.contains(r#""kind":"mix_noise""#), "{json}");
        let back: Vec<WeightEdit> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, edits);

        let short: WeightEdit =
            serde_json::from_str(r#"{"kind":"knockout","module":"conv_in"}"#).unwrap();
        assert_eq!(
            short,
            WeightEdit::Knockout {
                component: Component::Unet,
                module: "conv_in".into()
            }
        );
        let typo = serde_json::from_str::<WeightEdit>(
            r#"{"kind":"knockout","module":"conv_in","modul":"x"}"#,
        );
        assert!(typo.is_err());
    }

    #[test]
    fn bad_numbers_are_refused() {
        let noise = |percent| WeightEdit::MixNoise {
            percent,
            seed: 0,
            components: vec![Component::Unet],
        };
        assert!(noise(2.0).validate().is_ok());
        assert!(noise(101.0).validate().is_err());
        assert!(noise(f64::NAN).validate().is_err());
        let scale = WeightEdit::ScaleAll {
            factor: f64::INFINITY,
            components: vec![Component::Unet],
        };
        assert!(scale.validate().is_err());
        let nothing = WeightEdit::ScaleAll {
            factor: 1.0,
            components: vec![],
        };
        assert!(nothing.validate().is_err());
    }
}
