//! The plane canvas's view of the (u, v) plane: which part it shows, how screen points and
//! plane coordinates map onto each other, where ticks go, and which grid a fill asks for.
//!
//! Plain numbers (egui's geometry types, no drawing), so the mapping is tested without a window.
//! u grows to the right and v upwards, as on a mathematician's plot.

use egui::{Pos2, Rect, Vec2};
use serde::{Deserialize, Serialize};

/// The smallest half-extent the view zooms in to, in plane units.
pub const MIN_HALF_EXTENT: f64 = 1e-4;

/// The largest half-extent the view zooms out to, in plane units.
pub const MAX_HALF_EXTENT: f64 = 1e4;

/// Which part of the plane the canvas shows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlaneView {
    /// The plane point at the middle of the canvas.
    pub centre: [f64; 2],
    /// Half the plane distance the canvas's shorter side shows.
    pub half_extent: f64,
}

impl Default for PlaneView {
    /// The centre of the plane, one unit (one |centre|) to each side.
    fn default() -> Self {
        Self {
            centre: [0.0, 0.0],
            half_extent: 1.0,
        }
    }
}

impl PlaneView {
    /// Screen points per plane unit in a canvas of `rect`.
    pub fn points_per_unit(&self, rect: Rect) -> f64 {
        f64::from(rect.width().min(rect.height()).max(2.0)) / 2.0 / self.half_extent
    }

    /// Where the plane point `p` is on the screen.
    pub fn to_screen(&self, rect: Rect, p: [f64; 2]) -> Pos2 {
        let scale = self.points_per_unit(rect);
        let middle = rect.center();
        Pos2::new(
            middle.x + ((p[0] - self.centre[0]) * scale) as f32,
            middle.y - ((p[1] - self.centre[1]) * scale) as f32,
        )
    }

    /// The plane point under the screen point `pos`.
    pub fn to_plane(&self, rect: Rect, pos: Pos2) -> [f64; 2] {
        let scale = self.points_per_unit(rect);
        let middle = rect.center();
        [
            self.centre[0] + f64::from(pos.x - middle.x) / scale,
            self.centre[1] - f64::from(pos.y - middle.y) / scale,
        ]
    }

    /// Zooms in by `factor` (below 1 zooms out), keeping the plane point under `pos` where it
    /// is on the screen.
    pub fn zoom_about(&mut self, rect: Rect, pos: Pos2, factor: f64) {
        if !(factor.is_finite() && factor > 0.0) {
            return;
        }
        let fixed = self.to_plane(rect, pos);
        self.half_extent = (self.half_extent / factor).clamp(MIN_HALF_EXTENT, MAX_HALF_EXTENT);
        let scale = self.points_per_unit(rect);
        let offset = pos - rect.center();
        self.centre = [
            fixed[0] - f64::from(offset.x) / scale,
            fixed[1] + f64::from(offset.y) / scale,
        ];
    }

    /// Moves the plane with the pointer by a screen `delta`.
    pub fn pan(&mut self, rect: Rect, delta: Vec2) {
        let scale = self.points_per_unit(rect);
        self.centre[0] -= f64::from(delta.x) / scale;
        self.centre[1] += f64::from(delta.y) / scale;
    }

    /// The plane box the canvas shows: `[[u_min, u_max], [v_min, v_max]]`.
    pub fn visible(&self, rect: Rect) -> [[f64; 2]; 2] {
        let lo = self.to_plane(rect, rect.left_bottom());
        let hi = self.to_plane(rect, rect.right_top());
        [[lo[0], hi[0]], [lo[1], hi[1]]]
    }

    /// The `n` x `n` grid a fill asks for: on a lattice of a round spacing, as large as fits
    /// the view's central square, around the view's centre.
    pub fn fill_grid(&self, n: usize) -> FillGrid {
        let n = n.max(1);
        let spacing = nice_at_most(2.0 * self.half_extent / n as f64);
        let first = |c: f64| (c / spacing - (n as f64 - 1.0) / 2.0).round() as i64;
        FillGrid {
            spacing,
            first: [first(self.centre[0]), first(self.centre[1])],
            n,
            middle: self.centre,
        }
    }
}

