use super::*;
use crate::navigator::axis;

/// A cone that is 1 at the centre and 0.5 on the ellipse with half-axes `a` (along u) and `b`
/// (along v): linear along every ray, so the axis radii are exact.
fn ellipse(a: f64, b: f64) -> impl Fn(f64, f64) -> f64 {
    move |u, v| 1.0 - 0.5 * ((u / a).powi(2) + (v / b).powi(2)).sqrt()
}

/// A soft disk: a logistic step from 1 inside to 0 outside, 0.5 exactly at radius `r`.
fn soft_disk(r: f64) -> impl Fn(f64, f64) -> f64 {
    move |u, v| 1.0 / (1.0 + (8.0 * (u.hypot(v) - r)).exp())
}

fn field(n: usize, span: f64, score: impl Fn(f64, f64) -> f64) -> ScoreField {
    ScoreField::from_fn(axis(n, span), axis(n, span), score).expect("an increasing grid")
}

fn assert_shore(radius: Radius, expected: f64, tolerance: f64) {
    match radius {
        Radius::Shore(r) => assert!(
            (r - expected).abs() <= tolerance,
            "shore at {r}, expected {expected} ± {tolerance}"
        ),
        other => panic!("expected a shore near {expected}, got {other:?}"),
    }
}

#[test]
fn an_ellipse_has_its_half_axes_as_radii() {
    let f = field(21, 2.0, ellipse(1.3, 0.7));
    let radii = island_radii(&f, ISLAND_THRESHOLD);
    assert_shore(radii.plus_u, 1.3, 1e-9);
    assert_shore(radii.minus_u, 1.3, 1e-9);
    assert_shore(radii.plus_v, 0.7, 1e-9);
    assert_shore(radii.minus_v, 0.7, 1e-9);
}

#[test]
fn a_disk_between_samples_is_found_by_interpolation() {
    // Radius 0.77 falls between the samples at 0.7 and 0.8.
    let f = field(41, 2.0, soft_disk(0.77));
    for (name, radius) in island_radii(&f, ISLAND_THRESHOLD).named() {
        match radius {
            Radius::Shore(r) => assert!((r - 0.77).abs() < 0.005, "{name}: {r}"),
            other => panic!("{name}: {other:?}"),
        }
    }

    // Off the axes the bilinear surface is not linear along the ray, but stays close.
    let diagonal = radius_along(&f, [1.0, 1.0], ISLAND_THRESHOLD);
    assert_shore(diagonal, 0.77, 0.02);
}

