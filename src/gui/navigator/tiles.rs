//! The navigator's pictures and its jobs: every tile the worker made for the panel, with its
//! texture, and what the panel asked for, how much of it came and how it ended.
//!
//! A tile is known by its recipe: the panel finds the tiles of the current plane, line or
//! gallery by making the recipe each place would have and looking it up, so tiles made before
//! a setting changed are not lost, only out of sight until the setting comes back.

use std::collections::VecDeque;

use egui::{ColorImage, TextureHandle, TextureOptions};

use super::super::panels::Request;
use crate::engine::pipeline::Picture;
use crate::recipe::Recipe;
use crate::worker::{JobId, Lane, TilesJob};

/// The most tiles (and textures) the panel keeps; the oldest go first.
pub const MAX_TILES: usize = 400;

/// How many of its latest jobs the panel still takes tiles from: a tile made just before a job
/// was superseded is still a good picture.
const RECENT_JOBS: usize = 4;

/// One picture the worker made for the panel.
pub struct Tile {
    /// What made it (with `non_finite` set when the model blew up).
    pub recipe: Recipe,
    /// The picture.
    pub picture: Picture,
    /// Probability per score label, when the model has a scorer.
    pub scores: Option<Vec<f32>>,
    /// The side of the square the tile covers on the plane canvas, in plane units.
    pub side: f64,
    /// Arrival order, from 0.
    pub arrival: u64,
    texture: Option<TextureHandle>,
}

impl Tile {
    /// The tile's texture (absent for pictures egui could not take).
    pub fn texture(&self) -> Option<&TextureHandle> {
        self.texture.as_ref()
    }

    /// The probability of score label `label`.
    pub fn score(&self, label: Option<usize>) -> Option<f32> {
        self.scores.as_ref()?.get(label?).copied()
    }
}

/// Whether two recipes make the same picture (`non_finite` is an outcome, not an input).
pub fn same_recipe(made: &Recipe, asked: &Recipe) -> bool {
    if made.non_finite == asked.non_finite {
        return made == asked;
    }
    Recipe {
        non_finite: asked.non_finite,
        ..made.clone()
    } == *asked
}

/// Every tile the panel holds, oldest first.
#[derive(Default)]
pub struct TileStore {
    tiles: Vec<Tile>,
    next_arrival: u64,
}

impl TileStore {
    /// Adds a tile, replacing one of the same recipe; with a context, uploads its texture.
    /// Beyond [`MAX_TILES`] the oldest tile goes, texture and all.
    pub fn insert(
        &mut self,
        ctx: Option<&egui::Context>,
        recipe: Recipe,
        picture: Picture,
        scores: Option<Vec<f32>>,
        side: f64,
    ) {
        self.tiles.retain(|t| !same_recipe(&t.recipe, &recipe));
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        let texture = ctx.and_then(|ctx| {
            let size = [picture.width, picture.height];
            let valid = picture.width > 0
                && picture.height > 0
                && picture.rgb.len() == picture.width * picture.height * 3;
            if !valid {
                tracing::warn!(
                    "tile of {}x{} came with {} bytes",
                    size[0],
                    size[1],
                    picture.rgb.len()
                );
                return None;
            }
            let image = ColorImage::from_rgb(size, &picture.rgb);
            Some(ctx.load_texture(
                format!("navigator-tile-{arrival}"),
                image,
                TextureOptions::NEAREST,
            ))
        });
        self.tiles.push(Tile {
            recipe,
            picture,
            scores,
            side,
            arrival,
            texture,
        });
        if self.tiles.len() > MAX_TILES {
            let excess = self.tiles.len() - MAX_TILES;
            self.tiles.drain(..excess);
        }
    }

    /// The tile made from `recipe`, if there is one.
    pub fn find(&self, recipe: &Recipe) -> Option<&Tile> {
        self.tiles.iter().find(|t| same_recipe(&t.recipe, recipe))
    }

    /// Every tile, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Tile> {
        self.tiles.iter()
    }

    /// How many tiles there are.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// How many tiles hold a texture.
    pub fn textures(&self) -> usize {
        self.tiles.iter().filter(|t| t.texture.is_some()).count()
    }
}

/// What a job of the panel was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An n x n grid over the visible part of the plane.
    Fill,
    /// One point clicked on the plane (and what was still missing of the fill before it).
    Point,
    /// The tiles of a line.
    Line,
    /// Random points.
    Gallery,
    /// Nothing: supersedes whatever runs.
    Cancel,
}

