//! The island overlay drawn on the GPU: the concept meter's scores on the lattice of a fill,
//! uploaded as a small texture and drawn by `shaders/score_field.wgsl` as a smooth colour map
//! with an anti-aliased shore where the score crosses [`ISLAND_THRESHOLD`].
//!
//! This file holds the plain data the shader needs ([`FieldTexture`], [`IndexMap`]), tested
//! without a GPU; [`gpu`] holds the wgpu pipeline and the egui paint callback. The canvas uses
//! the GPU path when [`gpu::register`] found a wgpu renderer (see
//! [`crate::gui::ExplorerApp::use_render_state`]); otherwise it draws the overlay with egui
//! shapes, tile by tile, and the shore by marching squares.

pub mod gpu;

use egui::{Color32, Pos2, Rect};

use super::view::PlaneView;
use crate::navigator::island::{ISLAND_THRESHOLD, ScoreField};

/// The shader's source, checked by naga in this module's tests.
pub const SHADER_SOURCE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/shaders/score_field.wgsl"
));

/// The colour where the score is 1 (on the island), translucent.
pub const INSIDE: Color32 = Color32::from_rgba_unmultiplied_const(40, 210, 90, 110);

/// The colour where the score is 0 (off the island), translucent.
pub const OUTSIDE: Color32 = Color32::from_rgba_unmultiplied_const(220, 40, 200, 110);

/// The shore's colour.
pub const SHORE: Color32 = Color32::from_rgb(255, 220, 40);

/// The shore's width, in points.
pub const SHORE_WIDTH: f32 = 2.5;

/// A score field as the shader reads it: one texel per lattice point, row 0 at the lowest v,
/// each `[score, known]` with `known` 1 where a tile was made and 0 where it is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldTexture {
    /// Columns (along u) and rows (along v).
    pub size: [u32; 2],
    /// Row-major texels.
    pub texels: Vec<[f32; 2]>,
    /// The (u, v) of texel (0, 0).
    pub origin: [f64; 2],
    /// The plane distance between neighbouring texels, along both axes.
    pub spacing: f64,
}

/// Where a screen point falls on the lattice: `index = point * per_point + at_origin`, in
/// (column, row) with fractions, rows counting up with v.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexMap {
    /// Lattice index per screen point.
    pub per_point: [f32; 2],
    /// The lattice index of screen point (0, 0).
    pub at_origin: [f32; 2],
}

impl FieldTexture {
    /// The texels of `field`, whose samples lie `spacing` apart on both axes; `None` for a
    /// spacing that is not a positive finite number or a field too large for a texture.
    pub fn from_field(field: &ScoreField, spacing: f64) -> Option<Self> {
        if !(spacing.is_finite() && spacing > 0.0) {
            return None;
        }
        let (columns, rows) = (field.us().len(), field.vs().len());
        let size = [u32::try_from(columns).ok()?, u32::try_from(rows).ok()?];
        let texels = (0..rows)
            .flat_map(|j| (0..columns).map(move |i| (i, j)))
            .map(|(i, j)| match field.get(i, j) {
                Some(score) => [score as f32, 1.0],
                None => [0.0, 0.0],
            })
            .collect();
        Some(Self {
            size,
            texels,
            origin: [*field.us().first()?, *field.vs().first()?],
            spacing,
        })
    }

    /// The texel a plane point sits on, if it is one of the lattice's points.
    pub fn texel_at(&self, at: [f64; 2]) -> Option<[u32; 2]> {
        let mut texel = [0; 2];
        for axis in 0..2 {
            let k = (at[axis] - self.origin[axis]) / self.spacing;
            let nearest = k.round();
            if (k - nearest).abs() > 1e-6 || nearest < 0.0 || nearest >= f64::from(self.size[axis])
            {
                return None;
            }
            texel[axis] = nearest as u32;
        }
        Some(texel)
    }

    /// Where the screen points of a canvas `rect` showing `view` fall on the lattice.
    pub fn index_map(&self, view: &PlaneView, rect: Rect) -> IndexMap {
        let at = view.to_plane(rect, Pos2::ZERO);
        let one = view.to_plane(rect, Pos2::new(1.0, 1.0));
        let index = |p: [f64; 2], axis: usize| (p[axis] - self.origin[axis]) / self.spacing;
        IndexMap {
            per_point: [
                (index(one, 0) - index(at, 0)) as f32,
                (index(one, 1) - index(at, 1)) as f32,
            ],
            at_origin: [index(at, 0) as f32, index(at, 1) as f32],
        }
    }
}

