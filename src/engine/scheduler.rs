//! Noise schedules and samplers: DDIM (eta 0) and Euler ancestral.
//!
//! Written here rather than taken from candle-transformers because every random draw must be
//! seeded (candle's Euler ancestral calls an unseeded `randn`), and because the schedule is read
//! from the model's own `scheduler_config.json`. The formulas follow diffusers'
//! `DDIMScheduler` and `EulerAncestralDiscreteScheduler`, so runs can be compared with it.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::error::{CandleContext, EngineError, Result};

/// How the model's output is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The model predicts the noise (SD 1.x, the embedded model).
    #[default]
    Epsilon,
    /// The model predicts velocity (SD 2.x at 768).
    #[serde(rename = "v_prediction")]
    VPrediction,
    /// The model predicts the clean sample.
    Sample,
}

/// How betas grow over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// Betas linear in t.
    Linear,
    /// Square roots of betas linear in t (Stable Diffusion's choice).
    #[default]
    ScaledLinear,
}

/// Which timesteps a run of `n` steps visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// Multiples of `T / n`, plus `steps_offset`.
    #[default]
    Leading,
    /// Evenly spaced from `T - 1` down to 0.
    Linspace,
    /// Counting down from `T - 1` in strides of `T / n`.
    Trailing,
}

/// The part of diffusers' `scheduler_config.json` that defines the noise schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduleConfig {
    /// Number of timesteps the model was trained on.
    pub num_train_timesteps: usize,
    /// First beta.
    pub beta_start: f64,
    /// Last beta.
    pub beta_end: f64,
    /// How betas go from first to last.
    pub beta_schedule: BetaSchedule,
    /// What the model predicts.
    pub prediction_type: PredictionType,
    /// Added to every leading timestep.
    pub steps_offset: usize,
    /// Which timesteps a run visits; when absent each sampler uses diffusers' default for it
    /// (leading for DDIM, linspace for Euler ancestral).
    pub timestep_spacing: Option<TimestepSpacing>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            prediction_type: PredictionType::Epsilon,
            steps_offset: 1,
            timestep_spacing: None,
        }
    }
}

impl ScheduleConfig {
    /// The cumulative products of `1 - beta`, one per training timestep.
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        let n = self.num_train_timesteps;
        let lerp = |a: f64, b: f64, i: usize| {
            if n <= 1 {
                a
            } else {
                a + (b - a) * i as f64 / (n - 1) as f64
            }
        };
        let mut product = 1.0;
        (0..n)
            .map(|i| {
                let beta = match self.beta_schedule {
                    BetaSchedule::Linear => lerp(self.beta_start, self.beta_end, i),
                    BetaSchedule::ScaledLinear => {
                        lerp(self.beta_start.sqrt(), self.beta_end.sqrt(), i).powi(2)
                    }
                };
                product *= 1.0 - beta;
                product
            })
            .collect()
    }
}

/// The samplers the program offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Deterministic DDIM with eta 0.
    #[default]
    Ddim,
    /// Euler ancestral: fresh seeded noise at every step.
    EulerAncestral,
}

impl SamplerKind {
    /// All samplers, for menus.
    pub const ALL: [SamplerKind; 2] = [SamplerKind::Ddim, SamplerKind::EulerAncestral];

    /// The name used on the command line and in recipes.
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Ddim => "ddim",
            SamplerKind::EulerAncestral => "euler_ancestral",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name.replace('-', "_"))
    }
}

/// One denoising run's worth of timesteps and the update rule between them.
#[derive(Debug, Clone)]
pub struct Sampler {
    kind: SamplerKind,
    config: ScheduleConfig,
    alphas_cumprod: Vec<f64>,
    /// Model timesteps, one per step, decreasing (fractional for Euler with linspace spacing).
    timesteps: Vec<f64>,
    /// Euler's sigmas, one per step plus the final 0.
    sigmas: Vec<f64>,
}

