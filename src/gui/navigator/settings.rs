//! What the navigator remembers between runs: the controls (mode, the plane's directions,
//! grid and island, the line's ends, the gallery's seed and count) and the part of the plane
//! the canvas shows. The centre prompt, seed and sampling are the generate panel's settings,
//! kept with those.
//!
//! Plain data with every field defaulted, so a file of an older or newer build still loads;
//! tiles, textures and jobs stay in [`crate::gui::navigator_panel::NavigatorPanel`].

use serde::{Deserialize, Serialize};

use super::controls::{Controls, MAX_BEYOND, MAX_GALLERY, MAX_LINE_POINTS};
use super::view::{MAX_HALF_EXTENT, MIN_HALF_EXTENT, PlaneView};
use crate::gui::navigator_panel::MAX_FILL;

/// The key under which eframe stores the navigator's settings.
pub const STORAGE_KEY: &str = "interconcept.navigator";

/// Everything the navigator remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NavigatorSettings {
    /// Mode, plane, line and gallery controls.
    pub controls: Controls,
    /// The canvas's centre and zoom.
    pub view: PlaneView,
}

impl NavigatorSettings {
    /// The settings with every number inside the range its control offers: a settings file is
    /// not to be trusted, and a grid of a million tiles or a NaN zoom must not reach the worker.
    pub fn sanitized(mut self) -> Self {
        let plane = &mut self.controls.plane;
        plane.grid = plane.grid.clamp(1, MAX_FILL);
        let line = &mut self.controls.line;
        line.points = line.points.clamp(2, MAX_LINE_POINTS);
        line.beyond = if line.beyond.is_finite() {
            line.beyond.clamp(0.0, MAX_BEYOND)
        } else {
            0.0
        };
        let gallery = &mut self.controls.gallery;
        gallery.count = gallery.count.clamp(1, MAX_GALLERY);
        let view = &mut self.view;
        if !view
            .centre
            .iter()
            .all(|x| x.is_finite() && x.abs() <= MAX_HALF_EXTENT)
        {
            view.centre = PlaneView::default().centre;
        }
        view.half_extent = if view.half_extent.is_finite() {
            view.half_extent.clamp(MIN_HALF_EXTENT, MAX_HALF_EXTENT)
        } else {
            PlaneView::default().half_extent
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gui::navigator::controls::Mode;

    #[test]
    fn settings_round_trip_and_come_back_in_range() {
        let mut settings = NavigatorSettings::default();
        settings.controls.mode = Mode::Line;
        settings.controls.plane.toward = true;
        settings.controls.plane.toward_a = "a sandal".into();
        settings.controls.plane.toward_b = "a bag".into();
        settings.controls.plane.directions_seed = 9;
        settings.controls.plane.grid = 7;
        settings.controls.plane.island = true;
        settings.controls.line.from = "a shirt".into();
        settings.controls.line.to = "a coat".into();
        settings.controls.line.slerp = true;
        settings.controls.gallery.first_seed = 40;
        settings.controls.gallery.count = 9;
        settings.view = PlaneView {
            centre: [0.25, -1.5],
            half_extent: 0.125,
        };
        let json = serde_json::to_string(&settings).expect("settings serialise");
        let back: NavigatorSettings = serde_json::from_str(&json).expect("settings JSON");
        assert_eq!(back, settings);
        assert_eq!(back.clone().sanitized(), settings, "in range already");

        // Missing fields take defaults, unknown ones are ignored, numbers out of range come
        // back in.
        let odd: NavigatorSettings = serde_json::from_str(
            r#"{"controls":{"plane":{"grid":1000},"line":{"points":0,"beyond":-3},
                "gallery":{"count":100000},"future":1},
                "view":{"centre":[1e300,0],"half_extent":0}}"#,
        )
        .expect("settings JSON");
        let odd = odd.sanitized();
        assert_eq!(odd.controls.plane.grid, MAX_FILL);
        assert_eq!(odd.controls.plane.directions_seed, 1);
        assert_eq!(odd.controls.line.points, 2);
        assert_eq!(odd.controls.line.beyond, 0.0);
        assert_eq!(odd.controls.gallery.count, MAX_GALLERY);
        assert_eq!(odd.controls.mode, Mode::Plane);
        assert_eq!(odd.view.centre, [0.0, 0.0]);
        assert_eq!(odd.view.half_extent, MIN_HALF_EXTENT);
    }
}
