use super::*;
use crate::engine::pipeline::{Picture, SamplingParams};
use crate::engine::scheduler::SamplerKind;
use crate::engine::space::{ConceptPoint, NoisePoint};

fn model() -> ModelId {
    ModelId {
        name: "embedded".into(),
        weights_hash: "0123456789abcdef".into(),
        variant: None,
    }
}

fn recipe() -> Recipe {
    let sampling = SamplingParams {
        num_steps: 7,
        guidance_scale: 2.5,
        sampler: SamplerKind::EulerAncestral,
        width: 48,
        height: 32,
    };
    Recipe {
        edits: vec![WeightEdit::ScaleAll {
            factor: 0.5,
            components: vec![crate::engine::model::Component::Unet],
        }],
        ..Recipe::for_prompt(model(), "a red bag", 1234, sampling)
    }
}

fn opened_recipe(bytes: &[u8]) -> Recipe {
    match parse_opened(bytes) {
        Ok(Opened::Recipe(recipe)) => *recipe,
        other => panic!("expected a recipe, got {other:?}"),
    }
}

#[test]
fn a_recipe_restores_every_setting_the_edits_and_the_job() {
    let recipe = recipe();
    let restored = restore(&opened_recipe(recipe.to_json().as_bytes()), Some(&model()))
        .expect("the loaded model's recipe restores");
    let s = &restored.settings;
    assert_eq!(s.prompt, "a red bag");
    assert_eq!(s.seed, 1234);
    assert_eq!((s.num_steps, s.guidance_scale), (7, 2.5));
    assert_eq!(s.sampler, SamplerKind::EulerAncestral);
    assert_eq!(s.size, Some([48, 32]));
    assert_eq!(s.size_model.as_deref(), Some("embedded"));
    assert_eq!(restored.edits, recipe.edits);
    assert_eq!(restored.job.params, recipe.sampling);
    assert_eq!(restored.job.edits, recipe.edits);
    assert_eq!(
        (restored.job.seed, restored.job.point.as_ref()),
        (1234, None)
    );

    // The settings alone make the same job (the size is chosen for this model).
    let job = s.to_job().expect("the size is set");
    assert_eq!(
        (job.prompt, job.seed, job.params),
        ("a red bag".into(), 1234, recipe.sampling)
    );
}

#[test]
fn a_concept_point_goes_into_the_job() {
    let recipe = Recipe {
        point: Some(Box::new(ConceptPoint::Prompt("a shoe".into()))),
        ..recipe()
    };
    let restored = restore(&recipe, Some(&model())).unwrap();
    assert_eq!(restored.job.point, recipe.point);
}

#[test]
fn a_point_of_noise_space_goes_into_the_job() {
    let recipe = Recipe {
        noise: Some(Box::new(NoisePoint::Plane {
            centre_seed: 3,
            directions_seed: 1,
            u: 0.5,
            v: -0.25,
        })),
        ..recipe()
    };
    let restored = restore(&recipe, Some(&model())).unwrap();
    assert_eq!(restored.job.noise, recipe.noise);
    assert_eq!(restored.job.point, None);
}

#[test]
fn a_png_made_by_the_program_opens_as_its_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.png");
    let picture = Picture {
        width: 2,
        height: 1,
        rgb: vec![1, 2, 3, 4, 5, 6],
        non_finite: false,
    };
    recipe::write_png(&path, &picture, &recipe().to_json()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(opened_recipe(&bytes), recipe());

    // Cut short, it is an error, not a panic.
    let error = parse_opened(&bytes[..20]).unwrap_err();
    assert!(error.contains("PNG"), "{error}");
}

#[test]
fn another_model_is_named_and_nothing_restores() {
    let mut other = recipe();
    other.model.weights_hash = "ffffffffffffffff".into();
    let error = restore(&other, Some(&model())).unwrap_err();
    assert!(
        error.contains("needs model embedded (weights ffffffffffffffff)"),
        "{error}"
    );
    other.model.name = "sd-turbo".into();
    let error = restore(&other, Some(&model())).unwrap_err();
    assert!(error.contains("load sd-turbo first"), "{error}");
    let error = restore(&recipe(), None).unwrap_err();
    assert!(error.contains("no model is loaded"), "{error}");
}

