//! What the alien-minds tab remembers between runs: the global sliders (noise, scale,
//! progressive knockout, their seeds and component), the module tree's component, filter and
//! the edit a new tick gets, and the sequence and sweep settings.
//!
//! Ticked modules and edits kept from an opened recipe are not remembered: they name modules of
//! one model, and a window that starts with a damaged mind nobody chose is a surprise. The
//! sliders are, so a picture made after a restart shows the mind the window was left with.
//! Plain data with every field defaulted; runs, tiles and textures stay in
//! [`crate::gui::minds_panel::MindsPanel`].

use serde::{Deserialize, Serialize};

use super::controls::{MAX_SCALE_PERCENT, MindControls};
use super::sequence::{MAX_TILES, SequenceSpec};
use super::sweep::SweepSpec;
use super::tree_ui::TreeState;
use crate::engine::model::Component;

/// The key under which eframe stores the alien-minds settings.
pub const STORAGE_KEY: &str = "interconcept.minds";

/// Everything the alien-minds tab remembers between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MindsSettings {
    /// The component the global sliders act on.
    pub global_component: Component,
    /// Noise mixed into every weight, 0 to 100.
    pub noise_percent: f64,
    /// Seed of that noise.
    pub noise_seed: u64,
    /// Every weight scaled to this percentage.
    pub scale_percent: f64,
    /// Modules knocked out in a seeded order.
    pub progressive_count: usize,
    /// Seed of that order.
    pub progressive_seed: u64,
    /// The module tree's component and filter, and the edit a new tick gets.
    pub tree: TreeState,
    /// What the next sequence varies.
    pub sequence: SequenceSpec,
    /// What the next sweep does.
    pub sweep: SweepSpec,
}

impl Default for MindsSettings {
    fn default() -> Self {
        Self::of(
            &MindControls::default(),
            &TreeState::default(),
            SequenceSpec::default(),
            &SweepSpec::default(),
        )
    }
}

impl MindsSettings {
    /// The settings of the tab's parts as they are.
    pub fn of(
        controls: &MindControls,
        tree: &TreeState,
        sequence: SequenceSpec,
        sweep: &SweepSpec,
    ) -> Self {
        Self {
            global_component: controls.global_component,
            noise_percent: controls.noise_percent,
            noise_seed: controls.noise_seed,
            scale_percent: controls.scale_percent,
            progressive_count: controls.progressive_count,
            progressive_seed: controls.progressive_seed,
            tree: tree.clone(),
            sequence,
            sweep: sweep.clone(),
        }
    }

    /// Puts the sliders into `controls`, keeping its ticks.
    pub fn apply_to(&self, controls: &mut MindControls) {
        controls.global_component = self.global_component;
        controls.noise_percent = self.noise_percent;
        controls.noise_seed = self.noise_seed;
        controls.scale_percent = self.scale_percent;
        controls.progressive_count = self.progressive_count;
        controls.progressive_seed = self.progressive_seed;
    }

    /// The settings with every number inside the range its control offers (a settings file is
    /// not to be trusted). The progressive count is bounded by the model's modules once one is
    /// loaded ([`crate::gui::minds_panel::MindsPanel::fit_to_model`]).
    pub fn sanitized(mut self) -> Self {
        let within = |x: f64, high: f64, otherwise: f64| {
            if x.is_finite() {
                x.clamp(0.0, high)
            } else {
                otherwise
            }
        };
        self.noise_percent = within(self.noise_percent, 100.0, 0.0);
        self.scale_percent = within(self.scale_percent, MAX_SCALE_PERCENT, 100.0);
        let edit = &mut self.tree.brush;
        if !(edit.factor.is_finite() && (-10.0..=10.0).contains(&edit.factor)) {
            edit.factor = super::controls::ModuleEdit::default().factor;
        }
        let sequence = &mut self.sequence;
        sequence.count = sequence.count.clamp(1, MAX_TILES);
        if !(sequence.start.is_finite() && sequence.step.is_finite()) {
            *sequence = SequenceSpec::default();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gui::minds::{EditKind, Slider};

    #[test]
    fn settings_round_trip_and_come_back_in_range() {
        let mut settings = MindsSettings {
            global_component: Component::Vae,
            noise_percent: 12.5,
            noise_seed: 4,
            scale_percent: 80.0,
            progressive_count: 3,
            progressive_seed: 8,
            ..MindsSettings::default()
        };
        settings.tree.filter = "attn".into();
        settings.tree.brush.kind = EditKind::Randomize;
        settings.sequence.slider = Slider::Scale;
        settings.sequence.count = 5;
        settings.sweep.kind = EditKind::Randomize;
        let json = serde_json::to_string(&settings).expect("settings serialise");
        let back: MindsSettings = serde_json::from_str(&json).expect("settings JSON");
        assert_eq!(back, settings);
        assert_eq!(back.clone().sanitized(), settings, "in range already");

        // Into controls and out again, ticks untouched.
        let mut controls = MindControls::default();
        controls.set_tick(Component::Unet, "mid_block", Some(Default::default()));
        back.apply_to(&mut controls);
        assert_eq!(controls.ticks().len(), 1);
        assert_eq!(controls.noise_percent, 12.5);
        let again = MindsSettings::of(&controls, &back.tree, back.sequence, &back.sweep);
        assert_eq!(again, settings);

        let odd: MindsSettings = serde_json::from_str(
            r#"{"noise_percent":400,"scale_percent":-1,"sequence":{"count":0},"x":[]}"#,
        )
        .expect("settings JSON");
        let odd = odd.sanitized();
        assert_eq!(odd.noise_percent, 100.0);
        assert_eq!(odd.scale_percent, 0.0);
        assert_eq!(odd.sequence.count, 1);
        assert_eq!(odd.noise_seed, 1);
    }
}
