//! Points as data: what a recipe stores to say where in concept space (and in noise space) a
//! picture was made, and how that description becomes a tensor again.

use std::collections::HashMap;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::statistics::EmbeddingStatistics;
use super::{Plane, interpolate};
use crate::engine::error::{CandleContext, EngineError, Result};
use crate::engine::model::DiffusionModel;
use crate::engine::pipeline::{self, SamplingParams};

/// A point of concept space: a conditioning tensor `[77, dim]`, described by how it was made.
///
/// Points nest: a line may run between two random points, a plane may lie around a point on a
/// line. In JSON each variant is an object with one key, its name:
/// `{"prompt": "a sneaker"}`,
/// `{"line": {"from": {"prompt": "a sandal"}, "to": {"prompt": "a sneaker"}, "t": 1.5}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ConceptPoint {
    /// The text encoder's output for a prompt.
    Prompt(String),
    /// A point on the line through two points: `from` at t = 0, `to` at t = 1, extrapolated
    /// beyond either end for t outside [0, 1].
    Line {
        /// The point at t = 0.
        from: Box<ConceptPoint>,
        /// The point at t = 1.
        to: Box<ConceptPoint>,
        /// Where on the line.
        t: f64,
        /// Spherical interpolation (along the great circle) instead of a straight line.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        slerp: bool,
    },
    /// A point on a plane through `centre`: `centre + u d1 + v d2`.
    Plane {
        /// The point at (0, 0).
        centre: Box<ConceptPoint>,
        /// What spans the plane; it also sets the unit of u and v.
        directions: PlaneDirections,
        /// Coordinate along the first direction.
        u: f64,
        /// Coordinate along the second direction.
        v: f64,
    },
    /// A random point of interconcept space, drawn with the per-value mean and deviation of the
    /// reference prompts' embeddings (see [`EmbeddingStatistics`]).
    Random {
        /// Seed of the draw.
        seed: u64,
        /// The prompts whose embeddings set the statistics (at least two).
        reference_prompts: Vec<String>,
    },
}

/// What spans a plane through a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PlaneDirections {
    /// Two random orthogonal directions from a seed, each as long as the centre's norm: u and
    /// v are in units of the centre's distance from the origin (see [`Plane::random`]).
    Random {
        /// Seed of the directions.
        seed: u64,
    },
    /// The directions toward two other points, orthogonalised: u and v are in units of the
    /// distance from the centre to `a`, so `a` is at (1, 0) (see [`Plane::toward`]).
    Toward {
        /// The point the first direction points to.
        a: Box<ConceptPoint>,
        /// The point that sets the second direction.
        b: Box<ConceptPoint>,
    },
}

/// A point of initial-noise space, `[C, h, w]`: lines and planes between seeded noises.
///
/// A recipe without one starts from the noise of its seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum NoisePoint {
    /// A point on a random plane through the noise of `centre_seed`, moved onto the sphere of
    /// the centre's norm (see [`Plane::at_on_sphere`]); u and v in units of that norm.
    Plane {
        /// Seed of the noise at (0, 0).
        centre_seed: u64,
        /// Seed of the plane's directions.
        directions_seed: u64,
        /// Coordinate along the first direction.
        u: f64,
        /// Coordinate along the second direction.
        v: f64,
    },
    /// A point on the line (or great circle) from the noise of one seed to another's.
    Line {
        /// Seed of the noise at t = 0.
        from_seed: u64,
        /// Seed of the noise at t = 1.
        to_seed: u64,
        /// Where on the line.
        t: f64,
        /// Spherical interpolation instead of a straight line.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        slerp: bool,
    },
}

impl ConceptPoint {
    /// The prompt a point is anchored at: its own, a line's start, a plane's centre; empty for
    /// random points.
    pub fn anchor_prompt(&self) -> &str {
        match self {
            ConceptPoint::Prompt(text) => text,
            ConceptPoint::Line { from, .. } => from.anchor_prompt(),
            ConceptPoint::Plane { centre, .. } => centre.anchor_prompt(),
            ConceptPoint::Random { .. } => "",
        }
    }
}

fn finite(what: &str, x: f64) -> Result<()> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(EngineError::InvalidRequest(format!(
            "{what} must be a finite number, got {x}"
        )))
    }
}

