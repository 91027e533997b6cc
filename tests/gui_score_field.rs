//! The island's GPU score field (`shaders/score_field.wgsl`) rendered through egui_kittest's
//! wgpu renderer, as eframe's window draws it: a known field (a disk whose score falls from 1 at
//! the centre to 0.5 at radius 0.6) must come out green in the middle, magenta at the corners,
//! with the yellow shore on the circle and nothing drawn beyond the tiles' box (snapshot).
//!
//! Without a GPU, wgpu falls back to a software adapter.

use egui_kittest::Harness;
use interconcept::gui::navigator::canvas::{Overlay, plane_canvas_ui};
use interconcept::gui::navigator::score_field::{FieldTexture, gpu};
use interconcept::gui::navigator::view::PlaneView;
use interconcept::navigator::island::ScoreField;

/// The window, and the canvas that fills it.
const SIZE: egui::Vec2 = egui::vec2(400.0, 400.0);

/// The lattice's spacing: 9 x 9 samples from -1 to 1.
const SPACING: f64 = 0.25;

/// A canvas with nothing but the field.
struct FieldApp {
    view: PlaneView,
    field: FieldTexture,
    canvas: egui::Rect,
}

impl eframe::App for FieldApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE)
            .show(ui, |ui| {
                let overlay = Overlay {
                    pending: &[],
                    island: true,
                    shore: &[],
                    field: Some(&self.field),
                    unit: "|centre|",
                };
                let size = ui.available_size();
                self.canvas = ui.available_rect_before_wrap();
                plane_canvas_ui(ui, size, &mut self.view, &[], &overlay);
            });
    }
}

fn disk_field() -> FieldTexture {
    let axis: Vec<f64> = (-4..=4).map(|k| f64::from(k) * SPACING).collect();
    let field = ScoreField::from_fn(axis.clone(), axis, |u, v| {
        (1.0 - u.hypot(v) / 1.2).clamp(0.0, 1.0)
    })
    .expect("a valid lattice");
    FieldTexture::from_field(&field, SPACING).expect("a texture")
}

#[test]
fn the_gpu_field_is_smooth_with_its_shore_on_the_threshold() {
    let mut harness = Harness::builder()
        .with_size(SIZE)
        .wgpu()
        .build_eframe(|cc| {
            gpu::register(
                cc.wgpu_render_state
                    .as_ref()
                    .expect("the wgpu test renderer gives a render state"),
            );
            FieldApp {
                view: PlaneView {
                    centre: [0.0, 0.0],
                    half_extent: 1.25,
                },
                field: disk_field(),
                canvas: egui::Rect::NOTHING,
            }
        });
    harness.run();
    let image = harness.render().expect("the field renders");
    let (view, canvas) = (harness.state().view, harness.state().canvas);
    let pixel = |u: f64, v: f64| {
        let p = view.to_screen(canvas, [u, v]);
        image.get_pixel(p.x as u32, p.y as u32).0
    };

    // On the island: green over the canvas's dark ground.
    let [r, g, b, _] = pixel(0.05, 0.05);
    assert!(g > r + 20 && g > b + 20, "centre {:?}", [r, g, b]);
    // Far off it, at the corner of the lattice: magenta.
    let [r, g, b, _] = pixel(-0.95, 0.95);
    assert!(r > g + 20 && b > g + 20, "corner {:?}", [r, g, b]);
    // Beyond the tiles' box (the lattice reaches to 1 + 0.125): the canvas as it is.
    let ground = pixel(1.2, -0.6);
    assert!(
        ground[0].abs_diff(ground[1]) < 8 && ground[1].abs_diff(ground[2]) < 8,
        "outside the box {ground:?}"
    );
    // The shore on the circle of radius 0.6, in any direction (the field is bilinear between
    // samples, so within a pixel or two of the circle): yellow.
    for angle in [0.3_f64, 1.9, 3.6, 5.2] {
        let near = (-3..=3).any(|step| {
            let r = 0.6 + f64::from(step) * 0.002;
            let [red, green, blue, _] = pixel(r * angle.cos(), r * angle.sin());
            red > 200 && green > 170 && blue < 110
        });
        assert!(near, "no shore at angle {angle}");
    }
    // Not yellow half-way between the centre and the shore.
    let [_, _, b, _] = pixel(0.3, 0.0);
    let [r, _, _, _] = pixel(0.3, 0.0);
    assert!(!(r > 200 && b < 110), "a shore where the score is 0.75");

    harness.snapshot("score_field");
}
