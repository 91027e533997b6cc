//! The background worker over the embedded model: the events of a job in order, cancellation by
//! a newer job, failures that leave the worker usable, a panic it survives, and a bad model
//! folder that keeps the model already loaded.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use interconcept::engine::model::{DiffusionModel, embedded_model_dir};
use interconcept::engine::pipeline::{self, Picture, SamplingParams};
use interconcept::engine::scheduler::SamplerKind;
use interconcept::recipe::{RECIPE_VERSION, Recipe};
use interconcept::worker::{Event, GenerateJob, Job, JobId, Worker};

/// The longest a test waits for one job.
const WAIT: Duration = Duration::from_secs(30);

/// The embedded model's native side, in pixels.
const SIDE: usize = 32;

fn spawn() -> Worker {
    Worker::spawn(embedded_model_dir(), Device::Cpu, Box::new(|| {}))
}

fn job(prompt: &str, seed: u64, num_steps: usize, sampler: SamplerKind) -> GenerateJob {
    GenerateJob::prompt(
        prompt,
        seed,
        SamplingParams {
            num_steps,
            guidance_scale: 4.0,
            sampler,
            width: SIDE,
            height: SIDE,
        },
    )
}

fn event_id(event: &Event) -> JobId {
    event.id()
}

fn is_end(event: &Event) -> bool {
    event.ends_job()
}

/// Every event until job `id` ends, of any job, in arrival order; the last one ends `id`.
fn events_until_end(worker: &Worker, id: JobId) -> Vec<Event> {
    let start = Instant::now();
    let mut events = Vec::new();
    loop {
        let left = WAIT.checked_sub(start.elapsed()).unwrap_or_default();
        let Some(event) = worker.recv_timeout(left) else {
            panic!("job {id} did not end within {WAIT:?}; events so far: {events:#?}");
        };
        let done = event_id(&event) == id && is_end(&event);
        events.push(event);
        if done {
            return events;
        }
    }
}

/// The event that ended job `id`.
fn end_of(worker: &Worker, id: JobId) -> Event {
    let mut events = events_until_end(worker, id);
    events
        .pop()
        .expect("events_until_end returns the end event last")
}

#[track_caller]
fn expect_finished(event: &Event) -> (&Picture, &Recipe) {
    match event {
        Event::Finished {
            picture, recipe, ..
        } => (picture, recipe),
        other => panic!("expected Finished, got {other:?}"),
    }
}

