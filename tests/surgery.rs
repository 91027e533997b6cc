//! Surgery on the embedded model: every edit changes the picture and undo gives the exact
//! bytes back, recipes with edits reproduce, a zero-scaled network equals a fully knocked-out
//! one, blown-up weights are marked rather than panicking, and the concept fades as the
//! progressive knockout grows.

use std::collections::BTreeSet;

use candle_core::{DType, Device, Tensor};
use interconcept::cli::render;
use interconcept::engine::meter::ConceptMeter;
use interconcept::engine::model::{Component, DiffusionModel, embedded_model_dir};
use interconcept::engine::pipeline::{self, Picture, SamplingParams};
use interconcept::engine::scheduler::SamplerKind;
use interconcept::engine::surgery::{
    WeightEdit, apply_edits, catalog, module_of, progressive_order,
};
use interconcept::recipe::Recipe;
use interconcept::train::cli::pictures_to_tensor;
use interconcept::train::fashion_mnist::class_prompt;

fn embedded() -> DiffusionModel {
    DiffusionModel::load(&embedded_model_dir(), &Device::Cpu).expect("the embedded model loads")
}

fn recipe(model: &DiffusionModel, prompt: &str, seed: u64, edits: Vec<WeightEdit>) -> Recipe {
    let sampling = SamplingParams {
        num_steps: 6,
        guidance_scale: 3.0,
        sampler: SamplerKind::Ddim,
        width: model.default_size,
        height: model.default_size,
    };
    Recipe {
        edits,
        ..Recipe::for_prompt(model.id.clone(), prompt, seed, sampling)
    }
}

fn picture(model: &mut DiffusionModel, edits: Vec<WeightEdit>) -> Picture {
    render(model, &mut recipe(model, "a red sneaker", 3, edits), None).expect("a picture")
}

/// Every weight of the model as bits, for exact comparisons.
fn weight_bits(model: &DiffusionModel) -> Vec<u32> {
    let mut bits = Vec::new();
    for component in Component::ALL {
        let store = model.store(component);
        for name in store.names() {
            let t = store.get(name).expect("a listed tensor");
            if t.dtype() == DType::F32 {
                let v = t
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .expect("f32 values");
                bits.extend(v.iter().map(|x| x.to_bits()));
            }
        }
    }
    bits
}

fn one_module(model: &DiffusionModel) -> String {
    catalog(model, Component::Unet)
        .modules
        .iter()
        .find(|m| m.name.ends_with("resnets.0.conv1"))
        .expect("a resnet")
        .name
        .clone()
}

#[test]
fn every_edit_changes_the_picture_and_undo_gives_the_exact_bytes_back() {
    let mut model = embedded();
    let loaded = weight_bits(&model);
    let baseline = picture(&mut model, vec![]);
    let module = one_module(&model);
    let unet = vec![Component::Unet];
    let edits = [
        WeightEdit::Knockout {
            component: Component::Unet,
            module: module.clone(),
        },
        WeightEdit::Randomize {
            component: Component::Unet,
            module: module.clone(),
            seed: 1,
        },
        WeightEdit::Scale {
            component: Component::Unet,
            module: module.clone(),
            factor: 3.0,
        },
        WeightEdit::MixNoise {
            percent: 10.0,
            seed: 1,
            components: unet.clone(),
        },
        WeightEdit::ScaleAll {
            factor: 0.8,
            components: unet,
        },
        WeightEdit::ProgressiveKnockout {
            count: 20,
            seed: 1,
            component: Component::Unet,
        },
        WeightEdit::Knockout {
            component: Component::Vae,
            module: "decoder.conv_out".into(),
        },
    ];
    for edit in edits {
        let edited = picture(&mut model, vec![edit.clone()]);
        assert_ne!(edited.rgb, baseline.rgb, "{} changed nothing", edit.label());
        let report = apply_edits(&mut model, &[]).unwrap();
        assert!(report.tensors_restored > 0);
        assert!(
            Component::ALL
                .iter()
                .all(|&c| model.store(c).edited().next().is_none())
        );
        assert_eq!(weight_bits(&model), loaded, "{} left a trace", edit.label());
        assert_eq!(picture(&mut model, vec![]).rgb, baseline.rgb);
    }
}