#[test]
fn an_island_larger_than_the_grid_reaches_beyond_it() {
    let f = field(5, 1.0, |_, _| 0.9);
    let radii = island_radii(&f, ISLAND_THRESHOLD);
    for (name, radius) in radii.named() {
        assert_eq!(radius, Radius::Beyond(1.0), "{name}");
    }
    // Along the diagonal the grid ends at its corner.
    match radius_along(&f, [1.0, 1.0], ISLAND_THRESHOLD) {
        Radius::Beyond(r) => assert!((r - 2f64.sqrt()).abs() < 1e-9, "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_island_unknown_centre_and_missing_samples() {
    let low = field(5, 1.0, |u, v| 0.2 + 0.1 * u * v);
    assert_eq!(
        radius_along(&low, [1.0, 0.0], ISLAND_THRESHOLD),
        Radius::NoIsland
    );

    // A grid that does not reach the centre.
    let away = ScoreField::from_fn(vec![1.0, 2.0], vec![1.0, 2.0], |_, _| 1.0).expect("a grid");
    assert_eq!(
        radius_along(&away, [1.0, 0.0], ISLAND_THRESHOLD),
        Radius::Unknown
    );

    // A missing sample at u = 0.6 stops the walk at the last known one, before the shore.
    let mut f = field(21, 2.0, ellipse(1.3, 0.7));
    let mut holed = ScoreField::new(f.us().to_vec(), f.vs().to_vec()).expect("a grid");
    for j in 0..21 {
        for i in 0..21 {
            if let Some(s) = f.get(i, j)
                && !(i == 13 && j == 10)
            {
                holed.set(i, j, s);
            }
        }
    }
    assert_eq!(holed.known(), 21 * 21 - 1);
    match radius_along(&holed, [1.0, 0.0], ISLAND_THRESHOLD) {
        Radius::Beyond(r) => assert!((r - 0.4).abs() < 1e-9, "{r}"),
        other => panic!("{other:?}"),
    }
    // The other directions do not need that sample.
    assert_shore(
        radius_along(&holed, [-1.0, 0.0], ISLAND_THRESHOLD),
        1.3,
        1e-9,
    );

    // A sample that drops to 0 moves the shore to between it and the one before.
    f.set(13, 10, 0.0);
    let before = 1.0 - 0.5 * 0.4 / 1.3;
    let expected = 0.4 + 0.2 * (before - 0.5) / before;
    assert_shore(
        radius_along(&f, [1.0, 0.0], ISLAND_THRESHOLD),
        expected,
        1e-9,
    );
}

#[test]
fn bilinear_values_honour_the_samples() {
    let f = ScoreField::from_fn(vec![-1.0, 0.0, 2.0], vec![0.0, 1.0], |u, v| u * v + u)
        .expect("a grid");
    // u v + u is bilinear, so the interpolation is exact everywhere on the grid.
    for (u, v) in [(-1.0, 0.0), (0.5, 0.25), (2.0, 1.0), (-0.3, 0.9)] {
        let s = f.at(u, v).expect("inside the grid");
        assert!((s - (u * v + u)).abs() < 1e-12, "at ({u}, {v}): {s}");
    }
    assert_eq!(f.at(2.5, 0.5), None);
    assert_eq!(f.at(0.0, -0.1), None);
    assert!(ScoreField::new(vec![0.0, 0.0], vec![1.0]).is_none());
    assert!(ScoreField::new(vec![], vec![1.0]).is_none());
}

/// Each segment end, rounded, and how many segments end there.
fn ends(segments: &[Segment]) -> std::collections::HashMap<(i64, i64), usize> {
    let mut count = std::collections::HashMap::new();
    for p in segments.iter().flatten() {
        let key = ((p[0] * 1e9).round() as i64, (p[1] * 1e9).round() as i64);
        *count.entry(key).or_insert(0) += 1;
    }
    count
}

#[test]
fn the_shore_of_a_disk_is_a_closed_curve_near_its_circle() {
    let segments = boundary(&field(41, 2.0, ellipse(1.1, 1.1)), ISLAND_THRESHOLD);
    assert!(segments.len() > 40, "{} segments", segments.len());
    for p in segments.iter().flatten() {
        let r = p[0].hypot(p[1]);
        assert!((r - 1.1).abs() < 0.01, "shore point {p:?} at radius {r}");
    }
    // Closed: every end is shared by exactly two segments.
    for (at, n) in ends(&segments) {
        assert_eq!(n, 2, "end {at:?} is shared by {n} segments");
    }
    let length: f64 = segments
        .iter()
        .map(|[p, q]| (p[0] - q[0]).hypot(p[1] - q[1]))
        .sum();
    let circumference = 2.0 * std::f64::consts::PI * 1.1;
    assert!(
        (length - circumference).abs() < 0.02 * circumference,
        "{length}"
    );
}

#[test]
fn a_straight_shore_is_exact_and_spans_the_grid() {
    // Linear in u, 0.5 at u = 0.3.
    let segments = boundary(&field(11, 1.0, |u, _| 0.8 - u), ISLAND_THRESHOLD);
    assert_eq!(segments.len(), 10, "one segment per row of cells");
    for p in segments.iter().flatten() {
        assert!((p[0] - 0.3).abs() < 1e-12, "{p:?}");
    }
    let length: f64 = segments.iter().map(|[p, q]| (p[1] - q[1]).abs()).sum();
    assert!((length - 2.0).abs() < 1e-12, "{length}");
}

#[test]
fn saddles_follow_the_middle_and_incomplete_cells_are_skipped() {
    // Bottom-left and top-right inside; their mean decides that the middle is inside too, so
    // the outside corners (bottom right, top left) are cut off.
    let mut f = ScoreField::new(vec![0.0, 1.0], vec![0.0, 1.0]).expect("a grid");
    f.set(0, 0, 1.0);
    f.set(1, 0, 0.2);
    f.set(1, 1, 1.0);
    f.set(0, 1, 0.2);
    let segments = boundary(&f, ISLAND_THRESHOLD);
    assert_eq!(segments.len(), 2);
    let cuts_off = |corner: [f64; 2]| {
        segments.iter().any(|[p, q]| {
            let mid = [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0];
            (mid[0] - corner[0]).hypot(mid[1] - corner[1]) < 0.5
        })
    };
    assert!(cuts_off([1.0, 0.0]) && cuts_off([0.0, 1.0]), "{segments:?}");

    let mut g = ScoreField::new(vec![0.0, 1.0], vec![0.0, 1.0]).expect("a grid");
    g.set(0, 0, 1.0);
    g.set(1, 0, 0.0);
    g.set(1, 1, 1.0);
    assert!(boundary(&g, ISLAND_THRESHOLD).is_empty());
}
