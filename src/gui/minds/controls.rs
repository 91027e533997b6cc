//! The panel's controls as plain data: which modules are ticked and what is done to each, and
//! the global noise, scale and progressive-knockout sliders. [`MindControls::edits`] turns them
//! into the weight edits every picture is made with; [`MindControls::set_edits`] goes the other
//! way when a recipe is opened.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::engine::model::Component;
use crate::engine::surgery::{WeightEdit, network_order};

/// The highest the scale slider goes, in percent.
pub const MAX_SCALE_PERCENT: f64 = 300.0;

/// What is done to a ticked module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EditKind {
    /// Every weight set to zero (a stroke).
    #[default]
    Knockout,
    /// Every weight replaced by seeded noise with the tensor's own statistics (a tumour).
    Randomize,
    /// Every weight multiplied by a factor.
    Scale,
}

impl EditKind {
    /// Every kind, in the order offered.
    pub const ALL: [EditKind; 3] = [EditKind::Knockout, EditKind::Randomize, EditKind::Scale];

    /// The kind's name in the panel.
    pub fn title(self) -> &'static str {
        match self {
            EditKind::Knockout => "knockout",
            EditKind::Randomize => "randomize",
            EditKind::Scale => "scale",
        }
    }
}

/// The edit of one ticked module (or group of modules).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModuleEdit {
    /// Knockout, randomize or scale.
    pub kind: EditKind,
    /// Seed of the noise when randomizing.
    pub seed: u64,
    /// The factor when scaling.
    pub factor: f64,
}

impl Default for ModuleEdit {
    fn default() -> Self {
        Self {
            kind: EditKind::Knockout,
            seed: 1,
            factor: 0.5,
        }
    }
}

/// A ticked module or group of modules and its edit.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// The component it belongs to.
    pub component: Component,
    /// A module name or a group path (`mid_block`).
    pub module: String,
    /// What is done to it.
    pub edit: ModuleEdit,
}

impl Tick {
    fn to_edit(&self) -> WeightEdit {
        let (component, module) = (self.component, self.module.clone());
        match self.edit.kind {
            EditKind::Knockout => WeightEdit::Knockout { component, module },
            EditKind::Randomize => WeightEdit::Randomize {
                component,
                module,
                seed: self.edit.seed,
            },
            EditKind::Scale => WeightEdit::Scale {
                component,
                module,
                factor: self.edit.factor,
            },
        }
    }
}

/// The order ticks are listed and applied in: components as the data flows (text encoder,
/// UNet, VAE), modules in network order within one, a group before the modules inside it.
fn tick_order(a: &Tick, b: &Tick) -> Ordering {
    let rank = |c: Component| Component::ALL.iter().position(|&x| x == c);
    rank(a.component)
        .cmp(&rank(b.component))
        .then_with(|| network_order(&a.module, &b.module))
}

/// Every control of the panel that changes weights.
#[derive(Debug, Clone, PartialEq)]
pub struct MindControls {
    /// Ticked modules, kept in [`tick_order`].
    ticks: Vec<Tick>,
    /// The component the global sliders act on.
    pub global_component: Component,
    /// Noise mixed into every weight, 0 to 100.
    pub noise_percent: f64,
    /// Seed of that noise.
    pub noise_seed: u64,
    /// Every weight scaled to this percentage (100 leaves them).
    pub scale_percent: f64,
    /// Modules knocked out in a seeded random order.
    pub progressive_count: usize,
    /// Seed of that order.
    pub progressive_seed: u64,
    /// Edits of an opened recipe the controls cannot express, kept verbatim after their own.
    extra: Vec<WeightEdit>,
}

impl Default for MindControls {
    fn default() -> Self {
        Self {
            ticks: Vec::new(),
            global_component: Component::Unet,
            noise_percent: 0.0,
            noise_seed: 1,
            scale_percent: 100.0,
            progressive_count: 0,
            progressive_seed: 1,
            extra: Vec::new(),
        }
    }
}

/// A global slider of the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slider {
    /// Noise mixed into the weights, percent.
    #[default]
    Noise,
    /// Every weight scaled, percent.
    Scale,
    /// Modules knocked out in a seeded order, a count.
    Progressive,
}

impl Slider {
    /// Every slider.
    pub const ALL: [Slider; 3] = [Slider::Noise, Slider::Scale, Slider::Progressive];