#[test]
fn edits_touch_only_their_tensors_and_reapplying_another_list_is_exact() {
    let mut model = embedded();
    let module = one_module(&model);
    let knockout = vec![WeightEdit::Knockout {
        component: Component::Unet,
        module: module.clone(),
    }];
    let report = apply_edits(&mut model, &knockout).unwrap();
    assert_eq!(report.modules_edited, 1);
    assert_eq!(report.tensors_written, 2, "weight and bias");
    let edited: Vec<String> = model
        .store(Component::Unet)
        .edited()
        .map(str::to_string)
        .collect();
    assert!(edited.iter().all(|t| module_of(t) == module), "{edited:?}");

    // A noisy brain, then a different list, then the first again: the same weights.
    let noisy = vec![
        WeightEdit::MixNoise {
            percent: 5.0,
            seed: 9,
            components: Component::ALL.to_vec(),
        },
        WeightEdit::Scale {
            component: Component::Unet,
            module: "mid_block".into(),
            factor: 0.5,
        },
    ];
    apply_edits(&mut model, &noisy).unwrap();
    let first = weight_bits(&model);
    apply_edits(&mut model, &knockout).unwrap();
    apply_edits(&mut model, &noisy).unwrap();
    assert_eq!(weight_bits(&model), first);
}

#[test]
fn recipes_with_edits_make_the_same_picture_twice() {
    let mut model = embedded();
    let edits = vec![
        WeightEdit::ProgressiveKnockout {
            count: 10,
            seed: 2,
            component: Component::Unet,
        },
        WeightEdit::MixNoise {
            percent: 3.0,
            seed: 4,
            components: vec![Component::Unet],
        },
    ];
    let mut first = recipe(&model, "an ankle boot", 5, edits.clone());
    let a = render(&mut model, &mut first, None).unwrap();
    let _ = picture(&mut model, vec![]);
    let mut again = Recipe::from_json(&first.to_json()).unwrap();
    assert_eq!(again.edits, edits);
    let b = render(&mut model, &mut again, None).unwrap();
    assert_eq!(a.rgb, b.rgb);
}

#[test]
fn progressive_knockout_follows_its_seeded_order() {
    let mut model = embedded();
    let catalog = catalog(&model, Component::Unet);
    let order = |seed| -> Vec<String> {
        progressive_order(&catalog, seed)
            .iter()
            .map(|m| m.name.clone())
            .collect()
    };
    assert_eq!(order(1), order(1));
    assert_ne!(order(1), order(2));

    let knocked = |model: &mut DiffusionModel, count| -> BTreeSet<String> {
        let edit = WeightEdit::ProgressiveKnockout {
            count,
            seed: 1,
            component: Component::Unet,
        };
        apply_edits(model, &[edit]).unwrap();
        model
            .store(Component::Unet)
            .edited()
            .map(|t| module_of(t).to_string())
            .collect()
    };
    let ten = knocked(&mut model, 10);
    let expected: BTreeSet<String> = order(1)[..10].iter().cloned().collect();
    assert_eq!(ten, expected);
    let twenty = knocked(&mut model, 20);
    assert!(ten.is_subset(&twenty) && twenty.len() == 20);

    let all = catalog.modules.len();
    let too_many = WeightEdit::ProgressiveKnockout {
        count: all + 1,
        seed: 1,
        component: Component::Unet,
    };
    let err = apply_edits(&mut model, &[too_many])
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("has {all}")), "{err}");
    // A refused list changes nothing.
    let still: BTreeSet<String> = model
        .store(Component::Unet)
        .edited()
        .map(|t| module_of(t).to_string())
        .collect();
    assert_eq!(still, twenty);
}

#[test]
fn scaling_to_zero_is_knocking_out_everything() {
    let mut model = embedded();
    let knock_all = |model: &DiffusionModel, component| -> Vec<WeightEdit> {
        catalog(model, component)
            .modules
            .iter()
            .map(|m| WeightEdit::Knockout {
                component,
                module: m.name.clone(),
            })
            .collect()
    };
    let zero_unet = picture(
        &mut model,
        vec![WeightEdit::ScaleAll {
            factor: 0.0,
            components: vec![Component::Unet],
        }],
    );
    let edits = knock_all(&model, Component::Unet);
    let knocked_unet = picture(&mut model, edits);
    assert_eq!(zero_unet.rgb, knocked_unet.rgb);

    // With every component at zero the VAE decodes to one flat colour.
    let zero_all = picture(
        &mut model,
        vec![WeightEdit::ScaleAll {
            factor: 0.0,
            components: Component::ALL.to_vec(),
        }],
    );
    let all: Vec<WeightEdit> = Component::ALL
        .iter()
        .flat_map(|&c| knock_all(&model, c))
        .collect();
    assert_eq!(picture(&mut model, all).rgb, zero_all.rgb);
    assert!(!zero_all.non_finite);
    assert!(zero_all.rgb.chunks(3).all(|p| p == &zero_all.rgb[..3]));
}

