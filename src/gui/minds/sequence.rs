//! Fading sequences: one global slider set to `start`, `start + step`, ... with everything
//! else as the controls have it, one tile per value, and the concept meter's score for the
//! prompt's concept against the value, to see where the concept is lost.

use serde::{Deserialize, Serialize};

use super::controls::{MindControls, Slider};
use super::tiles::{Concept, TileSet};
use crate::recipe::Recipe;

/// The score under which a concept counts as lost (the meter is less sure of it than not).
pub const LOST_BELOW: f32 = 0.5;

/// The most tiles one sequence makes.
pub const MAX_TILES: usize = 64;

/// What a sequence varies and how.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SequenceSpec {
    /// The slider varied.
    pub slider: Slider,
    /// Its first value.
    pub start: f64,
    /// How much it changes from one tile to the next (negative to go down).
    pub step: f64,
    /// How many tiles.
    pub count: usize,
}

impl Default for SequenceSpec {
    fn default() -> Self {
        Self {
            slider: Slider::Noise,
            start: 0.0,
            step: 1.0,
            count: 16,
        }
    }
}

impl SequenceSpec {
    /// The values, in order, stopping where the slider's range ends (`num_modules` bounds the
    /// progressive count); progressive counts are whole numbers, repeats dropped.
    pub fn values(&self, num_modules: usize) -> Vec<f64> {
        let (low, high) = match self.slider {
            Slider::Noise => (0.0, 100.0),
            Slider::Scale => (0.0, super::controls::MAX_SCALE_PERCENT),
            Slider::Progressive => (0.0, num_modules as f64),
        };
        let mut values: Vec<f64> = Vec::new();
        for i in 0..self.count.min(MAX_TILES) {
            let mut value = self.start + self.step * i as f64;
            if self.slider == Slider::Progressive {
                value = value.round();
            }
            // Float steps land a hair off (0.1 * 3): keep values as a person would type them.
            value = (value * 1e6).round() / 1e6;
            if !(low..=high).contains(&value) {
                break;
            }
            if values.last() != Some(&value) {
                values.push(value);
            }
        }
        values
    }

    /// The tiles: labels and recipes, each `template` with the controls' edits at one value.
    pub fn tiles(
        &self,
        template: &Recipe,
        controls: &MindControls,
        num_modules: usize,
        previous: Option<&TileSet>,
    ) -> TileSet {
        let values = self.values(num_modules);
        let labels = values.iter().map(|&v| self.slider.value_label(v)).collect();
        let recipes = values
            .iter()
            .map(|&value| {
                let mut at = controls.clone();
                at.set_slider(self.slider, value, num_modules);
                Recipe {
                    edits: at.edits(),
                    ..template.clone()
                }
            })
            .collect();
        TileSet::new(labels, recipes, previous)
    }
}

/// A sequence asked for: its spec, values and tiles, and the concept scored.
#[derive(Debug, Clone, Default)]
pub struct SequenceRun {
    /// What was asked.
    pub spec: SequenceSpec,
    /// The slider value of each tile.
    pub values: Vec<f64>,
    /// The tiles.
    pub tiles: TileSet,
    /// The prompt's concept (`None`: the prompt names none of the meter's, or the model has
    /// no meter).
    pub concept: Option<Concept>,
}

impl SequenceRun {
    /// The (value, score) points that came back, in sequence order.
    pub fn curve(&self) -> Vec<[f64; 2]> {
        self.values
            .iter()
            .zip(&self.tiles.results)
            .filter_map(|(&v, r)| Some([v, f64::from(r.as_ref()?.score?)]))
            .collect()
    }

    /// The first value, in sequence order, whose score falls below [`LOST_BELOW`], with that
    /// score: where the concept is lost.
    pub fn lost_at(&self) -> Option<(f64, f32)> {
        self.values
            .iter()
            .zip(&self.tiles.results)
            .find_map(|(&v, r)| {
                let score = r.as_ref()?.score?;
                (score < LOST_BELOW).then_some((v, score))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::surgery::WeightEdit;
    use crate::gui::minds::tiles::tests::{recipe, result};

    #[test]
    fn values_step_within_the_slider_range() {
        let noise = SequenceSpec {
            slider: Slider::Noise,
            start: 0.0,
            step: 1.0,
            count: 3,
        };
        assert_eq!(noise.values(0), vec![0.0, 1.0, 2.0]);
        let scale_down = SequenceSpec {
            slider: Slider::Scale,
            start: 100.0,
            step: -0.1,
            count: 4,
        };
        assert_eq!(scale_down.values(0), vec![100.0, 99.9, 99.8, 99.7]);
        let past_the_end = SequenceSpec {
            slider: Slider::Noise,
            start: 95.0,
            step: 2.5,
            count: 10,
        };
        assert_eq!(past_the_end.values(0), vec![95.0, 97.5, 100.0]);
        let progressive = SequenceSpec {
            slider: Slider::Progressive,
            start: 0.0,
            step: 0.5,
            count: 9,
        };
        // Whole counts, no repeats, no more than the modules there are.
        assert_eq!(progressive.values(2), vec![0.0, 1.0, 2.0]);
        let huge = SequenceSpec {
            count: 10_000,
            ..SequenceSpec::default()
        };
        assert_eq!(huge.values(0).len(), MAX_TILES);
    }

    #[test]
    fn each_tile_is_the_controls_with_the_slider_at_its_value() {
        let mut controls = MindControls::default();
        controls.scale_percent = 80.0;
        let spec = SequenceSpec {
            slider: Slider::Noise,
            start: 0.0,
            step: 5.0,
            count: 2,
        };
        let set = spec.tiles(&recipe(1), &controls, 10, None);
        assert_eq!(set.labels, vec!["0%", "5%"]);
        let scale = WeightEdit::ScaleAll {
            factor: 0.8,
            components: vec![crate::engine::model::Component::Unet],
        };
        assert_eq!(set.recipes[0].edits, vec![scale.clone()]);
        assert!(matches!(
            set.recipes[1].edits[0],
            WeightEdit::MixNoise { percent: 5.0, .. }
        ));
        assert_eq!(set.recipes[1].edits[1], scale);
        assert_eq!(set.recipes[1].seed, 1);
    }

    #[test]
    fn the_concept_is_lost_where_the_score_first_drops_below_one_half() {
        let spec = SequenceSpec {
            count: 4,
            ..SequenceSpec::default()
        };
        let mut run = SequenceRun {
            spec,
            values: spec.values(0),
            tiles: spec.tiles(&recipe(1), &MindControls::default(), 0, None),
            concept: Some(Concept {
                index: 8,
                label: "bag".into(),
            }),
        };
        let recipes = run.tiles.recipes.clone();
        assert_eq!(run.lost_at(), None);
        // Tiles arrive out of order; the curve follows the values.
        run.tiles.store(3, result(&recipes[3], 0.2));
        run.tiles.store(0, result(&recipes[0], 0.9));
        assert_eq!(
            run.curve(),
            vec![[0.0, 0.9f32 as f64], [3.0, 0.2f32 as f64]]
        );
        assert_eq!(run.lost_at(), Some((3.0, 0.2)));
        run.tiles.store(2, result(&recipes[2], 0.4));
        run.tiles.store(1, result(&recipes[1], 0.6));
        assert_eq!(run.lost_at(), Some((2.0, 0.4)));
    }
}