#[track_caller]
fn expect_failed(event: &Event) -> &str {
    match event {
        Event::Failed { error, .. } => error,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn a_job_streams_previews_and_progress_then_finishes_with_its_recipe() {
    let mut worker = spawn();
    let job = job("a red sneaker", 7, 20, SamplerKind::EulerAncestral);
    let id = worker.submit(Job::Generate(job.clone())).unwrap();
    let events = events_until_end(&worker, id);
    assert!(
        events.iter().all(|e| event_id(e) == id),
        "events of another job: {events:#?}"
    );

    let previews: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Preview { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    assert!(
        previews.len() > 20,
        "{} previews for 20 steps and the noise",
        previews.len()
    );
    let latent_side = SIDE / 4;
    for frame in &previews {
        assert_eq!((frame.width, frame.height), (latent_side, latent_side));
        assert_eq!(frame.rgb.len(), latent_side * latent_side * 3);
    }
    // The first preview, the noise itself, comes before any step.
    let first_preview = events
        .iter()
        .position(|e| matches!(e, Event::Preview { .. }));
    let first_progress = events
        .iter()
        .position(|e| matches!(e, Event::Progress { .. }));
    assert!(first_preview < first_progress, "{events:#?}");

    let steps: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Progress {
                step, num_steps, ..
            } => Some((*step, *num_steps)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=20).map(|s| (s, 20)).collect::<Vec<_>>());

    let (picture, recipe) = expect_finished(events.last().unwrap());
    assert_eq!((picture.width, picture.height), (SIDE, SIDE));
    assert_eq!(recipe.version, RECIPE_VERSION);
    assert_eq!(recipe.prompt, job.prompt);
    assert_eq!(recipe.seed, job.seed);
    assert_eq!(recipe.sampling, job.params);
    assert!(!recipe.non_finite);

    // The worker's picture is the engine's picture for that recipe.
    let model = DiffusionModel::load(&embedded_model_dir(), &Device::Cpu).unwrap();
    assert_eq!(recipe.model, model.id);
    let (conditioning, _) = model.encode_prompts(&[&job.prompt]).unwrap();
    let initial: Tensor = pipeline::initial_noise(&model, job.seed, &job.params).unwrap();
    let direct = pipeline::generate(
        &model,
        &conditioning,
        &initial,
        &[job.seed],
        &job.params,
        &mut |_| true,
    )
    .unwrap();
    assert!(
        direct[0].rgb == picture.rgb,
        "the worker and the engine disagree"
    );
}

#[test]
fn a_newer_job_cancels_a_running_one() {
    let mut worker = spawn();
    let long = worker
        .submit(Job::Generate(job("a bag", 1, 500, SamplerKind::Ddim)))
        .unwrap();

    // Wait until the long job is denoising, so that it is cancelled between two steps.
    let start = Instant::now();
    loop {
        let event = worker
            .recv_timeout(WAIT)
            .expect("no event from the long job");
        assert!(
            !is_end(&event),
            "the long job ended before it was superseded: {event:?}"
        );
        if matches!(event, Event::Progress { .. }) {
            break;
        }
    }
    let short = worker
        .submit(Job::Generate(job("a bag", 2, 10, SamplerKind::Ddim)))
        .unwrap();

    let events = events_until_end(&worker, short);
    let long_end = events.iter().find(|e| event_id(e) == long && is_end(e));
    assert!(
        matches!(long_end, Some(Event::Cancelled { .. })),
        "the long job ended with {long_end:?}"
    );
    let long_steps = events
        .iter()
        .filter(|e| event_id(e) == long && matches!(e, Event::Progress { .. }))
        .count();
    assert!(
        long_steps < 499,
        "the long job ran {long_steps} more steps before it stopped"
    );
    expect_finished(events.last().unwrap());
    assert!(start.elapsed() < WAIT);
}

#[test]
fn a_job_submitted_right_behind_another_supersedes_it() {
    let mut worker = spawn();
    let first = worker
        .submit(Job::Generate(job("a bag", 1, 500, SamplerKind::Ddim)))
        .unwrap();
    let second = worker
        .submit(Job::Generate(job("a bag", 2, 10, SamplerKind::Ddim)))
        .unwrap();

    let events = events_until_end(&worker, second);
    let first_end = events.iter().find(|e| event_id(e) == first && is_end(e));
    assert!(
        matches!(first_end, Some(Event::Cancelled { .. })),
        "the first job ended with {first_end:?}"
    );
    expect_finished(events.last().unwrap());
}

#[test]
fn a_failing_job_reports_and_the_next_job_still_runs() {
    let mut worker = spawn();
    let bad = worker
        .submit(Job::Generate(job("a bag", 1, 0, SamplerKind::Ddim)))
        .unwrap();
    let error = expect_failed(&end_of(&worker, bad)).to_string();
    assert!(
        error.contains("steps"),
        "the error does not name steps: {error}"
    );

    let good = worker
        .submit(Job::Generate(job("a bag", 1, 5, SamplerKind::Ddim)))
        .unwrap();
    expect_finished(&end_of(&worker, good));
}

#[test]
fn the_worker_survives_a_panic() {
    let mut worker = spawn();
    let crash = worker.submit(Job::Crash).unwrap();
    let error = expect_failed(&end_of(&worker, crash)).to_string();
    assert!(
        error.contains("crash"),
        "the error does not mention the crash: {error}"
    );

    // Submitted as soon as the failure is seen, as the window would.
    let next = worker
        .submit(Job::Generate(job("a bag", 1, 5, SamplerKind::Ddim)))
        .unwrap();
    expect_finished(&end_of(&worker, next));
}

#[test]
fn a_bad_model_folder_fails_and_keeps_the_loaded_model() {
    let mut worker = spawn();
    let first = worker
        .submit(Job::Generate(job("a bag", 3, 5, SamplerKind::Ddim)))
        .unwrap();
    let (before, recipe_before) = {
        let end = end_of(&worker, first);
        let (picture, recipe) = expect_finished(&end);
        (picture.clone(), recipe.clone())
    };

    let load = worker
        .submit(Job::LoadModel("/nonexistent".into()))
        .unwrap();
    let error = expect_failed(&end_of(&worker, load)).to_string();
    assert!(
        error.contains("/nonexistent"),
        "the error does not name the folder: {error}"
    );

    let again = worker
        .submit(Job::Generate(job("a bag", 3, 5, SamplerKind::Ddim)))
        .unwrap();
    let end = end_of(&worker, again);
    let (after, recipe_after) = expect_finished(&end);
    assert_eq!(recipe_after.model, recipe_before.model);
    assert!(after.rgb == before.rgb, "the same job made another picture");
}

/// The loaded model's identity, from the load event of a fresh worker.
fn loaded_model(worker: &mut Worker) -> (interconcept::engine::model::ModelId, Vec<String>) {
    let id = worker
        .submit(Job::LoadModel(embedded_model_dir()))
        .expect("the worker takes the load");
    let event = loop {
        match worker.recv_timeout(WAIT) {
            Some(event) if event_id(&event) == id => break event,
            Some(_) => {}
            None => panic!("the model did not load within {WAIT:?}"),
        }
    };
    match event {
        Event::ModelLoaded {
            model,
            score_labels,
            catalogs,
            ..
        } => {
            assert_eq!(catalogs.len(), 3, "text encoder, UNet and VAE catalogs");
            assert!(catalogs[1].modules.len() > 10, "the UNet has modules");
            (model, score_labels)
        }
        other => panic!("expected ModelLoaded, got {other:?}"),
    }
}

fn tile_recipe(model: &interconcept::engine::model::ModelId, prompt: &str, seed: u64) -> Recipe {
    Recipe::for_prompt(
        model.clone(),
        prompt,
        seed,
        SamplingParams {
            num_steps: 4,
            guidance_scale: 4.0,
            sampler: SamplerKind::Ddim,
            width: SIDE,
            height: SIDE,
        },
    )
}

#[test]
fn a_tiles_job_reports_every_tile_scored_and_equal_to_its_single_picture() {
    use interconcept::worker::{Lane, TilesJob};
    let mut worker = spawn();
    let (model, labels) = loaded_model(&mut worker);
    assert_eq!(
        labels.len(),
        10,
        "the embedded model declares its concept meter"
    );

    let mut knocked = tile_recipe(&model, "a sneaker", 3);
    knocked.edits = vec![interconcept::engine::surgery::WeightEdit::Knockout {
        component: interconcept::engine::model::Component::Unet,
        module: "mid_block".into(),
    }];
    let recipes = vec![
        tile_recipe(&model, "a sneaker", 1),
        tile_recipe(&model, "a bag", 2),
        knocked.clone(),
    ];
    let id = worker
        .submit(Job::Tiles(TilesJob {
            lane: Lane::Navigator,
            recipes: recipes.clone(),
            score: true,
        }))
        .unwrap();
    let events = events_until_end(&worker, id);
    assert!(matches!(
        events.last(),
        Some(Event::TilesDone { count: 3, .. })
    ));
    let mut seen = [false; 3];
    for event in &events {
        if let Event::Tile {
            index,
            recipe,
            scores,
            picture,
            ..
        } = event
        {
            seen[*index] = true;
            assert_eq!(**recipe, recipes[*index]);
            let scores = scores.as_ref().expect("tiles are scored");
            assert_eq!(scores.len(), 10);
            assert!((scores.iter().sum::<f32>() - 1.0).abs() < 1e-3);
            assert_eq!((picture.width, picture.height), (SIDE, SIDE));
        }
    }
    assert_eq!(seen, [true; 3]);

    // A single picture with the same edits after the tiles gives the same bytes, and one
    // without them afterwards is the plain picture again (the edits were undone).
    let tile_of = |events: &[Event], which: usize| {
        events
            .iter()
            .find_map(|e| match e {
                Event::Tile { index, picture, .. } if *index == which => Some(picture.clone()),
                _ => None,
            })
            .unwrap()
    };
    let mut single = job("a sneaker", 3, 4, SamplerKind::Ddim);
    single.edits = knocked.edits.clone();
    let id = worker.submit(Job::Generate(single.clone())).unwrap();
    let end = end_of(&worker, id);
    let (picture, recipe) = expect_finished(&end);
    assert_eq!(picture.rgb, tile_of(&events, 2).rgb);
    assert_eq!(recipe.edits, knocked.edits);
    single.edits.clear();
    single.seed = 1;
    let id = worker.submit(Job::Generate(single)).unwrap();
    let end = end_of(&worker, id);
    assert_eq!(expect_finished(&end).0.rgb, tile_of(&events, 0).rgb);
}

#[test]
fn tiles_of_another_model_are_refused_and_a_newer_tiles_job_supersedes() {
    use interconcept::worker::{Lane, TilesJob};
    let mut worker = spawn();
    let (model, _) = loaded_model(&mut worker);
    let mut stranger = model.clone();
    stranger.weights_hash = "not this one".into();
    let id = worker
        .submit(Job::Tiles(TilesJob {
            lane: Lane::Sweep,
            recipes: vec![tile_recipe(&stranger, "a coat", 1)],
            score: false,
        }))
        .unwrap();
    assert!(expect_failed(&end_of(&worker, id)).contains("model"));

    let many: Vec<Recipe> = (0..64).map(|s| tile_recipe(&model, "a coat", s)).collect();
    let old = worker
        .submit(Job::Tiles(TilesJob {
            lane: Lane::Sweep,
            recipes: many,
            score: false,
        }))
        .unwrap();
    let new = worker
        .submit(Job::Tiles(TilesJob {
            lane: Lane::Sweep,
            recipes: vec![tile_recipe(&model, "a dress", 1)],
            score: false,
        }))
        .unwrap();
    assert!(matches!(end_of(&worker, old), Event::Cancelled { .. }));
    assert!(matches!(
        end_of(&worker, new),
        Event::TilesDone { count: 1, .. }
    ));
}