#[test]
fn newer_versions_and_malformed_input_are_refused() {
    let mut value: serde_json::Value = serde_json::from_str(&recipe().to_json()).unwrap();
    value["version"] = 99.into();
    let error = parse_opened(value.to_string().as_bytes()).unwrap_err();
    assert!(error.contains("version 99 is newer"), "{error}");

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{ not json".to_vec(), "not valid JSON"),
        (vec![0xff, 0xfe, 0x00, 0x81], "not UTF-8"),
        (b"{}".to_vec(), "version"),
        (b"[1, 2, 3]".to_vec(), "version"),
        (b"{\"version\": \"1\"}".to_vec(), "version"),
        (b"{\"version\": 1}".to_vec(), "schema"),
        (b"{\"version\": -1}".to_vec(), "version"),
        (b"{\"version\": 1e400}".to_vec(), "JSON"),
    ];
    for (bytes, needle) in cases {
        let error = parse_opened(&bytes).unwrap_err();
        assert!(
            error.contains(needle),
            "{:?}: {error}",
            String::from_utf8_lossy(&bytes)
        );
    }

    // An unknown field is refused rather than silently ignored (it may be an edit this build
    // does not know, which would make another picture).
    value["version"] = 1.into();
    value["future_edit"] = serde_json::json!({"knock": "everything"});
    let error = parse_opened(value.to_string().as_bytes()).unwrap_err();
    assert!(error.contains("future_edit"), "{error}");
}

#[test]
fn hostile_numbers_are_refused_before_anything_changes() {
    let with = |edit: &dyn Fn(&mut serde_json::Value)| -> Result<Restored, String> {
        let mut value: serde_json::Value = serde_json::from_str(&recipe().to_json()).unwrap();
        edit(&mut value);
        match parse_opened(value.to_string().as_bytes())? {
            Opened::Recipe(recipe) => restore(&recipe, Some(&model())),
            Opened::Mosaic(_) => Err("a mosaic".into()),
        }
    };
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| v["sampling"]["num_steps"] = u64::MAX.into()),
            "steps",
        ),
        (Box::new(|v| v["sampling"]["num_steps"] = 0.into()), "steps"),
        (
            Box::new(|v| v["sampling"]["width"] = 1_000_000_000u64.into()),
            "width",
        ),
        (Box::new(|v| v["sampling"]["height"] = 0.into()), "height"),
        (
            Box::new(|v| v["sampling"]["guidance_scale"] = (-1.0).into()),
            "guidance",
        ),
        (
            Box::new(|v| v["sampling"]["guidance_scale"] = 1e308.into()),
            "",
        ),
        (Box::new(|v| v["seed"] = (-5).into()), "schema"),
        (Box::new(|v| v["seed"] = serde_json::json!(1.5)), "schema"),
        (
            Box::new(|v| v["edits"][0]["kind"] = "knock_out_everything".into()),
            "schema",
        ),
    ];
    for (i, (edit, needle)) in cases.into_iter().enumerate() {
        match with(&*edit) {
            Err(error) => assert!(error.contains(needle), "case {i}: {error}"),
            // A guidance of 1e308 is a finite number: accepted, the worker decides.
            Ok(restored) => assert_eq!(i, 5, "case {i} restored {:?}", restored.settings),
        }
    }

    // The largest seed is a seed like any other.
    let restored = with(&|v| v["seed"] = u64::MAX.into()).unwrap();
    assert_eq!(restored.job.seed, u64::MAX);
}

#[test]
fn a_path_in_a_prompt_stays_text() {
    let recipe = Recipe {
        prompt: "../../etc/passwd".into(),
        ..recipe()
    };
    let restored = restore(&opened_recipe(recipe.to_json().as_bytes()), Some(&model())).unwrap();
    assert_eq!(restored.settings.prompt, "../../etc/passwd");
    assert_eq!(restored.job.prompt, "../../etc/passwd");
}

#[test]
fn recipes_from_files_of_noise_are_sent_to_the_command_line() {
    let recipe = Recipe {
        noise_hash: Some("abc".into()),
        ..recipe()
    };
    let error = restore(&recipe, Some(&model())).unwrap_err();
    assert!(error.contains("interconcept replay"), "{error}");
}

#[test]
fn a_mosaic_is_recognised_and_described() {
    let tile = crate::mosaic::MosaicTile {
        picture: Picture {
            width: 4,
            height: 4,
            rgb: vec![0; 48],
            non_finite: false,
        },
        label: "a".into(),
        recipe: recipe(),
    };
    let mosaic = crate::mosaic::Mosaic {
        title: "t".into(),
        columns: 2,
        column_labels: Vec::new(),
        row_labels: Vec::new(),
        corner_label: String::new(),
        tiles: vec![tile.clone(), tile.clone(), tile],
        style: crate::mosaic::MosaicStyle::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.png");
    mosaic.write(&path).unwrap();
    match parse_opened(&std::fs::read(&path).unwrap()) {
        Ok(Opened::Mosaic(record)) => {
            assert_eq!(record.tiles.len(), 3);
            let text = mosaic_message("m.png", &record);
            assert!(text.contains("mosaic of 3 tiles (2 rows of 2)"), "{text}");
        }
        other => panic!("expected a mosaic, got {other:?}"),
    }
}