/// A square grid on the lattice of multiples of `spacing`: indices `first[0] ..
/// first[0] + n` along u and `first[1] .. first[1] + n` along v.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillGrid {
    /// Plane distance between neighbouring points.
    pub spacing: f64,
    /// The lattice index of the first column and of the first row.
    pub first: [i64; 2],
    /// Points along each side.
    pub n: usize,
    /// The point the grid is ordered around (the view's centre when it was asked).
    pub middle: [f64; 2],
}

impl FillGrid {
    /// The u of each column, increasing.
    pub fn us(&self) -> Vec<f64> {
        lattice(self.first[0], self.n, self.spacing)
    }

    /// The v of each row, increasing.
    pub fn vs(&self) -> Vec<f64> {
        lattice(self.first[1], self.n, self.spacing)
    }

    /// Every point of the grid, nearest to the middle first (the middle is what the user
    /// looks at, and the first tiles should be there); ties keep rows top to bottom and
    /// columns left to right.
    pub fn points_centre_first(&self) -> Vec<[f64; 2]> {
        let (us, vs) = (self.us(), self.vs());
        let points: Vec<[f64; 2]> = vs
            .iter()
            .rev()
            .flat_map(|&v| us.iter().map(move |&u| [u, v]))
            .collect();
        centre_first(points, self.middle)
    }
}

/// `n` lattice values from index `first`, each an exact multiple of `spacing` (0 is exactly 0).
fn lattice(first: i64, n: usize, spacing: f64) -> Vec<f64> {
    (0..n as i64)
        .map(|k| (first + k) as f64 * spacing)
        .collect()
}

/// `points` sorted by distance from `middle`, nearest first; equal distances keep their order.
pub fn centre_first(mut points: Vec<[f64; 2]>, middle: [f64; 2]) -> Vec<[f64; 2]> {
    let distance = |p: &[f64; 2]| (p[0] - middle[0]).hypot(p[1] - middle[1]);
    points.sort_by(|a, b| distance(a).total_cmp(&distance(b)));
    points
}

/// The largest of 1, 2, 2.5 and 5 times a power of ten that is at most `x`.
pub fn nice_at_most(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(x.log10().floor());
    let mantissa = x / power;
    let nice = [5.0, 2.5, 2.0, 1.0]
        .into_iter()
        .find(|&m| m <= mantissa * (1.0 + 1e-9))
        .unwrap_or(1.0);
    nice * power
}

/// Tick positions on `[lo, hi]`, at most about `max_count` of them, at round values; returns
/// the step too (for formatting).
pub fn ticks(lo: f64, hi: f64, max_count: usize) -> (f64, Vec<f64>) {
    let range = hi - lo;
    if !(range.is_finite() && range > 0.0) || max_count == 0 {
        return (1.0, Vec::new());
    }
    // The smallest round step that gives no more than max_count ticks.
    let mut step = nice_at_most(range / max_count as f64);
    while range / step > max_count as f64 {
        step = nice_at_most(step * 2.01);
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let values = (first..=last).map(|k| k as f64 * step).collect();
    (step, values)
}

/// A tick value with as many decimals as its step needs, and no "-0".
pub fn format_tick(x: f64, step: f64) -> String {
    let decimals = if step > 0.0 && step.is_finite() {
        (-(step.log10().floor()) + if nice_mantissa(step) == 2.5 { 1.0 } else { 0.0 }).max(0.0)
            as usize
    } else {
        2
    };
    let text = format!("{x:.decimals$}");
    if text
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        "0".into()
    } else {
        text
    }
}

