//! Measuring a concept island on a plane: how far from the centre the concept meter still
//! recognises the centre's concept, and where the island's shore runs.
//!
//! The input is a [`ScoreField`]: the meter's probability for one concept, sampled on a
//! rectilinear grid of plane coordinates (u, v), some samples possibly missing (tiles not made
//! yet). Between samples the field is taken as bilinear, the simplest surface that honours every
//! sample and stays within their range. On that surface:
//!
//! - [`radius_along`] follows a ray from the centre (0, 0) and reports where the score first
//!   falls below the threshold, linearly interpolated between the points where the ray crosses
//!   grid lines (exact along the axes, where the bilinear surface is linear between samples);
//! - [`boundary`] traces the threshold's contour by marching squares, cell by cell, as line
//!   segments.
//!
//! Pure arithmetic in f64, with no GUI in it: the navigator draws what comes out.

/// The score at which a picture counts as showing the concept: more likely than not.
pub const ISLAND_THRESHOLD: f64 = 0.5;

/// Relative slack when deciding whether a coordinate lies on the field: rays end exactly on
/// its edge, and rounding must not push them off.
const EDGE_SLACK: f64 = 1e-9;

/// Scores sampled on a grid of plane coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreField {
    /// The u of each column, increasing.
    us: Vec<f64>,
    /// The v of each row, increasing.
    vs: Vec<f64>,
    /// Row-major by v then u: `values[j * us.len() + i]` is the score at `(us[i], vs[j])`.
    values: Vec<Option<f64>>,
}

impl ScoreField {
    /// An empty field (every sample missing) on the grid `us` x `vs`; `None` unless both are
    /// non-empty, finite and strictly increasing.
    pub fn new(us: Vec<f64>, vs: Vec<f64>) -> Option<Self> {
        let increasing = |xs: &[f64]| {
            !xs.is_empty() && xs.iter().all(|x| x.is_finite()) && xs.windows(2).all(|w| w[0] < w[1])
        };
        if !(increasing(&us) && increasing(&vs)) {
            return None;
        }
        let values = vec![None; us.len() * vs.len()];
        Some(Self { us, vs, values })
    }

    /// A field with every sample given by `score(u, v)`.
    pub fn from_fn(us: Vec<f64>, vs: Vec<f64>, score: impl Fn(f64, f64) -> f64) -> Option<Self> {
        let mut field = Self::new(us, vs)?;
        for j in 0..field.vs.len() {
            for i in 0..field.us.len() {
                field.set(i, j, score(field.us[i], field.vs[j]));
            }
        }
        Some(field)
    }

    /// The u of each column.
    pub fn us(&self) -> &[f64] {
        &self.us
    }

    /// The v of each row.
    pub fn vs(&self) -> &[f64] {
        &self.vs
    }

    /// Sets the sample of column `i`, row `j`; out-of-range indices and non-finite scores are
    /// ignored.
    pub fn set(&mut self, i: usize, j: usize, score: f64) {
        if i < self.us.len() && j < self.vs.len() && score.is_finite() {
            self.values[j * self.us.len() + i] = Some(score);
        }
    }

    /// The sample of column `i`, row `j`, if it is known.
    pub fn get(&self, i: usize, j: usize) -> Option<f64> {
        if i < self.us.len() && j < self.vs.len() {
            self.values[j * self.us.len() + i]
        } else {
            None
        }
    }

    /// How many samples are known.
    pub fn known(&self) -> usize {
        self.values.iter().flatten().count()
    }

    /// The bilinear score at `(u, v)`; `None` outside the grid or where a sample it needs is
    /// missing (a sample with zero weight is not needed).
    pub fn at(&self, u: f64, v: f64) -> Option<f64> {
        let (i0, i1, fu) = locate(&self.us, u)?;
        let (j0, j1, fv) = locate(&self.vs, v)?;
        let corners = [
            (i0, j0, (1.0 - fu) * (1.0 - fv)),
            (i1, j0, fu * (1.0 - fv)),
            (i0, j1, (1.0 - fu) * fv),
            (i1, j1, fu * fv),
        ];
        let mut sum = 0.0;
        for (i, j, weight) in corners {
            if weight > 0.0 {
                sum += weight * self.get(i, j)?;
            }
        }
        Some(sum)
    }
}

/// The cell of a sorted axis that holds `x`: the indices either side and the fraction of the
/// way from the first to the second. A one-value axis holds only that value.
fn locate(axis: &[f64], x: f64) -> Option<(usize, usize, f64)> {
    let (first, last) = (*axis.first()?, *axis.last()?);
    let slack = EDGE_SLACK * (last - first).abs().max(1.0);
    if !x.is_finite() || x < first - slack || x > last + slack {
        return None;
    }
    if axis.len() == 1 {
        return Some((0, 0, 0.0));
    }
    let x = x.clamp(first, last);
    let upper = axis.partition_point(|&a| a <= x).clamp(1, axis.len() - 1);
    let (a, b) = (axis[upper - 1], axis[upper]);
    Some((upper - 1, upper, ((x - a) / (b - a)).clamp(0.0, 1.0)))
}

/// How far an island reaches in one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Radius {
    /// The score first falls below the threshold this far from the centre.
    Shore(f64),
    /// The score stays at or above the threshold as far as the samples reach (this far).
    Beyond(f64),
    /// The score at the centre itself is below the threshold: no island there.
    NoIsland,
    /// The centre is outside the sampled grid, or its samples are missing.
    Unknown,
}

impl Radius {
    /// The distance, for a shore.
    pub fn shore(self) -> Option<f64> {
        match self {
            Radius::Shore(r) => Some(r),
            _ => None,
        }
    }
}

