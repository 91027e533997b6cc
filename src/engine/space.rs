//! The geometry of concept space: lines, planes and random points among the text encoder's
//! outputs, and the same tools on initial-noise latents.
//!
//! A point of concept space is what the text encoder makes of a prompt: a `[77, dim]` tensor
//! that the UNet attends to. Prompts the model knows sit on small "concept islands"; everything
//! between them is interconcept space, reached here by walking lines between points (and beyond
//! their ends), by laying planes through a point, and by drawing random points with the
//! statistics of real prompts. A picture also depends on its initial noise, a `[C, h, w]`
//! latent, so the same lines and planes are offered there, for comparison.
//!
//! The arithmetic runs in f64 on the host over the flattened values: conditioning tensors are
//! small (77 x 768 values for Stable Diffusion 1.x), and host arithmetic is exact about the ends
//! of a line and reproducible across devices. Results come back as f32 tensors of the input's
//! shape, on the input's device.
//!
//! Submodules: `point` (the serde description of a point that recipes store, and its
//! resolution), `statistics` (fitting and sampling random points), `render` (batched grids).

mod point;
mod render;
mod statistics;

pub use point::{ConceptPoint, NoisePoint, PlaneDirections, Resolver, resolve, resolve_noise};
pub use render::{MAX_BATCH, RenderItem, default_batch_size, render_items, render_points};
pub use statistics::EmbeddingStatistics;

use candle_core::{DType, Device, Shape, Tensor};

use super::error::{CandleContext, EngineError, Result};
use super::noise;

/// Stream of [`noise::derive_seed`] from which random plane directions are drawn, apart from the
/// streams of initial and per-step noise of the same seed ("PLAN").
const PLANE_STREAM: u64 = 0x504C_414E;

/// Below this sine of the angle between two points, slerp falls back to lerp: the points are
/// (anti-)parallel, the great circle through them is not defined, and the two agree anyway.
const PARALLEL_SINE: f64 = 1e-3;

/// A vector left with less than this fraction of its length after Gram-Schmidt is taken to be
/// in the span of the ones before it.
const DEGENERATE_FRACTION: f64 = 1e-6;

/// A tensor's values on the host, flattened, with what it takes to rebuild it.
struct Flat {
    values: Vec<f32>,
    shape: Shape,
    device: Device,
}

impl Flat {
    fn of(t: &Tensor) -> Result<Self> {
        let values = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .stage("concept space")?;
        Ok(Self {
            values,
            shape: t.shape().clone(),
            device: t.device().clone(),
        })
    }

    fn tensor(&self, values: Vec<f32>) -> Result<Tensor> {
        Tensor::from_vec(values, self.shape.clone(), &self.device).stage("concept space")
    }
}

fn same_shape(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(EngineError::InvalidRequest(format!(
            "{what}: points have shapes {:?} and {:?}",
            a.dims(),
            b.dims()
        )));
    }
    Ok(())
}

fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn to_f64(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&x| f64::from(x)).collect()
}

/// The Euclidean norm of a tensor's flattened values.
pub fn norm(t: &Tensor) -> Result<f64> {
    let v = to_f64(&Flat::of(t)?.values);
    Ok(dot64(&v, &v).sqrt())
}

/// The dot product of two tensors' flattened values.
pub fn dot(a: &Tensor, b: &Tensor) -> Result<f64> {
    same_shape(a, b, "dot product")?;
    Ok(dot64(
        &to_f64(&Flat::of(a)?.values),
        &to_f64(&Flat::of(b)?.values),
    ))
}

/// The straight line through `a` (t = 0) and `b` (t = 1): `(1 - t) a + t b`.
///
/// Exactly `a` at t = 0 and exactly `b` at t = 1; t below 0 or above 1 extrapolates beyond
/// either end ("beyond cat").
pub fn lerp(a: &Tensor, b: &Tensor, t: f64) -> Result<Tensor> {
    same_shape(a, b, "lerp")?;
    let (fa, fb) = (Flat::of(a)?, Flat::of(b)?);
    let values = fa
        .values
        .iter()
        .zip(&fb.values)
        .map(|(&x, &y)| ((1.0 - t) * f64::from(x) + t * f64::from(y)) as f32)
        .collect();
    fa.tensor(values)
}

