//! Tiles the panel asked the worker for, as plain data: which recipe each one is, what came
//! back, and which are still missing. Sequences and sweeps both keep their tiles here.

use crate::engine::pipeline::Picture;
use crate::recipe::Recipe;

/// The concept a prompt names, among the concept meter's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concept {
    /// Its index in the meter's scores.
    pub index: usize,
    /// Its label.
    pub label: String,
}

impl Concept {
    /// The concept `prompt` names among `labels`, if it names one.
    pub fn of_prompt(labels: &[String], prompt: &str) -> Option<Self> {
        let index = crate::engine::scoring::label_in(labels, prompt)?;
        Some(Self {
            index,
            label: labels[index].clone(),
        })
    }
}

/// A picture the worker made for a tile.
#[derive(Debug, Clone)]
pub struct TileResult {
    /// The picture.
    pub picture: Picture,
    /// Its recipe as the worker reported it (`non_finite` set when the model blew up).
    pub recipe: Recipe,
    /// The concept meter's probability for the prompt's concept, when scored.
    pub score: Option<f32>,
}

/// How a run of tiles stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunStatus {
    /// Nothing asked yet.
    #[default]
    Idle,
    /// Tiles are on their way.
    Running,
    /// Every tile came.
    Done,
    /// Stopped by the user (or superseded) before every tile came.
    Cancelled,
    /// The worker failed or refused; the message is for the user.
    Failed(String),
}

/// One grid's tiles: a label and a recipe each, and what the worker made of them.
#[derive(Debug, Clone, Default)]
pub struct TileSet {
    /// Each tile's label (a value, a module name).
    pub labels: Vec<String>,
    /// Each tile's recipe, as asked.
    pub recipes: Vec<Recipe>,
    /// What came back, by tile.
    pub results: Vec<Option<TileResult>>,
    /// Where the run stands.
    pub status: RunStatus,
}

impl TileSet {
    /// Tiles of these labels and recipes. Pictures already made for an equal recipe in
    /// `previous` are kept, so running the same grid again only makes what is missing.
    pub fn new(labels: Vec<String>, recipes: Vec<Recipe>, previous: Option<&TileSet>) -> Self {
        let results = recipes
            .iter()
            .map(|recipe| previous.and_then(|p| p.result_for(recipe)).cloned())
            .collect();
        Self {
            labels,
            recipes,
            results,
            status: RunStatus::Idle,
        }
    }

    /// The picture made for `recipe`, if any (whether it blew up does not count).
    fn result_for(&self, recipe: &Recipe) -> Option<&TileResult> {
        self.recipes
            .iter()
            .zip(&self.results)
            .find(|(r, _)| *r == recipe)
            .and_then(|(_, result)| result.as_ref())
    }

    /// The indices of the tiles not made yet.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.results.len())
            .filter(|&i| self.results[i].is_none())
            .collect()
    }

    /// Tiles made.
    pub fn num_made(&self) -> usize {
        self.results.iter().filter(|r| r.is_some()).count()
    }

    /// Stores what the worker made for tile `index`; a recipe that is not the tile's own
    /// (a stale event) is dropped.
    pub fn store(&mut self, index: usize, result: TileResult) -> bool {
        let Some(asked) = self.recipes.get(index) else {
            return false;
        };
        let same = Recipe {
            non_finite: asked.non_finite,
            ..result.recipe.clone()
        } == *asked;
        if !same {
            return false;
        }
        self.results[index] = Some(result);
        true
    }

    /// Marks the end of a job: done when nothing is missing, otherwise `unfinished`.
    pub fn finish(&mut self, unfinished: RunStatus) {
        self.status = if self.missing().is_empty() {
            RunStatus::Done
        } else {
            unfinished
        };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::model::ModelId;
    use crate::engine::pipeline::SamplingParams;
    use crate::engine::scheduler::SamplerKind;

    /// A recipe for tests; `seed` tells them apart.
    pub(crate) fn recipe(seed: u64) -> Recipe {
        let model = ModelId {
            name: "m".into(),
            weights_hash: "0".into(),
            variant: None,
        };
        let params = SamplingParams {
            num_steps: 2,
            guidance_scale: 1.0,
            sampler: SamplerKind::default(),
            width: 2,
            height: 2,
        };
        Recipe::for_prompt(model, "a bag", seed, params)
    }

    pub(crate) fn result(recipe: &Recipe, score: f32) -> TileResult {
        TileResult {
            picture: Picture {
                width: 2,
                height: 2,
                rgb: vec![0; 12],
                non_finite: false,
            },
            recipe: recipe.clone(),
            score: Some(score),
        }
    }

    #[test]
    fn tiles_made_before_are_kept_and_only_missing_ones_asked_again() {
        let recipes: Vec<Recipe> = (0..4).map(recipe).collect();
        let labels: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        let mut set = TileSet::new(labels.clone(), recipes.clone(), None);
        assert_eq!(set.missing(), vec![0, 1, 2, 3]);
        assert!(set.store(0, result(&recipes[0], 0.9)));
        assert!(set.store(2, result(&recipes[2], 0.9)));
        // A stale tile of another recipe is dropped.
        assert!(!set.store(1, result(&recipes[3], 0.9)));
        assert!(!set.store(9, result(&recipes[3], 0.9)));
        set.finish(RunStatus::Cancelled);
        assert_eq!(set.status, RunStatus::Cancelled);
        assert_eq!(set.missing(), vec![1, 3]);

        // The same grid again (after a crash or a cancel), shifted by one: made tiles stay.
        let again: Vec<Recipe> = (1..5).map(recipe).collect();
        let set = TileSet::new(labels, again, Some(&set));
        assert_eq!(set.missing(), vec![0, 2, 3]);
        assert_eq!(set.num_made(), 1);
    }

    #[test]
    fn a_blown_up_tile_is_stored_and_counts_as_made() {
        let recipes = vec![recipe(0)];
        let mut set = TileSet::new(vec!["0".into()], recipes.clone(), None);
        let mut broken = result(&recipes[0], 0.1);
        broken.recipe.non_finite = true;
        assert!(set.store(0, broken));
        set.finish(RunStatus::Cancelled);
        assert_eq!(set.status, RunStatus::Done);
    }
}
