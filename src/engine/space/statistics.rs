//! Random points of interconcept space with the statistics of real prompts.
//!
//! The choice: a diagonal Gaussian with one mean and one standard deviation per value of the
//! conditioning (per token position and per channel), fitted to the embeddings of a list of
//! reference prompts. A draw is that mean plus that deviation times seeded standard normal noise.
//!
//! Why per value rather than per position: CLIP's conditioning is far from isotropic. The first
//! position (the start token) is the same vector for every prompt, a few channels carry large
//! values at every position, and the positions after the end token repeat a summary of the
//! prompt. A per-value fit keeps all of that (the start token comes out exactly, its deviation
//! being zero) while the draw itself lands off every island. A full covariance would need more
//! reference prompts than the conditioning has values (77 x dim); a single scale per position
//! would smear the large channels over all of them.

use candle_core::{Device, Tensor};

use super::{Flat, to_f64};
use crate::engine::error::{CandleContext, EngineError, Result};
use crate::engine::noise;

/// Stream of [`noise::derive_seed`] from which random points are drawn, apart from the initial
/// noise of the same seed, so that a tile may use one seed for both ("RAND").
const RANDOM_POINT_STREAM: u64 = 0x5241_4E44;

/// Mean and standard deviation of every value of a set of conditioning tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingStatistics {
    mean: Vec<f64>,
    std: Vec<f64>,
    dims: Vec<usize>,
    count: usize,
}

impl EmbeddingStatistics {
    /// Fits the statistics to embeddings of one shape (`[77, dim]` each); needs at least two.
    /// The deviation is the sample standard deviation (divided by n - 1).
    pub fn fit(embeddings: &[Tensor]) -> Result<Self> {
        let count = embeddings.len();
        if count < 2 {
            return Err(EngineError::InvalidRequest(format!(
                "random points need at least 2 reference prompts, got {count}"
            )));
        }
        let dims = embeddings[0].dims().to_vec();
        let mut sum: Vec<f64> = Vec::new();
        let mut sum_sq: Vec<f64> = Vec::new();
        let mut values = Vec::with_capacity(count);
        for e in embeddings {
            if e.dims() != dims.as_slice() {
                return Err(EngineError::InvalidRequest(format!(
                    "reference embeddings have shapes {dims:?} and {:?}",
                    e.dims()
                )));
            }
            values.push(to_f64(&Flat::of(e)?.values));
        }

        // Two passes (mean, then squared deviations) to stay accurate for large means.
        let len = values[0].len();
        sum.resize(len, 0.0);
        for v in &values {
            sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
        sum_sq.resize(len, 0.0);
        for v in &values {
            sum_sq
                .iter_mut()
                .zip(v.iter().zip(&mean))
                .for_each(|(s, (x, m))| *s += (x - m).powi(2));
        }
        let std = sum_sq
            .iter()
            .map(|s| (s / (count - 1) as f64).sqrt())
            .collect();
        Ok(Self {
            mean,
            std,
            dims,
            count,
        })
    }

    /// A random point, reproducible from `seed`: `mean + std * z` with z standard normal.
    pub fn sample(&self, seed: u64, device: &Device) -> Result<Tensor> {
        let z = noise::gaussian_vec(
            noise::derive_seed(seed, RANDOM_POINT_STREAM),
            self.mean.len(),
        );
        let values: Vec<f32> = self
            .mean
            .iter()
            .zip(&self.std)
            .zip(&z)
            .map(|((m, s), &z)| (m + s * f64::from(z)) as f32)
            .collect();
        Tensor::from_vec(values, self.dims.as_slice(), device).stage("random point")
    }

    /// The mean of every value, flattened.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The standard deviation of every value, flattened.
    pub fn std(&self) -> &[f64] {
        &self.std
    }

    /// How many embeddings the statistics were fitted to.
    pub fn count(&self) -> usize {
        self.count
    }
}
