//! Unit tests of concept-space geometry on small hand-made tensors.

use candle_core::{Device, Tensor};

use super::*;

fn t(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
}

fn values(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_vec1().unwrap()
}

fn seeded(seed: u64, shape: &[usize]) -> Tensor {
    noise::gaussian(seed, shape, &Device::Cpu).unwrap()
}

fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
}

#[test]
fn lerp_is_exact_at_the_ends_and_extrapolates_linearly() {
    let a = seeded(1, &[77, 8]);
    let b = seeded(2, &[77, 8]);
    assert_eq!(values(&lerp(&a, &b, 0.0).unwrap()), values(&a));
    assert_eq!(values(&lerp(&a, &b, 1.0).unwrap()), values(&b));
    let (va, vb) = (values(&a), values(&b));
    for t in [0.5, -0.5, 1.5, 3.0] {
        let got = values(&lerp(&a, &b, t).unwrap());
        for i in [0, 100, 615] {
            let want = f64::from(va[i]) + t * (f64::from(vb[i]) - f64::from(va[i]));
            assert_close(f64::from(got[i]), want, 1e-5, "lerp");
        }
    }
    assert_eq!(lerp(&a, &b, 2.0).unwrap().dims(), &[77, 8]);
}

#[test]
fn slerp_is_exact_at_the_ends() {
    let a = seeded(3, &[77, 8]);
    let b = seeded(4, &[77, 8]);
    assert_eq!(values(&slerp(&a, &b, 0.0).unwrap()), values(&a));
    assert_eq!(values(&slerp(&a, &b, 1.0).unwrap()), values(&b));
}

#[test]
fn slerp_halves_the_angle_and_extrapolates_around_the_circle() {
    let a = t(&[1.0, 0.0, 0.0], &[3]);
    let b = t(&[0.0, 1.0, 0.0], &[3]);
    let mid = values(&slerp(&a, &b, 0.5).unwrap());
    let h = std::f64::consts::FRAC_1_SQRT_2;
    assert_close(f64::from(mid[0]), h, 1e-6, "x");
    assert_close(f64::from(mid[1]), h, 1e-6, "y");
    assert_close(
        norm(&slerp(&a, &b, 0.5).unwrap()).unwrap(),
        1.0,
        1e-6,
        "norm",
    );

    // Lerp's midpoint is shorter: the reason slerp exists.
    assert_close(
        norm(&lerp(&a, &b, 0.5).unwrap()).unwrap(),
        h,
        1e-6,
        "lerp norm",
    );

    // Beyond b by a whole quarter turn is -a; before a by a quarter turn is -b.
    let beyond = values(&slerp(&a, &b, 2.0).unwrap());
    assert_close(f64::from(beyond[0]), -1.0, 1e-6, "beyond x");
    assert_close(f64::from(beyond[1]), 0.0, 1e-6, "beyond y");
    let before = values(&slerp(&a, &b, -1.0).unwrap());
    assert_close(f64::from(before[1]), -1.0, 1e-6, "before y");
}