/// The recipes of a job, with the side each tile covers on the plane canvas.
#[derive(Debug, Clone)]
pub struct Asked {
    /// What it is for.
    pub purpose: Purpose,
    /// The tiles, in the order the worker should make them.
    pub recipes: Vec<Recipe>,
    /// The side of each tile on the plane canvas, in plane units (0 off the plane).
    pub sides: Vec<f64>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Every tile came.
    Done {
        /// Wall time of the job.
        elapsed_ms: u64,
    },
    /// Superseded (a newer job, or the cancel button).
    Cancelled,
    /// The worker refused or failed it.
    Failed(String),
}

/// A job the worker took.
#[derive(Debug, Clone)]
pub struct Running {
    /// Its id.
    pub id: JobId,
    /// What it was asked to make.
    pub asked: Asked,
    /// Which of its tiles came.
    pub done: Vec<bool>,
    /// How it ended, once it has.
    pub ended: Option<Ended>,
}

impl Running {
    /// Tiles that came and tiles asked.
    pub fn progress(&self) -> (usize, usize) {
        (self.done.iter().filter(|&&d| d).count(), self.done.len())
    }
}

/// The panel's jobs: the one asked for and not yet submitted, the latest ones submitted.
#[derive(Default)]
pub struct JobBook {
    waiting: Option<Asked>,
    /// The newest last.
    recent: VecDeque<Running>,
}

impl JobBook {
    /// Asks for `asked` on the navigator lane; the returned request is for the app to submit,
    /// and [`JobBook::started`] says what became of it.
    pub fn ask(&mut self, asked: Asked) -> Request {
        let job = TilesJob {
            lane: Lane::Navigator,
            recipes: asked.recipes.clone(),
            score: true,
        };
        self.waiting = Some(asked);
        Request::Tiles(job)
    }

    /// The worker took the request made last as job `id`, or refused it (`None`).
    pub fn started(&mut self, id: Option<JobId>) {
        let Some(asked) = self.waiting.take() else {
            return;
        };
        let running = Running {
            id: id.unwrap_or(0),
            done: vec![false; asked.recipes.len()],
            asked,
            ended: id
                .is_none()
                .then(|| Ended::Failed("the worker refused the job".into())),
        };
        // A newer job supersedes the running one in the worker; say so here at once.
        if let Some(last) = self.recent.back_mut()
            && last.ended.is_none()
            && id.is_some()
        {
            last.ended = Some(Ended::Cancelled);
        }
        self.recent.push_back(running);
        while self.recent.len() > RECENT_JOBS {
            self.recent.pop_front();
        }
    }

    /// Whether `id` is one of the panel's recent jobs.
    pub fn owns(&self, id: JobId) -> bool {
        self.recent.iter().any(|r| r.id == id && r.id != 0)
    }

    fn job_mut(&mut self, id: JobId) -> Option<&mut Running> {
        self.recent.iter_mut().find(|r| r.id == id)
    }

    /// Tile `index` of job `id` came; returns the side it covers on the canvas.
    pub fn tile_came(&mut self, id: JobId, index: usize) -> Option<f64> {
        let job = self.job_mut(id)?;
        if let Some(done) = job.done.get_mut(index) {
            *done = true;
        }
        job.asked.sides.get(index).copied()
    }

    /// Job `id` ended.
    pub fn ended(&mut self, id: JobId, how: Ended) {
        if let Some(job) = self.job_mut(id) {
            // The worker's word wins, except that a job marked superseded here stays so when the
            // worker only confirms it; one that finished before it noticed is done.
            if job.ended.is_none() || how != Ended::Cancelled {
                job.ended = Some(how);
            }
        }
    }

    /// The newest job the worker took (or refused).
    pub fn latest(&self) -> Option<&Running> {
        self.recent.back()
    }

    /// Whether the newest job is still making tiles.
    pub fn is_running(&self) -> bool {
        self.latest().is_some_and(|r| r.ended.is_none())
    }

    /// The newest fill that came to its end, and how long it took.
    pub fn last_fill(&self) -> Option<(usize, u64)> {
        self.recent.iter().rev().find_map(|r| match r.ended {
            Some(Ended::Done { elapsed_ms }) if r.asked.purpose == Purpose::Fill => {
                Some((r.asked.recipes.len(), elapsed_ms))
            }
            _ => None,
        })
    }