/// Spherical interpolation on the flattened tensors: along the great circle from `a` (t = 0)
/// to `b` (t = 1), at constant angular speed.
///
/// Exactly `a` at t = 0 and exactly `b` at t = 1; other t, including t outside [0, 1], follow
/// the circle on (extrapolation goes on around it). Points that are nearly parallel or
/// anti-parallel, or zero, have no well-defined circle: there it falls back to [`lerp`].
pub fn slerp(a: &Tensor, b: &Tensor, t: f64) -> Result<Tensor> {
    same_shape(a, b, "slerp")?;
    let (fa, fb) = (Flat::of(a)?, Flat::of(b)?);
    let (va, vb) = (to_f64(&fa.values), to_f64(&fb.values));
    let (na, nb) = (dot64(&va, &va).sqrt(), dot64(&vb, &vb).sqrt());
    let cos = if na > 0.0 && nb > 0.0 {
        (dot64(&va, &vb) / (na * nb)).clamp(-1.0, 1.0)
    } else {
        1.0
    };
    let theta = cos.acos();
    let sin = theta.sin();
    if !sin.is_finite() || sin < PARALLEL_SINE {
        return lerp(a, b, t);
    }

    // At t = 0 the first weight is sin(θ)/sin(θ) = 1 and the second sin(0) = 0, exactly; at
    // t = 1 the other way round, so the ends are the inputs bit for bit.
    let wa = ((1.0 - t) * theta).sin() / sin;
    let wb = (t * theta).sin() / sin;
    let values = va
        .iter()
        .zip(&vb)
        .map(|(x, y)| (wa * x + wb * y) as f32)
        .collect();
    fa.tensor(values)
}

/// [`slerp`] or [`lerp`].
pub fn interpolate(a: &Tensor, b: &Tensor, t: f64, spherical: bool) -> Result<Tensor> {
    if spherical {
        slerp(a, b, t)
    } else {
        lerp(a, b, t)
    }
}

/// Orthonormalises vectors in order (modified Gram-Schmidt), failing when one lies in the span
/// of those before it (or is zero).
pub fn gram_schmidt(vectors: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(vectors.len());
    for (i, v) in vectors.iter().enumerate() {
        let length = dot64(v, v).sqrt();
        let mut w = v.clone();
        for e in &basis {
            let along = dot64(&w, e);
            w.iter_mut().zip(e).for_each(|(x, y)| *x -= along * y);
        }
        let rest = dot64(&w, &w).sqrt();
        if !(rest.is_finite() && rest > length * DEGENERATE_FRACTION && rest > 0.0) {
            return Err(EngineError::InvalidRequest(format!(
                "direction {} is zero or parallel to the directions before it",
                i + 1
            )));
        }
        w.iter_mut().for_each(|x| *x /= rest);
        basis.push(w);
    }
    Ok(basis)
}

/// `count` orthonormal directions in a space of `len` values, reproducible from `seed`: seeded
/// Gaussian vectors (a uniformly random orientation), orthonormalised by Gram-Schmidt.
pub fn random_directions(seed: u64, len: usize, count: usize) -> Result<Vec<Vec<f64>>> {
    let stream = noise::derive_seed(seed, PLANE_STREAM);
    let raw: Vec<Vec<f64>> = (0..count as u64)
        .map(|i| to_f64(&noise::gaussian_vec(noise::derive_seed(stream, i), len)))
        .collect();
    gram_schmidt(&raw)
}

/// A plane through a centre point, spanned by two orthogonal directions of equal length:
/// the point at `(u, v)` is `centre + u d1 + v d2`.
pub struct Plane {
    centre: Flat,
    directions: [Vec<f64>; 2],
    centre_norm: f64,
}

impl Plane {
    /// A plane in a random orientation, reproducible from `seed`. Both directions have the
    /// centre's norm, so u and v are in units of the centre's distance from the origin.
    pub fn random(centre: &Tensor, seed: u64) -> Result<Self> {
        let flat = Flat::of(centre)?;
        let centre_norm = norm(centre)?;
        if !(centre_norm.is_finite() && centre_norm > 0.0) {
            return Err(EngineError::InvalidRequest(format!(
                "a random plane needs a centre of finite, non-zero norm, got {centre_norm}"
            )));
        }
        let basis = random_directions(seed, flat.values.len(), 2)?;
        Ok(Self::from_basis(flat, basis, centre_norm, centre_norm))
    }

