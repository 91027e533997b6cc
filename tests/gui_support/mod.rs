//! What the window tests share: the app over a real worker on the embedded model, and stepping
//! the harness until a condition holds.

use std::time::{Duration, Instant};

use candle_core::Device;
use egui_kittest::Harness;
use interconcept::engine::model::embedded_model_dir;
use interconcept::gui::{ExplorerApp, GenerateSettings};
use interconcept::worker::Worker;

/// The app eframe would start, over a worker on the embedded model that wakes the harness; with
/// the wgpu renderer (`Harness::builder().wgpu()`) it draws the island on the GPU as eframe's
/// window does.
pub fn app_over_embedded_model(
    cc: &eframe::CreationContext<'_>,
    settings: GenerateSettings,
) -> ExplorerApp {
    let ctx = cc.egui_ctx.clone();
    let worker = Worker::spawn(
        embedded_model_dir(),
        Device::Cpu,
        Box::new(move || ctx.request_repaint()),
    );
    let mut app = ExplorerApp::with_worker(worker, embedded_model_dir(), settings);
    app.use_render_state(cc.wgpu_render_state.as_ref());
    app
}

/// Steps the harness, with short sleeps, until `done` holds, then one frame more to draw what
/// the last event changed; fails after `wait` with `what` and the app's `state` in the message.
pub fn step_until(
    harness: &mut Harness<'_, ExplorerApp>,
    what: &str,
    wait: Duration,
    done: impl Fn(&ExplorerApp) -> bool,
    state: impl Fn(&ExplorerApp) -> String,
) {
    let start = Instant::now();
    while !done(harness.state()) {
        assert!(
            start.elapsed() < wait,
            "gave up waiting for {what} after {wait:?}; {}",
            state(harness.state())
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    harness.step();
}
