//! Module sweeps: the picture with each module of a component knocked out (or randomized) in
//! turn, one tile per module after the intact picture, to see which modules the concept needs.

use serde::{Deserialize, Serialize};

use super::controls::EditKind;
use super::tiles::{Concept, TileSet};
use crate::engine::model::Component;
use crate::engine::surgery::{ModuleCatalog, WeightEdit};
use crate::recipe::Recipe;

/// What a sweep does to each module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepSpec {
    /// Knockout or randomize (scale is a slider's job).
    pub kind: EditKind,
    /// Seed of the noise when randomizing.
    pub seed: u64,
    /// The component whose modules are swept.
    pub component: Component,
    /// Only modules whose name contains this (empty: all).
    pub filter: String,
}

impl Default for SweepSpec {
    fn default() -> Self {
        Self {
            kind: EditKind::Knockout,
            seed: 1,
            component: Component::Unet,
            filter: String::new(),
        }
    }
}

/// The label of the first tile, the mind as the controls leave it.
pub const INTACT_LABEL: &str = "as is";

impl SweepSpec {
    /// The modules swept, in network order.
    pub fn modules<'c>(&self, catalog: &'c ModuleCatalog) -> Vec<&'c str> {
        let filter = self.filter.to_lowercase();
        catalog
            .modules
            .iter()
            .map(|m| m.name.as_str())
            .filter(|name| name.to_lowercase().contains(&filter))
            .collect()
    }

    /// The tiles: `template` as it is, then `template` with each module's edit after its own
    /// edits. Labels are the full module names.
    pub fn tiles(
        &self,
        template: &Recipe,
        catalog: &ModuleCatalog,
        previous: Option<&TileSet>,
    ) -> TileSet {
        let mut labels = vec![INTACT_LABEL.to_string()];
        let mut recipes = vec![template.clone()];
        for module in self.modules(catalog) {
            let component = self.component;
            let module = module.to_string();
            let edit = match self.kind {
                EditKind::Randomize => WeightEdit::Randomize {
                    component,
                    module: module.clone(),
                    seed: self.seed,
                },
                EditKind::Knockout | EditKind::Scale => WeightEdit::Knockout {
                    component,
                    module: module.clone(),
                },
            };
            let mut recipe = template.clone();
            recipe.edits.push(edit);
            labels.push(module);
            recipes.push(recipe);
        }
        TileSet::new(labels, recipes, previous)
    }
}

/// A sweep asked for.
#[derive(Debug, Clone, Default)]
pub struct SweepRun {
    /// What was asked.
    pub spec: SweepSpec,
    /// The intact tile, then one per module.
    pub tiles: TileSet,
    /// The prompt's concept, when the meter knows it.
    pub concept: Option<Concept>,
}

impl SweepRun {
    /// The modules whose loss costs the concept most: (tile index, score drop from the intact
    /// tile), largest drop first, at most `n`.
    pub fn most_needed(&self, n: usize) -> Vec<(usize, f32)> {
        let score = |i: usize| self.tiles.results.get(i)?.as_ref()?.score;
        let Some(intact) = score(0) else {
            return Vec::new();
        };
        let mut drops: Vec<(usize, f32)> = (1..self.tiles.results.len())
            .filter_map(|i| Some((i, intact - score(i)?)))
            .collect();
        drops.sort_by(|a, b| b.1.total_cmp(&a.1));
        drops.truncate(n);
        drops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gui::minds::tiles::tests::{recipe, result};

    fn catalog() -> ModuleCatalog {
        ModuleCatalog::from_shapes(
            Component::Unet,
            [
                "conv_in.weight",
                "mid_block.resnets.0.conv1.weight",
                "conv_out.weight",
            ]
            .iter()
            .map(|n| (n.to_string(), vec![1])),
        )
    }

    #[test]
    fn one_tile_per_module_after_the_intact_one() {
        let spec = SweepSpec {
            kind: EditKind::Randomize,
            seed: 4,
            ..SweepSpec::default()
        };
        let mut template = recipe(2);
        template.edits = vec![WeightEdit::ScaleAll {
            factor: 0.9,
            components: vec![Component::Unet],
        }];
        let set = spec.tiles(&template, &catalog(), None);
        assert_eq!(
            set.labels,
            vec![
                INTACT_LABEL,
                "conv_in",
                "mid_block.resnets.0.conv1",
                "conv_out"
            ]
        );
        assert_eq!(set.recipes[0], template);
        assert_eq!(
            set.recipes[2].edits[1],
            WeightEdit::Randomize {
                component: Component::Unet,
                module: "mid_block.resnets.0.conv1".into(),
                seed: 4
            }
        );

        let only_mid = SweepSpec {
            filter: "MID".into(),
            ..SweepSpec::default()
        };
        assert_eq!(only_mid.tiles(&template, &catalog(), None).labels.len(), 2);
    }

    #[test]
    fn a_resumed_sweep_asks_only_for_what_is_missing_and_ranks_the_modules() {
        let spec = SweepSpec::default();
        let mut run = SweepRun {
            tiles: spec.tiles(&recipe(1), &catalog(), None),
            spec,
            concept: None,
        };
        let recipes = run.tiles.recipes.clone();
        run.tiles.store(0, result(&recipes[0], 0.9));
        run.tiles.store(2, result(&recipes[2], 0.3));
        // The worker crashed here; the same sweep again keeps both tiles.
        let again = run.spec.tiles(&recipe(1), &catalog(), Some(&run.tiles));
        assert_eq!(again.missing(), vec![1, 3]);
        run.tiles = again;
        run.tiles.store(1, result(&recipes[1], 0.8));
        let ranked = run.most_needed(2);
        assert_eq!(ranked[0].0, 2);
        assert!((ranked[0].1 - 0.6).abs() < 1e-6);
        assert_eq!(ranked.len(), 2);
    }
}