    /// The plane through `centre`, `a` and `b`: Gram-Schmidt of `a - centre` and
    /// `b - centre`. Both directions have the length `|a - centre|`, so u and v are in units
    /// of the distance from the centre to `a`: `(1, 0)` is `a` (up to rounding), and `b` lies at
    /// [`Plane::coordinates_of`]`(b)`, with v > 0.
    pub fn toward(centre: &Tensor, a: &Tensor, b: &Tensor) -> Result<Self> {
        same_shape(centre, a, "plane")?;
        same_shape(centre, b, "plane")?;
        let flat = Flat::of(centre)?;
        let c = to_f64(&flat.values);
        let away = |p: &Tensor| -> Result<Vec<f64>> {
            let p = to_f64(&Flat::of(p)?.values);
            Ok(p.iter().zip(&c).map(|(x, y)| x - y).collect())
        };
        let (da, db) = (away(a)?, away(b)?);
        let unit = dot64(&da, &da).sqrt();
        let basis = gram_schmidt(&[da, db]).map_err(|_| {
            EngineError::InvalidRequest(
                "the plane's points are on one line (a prompt equals the centre, or the three \
                 are collinear)"
                    .into(),
            )
        })?;
        Ok(Self::from_basis(flat, basis, unit, dot64(&c, &c).sqrt()))
    }

    fn from_basis(centre: Flat, basis: Vec<Vec<f64>>, length: f64, centre_norm: f64) -> Self {
        let mut scaled = basis
            .into_iter()
            .map(|e| e.into_iter().map(|x| x * length).collect::<Vec<f64>>());
        let d1 = scaled.next().unwrap_or_default();
        let d2 = scaled.next().unwrap_or_default();
        Self {
            centre,
            directions: [d1, d2],
            centre_norm,
        }
    }

    /// The length of each direction: the plane's unit.
    pub fn unit(&self) -> f64 {
        dot64(&self.directions[0], &self.directions[0]).sqrt()
    }

    /// The point `centre + u d1 + v d2`; exactly the centre at (0, 0).
    pub fn at(&self, u: f64, v: f64) -> Result<Tensor> {
        self.centre.tensor(self.values_at(u, v))
    }

    /// The point at `(u, v)` moved along its ray from the origin onto the sphere through the
    /// centre. Gaussian noise concentrates on such a sphere (radius about √n for n values) and
    /// the sampler expects its initial noise there, so noise planes use this.
    pub fn at_on_sphere(&self, u: f64, v: f64) -> Result<Tensor> {
        let mut values = self.values_at(u, v);
        if u != 0.0 || v != 0.0 {
            let length = values
                .iter()
                .map(|&x| f64::from(x).powi(2))
                .sum::<f64>()
                .sqrt();
            if length > 0.0 {
                let scale = self.centre_norm / length;
                values
                    .iter_mut()
                    .for_each(|x| *x = (f64::from(*x) * scale) as f32);
            }
        }
        self.centre.tensor(values)
    }

    fn values_at(&self, u: f64, v: f64) -> Vec<f32> {
        if u == 0.0 && v == 0.0 {
            return self.centre.values.clone();
        }
        let [d1, d2] = &self.directions;
        self.centre
            .values
            .iter()
            .zip(d1.iter().zip(d2))
            .map(|(&c, (x, y))| (f64::from(c) + u * x + v * y) as f32)
            .collect()
    }

    /// The two directions, as tensors of the centre's shape.
    pub fn directions(&self) -> Result<[Tensor; 2]> {
        let [d1, d2] = &self.directions;
        let f = |d: &[f64]| self.centre.tensor(d.iter().map(|&x| x as f32).collect());
        Ok([f(d1)?, f(d2)?])
    }

    /// The plane coordinates `(u, v)` of a point's orthogonal projection onto the plane.
    pub fn coordinates_of(&self, point: &Tensor) -> Result<(f64, f64)> {
        let p = Flat::of(point)?;
        if p.values.len() != self.centre.values.len() {
            return Err(EngineError::InvalidRequest(format!(
                "point has shape {:?}, the plane lives in {:?}",
                point.dims(),
                self.centre.shape.dims()
            )));
        }
        let offset: Vec<f64> = p
            .values
            .iter()
            .zip(&self.centre.values)
            .map(|(&x, &c)| f64::from(x) - f64::from(c))
            .collect();
        let [d1, d2] = &self.directions;
        Ok((
            dot64(&offset, d1) / dot64(d1, d1),
            dot64(&offset, d2) / dot64(d2, d2),
        ))
    }
}

#[cfg(test)]
mod tests;