/// Turns point descriptions into conditioning, remembering what it has encoded: each prompt is
/// encoded once, each reference set fitted once.
///
/// A resolver belongs to one model in one state; after an edit of the text encoder's weights,
/// make a new one.
#[derive(Default)]
pub struct Resolver {
    prompts: HashMap<String, Tensor>,
    statistics: HashMap<Vec<String>, EmbeddingStatistics>,
}

impl Resolver {
    /// An empty resolver.
    pub fn new() -> Self {
        Self::default()
    }

    /// The conditioning of one prompt, `[77, dim]`. Prompts are encoded one at a time, exactly
    /// as a single picture encodes its prompt, so a point equals itself however it is reached.
    pub fn prompt(&mut self, model: &DiffusionModel, text: &str) -> Result<Tensor> {
        if let Some(t) = self.prompts.get(text) {
            return Ok(t.clone());
        }
        let (conditioning, cut) = model.encode_prompts(&[text])?;
        if let Some(Some(cut)) = cut.first() {
            tracing::warn!(
                "prompt truncated to {} tokens; dropped: {cut}",
                model.tokenizer.max_len()
            );
        }
        let conditioning = conditioning.squeeze(0).stage("encode")?;
        self.prompts.insert(text.to_string(), conditioning.clone());
        Ok(conditioning)
    }

    /// The statistics of a set of reference prompts' embeddings.
    pub fn statistics(
        &mut self,
        model: &DiffusionModel,
        prompts: &[String],
    ) -> Result<&EmbeddingStatistics> {
        if !self.statistics.contains_key(prompts) {
            let embeddings = prompts
                .iter()
                .map(|p| self.prompt(model, p))
                .collect::<Result<Vec<_>>>()?;
            let fitted = EmbeddingStatistics::fit(&embeddings)?;
            self.statistics.insert(prompts.to_vec(), fitted);
        }
        self.statistics
            .get(prompts)
            .ok_or_else(|| EngineError::InvalidRequest("reference statistics went missing".into()))
    }

    /// The conditioning of a point, `[77, dim]`.
    pub fn resolve(&mut self, model: &DiffusionModel, point: &ConceptPoint) -> Result<Tensor> {
        match point {
            ConceptPoint::Prompt(text) => self.prompt(model, text),
            ConceptPoint::Line { from, to, t, slerp } => {
                finite("t", *t)?;
                let a = self.resolve(model, from)?;
                let b = self.resolve(model, to)?;
                interpolate(&a, &b, *t, *slerp)
            }
            ConceptPoint::Plane {
                centre,
                directions,
                u,
                v,
            } => {
                finite("u", *u)?;
                finite("v", *v)?;
                let c = self.resolve(model, centre)?;
                let plane = match directions {
                    PlaneDirections::Random { seed } => Plane::random(&c, *seed)?,
                    PlaneDirections::Toward { a, b } => {
                        let a = self.resolve(model, a)?;
                        let b = self.resolve(model, b)?;
                        Plane::toward(&c, &a, &b)?
                    }
                };
                plane.at(*u, *v)
            }
            ConceptPoint::Random {
                seed,
                reference_prompts,
            } => {
                let device = model.device.clone();
                self.statistics(model, reference_prompts)?
                    .sample(*seed, &device)
            }
        }
    }
}

/// The conditioning of a point, `[77, dim]` (a fresh [`Resolver`]; use one for many points).
pub fn resolve(model: &DiffusionModel, point: &ConceptPoint) -> Result<Tensor> {
    Resolver::new().resolve(model, point)
}

/// The initial noise of a picture, `[C, h, w]`: the noise point's, or else the seed's own.
pub fn resolve_noise(
    model: &DiffusionModel,
    point: Option<&NoisePoint>,
    seed: u64,
    params: &SamplingParams,
) -> Result<Tensor> {
    let of_seed = |seed: u64| -> Result<Tensor> {
        pipeline::initial_noise(model, seed, params)?
            .squeeze(0)
            .stage("initial noise")
    };
    match point {
        None => of_seed(seed),
        Some(NoisePoint::Plane {
            centre_seed,
            directions_seed,
            u,
            v,
        }) => {
            finite("u", *u)?;
            finite("v", *v)?;
            Plane::random(&of_seed(*centre_seed)?, *directions_seed)?.at_on_sphere(*u, *v)
        }
        Some(NoisePoint::Line {
            from_seed,
            to_seed,
            t,
            slerp,
        }) => {
            finite("t", *t)?;
            interpolate(&of_seed(*from_seed)?, &of_seed(*to_seed)?, *t, *slerp)
        }
    }
}