/// Where the score along the ray from (0, 0) in `direction` first falls below `threshold`.
///
/// The ray is sampled where it crosses the grid's lines (and at the centre and where it leaves
/// the grid); between those points the score is interpolated linearly. A missing sample ends
/// the walk as if the grid ended there.
pub fn radius_along(field: &ScoreField, direction: [f64; 2], threshold: f64) -> Radius {
    let length = direction[0].hypot(direction[1]);
    if !(length.is_finite() && length > 0.0) {
        return Radius::Unknown;
    }
    let d = [direction[0] / length, direction[1] / length];
    let Some(mut previous) = field.at(0.0, 0.0) else {
        return Radius::Unknown;
    };
    if previous < threshold {
        return Radius::NoIsland;
    }

    // Where the ray leaves the grid, then every grid line it crosses before that.
    let exit = |axis: &[f64], dx: f64| -> f64 {
        let (first, last) = (axis[0], axis[axis.len() - 1]);
        if dx > 0.0 {
            last / dx
        } else if dx < 0.0 {
            first / dx
        } else {
            f64::INFINITY
        }
    };
    let r_exit = exit(&field.us, d[0]).min(exit(&field.vs, d[1])).max(0.0);
    let mut stops: Vec<f64> = field
        .us
        .iter()
        .filter(|_| d[0] != 0.0)
        .map(|&u| u / d[0])
        .chain(field.vs.iter().filter(|_| d[1] != 0.0).map(|&v| v / d[1]))
        .filter(|&r| r > 0.0 && r < r_exit)
        .collect();
    stops.push(r_exit);
    stops.sort_by(f64::total_cmp);
    stops.dedup();

    let mut reached = 0.0;
    for r in stops {
        if r <= 0.0 {
            continue;
        }
        let Some(score) = field.at(r * d[0], r * d[1]) else {
            return Radius::Beyond(reached);
        };
        if score < threshold {
            let fraction = (previous - threshold) / (previous - score);
            return Radius::Shore(reached + fraction * (r - reached));
        }
        (previous, reached) = (score, r);
    }
    Radius::Beyond(reached)
}

/// An island's reach along the four half-axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IslandRadii {
    /// Along +u.
    pub plus_u: Radius,
    /// Along -u.
    pub minus_u: Radius,
    /// Along +v.
    pub plus_v: Radius,
    /// Along -v.
    pub minus_v: Radius,
}

impl IslandRadii {
    /// The four radii with their names, in the order +u, -u, +v, -v.
    pub fn named(&self) -> [(&'static str, Radius); 4] {
        [
            ("+u", self.plus_u),
            ("-u", self.minus_u),
            ("+v", self.plus_v),
            ("-v", self.minus_v),
        ]
    }
}

/// [`radius_along`] the four half-axes.
pub fn island_radii(field: &ScoreField, threshold: f64) -> IslandRadii {
    IslandRadii {
        plus_u: radius_along(field, [1.0, 0.0], threshold),
        minus_u: radius_along(field, [-1.0, 0.0], threshold),
        plus_v: radius_along(field, [0.0, 1.0], threshold),
        minus_v: radius_along(field, [0.0, -1.0], threshold),
    }
}

/// A piece of the shore: from one point of the plane to another.
pub type Segment = [[f64; 2]; 2];

/// The contour where the field crosses `threshold`, by marching squares: in each grid cell with
/// all four samples known, a segment between the cell-edge points where the score, linear
/// along each edge, equals the threshold. A cell whose diagonal corners are inside and the
/// others outside (a saddle) is settled by the mean of its corners. A sample at the threshold
/// counts as inside.
pub fn boundary(field: &ScoreField, threshold: f64) -> Vec<Segment> {
    let (nu, nv) = (field.us.len(), field.vs.len());
    let mut segments = Vec::new();
    for j in 0..nv.saturating_sub(1) {
        for i in 0..nu.saturating_sub(1) {
            // Corners counter-clockwise from the bottom left; edge k runs from corner k to
            // corner k + 1.
            let at = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)];
            let mut scores = [0.0; 4];
            let mut complete = true;
            for (k, &(ci, cj)) in at.iter().enumerate() {
                match field.get(ci, cj) {
                    Some(s) => scores[k] = s,
                    None => complete = false,
                }
            }
            if !complete {
                continue;
            }
            let inside = scores.map(|s| s >= threshold);
            let point = |(ci, cj): (usize, usize)| [field.us[ci], field.vs[cj]];
            let crossing = |edge: usize| -> Option<[f64; 2]> {
                let (a, b) = (edge, (edge + 1) % 4);
                if inside[a] == inside[b] {
                    return None;
                }
                let f = (scores[a] - threshold) / (scores[a] - scores[b]);
                let (pa, pb) = (point(at[a]), point(at[b]));
                Some([pa[0] + f * (pb[0] - pa[0]), pa[1] + f * (pb[1] - pa[1])])
            };
            let crossings: Vec<(usize, [f64; 2])> =
                (0..4).filter_map(|e| crossing(e).map(|p| (e, p))).collect();
            match crossings.as_slice() {
                [(_, p), (_, q)] => segments.push([*p, *q]),
                [_, _, _, _] => {
                    // A saddle: cut off the corners that disagree with the cell's middle; the
                    // edges around corner k are k - 1 and k.
                    let middle = scores.iter().sum::<f64>() / 4.0 >= threshold;
                    for k in (0..4).filter(|&k| inside[k] != middle) {
                        if let (Some(p), Some(q)) = (crossing((k + 3) % 4), crossing(k)) {
                            segments.push([p, q]);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // A sample exactly at the threshold puts crossings on the corner itself: the cells where
    // both crossings fall there add nothing to the shore.
    segments.retain(|[p, q]| p != q);
    segments
}

#[cfg(test)]
mod tests;
