//! Cheap previews: a per-pixel linear map from latent channels to RGB.
//!
//! Decoding with the VAE at every step would cost more than the step itself on large models, so
//! the picture forming in the window is a linear projection of the latent, one RGB pixel per
//! latent cell. Stable Diffusion's four channels have well-known coefficients; the embedded model
//! stores its own, fitted when it was trained.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::error::{CandleContext, Result};

/// A linear map from latent channels to RGB in [-1, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentRgb {
    /// One RGB row per latent channel.
    pub weights: Vec<[f32; 3]>,
    /// Added to every pixel.
    pub bias: [f32; 3],
}

impl LatentRgb {
    /// Coefficients for Stable Diffusion 1.x/2.x latents (4 channels), or a plain grey
    /// projection of the first channel for other channel counts.
    pub fn for_channels(channels: usize) -> Self {
        if channels == 4 {
            // The widely used approximation for SD 1.x latents (already divided by the scaling
            // factor's effect, i.e. applied to the latents the UNet sees).
            return Self {
                weights: vec![
                    [0.298, 0.207, 0.208],
                    [0.187, 0.286, 0.173],
                    [-0.158, 0.189, 0.264],
                    [-0.184, -0.271, -0.473],
                ],
                bias: [0.0; 3],
            };
        }
        let mut weights = vec![[0.0; 3]; channels];
        if let Some(first) = weights.first_mut() {
            *first = [0.5; 3];
        }
        Self {
            weights,
            bias: [0.0; 3],
        }
    }

    /// Projects a batch of latents `[B, C, h, w]` to RGB8 images of `h x w`.
    pub fn project(&self, latents: &Tensor) -> Result<Vec<Vec<u8>>> {
        let (batch, channels, h, w) = latents.dims4().stage("preview")?;
        let values = latents
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .stage("preview")?;
        let plane = h * w;
        let used = channels.min(self.weights.len());
        let images = (0..batch)
            .map(|b| {
                let base = b * channels * plane;
                let mut rgb = Vec::with_capacity(plane * 3);
                for p in 0..plane {
                    let mut px = self.bias;
                    for (c, weight) in self.weights.iter().enumerate().take(used) {
                        let v = values[base + c * plane + p];
                        for k in 0..3 {
                            px[k] += weight[k] * v;
                        }
                    }
                    rgb.extend(px.map(to_u8));
                }
                rgb
            })
            .collect();
        Ok(images)
    }
}

/// Maps [-1, 1] to [0, 255]; NaN becomes 0.
pub fn to_u8(v: f32) -> u8 {
    let x = ((v + 1.0) * 127.5).round();
    if x.is_nan() {
        0
    } else {
        x.clamp(0.0, 255.0) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn projection_applies_weights_per_pixel() {
        let map = LatentRgb {
            weights: vec![[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]],
            bias: [0.0, 0.0, 0.0],
        };
        // One image, 2 channels, 1x2 pixels.
        let lat = Tensor::new(&[[[[1f32, -1.]], [[0.0, 1.0]]]], &Device::Cpu).unwrap();
        let imgs = map.project(&lat).unwrap();
        assert_eq!(imgs, vec![vec![255, 128, 128, 0, 255, 0]]);
    }

    #[test]
    fn nan_maps_to_black() {
        assert_eq!(to_u8(f32::NAN), 0);
        assert_eq!(to_u8(5.0), 255);
    }
}
