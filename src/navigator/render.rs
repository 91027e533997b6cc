//! Recipes to pictures, in batches, remembering what was already made.

use std::collections::HashMap;

use crate::engine::model::{Component, DiffusionModel};
use crate::engine::pipeline::Picture;
use crate::engine::space::{RenderItem, Resolver, render_items, resolve_noise};
use crate::engine::surgery::{WeightEdit, apply_edits};
use crate::engine::{EngineError, Result};
use crate::recipe::Recipe;

/// Pictures already made, keyed by their recipe's JSON, so that a point asked for again (a
/// grid redrawn with one more row, the centre of a plane that is also a line's end) is not
/// made again.
///
/// Bounded crudely: when a new picture would take it past its budget, it forgets everything.
pub struct TileCache {
    pictures: HashMap<String, Picture>,
    bytes: usize,
    max_bytes: usize,
    hits: usize,
}

impl Default for TileCache {
    /// A cache of up to 256 MiB of pixels.
    fn default() -> Self {
        Self::new(256 << 20)
    }
}

impl TileCache {
    /// An empty cache that holds up to `max_bytes` of pixels.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            pictures: HashMap::new(),
            bytes: 0,
            max_bytes,
            hits: 0,
        }
    }

    /// The key of a recipe: its compact JSON, without the outcome flag `non_finite`.
    pub fn key(recipe: &Recipe) -> String {
        let mut recipe = recipe.clone();
        recipe.non_finite = false;
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(&recipe).unwrap_or_default()
    }

    fn get_key(&mut self, key: &str) -> Option<Picture> {
        let found = self.pictures.get(key).cloned();
        self.hits += usize::from(found.is_some());
        found
    }

    fn insert_key(&mut self, key: String, picture: Picture) {
        let size = picture.rgb.len();
        if self.bytes + size > self.max_bytes {
            self.pictures.clear();
            self.bytes = 0;
        }
        if size <= self.max_bytes {
            self.bytes += size;
            if let Some(old) = self.pictures.insert(key, picture) {
                self.bytes -= old.rgb.len();
            }
        }
    }

    /// The picture of a recipe, if it was made before.
    pub fn get(&mut self, recipe: &Recipe) -> Option<Picture> {
        self.get_key(&Self::key(recipe))
    }

    /// Remembers the picture of a recipe.
    pub fn insert(&mut self, recipe: &Recipe, picture: Picture) {
        self.insert_key(Self::key(recipe), picture);
    }

    /// Pictures held.
    pub fn len(&self) -> usize {
        self.pictures.len()
    }

    /// Whether it holds no picture.
    pub fn is_empty(&self) -> bool {
        self.pictures.is_empty()
    }

    /// How many lookups found a picture.
    pub fn hits(&self) -> usize {
        self.hits
    }
}

/// The conditioning, initial noise and step-noise seed of a recipe.
pub fn render_item(
    model: &DiffusionModel,
    resolver: &mut Resolver,
    recipe: &Recipe,
) -> Result<RenderItem> {
    let conditioning = match &recipe.point {
        Some(point) => resolver.resolve(model, point)?,
        None => resolver.prompt(model, &recipe.prompt)?,
    };
    let initial = resolve_noise(
        model,
        recipe.noise.as_deref(),
        recipe.seed,
        &recipe.sampling,
    )?;
    Ok(RenderItem {
        conditioning,
        initial,
        seed: recipe.seed,
    })
}

/// Makes the picture of one recipe, alone, with the model's weights as they are (`replay`
/// applies the recipe's edits first): what `interconcept replay` does.
pub fn render_recipe(model: &DiffusionModel, recipe: &Recipe) -> Result<Picture> {
    let item = render_item(model, &mut Resolver::new(), recipe)?;
    render_items(model, &[item], &recipe.sampling, 1, &mut |_, _| true)?
        .pop()
        .ok_or_else(|| EngineError::InvalidRequest("no picture came out".into()))
}

