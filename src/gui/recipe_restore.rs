//! Opening a recipe in the window: from what was opened, dropped or pasted to the settings,
//! the edits and the job that make the picture again, or a message that says why not.
//!
//! Everything here is plain data in, plain data out, so the rules (which model, which schema
//! version, which recipes the window can make) are tested without a window; the app only
//! reads the bytes and applies the result. A refusal changes nothing.

use std::io::Read;
use std::path::Path;

use crate::engine::model::ModelId;
use crate::engine::pipeline::MAX_SIDE;
use crate::engine::surgery::WeightEdit;
use crate::mosaic::MosaicRecord;
use crate::recipe::{self, Recipe};
use crate::worker::GenerateJob;

use super::settings::GenerateSettings;

/// The largest JSON file the window reads as a recipe or mosaic record (a mosaic of thousands
/// of tiles is a few megabytes).
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// The most steps a recipe may ask for: Stable Diffusion's schedules have 1000 timesteps.
const MAX_STEPS: usize = 1000;

/// What a file or a paste turned out to hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// One picture's recipe.
    Recipe(Box<Recipe>),
    /// A mosaic's record: a grid of tiles, each with its recipe.
    Mosaic(Box<MosaicRecord>),
}

/// Reads a PNG made by the program, or recipe JSON, from its bytes.
pub fn parse_opened(bytes: &[u8]) -> Result<Opened, String> {
    let json = if recipe::looks_like_png(bytes) {
        recipe::png_json_from_bytes(bytes).map_err(|e| format!("{e:#}"))?
    } else {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| "neither a PNG nor recipe JSON (not UTF-8 text)".to_string())?
    };
    parse_json(&json)
}

/// Reads a file that should hold a recipe: a PNG made by the program (only its header is
/// read, however large the picture) or recipe JSON.
pub fn read_opened(path: &Path) -> Result<Opened, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut head = Vec::with_capacity(8);
    (&mut file)
        .take(8)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if recipe::looks_like_png(&head) {
        let json = recipe::read_png_json(path).map_err(|e| format!("{e:#}"))?;
        return parse_json(&json);
    }
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_JSON_BYTES {
        return Err(format!(
            "it is {len} bytes, too large for recipe JSON (at most {MAX_JSON_BYTES})"
        ));
    }
    let mut bytes = head;
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    parse_opened(&bytes)
}

/// Parses recipe or mosaic JSON.
pub fn parse_json(json: &str) -> Result<Opened, String> {
    if MosaicRecord::is_mosaic_json(json) {
        let record = MosaicRecord::from_json(json).map_err(|e| format!("{e:#}"))?;
        return Ok(Opened::Mosaic(Box::new(record)));
    }
    Recipe::from_json(json)
        .map(|r| Opened::Recipe(Box::new(r)))
        .map_err(|e| format!("{e:#}"))
}

/// What opening a recipe changes: the whole generate state, and the job that makes the
/// picture again.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// The generate panel's settings: prompt, seed, steps, guidance, sampler, size.
    pub settings: GenerateSettings,
    /// The weight edits the picture was made with.
    pub edits: Vec<WeightEdit>,
    /// The picture again (with the recipe's point of concept space and of noise space, when it
    /// has them).
    pub job: GenerateJob,
}

/// The state a recipe describes (every generate setting comes from it), or why the window
/// cannot make it with the `loaded` model.
pub fn restore(recipe: &Recipe, loaded: Option<&ModelId>) -> Result<Restored, String> {
    let Some(loaded) = loaded else {
        return Err("no model is loaded yet; wait for it, then open the recipe again".into());
    };
    let needed = &recipe.model;
    if needed.name != loaded.name || needed.weights_hash != loaded.weights_hash {
        return Err(format!(
            "this recipe needs model {} (weights {}), but {} (weights {}) is loaded; load {} \
             first",
            needed.name, needed.weights_hash, loaded.name, loaded.weights_hash, needed.name
        ));
    }
    if let Some(hash) = &recipe.noise_hash {
        return Err(format!(
            "this recipe starts from a latent in a .npy file (values hash {hash}); make it \
             with `interconcept replay RECIPE --noise FILE --out PNG`"
        ));
    }
    let sampling = &recipe.sampling;
    for (what, side) in [("width", sampling.width), ("height", sampling.height)] {
        if side == 0 || side > MAX_SIDE {
            return Err(format!(
                "the recipe's {what} {side} is outside 1 to {MAX_SIDE} pixels"
            ));
        }
    }
    if sampling.num_steps == 0 || sampling.num_steps > MAX_STEPS {
        return Err(format!(
            "the recipe's {} steps are outside 1 to {MAX_STEPS}",
            sampling.num_steps
        ));
    }
    if !sampling.guidance_scale.is_finite() || sampling.guidance_scale < 0.0 {
        return Err(format!(
            "the recipe's guidance {} is not a finite number >= 0",
            sampling.guidance_scale
        ));
    }
    for edit in &recipe.edits {
        edit.validate()
            .map_err(|e| format!("the recipe's edit {}: {e:#}", edit.label()))?;
    }

    let settings = GenerateSettings {
        prompt: recipe.prompt.clone(),
        seed: recipe.seed,
        num_steps: sampling.num_steps,
        guidance_scale: sampling.guidance_scale,
        sampler: sampling.sampler,
        size: Some([sampling.width, sampling.height]),
        size_model: Some(loaded.name.clone()),
    };
    let job = GenerateJob {
        point: recipe.point.clone(),
        noise: recipe.noise.clone(),
        edits: recipe.edits.clone(),
        ..GenerateJob::prompt(recipe.prompt.clone(), recipe.seed, sampling.clone())
    };
    Ok(Restored {
        settings,
        edits: recipe.edits.clone(),
        job,
    })
}

/// What to tell someone who opened a mosaic: what it is, and how to make one of its tiles.
pub fn mosaic_message(name: &str, record: &MosaicRecord) -> String {
    format!(
        "{name} is a mosaic of {} tiles ({} rows of {}), not one picture; make a tile with \
         `interconcept replay {name} --tile ROW,COLUMN --out tile.png`",
        record.tiles.len(),
        record.rows,
        record.columns
    )
}

#[cfg(test)]
mod tests;