#[test]
fn blown_up_weights_give_a_marked_picture_not_a_panic() {
    let mut model = embedded();
    let mut blown = recipe(
        &model,
        "a bag",
        1,
        vec![WeightEdit::ScaleAll {
            factor: 1e30,
            components: vec![Component::Unet],
        }],
    );
    let broken = render(&mut model, &mut blown, None).unwrap();
    assert!(broken.non_finite && blown.non_finite);
    assert!(Recipe::from_json(&blown.to_json()).unwrap().non_finite);
    // The same mind, healed, draws again.
    assert!(!picture(&mut model, vec![]).non_finite);
}

#[test]
fn the_concept_fades_as_the_progressive_knockout_grows() {
    let meter_dir = interconcept::train::cli::embedded_meter_dir();
    if !meter_dir.join("meter.safetensors").is_file() {
        eprintln!(
            "skipped: no concept meter at {} (it ships with the trained model)",
            meter_dir.display()
        );
        return;
    }
    let meter = ConceptMeter::load(&meter_dir).unwrap();
    let mut model = embedded();
    let num_modules = catalog(&model, Component::Unet).modules.len();

    // The meter's mean score for each class prompt's own class, over classes the model draws
    // well (trousers, pullover, bag, ankle boot) and a few seeds, in one batch per count.
    let classes = [1, 2, 8, 9];
    let seeds: Vec<u64> = (0..4).collect();
    let prompts: Vec<String> = classes.iter().map(|&c| class_prompt(c)).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let params = SamplingParams {
        num_steps: 20,
        guidance_scale: 4.0,
        ..recipe(&model, "", 0, vec![]).sampling
    };
    let mut score_at = |count: usize| -> f32 {
        let edit = WeightEdit::ProgressiveKnockout {
            count,
            seed: 1,
            component: Component::Unet,
        };
        apply_edits(&mut model, &[edit]).unwrap();
        let (conditioning, _) = model.encode_prompts(&prompts).unwrap();
        let batch_seeds: Vec<u64> = classes.iter().flat_map(|_| seeds.clone()).collect();
        let rows: Vec<Tensor> = (0..classes.len())
            .map(|i| conditioning.narrow(0, i, 1)?.repeat((seeds.len(), 1, 1)))
            .collect::<candle_core::Result<_>>()
            .unwrap();
        let conditioning = Tensor::cat(&rows, 0).unwrap();
        let initial = pipeline::initial_noise_batch(&model, &batch_seeds, &params).unwrap();
        let pictures = pipeline::generate(
            &model,
            &conditioning,
            &initial,
            &batch_seeds,
            &params,
            &mut |_| true,
        )
        .unwrap();
        let mut total = 0.0;
        for (i, &class) in classes.iter().enumerate() {
            let own = &pictures[i * seeds.len()..(i + 1) * seeds.len()];
            let tensor = pictures_to_tensor(own, &Device::Cpu).unwrap();
            total += meter.score(&tensor, class).unwrap().iter().sum::<f32>();
        }
        total / batch_seeds.len() as f32
    };
    let counts = [0, num_modules / 8, num_modules / 2, num_modules];
    let scores: Vec<f32> = counts.iter().map(|&c| score_at(c)).collect();
    eprintln!("progressive knockout {counts:?}: concept score {scores:?}");
    // Ten classes: chance is 0.1.
    assert!(
        scores[0] > 0.3,
        "the intact model should draw its concepts: {scores:?}"
    );
    assert!(
        scores.windows(2).all(|w| w[1] <= w[0] + 0.05),
        "the score should fall as modules go: {scores:?}"
    );
    assert!(scores[3] < scores[0] / 2.0, "{scores:?}");
}