#[test]
fn slerp_of_nearly_parallel_or_degenerate_points_falls_back_to_lerp() {
    let a = seeded(5, &[77, 8]);
    let nudge = (seeded(6, &[77, 8]) * 1e-7).unwrap();
    let b = ((&a * 1.5).unwrap() + nudge).unwrap();
    for t in [0.0, 0.3, 0.5, 1.0, 1.7] {
        let s = values(&slerp(&a, &b, t).unwrap());
        let l = values(&lerp(&a, &b, t).unwrap());
        assert!(s.iter().all(|x| x.is_finite()), "NaN at t = {t}");
        assert_eq!(s, l, "t = {t}");
    }
    let opposite = (&a * -1.0).unwrap();
    let zero = a.zeros_like().unwrap();
    for b in [&a, &opposite, &zero] {
        let s = values(&slerp(&a, b, 0.25).unwrap());
        assert!(s.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn mismatched_shapes_are_refused() {
    let a = seeded(1, &[77, 8]);
    let b = seeded(1, &[77, 4]);
    assert!(lerp(&a, &b, 0.5).is_err());
    assert!(slerp(&a, &b, 0.5).is_err());
    assert!(Plane::toward(&a, &b, &b).is_err());
}

#[test]
fn gram_schmidt_makes_an_orthonormal_basis_and_refuses_dependent_vectors() {
    let basis = gram_schmidt(&[
        vec![1.0, 1.0, 0.0, 2.0],
        vec![1.0, 0.0, 3.0, 0.0],
        vec![0.0, 2.0, 1.0, 1.0],
    ])
    .unwrap();
    for (i, e) in basis.iter().enumerate() {
        assert_close(dot64(e, e), 1.0, 1e-12, "norm");
        for f in &basis[i + 1..] {
            assert_close(dot64(e, f), 0.0, 1e-12, "dot");
        }
    }
    assert!(gram_schmidt(&[vec![1.0, 2.0], vec![2.0, 4.0]]).is_err());
    assert!(gram_schmidt(&[vec![0.0, 0.0]]).is_err());
}

#[test]
fn random_directions_are_orthonormal_and_reproducible_from_their_seed() {
    let a = random_directions(9, 77 * 8, 2).unwrap();
    let b = random_directions(9, 77 * 8, 2).unwrap();
    let c = random_directions(10, 77 * 8, 2).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_close(dot64(&a[0], &a[1]), 0.0, 1e-12, "dot");
    assert_close(dot64(&a[1], &a[1]), 1.0, 1e-12, "norm");
}

#[test]
fn random_plane_directions_are_orthogonal_with_the_centre_norm() {
    let centre = seeded(11, &[77, 8]);
    let r = norm(&centre).unwrap();
    let plane = Plane::random(&centre, 4).unwrap();
    let [d1, d2] = plane.directions().unwrap();
    assert_close(norm(&d1).unwrap(), r, 1e-4 * r, "|d1|");
    assert_close(norm(&d2).unwrap(), r, 1e-4 * r, "|d2|");
    assert_close(dot(&d1, &d2).unwrap() / (r * r), 0.0, 1e-6, "d1.d2");
    assert_close(plane.unit(), r, 1e-9 * r, "unit");

    // The centre exactly at the origin of the plane; coordinates come back.
    assert_eq!(values(&plane.at(0.0, 0.0).unwrap()), values(&centre));
    let p = plane.at(0.75, -1.25).unwrap();
    let (u, v) = plane.coordinates_of(&p).unwrap();
    assert_close(u, 0.75, 1e-5, "u");
    assert_close(v, -1.25, 1e-5, "v");

    // Same seed, same plane; another seed, another plane.
    let again = Plane::random(&centre, 4).unwrap();
    assert_eq!(
        values(&again.at(1.0, 1.0).unwrap()),
        values(&plane.at(1.0, 1.0).unwrap())
    );
    let other = Plane::random(&centre, 5).unwrap();
    assert_ne!(
        values(&other.at(1.0, 1.0).unwrap()),
        values(&plane.at(1.0, 1.0).unwrap())
    );

    assert!(Plane::random(&centre.zeros_like().unwrap(), 4).is_err());
}

#[test]
fn a_plane_toward_two_points_passes_through_them() {
    let c = seeded(20, &[77, 8]);
    let a = seeded(21, &[77, 8]);
    let b = seeded(22, &[77, 8]);
    let plane = Plane::toward(&c, &a, &b).unwrap();
    let unit = norm(&(&a - &c).unwrap()).unwrap();
    assert_close(plane.unit(), unit, 1e-6 * unit, "unit");
    let [d1, d2] = plane.directions().unwrap();
    assert_close(dot(&d1, &d2).unwrap() / (unit * unit), 0.0, 1e-6, "d1.d2");
    assert_close(norm(&d2).unwrap(), unit, 1e-4 * unit, "|d2|");

    // a is at (1, 0); b is in the plane, above the u axis.
    let at_a = values(&plane.at(1.0, 0.0).unwrap());
    for (x, y) in at_a.iter().zip(values(&a)) {
        assert_close(f64::from(*x), f64::from(y), 1e-5, "a");
    }
    let (u, v) = plane.coordinates_of(&b).unwrap();
    assert!(v > 0.0, "b at ({u}, {v})");
    for (x, y) in values(&plane.at(u, v).unwrap()).iter().zip(values(&b)) {
        assert_close(f64::from(*x), f64::from(y), 1e-5, "b");
    }

    assert!(Plane::toward(&c, &c, &b).is_err());
    let halfway = lerp(&c, &a, 0.5).unwrap();
    assert!(Plane::toward(&c, &a, &halfway).is_err());
}

#[test]
fn the_same_tools_work_on_initial_noise_latents() {
    let n1 = seeded(30, &[4, 8, 8]);
    let n2 = seeded(31, &[4, 8, 8]);
    let r = norm(&n1).unwrap();

    // A noise plane keeps every point on the sphere of the centre's norm.
    let plane = Plane::random(&n1, 7).unwrap();
    assert_eq!(values(&plane.at_on_sphere(0.0, 0.0).unwrap()), values(&n1));
    for (u, v) in [(1.0, 0.0), (-2.0, 0.5), (0.25, 3.0)] {
        let p = plane.at_on_sphere(u, v).unwrap();
        assert_eq!(p.dims(), &[4, 8, 8]);
        assert_close(norm(&p).unwrap(), r, 1e-4 * r, "on sphere");
    }

    // Slerp between two noises keeps about their norm; lerp's midpoint shrinks by about √2.
    let mid = slerp(&n1, &n2, 0.5).unwrap();
    let r2 = norm(&n2).unwrap();
    assert!(norm(&mid).unwrap() > 0.8 * r.min(r2));
    assert!(norm(&lerp(&n1, &n2, 0.5).unwrap()).unwrap() < 0.85 * r.max(r2));
}

#[test]
fn statistics_keep_constant_positions_and_draws_are_reproducible() {
    let shared = [5.0f32, -3.0];
    let embeddings: Vec<Tensor> = (0..4u64)
        .map(|seed| {
            let mut v = shared.to_vec();
            v.extend(values(&seeded(seed, &[6])));
            t(&v, &[4, 2])
        })
        .collect();
    let stats = EmbeddingStatistics::fit(&embeddings).unwrap();
    assert_eq!(stats.count(), 4);
    assert_eq!(&stats.std()[..2], &[0.0, 0.0]);
    let a = stats.sample(1, &Device::Cpu).unwrap();
    assert_eq!(a.dims(), &[4, 2]);
    assert_eq!(&values(&a)[..2], &shared);
    assert_eq!(values(&a), values(&stats.sample(1, &Device::Cpu).unwrap()));
    assert_ne!(values(&a), values(&stats.sample(2, &Device::Cpu).unwrap()));

    // A draw does not reuse the initial noise of the same seed.
    let z = noise::gaussian_vec(1, 6);
    let centred: Vec<f64> = values(&a)[2..]
        .iter()
        .zip(&stats.mean()[2..])
        .zip(&stats.std()[2..])
        .map(|((x, m), s)| (f64::from(*x) - m) / s)
        .collect();
    assert!((centred[0] - f64::from(z[0])).abs() > 1e-3);

    assert!(EmbeddingStatistics::fit(&embeddings[..1]).is_err());
}

#[test]
fn concept_points_round_trip_through_json() {
    let point = ConceptPoint::Plane {
        centre: Box::new(ConceptPoint::Line {
            from: Box::new(ConceptPoint::Prompt("a sandal".into())),
            to: Box::new(ConceptPoint::Random {
                seed: 3,
                reference_prompts: vec!["a bag".into(), "a coat".into()],
            }),
            t: 1.0 / 3.0,
            slerp: true,
        }),
        directions: PlaneDirections::Toward {
            a: Box::new(ConceptPoint::Prompt("a bag".into())),
            b: Box::new(ConceptPoint::Prompt("a coat".into())),
        },
        u: -0.1,
        v: 2.0 / 7.0,
    };
    let json = serde_json::to_string(&point).unwrap();
    let back: ConceptPoint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, point);
    assert_eq!(point.anchor_prompt(), "a sandal");

    let text = r#"{"line": {"from": {"prompt": "a"}, "to": {"prompt": "b"}, "t": 0.5}}"#;
    let line: ConceptPoint = serde_json::from_str(text).unwrap();
    assert!(matches!(line, ConceptPoint::Line { slerp: false, .. }));
    let unknown = r#"{"line": {"from": {"prompt": "a"}, "to": {"prompt": "b"}, "t": 0.5, "x": 1}}"#;
    assert!(serde_json::from_str::<ConceptPoint>(unknown).is_err());

    let noise = NoisePoint::Plane {
        centre_seed: 1,
        directions_seed: 2,
        u: 0.1,
        v: -0.7,
    };
    let back: NoisePoint = serde_json::from_str(&serde_json::to_string(&noise).unwrap()).unwrap();
    assert_eq!(back, noise);
}