impl Sampler {
    /// Plans a run of `num_steps` steps.
    pub fn new(kind: SamplerKind, config: &ScheduleConfig, num_steps: usize) -> Result<Self> {
        let t = config.num_train_timesteps;
        if num_steps == 0 || num_steps > t {
            return Err(EngineError::InvalidRequest(format!(
                "steps must be between 1 and {t}, got {num_steps}"
            )));
        }
        let alphas_cumprod = config.alphas_cumprod();
        let spacing = spacing_for(kind, config);
        let ratio = t / num_steps;
        let timesteps: Vec<f64> = match spacing {
            TimestepSpacing::Leading => (0..num_steps)
                .rev()
                .map(|i| ((i * ratio + config.steps_offset).min(t - 1)) as f64)
                .collect(),
            TimestepSpacing::Trailing => (0..num_steps)
                .map(|i| (t as f64 - (i * ratio) as f64 - 1.0).round().max(0.0))
                .collect(),
            TimestepSpacing::Linspace => (0..num_steps)
                .map(|i| {
                    if num_steps == 1 {
                        (t - 1) as f64
                    } else {
                        (t - 1) as f64 * (1.0 - i as f64 / (num_steps - 1) as f64)
                    }
                })
                .collect(),
        };
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&ts| interpolated_sigma(&alphas_cumprod, ts))
            .collect();
        sigmas.push(0.0);
        Ok(Self {
            kind,
            config: config.clone(),
            alphas_cumprod,
            timesteps,
            sigmas,
        })
    }

    /// The timesteps the UNet sees, one per step.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// Factor for the initial Gaussian latent.
    pub fn init_noise_sigma(&self) -> f64 {
        match self.kind {
            SamplerKind::Ddim => 1.0,
            SamplerKind::EulerAncestral => {
                let max = self.sigmas.iter().copied().fold(0.0, f64::max);
                match spacing_for(self.kind, &self.config) {
                    TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
                    TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
                }
            }
        }
    }

    /// Scales the latent before it enters the UNet at step `index`.
    pub fn scale_model_input(&self, latents: &Tensor, index: usize) -> Result<Tensor> {
        match self.kind {
            SamplerKind::Ddim => Ok(latents.clone()),
            SamplerKind::EulerAncestral => {
                let sigma = self.sigmas[index];
                (latents / (sigma * sigma + 1.0).sqrt()).stage("scale model input")
            }
        }
    }

    /// Whether [`Sampler::step`] needs fresh noise at step `index`.
    pub fn needs_step_noise(&self, index: usize) -> bool {
        self.kind == SamplerKind::EulerAncestral && self.sigmas[index + 1] > 0.0
    }

    /// Advances the latent from step `index` to the next one, given the model's output.
    ///
    /// `step_noise` is standard normal noise of the latent's shape, required when
    /// [`Sampler::needs_step_noise`] says so; the caller seeds it, one stream per image, so that
    /// an image in a batch equals the same image made alone.
    pub fn step(
        &self,
        model_output: &Tensor,
        index: usize,
        latents: &Tensor,
        step_noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        match self.kind {
            SamplerKind::Ddim => self
                .ddim_step(model_output, index, latents)
                .stage("scheduler step"),
            SamplerKind::EulerAncestral => {
                self.euler_ancestral_step(model_output, index, latents, step_noise)
            }
        }
    }

    /// The model's current estimate of the clean latent, for previews.
    pub fn predicted_original(
        &self,
        model_output: &Tensor,
        index: usize,
        latents: &Tensor,
    ) -> Result<Tensor> {
        let alpha = self.alpha_at(self.timesteps[index]);
        let (x0, _) = self
            .split_output(model_output, latents, alpha)
            .stage("preview")?;
        Ok(x0)
    }

    fn alpha_at(&self, timestep: f64) -> f64 {
        let i = (timestep.round() as usize).min(self.alphas_cumprod.len() - 1);
        self.alphas_cumprod[i]
    }

    /// Splits a model output into (predicted clean sample, predicted noise) at `alpha_prod`.
    fn split_output(
        &self,
        model_output: &Tensor,
        sample: &Tensor,
        alpha_prod: f64,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (a, b) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
        match self.config.prediction_type {
            PredictionType::Epsilon => {
                let x0 = ((sample - (model_output * b)?)? / a)?;
                Ok((x0, model_output.clone()))
            }
            PredictionType::VPrediction => {
                let x0 = ((sample * a)? - (model_output * b)?)?;
                let eps = ((model_output * a)? + (sample * b)?)?;
                Ok((x0, eps))
            }
            PredictionType::Sample => {
                let eps = ((sample - (model_output * a)?)? / b)?;
                Ok((model_output.clone(), eps))
            }
        }
    }

    fn ddim_step(
        &self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let timestep = self.timesteps[index];
        let alpha_prod = self.alpha_at(timestep);
        // The next timestep of the plan; after the last one, alpha is that of timestep 0
        // (diffusers' set_alpha_to_one = False, as in Stable Diffusion's configs).
        let alpha_prev = match self.timesteps.get(index + 1) {
            Some(&next) => self.alpha_at(next),
            None => self.alphas_cumprod[0],
        };
        let (x0, eps) = self.split_output(model_output, sample, alpha_prod)?;
        (x0 * alpha_prev.sqrt())? + (eps * (1.0 - alpha_prev).sqrt())?
    }

    fn euler_ancestral_step(
        &self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        step_noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let sigma = self.sigmas[index];
        let sigma_to = self.sigmas[index + 1];
        let sigma_up =
            (sigma_to * sigma_to * (sigma * sigma - sigma_to * sigma_to) / (sigma * sigma)).sqrt();
        let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).max(0.0).sqrt();
        let next = (|| {
            let x0 = match self.config.prediction_type {
                PredictionType::Epsilon => (sample - (model_output * sigma)?)?,
                PredictionType::VPrediction => {
                    let s2 = sigma * sigma + 1.0;
                    ((model_output * (-sigma / s2.sqrt()))? + (sample / s2)?)?
                }
                PredictionType::Sample => model_output.clone(),
            };
            let derivative = ((sample - &x0)? / sigma)?;
            sample + (derivative * (sigma_down - sigma))?
        })()
        .stage("scheduler step")?;
        if sigma_up == 0.0 {
            return Ok(next);
        }
        let noise = step_noise.ok_or_else(|| {
            EngineError::InvalidRequest("Euler ancestral step needs seeded noise".into())
        })?;
        (noise * sigma_up)
            .and_then(|n| next + n)
            .stage("scheduler step")
    }
}

