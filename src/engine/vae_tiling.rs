//! Decoding large latents in overlapping tiles, so that memory stays bounded.
//!
//! candle's VAE decoder holds several full-resolution activations at once (its convolutions
//! unfold their input), and Stable Diffusion's decoder at 512 x 512 peaks around 17 GB. Decoding
//! the latent in tiles bounds the peak by the tile's size instead of the picture's. Tiles
//! overlap, and in the overlap each pixel is a weighted mean of the tiles that cover it, with
//! weights that ramp linearly from one tile to the next, so no seam shows.
//!
//! Tiles are used only above a size that depends on the device (see [`CPU_TILE_PIXELS`] and
//! [`GPU_TILE_PIXELS`]). A tile does not see the whole latent: the decoder's group norms and its mid-block attention
//! take statistics over what they are given. The tiled picture is therefore close to, not equal
//! to, the full decode (`tests/vae_tiling.rs` bounds the difference and checks for seams).
//! Pictures that fit in one tile are decoded whole, and so are unchanged.

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;

/// How to cut a latent into tiles, in latent cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// The side of a tile.
    pub tile: usize,
    /// How many cells neighbouring tiles share.
    pub overlap: usize,
}

/// The side of a tile in pixels on the CPU. candle 0.11's CPU convolution unfolds its input in
/// small pieces, so Stable Diffusion's decoder at 512 x 512 peaks at ~1.8 GB (measured,
/// weights included): pictures up to 512 x 512 decode whole, larger ones in 512-pixel tiles.
pub const CPU_TILE_PIXELS: usize = 512;

/// The side of a tile in pixels on GPUs. candle's CUDA and Metal convolutions unfold the whole
/// input at once (~2.4 GB for one 256-channel convolution at 512 x 512), and the decoder at
/// 512 x 512 has been seen to peak around 17 GB; memory grows with the tile's area, so 192-pixel
/// tiles are expected to stay near 2.5 GB.
pub const GPU_TILE_PIXELS: usize = 192;

/// Pixels neighbouring tiles share: enough for the ramps to hide the seams.
pub const OVERLAP_PIXELS: usize = 64;

impl Tiling {
    /// The tiling for a VAE that turns one latent cell into `downscale` x `downscale` pixels,
    /// decoding on `device`.
    pub fn for_device(device: &Device, downscale: usize) -> Self {
        let downscale = downscale.max(1);
        let tile = if device.is_cpu() {
            CPU_TILE_PIXELS
        } else {
            GPU_TILE_PIXELS
        };
        Self {
            tile: (tile / downscale).max(2),
            overlap: (OVERLAP_PIXELS / downscale).max(1),
        }
    }

    /// Whether a latent of `h` x `w` cells needs more than one tile.
    pub fn needs_tiles(&self, h: usize, w: usize) -> bool {
        h > self.tile || w > self.tile
    }

    /// Where the tiles along one side of `len` cells start; the last one ends at the edge.
    pub fn starts(&self, len: usize) -> Vec<usize> {
        if len <= self.tile {
            return vec![0];
        }
        let stride = self.tile.saturating_sub(self.overlap).max(1);
        let mut starts: Vec<usize> = (0..)
            .map(|i| i * stride)
            .take_while(|&s| s + self.tile < len)
            .collect();
        starts.push(len - self.tile);
        starts
    }
}

/// Weights of one tile's pixels along one side: 1 inside, rising linearly over the overlap on a
/// side that has a neighbour. Neighbouring ramps add up to one.
fn ramp(len: usize, rise_start: usize, rise_end: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let from_start = if rise_start > 0 {
                ((i as f32 + 0.5) / rise_start as f32).min(1.0)
            } else {
                1.0
            };
            let from_end = if rise_end > 0 {
                ((len - i) as f32 - 0.5) / rise_end as f32
            } else {
                1.0
            };
            from_start.min(from_end.min(1.0))
        })
        .collect()
}

/// Decodes a latent `[1, C, h, w]` (already divided by the scaling factor) in tiles; returns
/// the picture `[1, 3, h * scale, w * scale]` in f32 on the CPU.
pub fn decode_tiled(
    vae: &AutoEncoderKL,
    latent: &Tensor,
    scale: usize,
    tiling: Tiling,
) -> candle_core::Result<Tensor> {
    decode_tiled_with(|tile| vae.decode(tile), latent, scale, tiling)
}

/// [`decode_tiled`] with any decoder of a latent tile `[1, C, th, tw]` into `[1, 3, TH, TW]`.
pub fn decode_tiled_with(
    decode: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    latent: &Tensor,
    scale: usize,
    tiling: Tiling,
) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = latent.dims4()?;
    let (height, width) = (h * scale, w * scale);
    let rows = tiling.starts(h);
    let cols = tiling.starts(w);
    let mut sum = vec![0f32; 3 * height * width];
    let mut weight_sum = vec![0f32; height * width];

    for (ri, &y0) in rows.iter().enumerate() {
        let th = tiling.tile.min(h);
        for (ci, &x0) in cols.iter().enumerate() {
            let tw = tiling.tile.min(w);
            let _span = tracing::trace_span!("vae tile", y0, x0).entered();
            let tile = latent.narrow(2, y0, th)?.narrow(3, x0, tw)?.contiguous()?;
            let pixels = decode(&tile)?
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;

            // Ramps only where a neighbour shares the edge, over the cells actually shared.
            let shared = |prev: Option<usize>, this: usize, size: usize| {
                prev.map_or(0, |p| (p + size).saturating_sub(this) * scale)
            };
            let top = shared(ri.checked_sub(1).map(|i| rows[i]), y0, th);
            let bottom = rows
                .get(ri + 1)
                .map_or(0, |&n| (y0 + th).saturating_sub(n) * scale);
            let left = shared(ci.checked_sub(1).map(|i| cols[i]), x0, tw);
            let right = cols
                .get(ci + 1)
                .map_or(0, |&n| (x0 + tw).saturating_sub(n) * scale);
            let (ph, pw) = (th * scale, tw * scale);
            let wy = ramp(ph, top, bottom);
            let wx = ramp(pw, left, right);
            for y in 0..ph {
                let row = (y0 * scale + y) * width + x0 * scale;
                for x in 0..pw {
                    let weight = wy[y] * wx[x];
                    weight_sum[row + x] += weight;
                    for c in 0..3 {
                        sum[c * height * width + row + x] += weight * pixels[(c * ph + y) * pw + x];
                    }
                }
            }
        }
    }
    for (i, value) in sum.iter_mut().enumerate() {
        *value /= weight_sum[i % (height * width)].max(f32::MIN_POSITIVE);
    }
    Tensor::from_vec(sum, (1, 3, height, width), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_side_and_ramps_add_up() {
        let t = Tiling {
            tile: 8,
            overlap: 2,
        };
        assert_eq!(t.starts(8), vec![0]);
        assert_eq!(t.starts(14), vec![0, 6]);
        assert_eq!(t.starts(20), vec![0, 6, 12]);
        assert_eq!(t.starts(21), vec![0, 6, 12, 13]);
        // Two tiles overlapping by 4 pixels: the weights of the shared pixels sum to one.
        let a = ramp(10, 0, 4);
        let b = ramp(10, 4, 0);
        for i in 0..4 {
            assert!((a[6 + i] + b[i] - 1.0).abs() < 1e-6);
        }
        assert_eq!(a[0], 1.0);
        assert_eq!(b[9], 1.0);
    }
}