fn nice_mantissa(x: f64) -> f64 {
    let power = 10f64.powf(x.log10().floor());
    ((x / power) * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canvas() -> Rect {
        Rect::from_min_size(Pos2::new(100.0, 50.0), Vec2::new(400.0, 300.0))
    }

    #[test]
    fn screen_and_plane_round_trip() {
        let view = PlaneView {
            centre: [0.3, -1.2],
            half_extent: 0.75,
        };
        let rect = canvas();
        for p in [[0.3, -1.2], [0.0, 0.0], [1.05, -0.45], [-0.2, -1.9]] {
            let back = view.to_plane(rect, view.to_screen(rect, p));
            assert!(
                (back[0] - p[0]).abs() < 1e-4 && (back[1] - p[1]).abs() < 1e-4,
                "{p:?} -> {back:?}"
            );
        }
        // The middle of the canvas is the view's centre; up on the screen is +v.
        assert_eq!(view.to_plane(rect, rect.center()), view.centre);
        let above = view.to_plane(rect, rect.center() - Vec2::new(0.0, 10.0));
        assert!(above[1] > view.centre[1]);
        // The shorter side (300 points) shows twice the half-extent.
        let [_, [v_lo, v_hi]] = view.visible(rect);
        assert!((v_hi - v_lo - 1.5).abs() < 1e-9);
    }

    #[test]
    fn zoom_keeps_the_point_under_the_pointer_and_pan_follows_it() {
        let rect = canvas();
        let mut view = PlaneView::default();
        let pointer = Pos2::new(420.0, 90.0);
        let before = view.to_plane(rect, pointer);
        view.zoom_about(rect, pointer, 2.0);
        assert!((view.half_extent - 0.5).abs() < 1e-12);
        let after = view.to_plane(rect, pointer);
        assert!((after[0] - before[0]).abs() < 1e-9 && (after[1] - before[1]).abs() < 1e-9);

        // Dragging by a delta moves the plane point under the pointer with it.
        let grabbed = view.to_plane(rect, pointer);
        view.pan(rect, Vec2::new(-30.0, 12.0));
        let moved = view.to_screen(rect, grabbed);
        assert!((moved.x - (pointer.x - 30.0)).abs() < 1e-3);
        assert!((moved.y - (pointer.y + 12.0)).abs() < 1e-3);

        view.zoom_about(rect, pointer, 1e12);
        assert_eq!(view.half_extent, MIN_HALF_EXTENT);
    }

    #[test]
    fn fills_are_centre_first_on_a_round_lattice() {
        let view = PlaneView::default();
        let grid = view.fill_grid(3);
        // 2 / 3 rounds down to 0.5.
        assert_eq!(grid.spacing, 0.5);
        assert_eq!(grid.us(), vec![-0.5, 0.0, 0.5]);
        let points = grid.points_centre_first();
        assert_eq!(points.len(), 9);
        assert_eq!(points[0], [0.0, 0.0]);
        // The four edge neighbours come before the corners.
        for p in &points[1..5] {
            assert!((p[0].abs() + p[1].abs() - 0.5).abs() < 1e-12, "{p:?}");
        }
        for p in &points[5..] {
            assert!((p[0].abs() - 0.5).abs() < 1e-12 && (p[1].abs() - 0.5).abs() < 1e-12);
        }

        // Panned a little, the grid stays on the same lattice.
        let panned = PlaneView {
            centre: [0.6, -0.1],
            half_extent: 1.0,
        };
        let grid = panned.fill_grid(5);
        assert_eq!(grid.spacing, 0.25);
        assert_eq!(grid.us(), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(grid.points_centre_first()[0], [0.5, 0.0]);
    }

    #[test]
    fn ticks_are_round_and_bounded() {
        let (step, values) = ticks(-1.3, 1.3, 6);
        assert_eq!(step, 0.5);
        assert_eq!(values, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        let (step, values) = ticks(0.011, 0.019, 5);
        assert_eq!(step, 0.002);
        assert_eq!(values.len(), 4);
        assert_eq!(format_tick(values[0], step), "0.012");
        assert_eq!(format_tick(-0.0, 0.5), "0");
        assert_eq!(format_tick(0.25, 0.25), "0.25");
        assert_eq!(format_tick(20.0, 10.0), "20");
        assert_eq!(nice_at_most(0.7), 0.5);
        assert_eq!(nice_at_most(0.66), 0.5);
        assert_eq!(nice_at_most(30.0), 25.0);
        assert!(ticks(1.0, 1.0, 5).1.is_empty());
    }
}