/// The uniforms of the shader, in the layout of its `Params` struct (80 bytes).
pub fn uniform_bytes(map: &IndexMap, pixels_per_point: f32) -> Vec<u8> {
    let ppp = if pixels_per_point > 0.0 {
        pixels_per_point
    } else {
        1.0
    };
    let rgba = |c: Color32| {
        let [r, g, b, a] = c.to_srgba_unmultiplied();
        [r, g, b, a].map(|x| f32::from(x) / 255.0)
    };
    let mut values = Vec::with_capacity(20);
    values.extend([map.per_point[0] / ppp, map.per_point[1] / ppp]);
    values.extend(map.at_origin);
    values.extend(rgba(INSIDE));
    values.extend(rgba(OUTSIDE));
    values.extend(rgba(SHORE));
    values.extend([ISLAND_THRESHOLD as f32, SHORE_WIDTH * ppp / 2.0, 0.0, 0.0]);
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shader_parses_and_validates() {
        let module = match naga::front::wgsl::parse_str(SHADER_SOURCE) {
            Ok(module) => module,
            Err(error) => panic!(
                "{}",
                error.emit_to_string_with_path(SHADER_SOURCE, "shaders/score_field.wgsl")
            ),
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        );
        if let Err(error) = validator.validate(&module) {
            panic!(
                "{}",
                error.emit_to_string_with_path(SHADER_SOURCE, "shaders/score_field.wgsl")
            );
        }
        // The entry points the pipeline names.
        let names: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        for name in [gpu::VERTEX_ENTRY, gpu::GAMMA_ENTRY, gpu::LINEAR_ENTRY] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        // The uniform block is as large as the bytes written into it.
        let params = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))
            .map(|(_, t)| t.inner.size(module.to_ctx()))
            .expect("a Params struct");
        assert_eq!(params as usize, gpu::UNIFORM_SIZE);
        let bytes = uniform_bytes(
            &IndexMap {
                per_point: [1.0, -1.0],
                at_origin: [0.0, 0.0],
            },
            2.0,
        );
        assert_eq!(bytes.len(), gpu::UNIFORM_SIZE);
    }

    #[test]
    fn texels_and_the_index_map_follow_the_lattice() {
        let mut field =
            ScoreField::new(vec![-0.5, 0.0, 0.5], vec![-0.5, 0.0]).expect("a valid grid");
        field.set(0, 0, 0.25);
        field.set(2, 1, 1.0);
        let texture = FieldTexture::from_field(&field, 0.5).expect("a texture");
        assert_eq!(texture.size, [3, 2]);
        assert_eq!(texture.texels[0], [0.25, 1.0]);
        assert_eq!(texture.texels[1], [0.0, 0.0], "missing samples are unknown");
        assert_eq!(texture.texels[5], [1.0, 1.0]);
        assert_eq!(texture.texel_at([0.5, 0.0]), Some([2, 1]));
        assert_eq!(
            texture.texel_at([0.25, 0.0]),
            None,
            "between lattice points"
        );
        assert_eq!(texture.texel_at([1.0, 0.0]), None, "beyond the field");
        assert!(FieldTexture::from_field(&field, 0.0).is_none());

        // Screen points map onto the lattice as the view maps them onto the plane.
        let view = PlaneView {
            centre: [0.1, -0.2],
            half_extent: 0.8,
        };
        let rect = Rect::from_min_size(Pos2::new(30.0, 40.0), egui::vec2(300.0, 200.0));
        let map = texture.index_map(&view, rect);
        for screen in [rect.center(), rect.left_top(), Pos2::new(123.0, 201.5)] {
            let [u, v] = view.to_plane(rect, screen);
            let index = [
                screen.x * map.per_point[0] + map.at_origin[0],
                screen.y * map.per_point[1] + map.at_origin[1],
            ];
            assert!((f64::from(index[0]) - (u + 0.5) / 0.5).abs() < 1e-4);
            assert!((f64::from(index[1]) - (v + 0.5) / 0.5).abs() < 1e-4);
        }
        assert!(
            map.per_point[1] < 0.0,
            "rows count up with v, screen y down"
        );
    }
}