    /// The slider's name.
    pub fn title(self) -> &'static str {
        match self {
            Slider::Noise => "noise",
            Slider::Scale => "scale",
            Slider::Progressive => "progressive knockout",
        }
    }

    /// The name of its axis in a plot.
    pub fn axis_label(self) -> &'static str {
        match self {
            Slider::Noise => "noise in the weights (%)",
            Slider::Scale => "weights scaled to (%)",
            Slider::Progressive => "modules knocked out",
        }
    }

    /// A value as a short label (`7%`, `12 out`).
    pub fn value_label(self, value: f64) -> String {
        match self {
            Slider::Noise | Slider::Scale => format!("{}%", round_label(value)),
            Slider::Progressive => format!("{} out", value.round()),
        }
    }
}

/// A number with at most three decimals and no trailing zeros.
fn round_label(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl MindControls {
    /// The ticked modules, in the order their edits apply.
    pub fn ticks(&self) -> &[Tick] {
        &self.ticks
    }

    /// Edits of an opened recipe that no control shows; they still apply, after the rest.
    pub fn extra(&self) -> &[WeightEdit] {
        &self.extra
    }

    /// Drops the edits no control shows.
    pub fn clear_extra(&mut self) {
        self.extra.clear();
    }

    /// The tick of a module or group, if it is ticked.
    pub fn tick(&self, component: Component, module: &str) -> Option<&Tick> {
        self.ticks
            .iter()
            .find(|t| t.component == component && t.module == module)
    }

    /// The edit of a ticked module, to change it.
    pub fn tick_mut(&mut self, component: Component, module: &str) -> Option<&mut ModuleEdit> {
        self.ticks
            .iter_mut()
            .find(|t| t.component == component && t.module == module)
            .map(|t| &mut t.edit)
    }

    /// Ticks a module or group with `edit`, or unticks it (`None`).
    pub fn set_tick(&mut self, component: Component, module: &str, edit: Option<ModuleEdit>) {
        self.ticks
            .retain(|t| !(t.component == component && t.module == module));
        if let Some(edit) = edit {
            let tick = Tick {
                component,
                module: module.to_string(),
                edit,
            };
            let at = self
                .ticks
                .partition_point(|t| tick_order(t, &tick) == Ordering::Less);
            self.ticks.insert(at, tick);
        }
    }

    /// Unticks everything and puts the sliders back where they leave the weights alone.
    pub fn reset(&mut self) {
        *self = Self {
            noise_seed: self.noise_seed,
            progressive_seed: self.progressive_seed,
            global_component: self.global_component,
            ..Self::default()
        };
    }

    /// A slider's value.
    pub fn slider(&self, slider: Slider) -> f64 {
        match slider {
            Slider::Noise => self.noise_percent,
            Slider::Scale => self.scale_percent,
            Slider::Progressive => self.progressive_count as f64,
        }
    }

    /// Sets a slider, clamped to its range (`num_modules` bounds the progressive count).
    pub fn set_slider(&mut self, slider: Slider, value: f64, num_modules: usize) {
        match slider {
            Slider::Noise => self.noise_percent = value.clamp(0.0, 100.0),
            Slider::Scale => self.scale_percent = value.clamp(0.0, MAX_SCALE_PERCENT),
            Slider::Progressive => {
                self.progressive_count = (value.max(0.0).round() as usize).min(num_modules);
            }
        }
    }

    /// The edits the controls describe, in a stable order: ticked modules (see [`Tick`]), then
    /// noise, scale and progressive knockout where they change anything, then the edits of an
    /// opened recipe that no control shows.
    pub fn edits(&self) -> Vec<WeightEdit> {
        let mut edits: Vec<WeightEdit> = self.ticks.iter().map(Tick::to_edit).collect();
        let components = vec![self.global_component];
        if self.noise_percent > 0.0 {
            edits.push(WeightEdit::MixNoise {
                percent: self.noise_percent,
                seed: self.noise_seed,
                components: components.clone(),
            });
        }
        if self.scale_percent != 100.0 {
            edits.push(WeightEdit::ScaleAll {
                factor: self.scale_percent / 100.0,
                components,
            });
        }
        if self.progressive_count > 0 {
            edits.push(WeightEdit::ProgressiveKnockout {
                count: self.progressive_count,
                seed: self.progressive_seed,
                component: self.global_component,
            });
        }
        edits.extend(self.extra.iter().cloned());
        edits
    }

    /// Makes the controls describe `edits`: the longest beginning of the list that the
    /// controls express in their own order becomes ticks and slider positions, the rest is
    /// kept verbatim, so [`MindControls::edits`] gives back exactly `edits` (the same weights,
    /// the same pictures). Seeds of sliders the list does not use are kept.
    pub fn set_edits(&mut self, edits: &[WeightEdit]) {
        let base = Self {
            noise_seed: self.noise_seed,
            progressive_seed: self.progressive_seed,
            global_component: self.global_component,
            ..Self::default()
        };
        for expressed in (0..=edits.len()).rev() {
            let mut controls = base.clone();
            if controls.express(&edits[..expressed]) && controls.edits() == edits[..expressed] {
                controls.extra = edits[expressed..].to_vec();
                *self = controls;
                return;
            }
        }
    }

    /// Sets the controls from `edits` alone; false when one of them has no control.
    fn express(&mut self, edits: &[WeightEdit]) -> bool {
        let mut global: Option<Component> = None;
        let mut same_global = |c: Component| *global.get_or_insert(c) == c;
        for edit in edits {
            let expressed = match edit {
                WeightEdit::Knockout { component, module } => {
                    self.tick_new(*component, module, EditKind::Knockout, 1, 0.5)
                }
                WeightEdit::Randomize {
                    component,
                    module,
                    seed,
                } => self.tick_new(*component, module, EditKind::Randomize, *seed, 0.5),
                WeightEdit::Scale {
                    component,
                    module,
                    factor,
                } => self.tick_new(*component, module, EditKind::Scale, 1, *factor),
                WeightEdit::MixNoise {
                    percent,
                    seed,
                    components,
                } => {
                    let fits = components.len() == 1 && same_global(components[0]);
                    if fits {
                        self.global_component = components[0];
                        self.noise_percent = *percent;
                        self.noise_seed = *seed;
                    }
                    fits
                }
                WeightEdit::ScaleAll { factor, components } => {
                    let percent = factor * 100.0;
                    let fits = components.len() == 1
                        && (0.0..=MAX_SCALE_PERCENT).contains(&percent)
                        && same_global(components[0]);
                    if fits {
                        self.global_component = components[0];
                        self.scale_percent = percent;
                    }
                    fits
                }
                WeightEdit::ProgressiveKnockout {
                    count,
                    seed,
                    component,
                } => {
                    let fits = same_global(*component);
                    if fits {
                        self.global_component = *component;
                        self.progressive_count = *count;
                        self.progressive_seed = *seed;
                    }
                    fits
                }
            };
            if !expressed {
                return false;
            }
        }
        true
    }

    fn tick_new(
        &mut self,
        component: Component,
        module: &str,
        kind: EditKind,
        seed: u64,
        factor: f64,
    ) -> bool {
        if self.tick(component, module).is_some() {
            return false;
        }
        let edit = ModuleEdit { kind, seed, factor };
        self.set_tick(component, module, Some(edit));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knockout(module: &str) -> WeightEdit {
        WeightEdit::Knockout {
            component: Component::Unet,
            module: module.into(),
        }
    }

    #[test]
    fn untouched_controls_edit_nothing() {
        assert!(MindControls::default().edits().is_empty());
    }

    #[test]
    fn ticks_list_in_network_order_groups_first_whatever_the_clicking_order() {
        let mut controls = MindControls::default();
        let randomize = ModuleEdit {
            kind: EditKind::Randomize,
            seed: 7,
            factor: 0.5,
        };
        controls.set_tick(Component::Unet, "up_blocks.0.resnets.0.conv1", None);
        controls.set_tick(
            Component::Vae,
            "decoder.conv_out",
            Some(ModuleEdit::default()),
        );
        controls.set_tick(
            Component::Unet,
            "mid_block.resnets.0.conv1",
            Some(randomize),
        );
        controls.set_tick(Component::Unet, "conv_in", Some(ModuleEdit::default()));
        controls.set_tick(Component::Unet, "mid_block", Some(ModuleEdit::default()));
        controls.noise_percent = 3.0;
        controls.scale_percent = 90.0;
        controls.progressive_count = 4;
        let edits = controls.edits();
        assert_eq!(
            edits,
            vec![
                knockout("conv_in"),
                knockout("mid_block"),
                WeightEdit::Randomize {
                    component: Component::Unet,
                    module: "mid_block.resnets.0.conv1".into(),
                    seed: 7
                },
                WeightEdit::Knockout {
                    component: Component::Vae,
                    module: "decoder.conv_out".into()
                },
                WeightEdit::MixNoise {
                    percent: 3.0,
                    seed: 1,
                    components: vec![Component::Unet]
                },
                WeightEdit::ScaleAll {
                    factor: 0.9,
                    components: vec![Component::Unet]
                },
                WeightEdit::ProgressiveKnockout {
                    count: 4,
                    seed: 1,
                    component: Component::Unet
                },
            ]
        );

        // Unticking takes exactly that edit away.
        controls.set_tick(Component::Unet, "mid_block", None);
        assert!(!controls.edits().contains(&knockout("mid_block")));
        assert_eq!(controls.edits().len(), edits.len() - 1);
    }

    #[test]
    fn edits_round_trip_through_the_controls() {
        let mut controls = MindControls::default();
        controls.set_tick(
            Component::Unet,
            "down_blocks.0",
            Some(ModuleEdit {
                kind: EditKind::Scale,
                seed: 1,
                factor: 1.5,
            }),
        );
        controls.noise_percent = 12.5;
        controls.noise_seed = 99;
        controls.progressive_count = 3;
        let edits = controls.edits();

        let mut opened = MindControls::default();
        opened.set_edits(&edits);
        assert_eq!(opened.edits(), edits);
        assert!(opened.extra().is_empty());
        assert_eq!(opened.noise_seed, 99);
        assert_eq!(
            opened
                .tick(Component::Unet, "down_blocks.0")
                .map(|t| t.edit.factor),
            Some(1.5)
        );
    }

    #[test]
    fn what_the_controls_cannot_show_is_kept_verbatim_and_in_order() {
        let edits = vec![
            knockout("mid_block"),
            // Two components at once: no slider for that.
            WeightEdit::MixNoise {
                percent: 5.0,
                seed: 3,
                components: vec![Component::Unet, Component::Vae],
            },
            // After an inexpressible edit, order matters: kept verbatim too.
            knockout("conv_in"),
            WeightEdit::ScaleAll {
                factor: 1e30,
                components: vec![Component::Unet],
            },
        ];
        let mut controls = MindControls::default();
        controls.set_edits(&edits);
        assert_eq!(controls.edits(), edits);
        assert!(controls.tick(Component::Unet, "mid_block").is_some());
        assert!(controls.tick(Component::Unet, "conv_in").is_none());
        assert_eq!(controls.extra().len(), 3);

        // A list whose order the controls would change: ticks up to where order breaks.
        let reversed = vec![knockout("up_blocks.0"), knockout("conv_in")];
        controls.set_edits(&reversed);
        assert_eq!(controls.edits(), reversed);
        assert_eq!(controls.ticks().len(), 1);

        // A scale beyond the slider, and a repeated module, stay verbatim.
        let odd = vec![
            WeightEdit::ScaleAll {
                factor: 5.0,
                components: vec![Component::Unet],
            },
            knockout("mid_block"),
        ];
        controls.set_edits(&odd);
        assert_eq!(controls.edits(), odd);
        assert_eq!(controls.scale_percent, 100.0);

        // Opening a plain recipe clears everything.
        controls.set_edits(&[]);
        assert_eq!(controls, MindControls::default());
    }

    #[test]
    fn sliders_clamp_to_their_ranges() {
        let mut controls = MindControls::default();
        controls.set_slider(Slider::Noise, 140.0, 10);
        controls.set_slider(Slider::Scale, -5.0, 10);
        controls.set_slider(Slider::Progressive, 12.4, 10);
        assert_eq!(controls.noise_percent, 100.0);
        assert_eq!(controls.scale_percent, 0.0);
        assert_eq!(controls.progressive_count, 10);
        assert_eq!(Slider::Scale.value_label(99.5), "99.5%");
        assert_eq!(Slider::Noise.value_label(3.0), "3%");
        assert_eq!(Slider::Progressive.value_label(4.0), "4 out");
    }
}