/// The spacing a sampler uses: the config's, or diffusers' default for that sampler.
fn spacing_for(kind: SamplerKind, config: &ScheduleConfig) -> TimestepSpacing {
    config.timestep_spacing.unwrap_or(match kind {
        SamplerKind::Ddim => TimestepSpacing::Leading,
        SamplerKind::EulerAncestral => TimestepSpacing::Linspace,
    })
}

/// Sigma at a possibly fractional timestep, linearly interpolated as numpy's `interp` does.
fn interpolated_sigma(alphas_cumprod: &[f64], timestep: f64) -> f64 {
    let sigma = |i: usize| ((1.0 - alphas_cumprod[i]) / alphas_cumprod[i]).sqrt();
    let last = alphas_cumprod.len() - 1;
    let t = timestep.clamp(0.0, last as f64);
    let lo = t.floor() as usize;
    let hi = (lo + 1).min(last);
    let w = t - lo as f64;
    sigma(lo) * (1.0 - w) + sigma(hi) * w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::noise;
    use candle_core::Device;

    #[test]
    fn sd_alphas_cumprod_match_known_values() {
        let a = ScheduleConfig::default().alphas_cumprod();
        assert_eq!(a.len(), 1000);
        // diffusers: alphas_cumprod[0] = 0.99915, alphas_cumprod[999] ~= 0.0046.
        assert!((a[0] - 0.99915).abs() < 1e-6);
        assert!((a[999] - 0.004_660_5).abs() < 1e-5, "{}", a[999]);
    }

    #[test]
    fn ddim_leading_timesteps_match_diffusers() {
        let s = Sampler::new(SamplerKind::Ddim, &ScheduleConfig::default(), 20).unwrap();
        // diffusers DDIMScheduler with steps_offset=1, 20 steps: 951, 901, ..., 1.
        let expected: Vec<f64> = (0..20).rev().map(|i| (i * 50 + 1) as f64).collect();
        assert_eq!(s.timesteps(), &expected[..]);
    }

    #[test]
    fn trailing_and_linspace_spacings() {
        let cfg = ScheduleConfig {
            timestep_spacing: Some(TimestepSpacing::Trailing),
            ..Default::default()
        };
        let s = Sampler::new(SamplerKind::Ddim, &cfg, 4).unwrap();
        assert_eq!(s.timesteps(), &[999.0, 749.0, 499.0, 249.0]);
        let cfg = ScheduleConfig {
            timestep_spacing: Some(TimestepSpacing::Linspace),
            ..Default::default()
        };
        let s = Sampler::new(SamplerKind::EulerAncestral, &cfg, 3).unwrap();
        assert_eq!(s.timesteps(), &[999.0, 499.5, 0.0]);
    }

    #[test]
    fn zero_or_too_many_steps_is_an_error() {
        let cfg = ScheduleConfig::default();
        assert!(Sampler::new(SamplerKind::Ddim, &cfg, 0).is_err());
        assert!(Sampler::new(SamplerKind::Ddim, &cfg, 1001).is_err());
    }

    #[test]
    fn ddim_with_the_true_noise_recovers_the_clean_sample() {
        // If the model predicts exactly the noise that was added, DDIM walks back to x0.
        let cfg = ScheduleConfig::default();
        let dev = Device::Cpu;
        let x0 = noise::gaussian(1, (1, 4, 2, 2), &dev).unwrap();
        let eps = noise::gaussian(2, (1, 4, 2, 2), &dev).unwrap();
        let s = Sampler::new(SamplerKind::Ddim, &cfg, 10).unwrap();
        let a0 = s.alpha_at(s.timesteps()[0]);
        let mut x = ((&x0 * a0.sqrt()).unwrap() + (&eps * (1.0 - a0).sqrt()).unwrap()).unwrap();
        for i in 0..10 {
            x = s.step(&eps, i, &x, None).unwrap();
        }
        // The last step lands on timestep 0's alpha, which keeps a trace of noise.
        let a_end = cfg.alphas_cumprod()[0];
        let expected =
            ((&x0 * a_end.sqrt()).unwrap() + (&eps * (1.0 - a_end).sqrt()).unwrap()).unwrap();
        let diff = (x - expected).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }

    #[test]
    fn euler_ancestral_needs_noise_until_the_last_step() {
        let cfg = ScheduleConfig::default();
        let dev = Device::Cpu;
        let s = Sampler::new(SamplerKind::EulerAncestral, &cfg, 5).unwrap();
        assert!(s.needs_step_noise(0) && !s.needs_step_noise(4));
        assert!(s.init_noise_sigma() > 10.0);
        let x = noise::gaussian(5, (1, 4, 4, 4), &dev).unwrap();
        let out = (&x * 0.5).unwrap();
        assert!(s.step(&out, 0, &x, None).is_err());
        let n = noise::gaussian(6, (1, 4, 4, 4), &dev).unwrap();
        let a = s.step(&out, 0, &x, Some(&n)).unwrap();
        let b = s.step(&out, 4, &x, None).unwrap();
        assert_eq!(a.dims(), b.dims());
    }
}