    /// The tiles of the newest job that have not come yet, with their sides, in asked order.
    pub fn missing(&self) -> Vec<(Recipe, f64)> {
        match self.latest() {
            Some(job) if job.ended.is_none() => job
                .asked
                .recipes
                .iter()
                .zip(&job.asked.sides)
                .zip(&job.done)
                .filter(|(_, done)| !**done)
                .map(|((r, &s), _)| (r.clone(), s))
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::ModelId;
    use crate::engine::pipeline::SamplingParams;

    fn recipe(seed: u64) -> Recipe {
        Recipe::for_prompt(
            ModelId {
                name: "m".into(),
                weights_hash: "0".into(),
                variant: None,
            },
            "a bag",
            seed,
            SamplingParams {
                num_steps: 2,
                guidance_scale: 1.0,
                sampler: Default::default(),
                width: 2,
                height: 2,
            },
        )
    }

    fn picture() -> Picture {
        Picture {
            width: 2,
            height: 2,
            rgb: vec![7; 12],
            non_finite: false,
        }
    }

    fn asked(purpose: Purpose, seeds: &[u64]) -> Asked {
        Asked {
            purpose,
            recipes: seeds.iter().map(|&s| recipe(s)).collect(),
            sides: vec![0.5; seeds.len()],
        }
    }

    #[test]
    fn tiles_are_found_by_recipe_replaced_and_bounded() {
        let ctx = egui::Context::default();
        let mut store = TileStore::default();
        let mut blown = recipe(1);
        blown.non_finite = true;
        store.insert(Some(&ctx), blown, picture(), None, 0.5);
        // A recipe asked (non_finite false) finds the tile the model blew up on.
        assert!(store.find(&recipe(1)).is_some());
        assert_eq!(store.textures(), 1);
        store.insert(Some(&ctx), recipe(1), picture(), Some(vec![0.9]), 0.5);
        assert_eq!(store.len(), 1, "the same recipe replaces its tile");
        assert_eq!(
            store.find(&recipe(1)).and_then(|t| t.score(Some(0))),
            Some(0.9)
        );

        let bad = Picture {
            rgb: vec![0; 5],
            ..picture()
        };
        store.insert(Some(&ctx), recipe(2), bad, None, 0.5);
        assert!(
            store
                .find(&recipe(2))
                .is_some_and(|t| t.texture().is_none())
        );

        for seed in 3..(MAX_TILES as u64 + 10) {
            store.insert(None, recipe(seed), picture(), None, 0.5);
        }
        assert_eq!(store.len(), MAX_TILES);
        assert!(store.find(&recipe(1)).is_none(), "the oldest went first");
    }

    #[test]
    fn jobs_supersede_and_report_what_is_missing() {
        let mut book = JobBook::default();
        let request = book.ask(asked(Purpose::Fill, &[1, 2, 3]));
        assert!(
            matches!(request, Request::Tiles(TilesJob { lane: Lane::Navigator, ref recipes, score: true }) if recipes.len() == 3)
        );
        book.started(Some(7));
        assert!(book.owns(7) && !book.owns(8));
        assert_eq!(book.tile_came(7, 1), Some(0.5));
        assert_eq!(book.latest().map(Running::progress), Some((1, 3)));
        let missing: Vec<u64> = book.missing().iter().map(|(r, _)| r.seed).collect();
        assert_eq!(missing, vec![1, 3]);

        // A newer job supersedes the fill at once; its late tiles are still taken.
        book.ask(asked(Purpose::Point, &[9]));
        book.started(Some(8));
        assert_eq!(book.recent[0].ended, Some(Ended::Cancelled));
        assert!(book.owns(7));
        book.ended(7, Ended::Cancelled);
        assert_eq!(book.recent[0].ended, Some(Ended::Cancelled));
        assert!(book.is_running());
        book.ended(8, Ended::Done { elapsed_ms: 20 });
        assert!(!book.is_running());
        assert!(book.missing().is_empty());
        assert_eq!(book.last_fill(), None, "the fill never finished");
        // One that finished before the worker noticed the newer job is done after all.
        book.ended(7, Ended::Done { elapsed_ms: 5 });
        assert_eq!(book.last_fill(), Some((3, 5)));

        book.ask(asked(Purpose::Fill, &[4]));
        book.started(Some(9));
        book.ended(9, Ended::Done { elapsed_ms: 1234 });
        assert_eq!(book.last_fill(), Some((1, 1234)));

        // A refused job is over before it starts and owns no events.
        book.ask(asked(Purpose::Cancel, &[]));
        book.started(None);
        assert!(matches!(
            book.latest().and_then(|r| r.ended.clone()),
            Some(Ended::Failed(_))
        ));
        assert!(!book.owns(0));
    }
}