/// Makes the model's weights hold exactly `edits`, where `applied` is what they hold now
/// (empty for freshly loaded weights); nothing is touched when the lists are equal. The
/// resolver is emptied whenever the text encoder is or becomes edited, so it only ever
/// remembers encodings of the loaded text encoder. A list that fails part-way leaves the
/// loaded weights (and `applied` empty).
pub fn hold_edits(
    model: &mut DiffusionModel,
    applied: &mut Vec<WeightEdit>,
    resolver: &mut Resolver,
    edits: &[WeightEdit],
) -> Result<()> {
    if applied.as_slice() == edits {
        return Ok(());
    }
    let text_was_edited = model
        .store(Component::TextEncoder)
        .edited()
        .next()
        .is_some();
    if text_was_edited || edits.iter().any(|e| e.touches(Component::TextEncoder)) {
        *resolver = Resolver::new();
    }
    applied.clear();
    if let Err(error) = apply_edits(model, edits) {
        // Back to known weights: the loaded ones.
        apply_edits(model, &[])?;
        return Err(error);
    }
    *applied = edits.to_vec();
    Ok(())
}

/// Makes the pictures of many recipes: cached ones are taken from `cache`, the rest are made in
/// batches of `batch_size` (recipes with equal sampling parameters and equal weight edits batch
/// together) and remembered. Each picture equals [`render_recipe`] of its recipe.
///
/// `applied` is the list of edits the model's weights hold (empty for freshly loaded weights).
/// Each group's edits are put in place with [`hold_edits`] before it is made; callers that need
/// the loaded weights back call `apply_edits(model, &[])`.
///
/// `on_tile(index, picture)` is called once per recipe as its picture is ready, cached ones
/// first; it returns `false` to cancel.
pub fn render_recipes(
    model: &mut DiffusionModel,
    applied: &mut Vec<WeightEdit>,
    resolver: &mut Resolver,
    cache: &mut TileCache,
    recipes: &[Recipe],
    batch_size: usize,
    on_tile: &mut dyn FnMut(usize, &Picture) -> bool,
) -> Result<Vec<Picture>> {
    let keys: Vec<String> = recipes.iter().map(TileCache::key).collect();
    let mut pictures: Vec<Option<Picture>> = keys.iter().map(|k| cache.get_key(k)).collect();
    for (index, picture) in pictures.iter().enumerate() {
        if let Some(picture) = picture
            && !on_tile(index, picture)
        {
            return Err(EngineError::Cancelled);
        }
    }

    // Each missing picture once, however often its recipe repeats.
    let mut copies: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut todo = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        if pictures[index].is_none() {
            let seen = copies.entry(key.as_str()).or_default();
            if seen.is_empty() {
                todo.push(index);
            }
            seen.push(index);
        }
    }

    // One group of equal sampling parameters and edits at a time, in order of first
    // appearance.
    while let Some(&first) = todo.first() {
        let params = recipes[first].sampling.clone();
        let edits = recipes[first].edits.as_slice();
        let (group, rest): (Vec<usize>, Vec<usize>) = todo
            .iter()
            .partition(|&&i| recipes[i].sampling == params && recipes[i].edits == edits);
        todo = rest;
        hold_edits(model, applied, resolver, edits)?;
        let items = group
            .iter()
            .map(|&i| render_item(model, resolver, &recipes[i]))
            .collect::<Result<Vec<_>>>()?;
        let mut cancelled = false;
        let made = render_items(model, &items, &params, batch_size, &mut |j, picture| {
            for &index in &copies[keys[group[j]].as_str()] {
                if !on_tile(index, picture) {
                    cancelled = true;
                }
            }
            !cancelled
        })?;
        for (&i, picture) in group.iter().zip(made) {
            for &index in &copies[keys[i].as_str()] {
                pictures[index] = Some(picture.clone());
            }
            cache.insert_key(keys[i].clone(), picture);
        }
    }
    pictures
        .into_iter()
        .map(|p| p.ok_or_else(|| EngineError::InvalidRequest("a tile was not made".into())))
        .collect()
}
